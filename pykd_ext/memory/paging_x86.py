"""32-bit x86 paging over any `PhysicalMemory`: PAE (3-level) and non-PAE (2-level).

Why: 32-bit Windows (XP to 10) runs either PAE kernels (`ntkrpamp`, every Windows 8+ x86 and most
7 x86 installs) or non-PAE ones (`ntkrnlmp` on old or NX-less hardware). A 32-bit crash dump or raw
image reaches kernel and process memory only through those page tables; this module is the one
implementation, with the same interface and fault reporting as `paging_x64`.

Architecture facts used (Intel SDM Vol. 3A ch. 4.3 "32-Bit Paging" and 4.4 "PAE Paging"):
- non-PAE: CR3 bits 31:12 hold the page directory; a VA indexes 10 bits (31:22) into it and
  10 bits (21:12) into a page table; entries are 4 bytes, frame bits 31:12. A PDE with PS (bit 7,
  CR4.PSE, which Windows sets) maps a 4 MiB page: PA bits 31:22 from entry bits 31:22 and, with
  PSE-36, PA bits 39:32 from entry bits 20:13.
- PAE: CR3 bits 31:5 hold the 32-byte-aligned page-directory-pointer table of 4 entries (VA
  bits 31:30); directory and table index 9 bits each (29:21, 20:12); entries are 8 bytes with
  frame bits up to MAXPHYADDR-1 (at most 52). A PDE with PS maps a 2 MiB page (PA bits 51:21).
- Bit 0 = Present in every entry. A VA is a 32-bit number: anything at or above 4 GiB is invalid.
What Windows stores in a not-present entry (transition, prototype, pagefile) is decoded with a
`SoftwarePteLayout` from the kernel's symbol data (`pte.py`); x86 `_MMPTE_*` are 4 bytes without
PAE and 8 bytes with it, their bit positions come from the layout as on x64.
"""
import struct
from typing import Optional, Tuple, Union

from pykd_ext.memory.faults import (DEMAND_ZERO, INVALID, NOT_IN_DUMP, PAGED_OUT, PROTOTYPE,
                                    Fault)
from pykd_ext.memory.paged import PagedAddressSpace, PageWalk, WalkStep
from pykd_ext.memory.pte import SoftwarePteLayout
from pykd_ext.memory.space import PAGE_SHIFT, PAGE_SIZE, PhysicalMemory

_unpack_q = struct.Struct("<Q").unpack_from
_unpack_l = struct.Struct("<L").unpack_from

PRESENT = 1
PAGE_SIZE_BIT = 1 << 7

#: Page tables cached per address space before that cache is reset.
TABLE_CACHE_LIMIT = 1 << 12

_VA_LIMIT = 1 << 32
_FOUR_MB = 1 << 22
_TWO_MB = 1 << 21


def classify_not_present(address: int, entry: int, level: str,
                         layout: Optional[SoftwarePteLayout]) -> Union[int, Fault]:
    """A not-present entry: the physical page of a transition entry, or the Fault it stands for.

    Same rules as x64 (`X64AddressSpace._not_present`): zero is invalid; without the kernel's
    software PTE layout every other value is reported as paged out (its raw value kept).
    """
    if entry == 0:
        return Fault(INVALID, address, level=level, pte=0)
    if layout is None:
        return Fault(PAGED_OUT, address, level=level, pte=entry)
    field_of = SoftwarePteLayout.field
    if field_of(entry, layout.prototype):
        return Fault(PROTOTYPE, address, level=level, pte=entry)
    if field_of(entry, layout.transition):
        return field_of(entry, layout.transition_pfn) << PAGE_SHIFT
    pagefile_high = field_of(entry, layout.pagefile_high)
    if pagefile_high == 0:
        if field_of(entry, layout.protection):
            return Fault(DEMAND_ZERO, address, level=level, pte=entry)
        return Fault(INVALID, address, level=level, pte=entry)
    if pagefile_high == (1 << layout.pagefile_high[1]) - 1:
        # all ones: Windows' "look the VAD up" marker (MI_PTE_LOOKUP_NEEDED), no pagefile data
        return Fault(INVALID, address, level=level, pte=entry)
    return Fault(PAGED_OUT, address, level=level, pte=entry,
                 pagefile=field_of(entry, layout.pagefile_low),
                 pagefile_offset=pagefile_high << PAGE_SHIFT)


class X86AddressSpace(PagedAddressSpace):
    """A 32-bit virtual address space (CR3) over physical memory, PAE or not.

    `dtb` is CR3: for PAE the PDPT's physical address (32-byte aligned, not necessarily page
    aligned: Windows packs several processes' PDPTs into one page), otherwise the page
    directory's (page aligned).
    """

    pointer_size = 4
    _unpack_pointer = staticmethod(_unpack_l)

    def __init__(self, physical: PhysicalMemory, dtb: int, pae: bool,
                 software_pte: Optional[SoftwarePteLayout] = None,
                 maxphyaddr: int = 52) -> None:
        if not 32 <= maxphyaddr <= 52:
            raise ValueError("MAXPHYADDR must be within 32..52, not %d" % maxphyaddr)
        self._init_paging(physical, software_pte)
        self.pae = bool(pae)
        if self.pae:
            self.dtb = dtb & 0xFFFFFFE0
            self._frame = ((1 << maxphyaddr) - 1) & ~(PAGE_SIZE - 1)
            self._frame_large = self._frame & ~(_TWO_MB - 1)
            self._table_shift = 21
            self.levels: Tuple[str, ...] = ("PDPTE", "PDE", "PTE")
        else:
            self.dtb = dtb & 0xFFFFF000
            self._frame = 0xFFFFF000
            self._frame_large = 0xFFC00000
            self._table_shift = 22
            self.levels = ("PDE", "PTE")

    @property
    def mode(self) -> str:
        return "PAE" if self.pae else "non-PAE"

    def _entry(self, table: int, index: int, level: str,
               walk: Optional[PageWalk]) -> Union[Tuple[int, memoryview], Fault]:
        """(entry value, page holding it) of one paging-structure entry, or NOT_IN_DUMP."""
        width = 8 if self.pae else 4
        entry_address = table + index * width
        page = self._page(entry_address >> PAGE_SHIFT)
        if page is None:
            if walk is not None:
                walk.steps.append(WalkStep(level, table, index, entry_address, None))
            return Fault(NOT_IN_DUMP, entry_address, level=level)
        unpack = _unpack_q if self.pae else _unpack_l
        entry = unpack(page, entry_address & 0xFFF)[0]
        if walk is not None:
            walk.steps.append(WalkStep(level, table, index, entry_address, entry))
        return entry, page

    def _resolve(self, address: int, walk: Optional[PageWalk]) -> Union[int, Fault]:
        if address < 0 or address >= _VA_LIMIT:
            return Fault(INVALID, address)
        if walk is None:
            table = self._tables.get(address >> self._table_shift)
            if table is not None:                 # directory levels already walked here
                if self.pae:
                    entry = _unpack_q(table, ((address >> 12) & 0x1FF) * 8)[0]
                else:
                    entry = _unpack_l(table, ((address >> 12) & 0x3FF) * 4)[0]
                if entry & PRESENT:
                    return entry & self._frame
                return self._not_present(address, entry, "PTE", None)
        if self.pae:
            got = self._entry(self.dtb, (address >> 30) & 3, "PDPTE", walk)
            if isinstance(got, Fault):
                return got
            pdpte = got[0]
            if not pdpte & PRESENT:
                # Windows keeps all four PDPTEs valid; a clear one is an invalid address
                return Fault(INVALID, address, level="PDPTE", pte=pdpte)
            directory = pdpte & self._frame
            pd_index = (address >> 21) & 0x1FF
        else:
            directory = self.dtb
            pd_index = (address >> 22) & 0x3FF
        got = self._entry(directory, pd_index, "PDE", walk)
        if isinstance(got, Fault):
            return got
        pde = got[0]
        if pde & PRESENT:
            if pde & PAGE_SIZE_BIT:
                if walk is not None:
                    walk.page_size = _TWO_MB if self.pae else _FOUR_MB
                if self.pae:
                    return (pde & self._frame_large) | (address & 0x1FF000)
                # PSE-36: entry bits 20:13 are physical address bits 39:32
                high = ((pde >> 13) & 0xFF) << 32
                return high | (pde & self._frame_large) | (address & 0x3FF000)
            table = pde & self._frame
        else:
            resolved = self._not_present(address, pde, "PDE", walk)
            if isinstance(resolved, Fault):
                return resolved
            table = resolved
        pt_index = (address >> 12) & (0x1FF if self.pae else 0x3FF)
        got = self._entry(table, pt_index, "PTE", walk)
        if isinstance(got, Fault):
            return got
        pte, page = got
        if walk is None:
            if len(self._tables) >= TABLE_CACHE_LIMIT:
                self._tables.clear()
            self._tables[address >> self._table_shift] = page
        else:
            walk.page_size = PAGE_SIZE
        if pte & PRESENT:
            return pte & self._frame
        return self._not_present(address, pte, "PTE", walk)

    def _not_present(self, address: int, entry: int, level: str,
                     walk: Optional[PageWalk]) -> Union[int, Fault]:
        result = classify_not_present(address, entry, level, self.software_pte)
        if walk is not None and not isinstance(result, Fault):
            walk.transition = True
        return result


def split_virtual_address(address: int, pae: bool) -> Tuple[int, ...]:
    """(PDPT index, PD index, PT index, offset) with PAE, (PD index, PT index, offset) without."""
    if pae:
        return ((address >> 30) & 3, (address >> 21) & 0x1FF, (address >> 12) & 0x1FF,
                address & 0xFFF)
    return ((address >> 22) & 0x3FF, (address >> 12) & 0x3FF, address & 0xFFF)


def software_pte_from_layouts(layouts: object) -> Optional[SoftwarePteLayout]:
    """The not-present PTE layout of a kernel build (`KernelLayouts`), or None when the layout
    lacks the `_MMPTE_*` types (e.g. the derived 26100 file)."""
    def bits(type_name: str, member: str) -> Optional[Tuple[int, int]]:
        has_type = getattr(layouts, "has_type", None)
        if has_type is None or not has_type(type_name):
            return None
        t = layouts.type(type_name)  # type: ignore[attr-defined]
        if not t.has_field(member):
            return None
        f = t.field(member)
        if f.bit_position is None or f.bit_length is None:
            return None
        return int(f.bit_position), int(f.bit_length)

    wanted = (("_MMPTE_SOFTWARE", "Prototype"), ("_MMPTE_SOFTWARE", "Transition"),
              ("_MMPTE_SOFTWARE", "Protection"), ("_MMPTE_SOFTWARE", "PageFileLow"),
              ("_MMPTE_SOFTWARE", "PageFileHigh"), ("_MMPTE_TRANSITION", "PageFrameNumber"))
    found = [bits(t, m) for t, m in wanted]
    if any(b is None for b in found):
        return None
    return SoftwarePteLayout(*found)  # type: ignore[arg-type]
