"""An address space made of virtual-address ranges backed by slices of a file.

Why: triage minidumps, user-mode minidumps and legacy user dumps hold memory known only by
virtual address (no page tables).  Each format ends up as a list of "VA range -> bytes in the
file"; this module serves them as one `AddressSpace`: O(log n) lookup by bisect over sorted,
non-overlapping ranges, reads that cross adjacent ranges, and `MemoryReadError` with
`Fault(NOT_IN_DUMP, va)` and the readable prefix for gaps.

Ranges may overlap in real files (a triage dump stores the crashing thread both as the ETHREAD
block and inside a data block).  Ranges are added in priority order: bytes already covered keep
their first source; every overlap is recorded in `overlaps` with whether both sources hold the
same bytes, so readers and tests can prove the file is self-consistent.
"""
from bisect import bisect_right
from typing import Iterator, List, NamedTuple, Optional, Tuple, Union

from pykd_ext.errors import MemoryReadError
from pykd_ext.memory.faults import INVALID, NOT_IN_DUMP, Fault
from pykd_ext.memory.space import AddressSpace

Buffer = Union[bytes, bytearray, memoryview]

ADDRESS_LIMIT = 1 << 64


class Overlap(NamedTuple):
    """Two sources claimed the same bytes; the first one added was kept."""

    address: int
    size: int
    kept: str           # label of the range that serves these bytes
    shadowed: str       # label of the range that was not used for them
    identical: bool     # both sources hold the same bytes


class SparseAddressSpace(AddressSpace):
    """Virtual memory made of (address, bytes) ranges; gaps raise NOT_IN_DUMP."""

    def __init__(self, pointer_size: int = 8) -> None:
        self.pointer_size = pointer_size
        self._starts: List[int] = []
        self._ends: List[int] = []
        self._data: List[memoryview] = []
        self._labels: List[str] = []
        self.overlaps: List[Overlap] = []

    # --- building ------------------------------------------------------------------------

    def add(self, address: int, data: Buffer, label: str = "") -> int:
        """Add a range; bytes already covered by earlier ranges are not replaced.

        Returns how many bytes of `data` became readable through this range.
        """
        view = memoryview(data).cast("B") if not isinstance(data, memoryview) else data
        if view.ndim != 1 or view.itemsize != 1:
            view = view.cast("B")
        size = len(view)
        if size == 0:
            return 0
        if address < 0 or address + size > ADDRESS_LIMIT:
            raise ValueError("range 0x%x+0x%x is outside the 64-bit address space" % (address, size))
        added = 0
        cursor = address
        end = address + size
        index = bisect_right(self._starts, cursor) - 1
        while cursor < end:
            while index + 1 < len(self._starts) and self._starts[index + 1] <= cursor:
                index += 1
            if index >= 0 and cursor < self._ends[index]:
                # Covered by an existing range: record the overlap, skip past it.
                stop = min(end, self._ends[index])
                mine = view[cursor - address:stop - address]
                theirs = self._data[index][cursor - self._starts[index]:stop - self._starts[index]]
                self.overlaps.append(Overlap(cursor, stop - cursor, self._labels[index], label,
                                             mine == theirs))
                cursor = stop
                continue
            following = index + 1
            stop = end
            if following < len(self._starts):
                stop = min(stop, self._starts[following])
            piece = view[cursor - address:stop - address]
            self._starts.insert(following, cursor)
            self._ends.insert(following, stop)
            self._data.insert(following, piece)
            self._labels.insert(following, label)
            added += stop - cursor
            cursor = stop
            index = following
        return added

    # --- AddressSpace ----------------------------------------------------------------------

    def read(self, address: int, size: int) -> bytes:
        if size < 0:
            raise ValueError("negative read size")
        if address < 0 or address + size > ADDRESS_LIMIT:
            raise MemoryReadError(Fault(INVALID, address), 0)
        if size == 0:
            return b""
        index = bisect_right(self._starts, address) - 1
        if index < 0 or address >= self._ends[index]:
            raise MemoryReadError(Fault(NOT_IN_DUMP, address), 0)
        start = self._starts[index]
        if address + size <= self._ends[index]:          # the common case: one range
            return bytes(self._data[index][address - start:address - start + size])
        out = bytearray()
        cursor = address
        remaining = size
        count = len(self._starts)
        while remaining:
            if index >= count or cursor < self._starts[index] or cursor >= self._ends[index]:
                raise MemoryReadError(Fault(NOT_IN_DUMP, cursor), len(out))
            start = self._starts[index]
            chunk = min(remaining, self._ends[index] - cursor)
            out += self._data[index][cursor - start:cursor - start + chunk]
            cursor += chunk
            remaining -= chunk
            index += 1
        return bytes(out)

    def regions(self) -> Iterator[Tuple[int, int]]:
        """Readable (start, size) regions, adjacent ranges merged, in address order."""
        current_start: Optional[int] = None
        current_end = 0
        for start, end in zip(self._starts, self._ends):
            if current_start is not None and start == current_end:
                current_end = end
                continue
            if current_start is not None:
                yield current_start, current_end - current_start
            current_start, current_end = start, end
        if current_start is not None:
            yield current_start, current_end - current_start

    # --- extras ----------------------------------------------------------------------------

    def ranges(self) -> Iterator[Tuple[int, int, str]]:
        """The stored (start, size, label) pieces, in address order (not merged)."""
        for start, end, label in zip(self._starts, self._ends, self._labels):
            yield start, end - start, label

    def label_at(self, address: int) -> Optional[str]:
        """Which source serves this address (None when unreadable)."""
        index = bisect_right(self._starts, address) - 1
        if index < 0 or address >= self._ends[index]:
            return None
        return self._labels[index]

    @property
    def range_count(self) -> int:
        return len(self._starts)

    @property
    def total_bytes(self) -> int:
        return sum(end - start for start, end in zip(self._starts, self._ends))

    def inconsistent_overlaps(self) -> List[Overlap]:
        return [overlap for overlap in self.overlaps if not overlap.identical]
