"""Handle-table pages as the kernel lays them out: entry pages under 0, 1 or 2 levels of pointers.

Why one module: `PspCidTable`, process handle tables (`kernel_objects`) and the typed handles of
`security_objects` are the same structure, and a big scenario (10,000 processes and 200,000
threads in one CID table) needs every level the kernel has, so the layering is written once.

The layout (Windows Internals 7th ed., Part 1, ch. 8 "Object handles and the process handle
table"; ReactOS `ex/handle.c`; what `pykd_ext.kernel.handles.scan_handle_table` walks):
- an entry page is one page of `_HANDLE_TABLE_ENTRY` (page size / entry size entries: 256 on
  x64); entry `i` is handle value `4 * i`, and the first entry of every page is never handed out;
- a pointer page is one page of pointers (page size / pointer size: 512 on x64);
- `TableCode` = the address of the top page | the number of pointer levels above the entry
  pages (its low bits, `HANDLE_LEVEL_MASK`): 0 = the top page is the only entry page; 1 = it
  points at entry pages; 2 = it points at level-1 pointer pages, each pointing at entry pages.
So entry page `n` sits at slot `n // P` of the top page and slot `n % P` of that pointer page
(`P` pointers per page) in a level-2 table.

Entry size and pointer size come from the build's layouts (`_HANDLE_TABLE_ENTRY`, the width of
`_HANDLE_TABLE.TableCode`); the level mask and the deepest level from the reader's own limits.
"""
from typing import Callable, Dict, List

from pykd_ext.kernel.handles import HANDLE_LEVEL_MASK, HANDLE_PAGE_SIZE, MAX_HANDLE_LEVELS

#: (address, data) -> None: how the caller writes kernel memory.
WriteBytes = Callable[[int, bytes], None]
#: () -> the address of a fresh, page-aligned, zeroed kernel page.
NewPage = Callable[[], int]


def levels_for(entry_pages: int, pointers_per_page: int) -> int:
    """The fewest pointer levels that reach `entry_pages` entry pages (numbered from 0)."""
    if entry_pages <= 1:
        return 0
    reach = pointers_per_page
    for levels in range(1, MAX_HANDLE_LEVELS + 1):
        if entry_pages <= reach:
            return levels
        reach *= pointers_per_page
    raise ValueError("%d handle-table pages exceed %d pointer levels"
                     % (entry_pages, MAX_HANDLE_LEVELS))


def link_entry_pages(entry_pages: Dict[int, int], levels: int, pointer_size: int,
                     new_page: NewPage, write: WriteBytes) -> int:
    """Write the pointer pages above `entry_pages` (entry page number -> its address; pages
    may be missing, as in a sparse table) and return the `TableCode` naming them."""
    if not 0 <= levels <= MAX_HANDLE_LEVELS:
        raise ValueError("a handle table has 0 to %d pointer levels, not %d"
                         % (MAX_HANDLE_LEVELS, levels))
    per_page = HANDLE_PAGE_SIZE // pointer_size
    capacity = per_page ** levels
    for number, address in entry_pages.items():
        if not 0 <= number < capacity:
            raise ValueError("entry page %d does not fit a %d-level handle table"
                             % (number, levels))
        if address & HANDLE_LEVEL_MASK or address % HANDLE_PAGE_SIZE:
            raise ValueError("handle-table page 0x%x is not page aligned" % address)
    if levels == 0:
        return entry_pages.get(0) or new_page()
    # build bottom-up: the pages of one level become the children of the next
    children = dict(entry_pages)
    for _ in range(levels):
        parents: Dict[int, List[int]] = {}
        for number, address in children.items():
            slots = parents.setdefault(number // per_page, [0] * per_page)
            slots[number % per_page] = address
        children = {}
        for number, slots in sorted(parents.items()):
            page = new_page()
            write(page, b"".join(s.to_bytes(pointer_size, "little") for s in slots))
            children[number] = page
    (top,) = children.values()
    return top | levels


__all__ = ["levels_for", "link_entry_pages"]
