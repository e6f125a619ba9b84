"""Physical memory stored in a mapped file: flat images, page runs, and bitmaps.

Why: the three ways a file can hold physical pages need three O(1)-lookup indexes, built once at
open time from the file's own description (nothing is read but the header and the bitmap):
- `FlatPhysicalMemory`: page N at file offset N * 4096 (raw images).
- `RunPhysicalMemory`: runs of consecutive frames stored back to back (full dumps, type 1; the
  RDMP range list of types 8/9/0xA). Lookup: a bisect over the (few) run starts.
- `BitmapPhysicalMemory`: one bit per frame; present pages stored in frame order from `first_page`
  (bitmap dumps, types 2/5/6). Lookup: the bitmap as 64-bit words plus the prefix popcount of
  every word, so the file position of a frame is `first_page + rank(frame) * 4096` in O(1).
All pages are zero-copy `memoryview` slices of the mapping.
"""
import sys
from array import array
from bisect import bisect_right
from itertools import accumulate
from typing import Callable, List, Optional, Sequence, Tuple

from pykd_ext.memory.space import PAGE_SHIFT, PAGE_SIZE, PhysicalMemory

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


class FlatPhysicalMemory(PhysicalMemory):
    """Physical memory that is the file itself (raw images)."""

    def __init__(self, view: memoryview, data_offset: int = 0) -> None:
        self._view = view
        self._base = data_offset
        self._pages = (len(view) - data_offset) // PAGE_SIZE

    def page(self, pfn: int) -> Optional[memoryview]:
        if 0 <= pfn < self._pages:
            start = self._base + (pfn << PAGE_SHIFT)
            return self._view[start:start + PAGE_SIZE]
        return None

    def runs(self) -> List[Tuple[int, int]]:
        return [(0, self._pages)] if self._pages else []

    def page_count(self) -> int:
        return self._pages


class RunPhysicalMemory(PhysicalMemory):
    """Runs of frames, each stored contiguously at a known file offset.

    `runs` are (first_pfn, page_count, file_offset) triples, validated by the caller
    (no overlap, inside the file).
    """

    def __init__(self, view: memoryview, runs: Sequence[Tuple[int, int, int]]) -> None:
        self._view = view
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


class BitmapPhysicalMemory(PhysicalMemory):
    """Frames marked in a bitmap (bit i = frame i, LSB first), stored in order from `first_page`."""

    def __init__(self, view: memoryview, bitmap: bytes, bit_count: int, first_page: int) -> None:
        self._view = view
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
