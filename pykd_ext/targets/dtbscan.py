"""Where a raw physical image keeps its kernel's page tables: one finder per architecture.

Why: a raw image has no header naming the kernel DTB; each architecture leaves it somewhere else,
so each has its finder, named in its `arch.Arch` description (`find_dtbs`). A finder only reads a
`PhysicalSource` (file, VM RAM, anything) and returns candidates, best first; everything is bounded.

- x64: the HAL's processor start block in low physical memory (the "low stub"), as published by
  MemProcFS (`vmm/vmmwininit.c`, VmmWinInit_DTB_FindValidate_X64_LowStub) and PCILeech: a page
  below 1 MiB whose first qword masked with 0xFFFFFFFFFFFF00FF is 0x00000001000600E9 (the
  block's Jmp), whose LmTarget at +0x70 is a kernel address (mask 0xFFFFF80000000003 gives
  0xFFFFF80000000000) and whose ProcessorState.SpecialRegisters.Cr3 at +0xA0 (ProcessorState at
  +0x90, `_KSPECIAL_REGISTERS.Cr3` at +0x10 as the ISF also states) is a page-aligned physical
  address below 2**40. Its LmTarget is also a hint where the kernel image lies.
- x86: no such block; Windows' recursive mapping at 0xC0000000 (Intel SDM 4.3/4.4 geometry; the
  property Volatility 3's x86 DTB tests use): non-PAE, a page directory whose entry 0x300 maps the
  directory itself; PAE, five consecutive frames, a PDPT (entries 0-3 -> the next four frames)
  and its four directories, the last of which maps them through its entries 0-3. A candidate is
  kept when the kernel's `_KUSER_SHARED_DATA` address translates.
"""
import struct
from typing import TYPE_CHECKING, Any, Callable, Dict, List, NamedTuple, Optional

from construct import Bytes, Int64ul, Struct

from pykd_ext.errors import MemoryReadError
from pykd_ext.memory.paged import PagedAddressSpace
from pykd_ext.memory.paging_modes import X64_4LEVEL, X86_NONPAE, X86_PAE, PagingMode
from pykd_ext.memory.space import PAGE_SIZE, PhysicalSource

if TYPE_CHECKING:
    from pykd_ext.targets.arch import Arch


class DtbCandidate:
    """A kernel DTB a finder believes in, the paging mode it implies, and why.

    (A plain class: this module is imported by every command, through the architecture table.)"""

    __slots__ = ("dtb", "mode", "how", "facts", "entry_hint")

    def __init__(self, dtb: int, mode: PagingMode, how: str, facts: Optional[Dict[str, Any]] = None,
                 entry_hint: Optional[int] = None) -> None:
        self.dtb = dtb
        self.mode = mode
        self.how = how                                    # for info(): what identified it
        self.facts: Dict[str, Any] = facts if facts is not None else {}   # extra info() facts
        self.entry_hint = entry_hint                      # a VA inside the kernel image, when known

    def __repr__(self) -> str:
        return "DtbCandidate(0x%x, %s, %r)" % (self.dtb, self.mode.name, self.how)


# --- x64: the processor start block ---------------------------------------------------------------

PROCESSOR_START_BLOCK = Struct(
    "Jmp" / Int64ul,              # +0x00
    "_rest0" / Bytes(0x68),
    "LmTarget" / Int64ul,         # +0x70
    "_rest1" / Bytes(0x28),
    "Cr3" / Int64ul,              # +0xA0
)
START_BLOCK_JMP_MASK = 0xFFFFFFFFFFFF00FF
START_BLOCK_JMP = 0x00000001000600E9
LM_TARGET_MASK = 0xFFFFF80000000003
LM_TARGET_VALUE = 0xFFFFF80000000000
CR3_INVALID_BITS = 0xFFFFFF0000000FFF
LOW_STUB_LIMIT = 0x100000


def find_low_stub(physical: PhysicalSource) -> Optional[DtbCandidate]:
    """The first valid x64 processor start block below 1 MiB (page 0 is never one)."""
    for pfn in range(1, LOW_STUB_LIMIT // PAGE_SIZE):
        page = physical.page(pfn)
        if page is None:
            continue
        block = PROCESSOR_START_BLOCK.parse(bytes(page[:PROCESSOR_START_BLOCK.sizeof()]))
        if (block.Jmp & START_BLOCK_JMP_MASK) != START_BLOCK_JMP:
            continue
        if (block.LmTarget & LM_TARGET_MASK) != LM_TARGET_VALUE:
            continue
        if block.Cr3 & CR3_INVALID_BITS or not block.Cr3:
            continue
        return DtbCandidate(block.Cr3, X64_4LEVEL, "x64 processor start block",
                            {"low_stub": pfn * PAGE_SIZE, "lm_target": block.LmTarget},
                            entry_hint=block.LmTarget)
    return None


def low_stub_dtbs(physical: PhysicalSource, arch: "Arch") -> List[DtbCandidate]:
    found = find_low_stub(physical)
    return [found] if found is not None else []


class DtbFinder(NamedTuple):
    """One architecture's way to the kernel DTB of a raw image."""

    looks_for: str                     # what it scans for (said in a note when nothing is found)
    find: Callable[[PhysicalSource, Any], List[DtbCandidate]]   # (memory, its Arch) -> best first


# --- x86: the recursive page-directory mapping ------------------------------------------------------

#: PDE index of VA 0xC0000000 (non-PAE recursive entry) and the PAE self-mapping directory
NON_PAE_SELF_INDEX = 0xC0000000 >> 22
PAE_SELF_DIRECTORY = 3
#: bounds: pages examined for directories, candidates kept
MAX_SCAN_PAGES = 1 << 22          # 16 GiB of physical memory
MAX_CANDIDATES = 64

_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_FRAME_PAE = 0x000FFFFFFFFFF000


def find_x86_directories(physical: PhysicalSource) -> List[DtbCandidate]:
    """Every self-mapping page directory (non-PAE) or PDPT (PAE), in physical order, bounded."""
    out: List[DtbCandidate] = []
    scanned = 0
    for first, count in physical.runs():
        for pfn in range(first, first + count):
            scanned += 1
            if scanned > MAX_SCAN_PAGES or len(out) >= MAX_CANDIDATES:
                return out
            page = physical.page(pfn)
            if page is None:
                continue
            address = pfn * PAGE_SIZE
            pde = _U32.unpack_from(page, NON_PAE_SELF_INDEX * 4)[0]
            if pde & 1 and pde & 0xFFFFF000 == address and not pde & 0x80:
                out.append(DtbCandidate(address, X86_NONPAE,
                                        "page directory mapping itself at 0xC0000000"))
                continue
            entry = _U64.unpack_from(page, PAE_SELF_DIRECTORY * 8)[0]
            if entry & 1 and entry & _FRAME_PAE == address and pfn >= 4:
                top = physical.page(pfn - 4)
                if top is None:
                    continue
                pdpt = [_U64.unpack_from(top, i * 8)[0] for i in range(4)]
                if all(e & 1 and e & _FRAME_PAE == (pfn - 3 + i) * PAGE_SIZE
                       for i, e in enumerate(pdpt)):
                    out.append(DtbCandidate(
                        (pfn - 4) * PAGE_SIZE, X86_PAE,
                        "PDPT + 4 page directories mapping themselves at 0xC0600000"))
    return out


def recursive_map_dtbs(physical: PhysicalSource, arch: "Arch") -> List[DtbCandidate]:
    """The x86 candidates whose space maps the kernel's `_KUSER_SHARED_DATA` (best first)."""
    kept = []
    for candidate in find_x86_directories(physical):
        space = PagedAddressSpace(physical, candidate.dtb, candidate.mode)
        try:
            if arch.kuser_shared_data is not None:
                space.translate(arch.kuser_shared_data)
        except MemoryReadError:
            continue
        kept.append(candidate)
    return kept


LOW_STUB_FINDER = DtbFinder("x64 processor start block below 1 MiB", low_stub_dtbs)
RECURSIVE_MAP_FINDER = DtbFinder("x86 page directory mapping itself at 0xC0000000 (0xC0600000 "
                                 "with PAE)", recursive_map_dtbs)
