"""Finding the Windows kernel in memory that has no header to name it (raw images, VM RAM).

Why: a dump header states the kernel's base and KDBG; physical memory alone does not. Three
independent clues, tried cheapest first by `locate_kernel`, all working on any `PhysicalSource`
(its scan API, `find`) and the kernel address space found by the architecture's DTB finder:
1. a hint inside the image (x64: the processor start block's LmTarget): scan down for the PE
   header naming a kernel PDB;
2. the KDBG block: its 'KDBG' owner tag in physical memory and its KernBase (a 32-bit kernel's
   sign-extended, `arch.Arch.narrow_pointer`) naming a mapped kernel PE image (decoded blocks:
   Windows 7, dumps; Windows 8+ live memory keeps it encoded);
3. the CodeView (RSDS) record naming a kernel PDB, found in physical memory, mapped back to its
   virtual address through the page tables (`PagedAddressSpace.mappings_of`), then the image
   header below it.
Everything is bounded: hits examined, pages scanned down, tables walked.
"""
from dataclasses import dataclass, field
from typing import List, Optional, Tuple

from pykd_ext.errors import MemoryReadError, PykdExtError
from pykd_ext.memory.paged import PagedAddressSpace
from pykd_ext.memory.space import PAGE_SIZE, AddressSpace, PhysicalSource
from pykd_ext.targets.arch import Arch
from pykd_ext.targets.kdbg import KDBG_KERNBASE_OFFSET, KDBG_OWNER_TAG, KDBG_TAG_OFFSET
from pykd_ext.targets.pe import (CV_INFO_PDB70_SIZE, KERNEL_PDB_NAMES, CodeViewInfo, PeInfo,
                                 parse_codeview, read_pe_info)

#: The kernel PDB names as byte strings, for the C-speed scan.
KERNEL_PDB_NEEDLES = tuple(name.encode("ascii") for name in KERNEL_PDB_NAMES)
MAX_RSDS_HITS = 4096
#: How far below a hint (or a mapped RSDS record) the kernel image header may lie.
KERNEL_SEARCH_BELOW_ENTRY = 64 << 20
#: Largest kernel image scanned for its KDBG block (ntoskrnl is ~10-20 MiB).
MAX_KDBG_SCAN = 64 << 20
#: 'KDBG' tags examined in physical memory.
MAX_KDBG_TAGS = 4096
MAX_BUILD_LAB = 128


@dataclass
class KernelFound:
    """Where the kernel image is, and how it was found."""

    base: int
    codeview: Optional[CodeViewInfo]
    how: str
    kdbg: Optional[int] = None             # the KDBG block's VA, when that is how it was found


@dataclass
class KernelSearch:
    """The outcome of `locate_kernel`: the kernel (or None) and what was seen on the way."""

    found: Optional[KernelFound] = None
    candidates: Optional[List[Tuple[int, CodeViewInfo]]] = None   # RSDS hits, when scanned
    notes: List[str] = field(default_factory=list)


def find_kernel_codeview(physical: PhysicalSource) -> List[Tuple[int, CodeViewInfo]]:
    """(physical address, record) of every RSDS record naming a kernel PDB (bounded)."""
    hits: List[Tuple[int, CodeViewInfo]] = []
    for name in KERNEL_PDB_NEEDLES:
        needle = name + b"\0"
        pos = physical.find(needle, CV_INFO_PDB70_SIZE)
        while pos >= 0 and len(hits) < MAX_RSDS_HITS:
            start = pos - CV_INFO_PDB70_SIZE
            try:
                record = physical.read(start, CV_INFO_PDB70_SIZE + len(needle))
            except MemoryReadError:
                record = b""
            if record[:4] == b"RSDS":
                hits.append((start, parse_codeview(record)))
            pos = physical.find(needle, pos + 1)
    hits.sort(key=lambda hit: hit[0])
    return hits


def image_base_below(space: AddressSpace, va: int, limit: int, lowest: int,
                     guid: Optional[str] = None) -> Optional[Tuple[int, CodeViewInfo]]:
    """Scan down from `va` (page by page, at most `limit` bytes, not below `lowest`) for a PE
    header naming a kernel PDB (with this GUID, when given)."""
    page = va & ~0xFFF
    bottom = max(page - limit, lowest)
    while page >= bottom:
        try:
            head = space.read(page, 2)
        except MemoryReadError:
            head = b""
        if head == b"MZ":
            try:
                pe: Optional[PeInfo] = read_pe_info(space, page)
            except PykdExtError:
                pe = None
            cv = pe.debug_codeview if pe is not None else None
            if pe is not None and cv is not None and pe.is_kernel and \
                    (guid is None or cv.guid == guid):
                return page, cv
        page -= PAGE_SIZE
    return None


def find_kdbg_in_image(space: AddressSpace, base: int, size: int) -> Optional[int]:
    """VA of a decoded KDBG block inside the kernel image whose KernBase is `base` (bounded).

    Windows 8+ live systems keep the block encoded; then nothing is found.
    """
    for page in range(base, base + min(size, MAX_KDBG_SCAN), PAGE_SIZE):
        data, _fault = space.read_partial(page, PAGE_SIZE)
        pos = data.find(KDBG_OWNER_TAG)
        while pos >= 0:
            block = page + pos - KDBG_TAG_OFFSET
            if block % 8 == 0:
                try:
                    if space.read_pointer(block + KDBG_KERNBASE_OFFSET) == base:
                        return block
                except MemoryReadError:
                    pass
            pos = data.find(KDBG_OWNER_TAG, pos + 1)
    return None


def find_kernel_by_kdbg(physical: PhysicalSource, space: AddressSpace,
                        arch: Arch) -> Optional[Tuple[int, int, PeInfo]]:
    """(kernel base, KDBG block VA, kernel PE) from a 'KDBG' owner tag in physical memory whose
    KernBase is a kernel PE image mapped in `space` (bounded)."""
    pos = physical.find(KDBG_OWNER_TAG)
    seen = 0
    while pos >= 0 and seen < MAX_KDBG_TAGS:
        seen += 1
        block_pa = pos - KDBG_TAG_OFFSET
        try:
            raw = physical.read(block_pa + KDBG_KERNBASE_OFFSET, 8) if block_pa >= 0 else b""
        except MemoryReadError:
            raw = b""
        base = arch.narrow_pointer(int.from_bytes(raw, "little")) if len(raw) == 8 else None
        if base and not base & 0xFFF and arch.is_kernel_address(base):
            try:
                if space.read(base, 2) == b"MZ":
                    pe = read_pe_info(space, base)
                    if pe.is_kernel:
                        va = _virtual_of(space, base, pe.size_of_image, block_pa)
                        if va is not None:
                            return base, va, pe
            except PykdExtError:
                pass
        pos = physical.find(KDBG_OWNER_TAG, pos + 1)
    return None


def _virtual_of(space: AddressSpace, base: int, size: int, physical_address: int) -> Optional[int]:
    """VA in the kernel image (at most 64 MiB from `base`) that maps `physical_address`."""
    for va in range(base, base + min(size, MAX_KDBG_SCAN), PAGE_SIZE):
        try:
            if space.translate(va) == physical_address & ~0xFFF:
                return va | (physical_address & 0xFFF)
        except MemoryReadError:
            continue
    return None


def build_lab(space: AddressSpace, address: object) -> Optional[str]:
    """The kernel's NtBuildLab string ("7601.17514.x86fre.win7sp1_rtm.101119-1850"), or None."""
    if not isinstance(address, int) or not address:
        return None
    data, _fault = space.read_partial(address, MAX_BUILD_LAB)
    text = data.split(b"\0", 1)[0]
    if not text or any(c < 0x20 or c > 0x7E for c in text):
        return None
    return text.decode("ascii")


def locate_kernel(physical: PhysicalSource, space: AddressSpace, arch: Arch,
                  entry_hint: Optional[int] = None) -> KernelSearch:
    """The kernel image, by the clues of the module docstring in order (see there)."""
    search = KernelSearch()
    paged = isinstance(space, PagedAddressSpace)
    lowest = arch.kernel_start or 0
    if paged and entry_hint is not None:
        hit = image_base_below(space, entry_hint, KERNEL_SEARCH_BELOW_ENTRY, lowest)
        if hit is not None:
            search.found = KernelFound(hit[0], hit[1], "below the start block's entry point")
            return search
    if paged:
        by_kdbg = find_kernel_by_kdbg(physical, space, arch)
        if by_kdbg is not None:
            base, kdbg, pe = by_kdbg
            search.found = KernelFound(base, pe.debug_codeview, "KDBG block in physical memory",
                                       kdbg)
            return search
    candidates = search.candidates = find_kernel_codeview(physical)
    if not candidates:
        search.notes.append("no CodeView record naming a kernel PDB found")
    if paged and candidates:
        wanted = {address >> 12 for address, _ in candidates}
        by_frame = {address >> 12: cv for address, cv in candidates}
        for va, frame in space.mappings_of(wanted, lowest):      # type: ignore[attr-defined]
            hit = image_base_below(space, va, KERNEL_SEARCH_BELOW_ENTRY, lowest,
                                   by_frame[frame].guid)
            if hit is not None:
                search.found = KernelFound(hit[0], hit[1], "RSDS record mapped back to its VA")
                return search
    if paged:
        search.notes.append("kernel image not found in the kernel address space")
    return search
