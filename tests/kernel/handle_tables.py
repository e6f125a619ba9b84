"""Handle tables planted by tests: leaf pages of entries the test chose, 0-2 pointer levels,
pointers to pages the dump does not hold, gaps.

The entry bytes come from the caller (the forge's own encoders or ISF bit positions), never from
the decoder under test; this module only lays pages out the way `TableCode` describes them
(Windows Internals 7th ed., Part 1, ch. 8: the low two bits are the number of pointer levels).
"""
from array import array
from typing import Callable, List, Optional

PAGE = 0x1000
#: a leaf standing for "a page pointer to memory the dump does not hold"
MISSING = None
#: a leaf standing for "a NULL page pointer" (a part of the table never allocated)
GAP = b""


def build_table_code(alloc_page: Callable[[], int], write: Callable[[int, bytes], None],
                     pointer_size: int, leaves: List[Optional[bytes]], levels: int,
                     missing_base: int) -> int:
    """Write `leaves` (page bytes, `MISSING` or `GAP`) under `levels` pointer levels and return
    the TableCode (first page address | levels). Level 2 puts at most `per_mid` leaves under
    each mid page so that small tests still get several mid pages."""
    ptrs = PAGE // pointer_size
    code = "I" if pointer_size == 4 else "Q"
    if array(code).itemsize != pointer_size:
        code = "L"
    pointers: List[int] = []
    for n, data in enumerate(leaves):
        if data is MISSING:
            pointers.append(missing_base + n * PAGE)
        elif data == GAP:
            pointers.append(0)
        else:
            page = alloc_page()
            write(page, data)
            pointers.append(page)

    def pointer_page(values: List[int]) -> int:
        page = alloc_page()
        write(page, array(code, values + [0] * (ptrs - len(values))).tobytes())
        return page

    if levels == 0:
        assert len(pointers) == 1 and pointers[0], "a level-0 table is one readable page"
        return pointers[0]
    if levels == 1:
        assert len(pointers) <= ptrs
        return pointer_page(pointers) | 1
    per_mid = min(ptrs, max(1, -(-len(pointers) // 2)))
    mids = [pointer_page(pointers[i:i + per_mid]) for i in range(0, len(pointers), per_mid)]
    return pointer_page(mids) | 2


def leaf_page(entry_size: int, entries: List[bytes]) -> bytes:
    """One leaf page: `entries` (each `entry_size` bytes) from index 0, zero after them."""
    data = b"".join(entries)
    assert len(data) <= PAGE and all(len(e) == entry_size for e in entries)
    return data + bytes(PAGE - len(data))


__all__ = ["GAP", "MISSING", "PAGE", "build_table_code", "leaf_page"]
