"""x64 4-level paging over any `PhysicalMemory`: virtual reads, translation and page walks.

Why: every kernel dump with physical memory (full, bitmap, raw image, live VM) reaches kernel and
process memory through the same page tables. This module is the one implementation.

Architecture facts used (Intel SDM Vol. 3A ch. 4.5 "4-Level Paging"; AMD APM Vol. 2 ch. 5):
- CR3 bits 51:12 hold the PML4 frame; bits 11:0 are PCID/flags and are masked.
- Each level indexes 9 bits of the VA (47:39, 38:30, 29:21, 20:12); entries are 8 bytes.
- Bit 0 = Present; bit 7 (PS) in a PDPTE maps a 1 GiB page (PA bits 51:30), in a PDE a 2 MiB
  page (PA bits 51:21); frame bits end at MAXPHYADDR (at most 52).
- A VA is canonical when bits 63:47 are all equal (48-bit VAs; 5-level paging is not handled).
What Windows stores in a not-present entry (transition, prototype, pagefile) is decoded with a
`SoftwarePteLayout` taken from symbol data (see `pte.py`).
"""
import struct
from typing import Optional, Tuple, Union

from pykd_ext.memory.faults import (DEMAND_ZERO, INVALID, NOT_IN_DUMP, PAGED_OUT, PROTOTYPE,
                                    Fault)
# PageWalk/WalkStep are re-exported: callers import them from here.
from pykd_ext.memory.paged import PagedAddressSpace, PageWalk, WalkStep  # noqa: F401
from pykd_ext.memory.pte import SoftwarePteLayout
from pykd_ext.memory.space import PAGE_SHIFT, PAGE_SIZE, PhysicalMemory

_ENTRY = struct.Struct("<Q")
_unpack_entry = _ENTRY.unpack_from

PRESENT = 1
PAGE_SIZE_BIT = 1 << 7

LEVELS = ("PML4E", "PDPTE", "PDE", "PTE")
_SHIFTS = (39, 30, 21, 12)

#: Page tables (one per 2 MiB of VA) cached per address space before that cache is reset.
TABLE_CACHE_LIMIT = 1 << 14


def _frame_mask(maxphyaddr: int) -> int:
    """Bits 12..MAXPHYADDR-1 of an entry: the physical frame of a 4 KiB page or next table."""
    return ((1 << maxphyaddr) - 1) & ~(PAGE_SIZE - 1)


class X64AddressSpace(PagedAddressSpace):
    """A virtual address space defined by a DTB (CR3) over physical memory."""

    pointer_size = 8

    def __init__(self, physical: PhysicalMemory, dtb: int,
                 software_pte: Optional[SoftwarePteLayout] = None,
                 maxphyaddr: int = 52) -> None:
        if not 36 <= maxphyaddr <= 52:
            raise ValueError("MAXPHYADDR must be within 36..52, not %d" % maxphyaddr)
        self._init_paging(physical, software_pte)
        self._frame = _frame_mask(maxphyaddr)
        self._frame_2m = self._frame & ~((1 << 21) - 1)
        self._frame_1g = self._frame & ~((1 << 30) - 1)
        self.dtb = dtb & self._frame       # (the page-table cache maps VA >> 21 -> PTE table)

    def _resolve(self, address: int, walk: Optional[PageWalk]) -> Union[int, Fault]:
        """Physical address of the page holding `address`, or the Fault that stops it."""
        if address < 0 or address >> 64:
            return Fault(INVALID, address)
        top = address >> 47
        if top != 0 and top != 0x1FFFF:
            return Fault(INVALID, address)          # not canonical
        if walk is None:
            page_table = self._tables.get(address >> 21)
            if page_table is not None:              # upper levels already walked for this 2 MiB
                entry = _unpack_entry(page_table, ((address >> 12) & 0x1FF) * 8)[0]
                if entry & PRESENT:
                    return entry & self._frame
                return self._not_present(address, entry, 3, None)
        table = self.dtb
        for depth in range(4):
            index = (address >> _SHIFTS[depth]) & 0x1FF
            entry_address = table + index * 8
            page = self._page(table >> PAGE_SHIFT)
            if page is None:
                if walk is not None:
                    walk.steps.append(WalkStep(LEVELS[depth], table, index, entry_address, None))
                # The paging structure itself is not in the dump.
                return Fault(NOT_IN_DUMP, entry_address, level=LEVELS[depth])
            entry = _unpack_entry(page, index * 8)[0]
            if walk is not None:
                walk.steps.append(WalkStep(LEVELS[depth], table, index, entry_address, entry))
            if not entry & PRESENT:
                resolved = self._not_present(address, entry, depth, walk)
                if isinstance(resolved, Fault):
                    return resolved
                next_frame = resolved
            else:
                if depth == 1 and entry & PAGE_SIZE_BIT:
                    if walk is not None:
                        walk.page_size = 1 << 30
                    return (entry & self._frame_1g) | (address & 0x3FFFF000)
                if depth == 2 and entry & PAGE_SIZE_BIT:
                    if walk is not None:
                        walk.page_size = 1 << 21
                    return (entry & self._frame_2m) | (address & 0x1FF000)
                next_frame = entry & self._frame
            if depth == 3:
                if walk is not None:
                    walk.page_size = PAGE_SIZE
                else:
                    if len(self._tables) >= TABLE_CACHE_LIMIT:
                        self._tables.clear()
                    self._tables[address >> 21] = page
                return next_frame
            table = next_frame
        raise AssertionError("unreachable")

    def _not_present(self, address: int, entry: int, depth: int,
                     walk: Optional[PageWalk]) -> Union[int, Fault]:
        """Classify a not-present entry: a frame still in memory (transition) or a Fault."""
        level = LEVELS[depth]
        if entry == 0:
            return Fault(INVALID, address, level=level, pte=0)
        layout = self.software_pte
        if layout is None:
            # Without the kernel's PTE layout we cannot tell pagefile/transition/prototype apart.
            return Fault(PAGED_OUT, address, level=level, pte=entry)
        field_of = SoftwarePteLayout.field
        if field_of(entry, layout.prototype):
            return Fault(PROTOTYPE, address, level=level, pte=entry)
        if field_of(entry, layout.transition):
            if walk is not None:
                walk.transition = True
            return field_of(entry, layout.transition_pfn) << PAGE_SHIFT
        pagefile_high = field_of(entry, layout.pagefile_high)
        if pagefile_high == 0:
            if field_of(entry, layout.protection):
                return Fault(DEMAND_ZERO, address, level=level, pte=entry)
            return Fault(INVALID, address, level=level, pte=entry)
        if pagefile_high == (1 << layout.pagefile_high[1]) - 1:
            # All ones: Windows' "look the VAD up" marker (MI_PTE_LOOKUP_NEEDED), no pagefile data.
            return Fault(INVALID, address, level=level, pte=entry)
        return Fault(PAGED_OUT, address, level=level, pte=entry,
                     pagefile=field_of(entry, layout.pagefile_low),
                     pagefile_offset=pagefile_high << PAGE_SHIFT)


def split_virtual_address(address: int) -> Tuple[int, int, int, int, int]:
    """(PML4 index, PDPT index, PD index, PT index, page offset) of a VA."""
    return ((address >> 39) & 0x1FF, (address >> 30) & 0x1FF, (address >> 21) & 0x1FF,
            (address >> 12) & 0x1FF, address & 0xFFF)
