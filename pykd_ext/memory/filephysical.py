"""Physical memory stored in a buffer (a mapped file, a VM's shared RAM): flat, runs, bitmaps.

Why: the three ways a buffer can hold physical pages need three O(1)-lookup indexes, built once at
open time from the file's own description (nothing is read but the header and the bitmap):
- `FlatPhysicalMemory`: page N at file offset N * 4096 (raw images).
- `RunPhysicalMemory`: runs of consecutive frames stored back to back (full dumps, type 1; the
  RDMP range list of types 8/9/0xA). Lookup: a bisect over the (few) run starts.
- `BitmapPhysicalMemory`: one bit per frame; present pages stored in frame order from `first_page`
  (bitmap dumps, types 2/5/6). Lookup: the bitmap as 64-bit words plus the prefix popcount of
  every word, so the file position of a frame is `first_page + rank(frame) * 4096` in O(1).
All pages are zero-copy `memoryview` slices of the buffer. The buffer's owner (`store`: a
`FileMap`, an `mmap`, anything with `find` and `close`) gives the scan API its C speed (`find`
runs `mmap.find` over each stored run) and is closed with the source. Without a store the
generic page-by-page scan of `PhysicalSource` is used, so a plain buffer works too.
"""
import sys
from array import array
from bisect import bisect_right
from itertools import accumulate
from typing import Callable, Iterator, List, Optional, Protocol, Sequence, Tuple, Union

from pykd_ext.memory.space import PAGE_SHIFT, PAGE_SIZE, PhysicalSource

#: popcount: int.bit_count on 3.10+, the bin() count on 3.9.
popcount: Callable[[int], int] = getattr(int, "bit_count", None) or (lambda v: bin(v).count("1"))

#: Frames beyond 2**40 cannot exist (MAXPHYADDR <= 52); counts above it are corrupt.
MAX_PFN = 1 << 40


def merge_runs(runs: Sequence[Tuple[int, int]]) -> List[Tuple[int, int]]:
    """Sort and merge touching (first_pfn, count) runs."""
    out: List[Tuple[int, int]] = []
    for base, count in sorted(r for r in runs if r[1] > 0):
        if out and out[-1][0] + out[-1][1] == base:
            out[-1] = (out[-1][0], out[-1][1] + count)
        else:
            out.append((base, count))
    return out


class ByteStore(Protocol):
    """What owns a source's buffer: a C-speed scan over buffer offsets, and release."""

    def find(self, needle: bytes, start: int, end: int) -> int: ...

    def close(self) -> None: ...


class StoredPhysicalMemory(PhysicalSource):
    """Pages held in one buffer; subclasses say where each stored run of frames sits in it."""

    _store: Optional[ByteStore] = None

    def _stored_runs(self) -> Iterator[Tuple[int, int, int]]:
        """(first_pfn, page_count, buffer offset) of frames stored back to back, in pfn order."""
        raise NotImplementedError

    def _buffer_runs(self) -> Iterator[Tuple[int, int, int]]:
        """`_stored_runs` with neighbours merged when they touch both physically and in the
        buffer (one C-speed search covers them)."""
        current: Optional[List[int]] = None
        for first, count, offset in self._stored_runs():
            if current is not None and current[0] + current[1] == first and \
                    current[2] + (current[1] << PAGE_SHIFT) == offset:
                current[1] += count
                continue
            if current is not None:
                yield current[0], current[1], current[2]
            current = [first, count, offset]
        if current is not None:
            yield current[0], current[1], current[2]

    def find(self, needle: bytes, start: int = 0, end: Optional[int] = None) -> int:
        """`PhysicalSource.find` with the store's C-speed scan over each stored run (a match
        across two physically touching runs stored apart is looked for in between)."""
        store = self._store
        if store is None:
            return super().find(needle, start, end)
        if not needle:
            raise ValueError("empty search pattern")
        size = len(needle)
        previous_end = -1
        for first, count, offset in self._buffer_runs():
            run_start = first << PAGE_SHIFT
            if run_start == previous_end and size > 1:
                # physically contiguous, stored apart: the only matches the C scan cannot see
                low = max(start, run_start - size + 1)
                high = run_start + size - 1 if end is None else min(end, run_start + size - 1)
                if high - low >= size:
                    at = self.read(low, high - low).find(needle)
                    if at >= 0:
                        return low + at
            previous_end = (first + count) << PAGE_SHIFT
            low = max(start, run_start)
            high = previous_end if end is None else min(end, previous_end)
            if high - low < size:
                continue
            base = offset - run_start                     # buffer offset of physical address 0
            position = store.find(needle, base + low, base + high)
            if position >= 0:
                return position - base
        return -1

    def close(self) -> None:
        if self._store is not None:
            self._store.close()


class FlatPhysicalMemory(StoredPhysicalMemory):
    """Physical memory that is the buffer itself (raw images, a VM's RAM file)."""

    def __init__(self, view: memoryview, data_offset: int = 0,
                 store: Optional[ByteStore] = None) -> None:
        self._view = view
        self._base = data_offset
        self._pages = (len(view) - data_offset) // PAGE_SIZE
        self._store = store

    def page(self, pfn: int) -> Optional[memoryview]:
        if 0 <= pfn < self._pages:
            start = self._base + (pfn << PAGE_SHIFT)
            return self._view[start:start + PAGE_SIZE]
        return None

    def runs(self) -> List[Tuple[int, int]]:
        return [(0, self._pages)] if self._pages else []

    def page_count(self) -> int:
        return self._pages

    def _stored_runs(self) -> Iterator[Tuple[int, int, int]]:
        if self._pages:
            yield 0, self._pages, self._base


class RunPhysicalMemory(StoredPhysicalMemory):
    """Runs of frames, each stored contiguously at a known file offset.

    `runs` are (first_pfn, page_count, file_offset) triples, validated by the caller
    (no overlap, inside the file).
    """

    def __init__(self, view: memoryview, runs: Sequence[Tuple[int, int, int]],
                 store: Optional[ByteStore] = None) -> None:
        self._view = view
        self._store = store
        ordered = sorted(r for r in runs if r[1] > 0)
        self._starts = [r[0] for r in ordered]
        self._ends = [r[0] + r[1] for r in ordered]
        self._offsets = [r[2] for r in ordered]
        self._runs = merge_runs([(r[0], r[1]) for r in ordered])

    def page(self, pfn: int) -> Optional[memoryview]:
        i = bisect_right(self._starts, pfn) - 1
        if i < 0 or pfn >= self._ends[i]:
            return None
        start = self._offsets[i] + ((pfn - self._starts[i]) << PAGE_SHIFT)
        return self._view[start:start + PAGE_SIZE]

    def runs(self) -> List[Tuple[int, int]]:
        return list(self._runs)

    def _stored_runs(self) -> Iterator[Tuple[int, int, int]]:
        for first, end, offset in zip(self._starts, self._ends, self._offsets):
            yield first, end - first, offset


class BitmapPhysicalMemory(StoredPhysicalMemory):
    """Frames marked in a bitmap (bit i = frame i, LSB first), stored in order from `first_page`."""

    def __init__(self, view: memoryview, bitmap: Union[bytes, memoryview], bit_count: int,
                 first_page: int,
                 store: Optional[ByteStore] = None) -> None:
        self._view = view
        self._store = store
        self._first = first_page
        self._bits = bit_count
        nbytes = (bit_count + 7) // 8
        raw = bytes(bitmap[:nbytes])
        raw += b"\0" * (-len(raw) % 8)
        words = array("Q")
        words.frombytes(raw)
        if sys.byteorder != "little":
            words.byteswap()
        tail_bits = bit_count % 64
        if tail_bits and len(words):
            words[-1] &= (1 << tail_bits) - 1      # bits past the frame count do not exist
        self._words = words
        counts = list(map(popcount, words))
        # ranks[w] = set bits in words[0:w]; ranks[-1] = total.
        self._ranks = array("Q", [0])
        self._ranks.extend(accumulate(counts))
        self._nwords = len(words)
        self._runs: Optional[List[Tuple[int, int]]] = None

    @property
    def present_pages(self) -> int:
        return self._ranks[-1]

    def page(self, pfn: int) -> Optional[memoryview]:
        w = pfn >> 6
        if w >= self._nwords or pfn < 0:
            return None
        word = self._words[w]
        bit = pfn & 63
        if not (word >> bit) & 1:
            return None
        start = self._first + ((self._ranks[w] + popcount(word & ((1 << bit) - 1))) << PAGE_SHIFT)
        return self._view[start:start + PAGE_SIZE]

    def runs(self) -> List[Tuple[int, int]]:
        if self._runs is None:
            self._runs = self._compute_runs()
        return list(self._runs)

    def _compute_runs(self) -> List[Tuple[int, int]]:
        """Runs of set bits; per word, one step per run (not per bit), full/empty words at once."""
        out: List[List[int]] = []
        full = 0xFFFFFFFFFFFFFFFF
        for w, word in enumerate(self._words):
            if not word:
                continue
            base = w << 6
            if word == full:
                if out and out[-1][0] + out[-1][1] == base:
                    out[-1][1] += 64
                else:
                    out.append([base, 64])
                continue
            pos = 0
            while word:
                zeros = (word & -word).bit_length() - 1         # trailing zero bits
                word >>= zeros
                pos += zeros
                ones = ((~word) & (word + 1)).bit_length() - 1  # trailing one bits
                start = base + pos
                if out and out[-1][0] + out[-1][1] == start:
                    out[-1][1] += ones
                else:
                    out.append([start, ones])
                word >>= ones
                pos += ones
        return [(start, count) for start, count in out]

    def page_count(self) -> int:
        return self.present_pages

    def _stored_runs(self) -> Iterator[Tuple[int, int, int]]:
        """Frames contiguous in physical memory are contiguous in the buffer too (stored in
        frame order): each physical run is one stored run, at its first frame's rank."""
        for first, count in self.runs():
            w = first >> 6
            rank = self._ranks[w] + popcount(self._words[w] & ((1 << (first & 63)) - 1))
            yield first, count, self._first + (rank << PAGE_SHIFT)
