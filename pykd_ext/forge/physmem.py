"""An in-memory model of a machine's physical memory, for forging dumps.

Why sparse: tests need machines with a realistic physical layout (RAM runs with holes, a 16 GiB
span) but only a few thousand pages that carry planted data. `PhysicalImage` holds a declared
memory map (the RAM runs a real machine reports), a page store `pfn -> bytearray(4096)` for
pages that were written, and a bump allocator that hands out frames from the memory map without
materialising them (a page appears only when something is written to it).

It is also a `PhysicalMemory`, so tests can compare any reader against it directly.
"""
import bisect
from typing import Dict, Iterable, List, Optional, Set, Tuple

from pykd_ext.errors import MemoryReadError
from pykd_ext.memory.faults import NOT_IN_DUMP, Fault
from pykd_ext.memory.space import PAGE_SHIFT, PAGE_SIZE, PhysicalMemory

Run = Tuple[int, int]          # (first_pfn, page_count)

#: A small PC-like memory map: low memory without page 0 and the legacy video/BIOS hole, RAM
#: from 1 MiB to 24 MiB, and 1 MiB of RAM at 1 GiB (so 1 GiB pages can map present memory).
SMALL_MEMORY_MAP: Tuple[Run, ...] = ((0x1, 0x9E), (0x100, 0x1700), (0x40000, 0x100))


def pc_memory_map(span_bytes: int) -> List[Run]:
    """A PC-like memory map whose RAM ends at physical address `span_bytes`: low memory without
    page 0 and the legacy video/BIOS area, RAM from 1 MiB up to 3 GiB, the PCI hole from 3 to
    4 GiB, the rest above 4 GiB (so 16 GiB of span hold 15 GiB of RAM, as on real machines).
    """
    top = span_bytes >> PAGE_SHIFT
    runs: List[Run] = [(0x1, min(0x9E, max(top - 1, 0)))]
    hole_start, hole_end = 0xC0000, 0x100000          # 3 GiB .. 4 GiB, in frames
    if top > 0x100:
        runs.append((0x100, min(top, hole_start) - 0x100))
    if top > hole_end:
        runs.append((hole_end, top - hole_end))
    return [(first, count) for first, count in runs if count > 0]


def merge_runs(pfns: Iterable[int]) -> List[Run]:
    """Sorted, merged (first_pfn, count) runs of a set of frame numbers."""
    runs: List[Run] = []
    start = prev = -2
    for pfn in sorted(pfns):
        if pfn == prev + 1:
            prev = pfn
            continue
        if start >= 0:
            runs.append((start, prev - start + 1))
        start = prev = pfn
    if start >= 0:
        runs.append((start, prev - start + 1))
    return runs


class PhysicalImage(PhysicalMemory):
    """Sparse physical memory: a memory map, written pages, and a frame allocator."""

    def __init__(self, memory_map: Optional[Iterable[Run]] = None,
                 allocation_floor: int = 0x100) -> None:
        """`memory_map`: RAM runs (first_pfn, count); None means unbounded (every frame is RAM).
        `allocation_floor`: the allocator never hands out frames below this PFN (low memory is
        reserved for firmware and the processor start block, as on real machines).
        """
        self._pages: Dict[int, bytearray] = {}
        self._user: Set[int] = set()
        self.memory_map: Optional[List[Run]] = None
        if memory_map is not None:
            runs = sorted((int(a), int(n)) for a, n in memory_map if int(n) > 0)
            for (a, n), (b, _) in zip(runs, runs[1:]):
                if a + n > b:
                    raise ValueError("memory map runs overlap at pfn 0x%x" % b)
            self.memory_map = runs
        self._cursor = allocation_floor        # next free frame for the bump allocator
        self._run_starts = [a for a, _ in self.memory_map] if self.memory_map else []

    # --- memory map ------------------------------------------------------------------------------

    def in_ram(self, pfn: int) -> bool:
        if self.memory_map is None:
            return pfn >= 0
        index = bisect.bisect_right(self._run_starts, pfn) - 1
        if index < 0:
            return False
        first, count = self.memory_map[index]
        return first <= pfn < first + count

    def ram_runs(self) -> List[Run]:
        """The runs a full dump describes: the memory map, or the present pages when unbounded."""
        return list(self.memory_map) if self.memory_map is not None else self.runs()

    def span_pages(self) -> int:
        """Frames from 0 to the end of RAM (or of the highest present page)."""
        ends = [first + count for first, count in (self.memory_map or [])]
        if self._pages:
            ends.append(max(self._pages) + 1)
        return max(ends) if ends else 0

    # --- allocation ------------------------------------------------------------------------------

    def allocate(self, pages: int = 1, align_pages: int = 1) -> int:
        """First PFN of `pages` fresh contiguous RAM frames (aligned); nothing is materialised."""
        if pages <= 0 or align_pages <= 0:
            raise ValueError("allocate needs a positive page count and alignment")
        candidate = -(-self._cursor // align_pages) * align_pages
        if self.memory_map is None:
            self._cursor = candidate + pages
            return candidate
        for first, count in self.memory_map:
            end = first + count
            start = max(candidate, -(-first // align_pages) * align_pages)
            if start + pages <= end:
                self._cursor = start + pages
                return start
        raise MemoryError("memory map has no room for %d pages aligned to %d"
                          % (pages, align_pages))

    # --- pages -----------------------------------------------------------------------------------

    def _materialise(self, pfn: int) -> bytearray:
        page = self._pages.get(pfn)
        if page is None:
            if not self.in_ram(pfn):
                raise ValueError("physical page 0x%x is outside the memory map" % pfn)
            page = bytearray(PAGE_SIZE)
            self._pages[pfn] = page
        return page

    def writable_page(self, pfn: int) -> bytearray:
        """The page's own buffer (materialised, zero-filled if new), for callers that write
        many fields into the same pages (`kernel_memory.KernelMemory` keeps it per page)."""
        return self._materialise(pfn)

    def write(self, address: int, data: bytes) -> None:
        """Write bytes at a physical address (pages appear as they are written)."""
        offset = address & (PAGE_SIZE - 1)
        if not data:
            return
        if offset + len(data) <= PAGE_SIZE:            # the common case: inside one page
            self._materialise(address >> PAGE_SHIFT)[offset:offset + len(data)] = data
            return
        view = memoryview(bytes(data))
        done = 0
        while done < len(view):
            pfn, offset = divmod(address + done, PAGE_SIZE)
            chunk = min(len(view) - done, PAGE_SIZE - offset)
            self._materialise(pfn)[offset:offset + chunk] = view[done:done + chunk]
            done += chunk

    def touch(self, pfn: int) -> None:
        """Make a page present (zero-filled if new) without writing data."""
        self._materialise(pfn)

    def write_u64(self, address: int, value: int) -> None:
        self.write(address, (value & 0xFFFFFFFFFFFFFFFF).to_bytes(8, "little"))

    def read_u64(self, address: int) -> int:
        return int.from_bytes(self.read(address, 8), "little")

    def page(self, pfn: int) -> Optional[memoryview]:
        data = self._pages.get(pfn)
        return memoryview(data) if data is not None else None

    def page_bytes(self, pfn: int) -> bytes:
        """The planted page, or zeros for a RAM page never written (what a full dump holds)."""
        data = self._pages.get(pfn)
        return bytes(data) if data is not None else bytes(PAGE_SIZE)

    def read(self, address: int, size: int) -> bytes:
        out = bytearray()
        while size > 0:
            pfn, offset = divmod(address, PAGE_SIZE)
            chunk = min(size, PAGE_SIZE - offset)
            data = self._pages.get(pfn)
            if data is None:
                raise MemoryReadError(Fault(NOT_IN_DUMP, address), len(out))
            out += data[offset:offset + chunk]
            address += chunk
            size -= chunk
        return bytes(out)

    def present_pfns(self) -> List[int]:
        return sorted(self._pages)

    def runs(self) -> List[Run]:
        return merge_runs(self._pages)

    def page_count(self) -> int:
        return len(self._pages)

    # --- ownership (kernel-only dumps leave user pages out) --------------------------------------

    def mark_user(self, pfns: Iterable[int]) -> None:
        self._user.update(pfns)

    def is_user(self, pfn: int) -> bool:
        return pfn in self._user

    def user_pfns(self) -> Set[int]:
        return set(self._user)
