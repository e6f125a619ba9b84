"""The two memory interfaces every source implements: physical memory and virtual address spaces.

Layers (bottom-up):
- `PhysicalSource`: pages by physical address. A crash dump's or raw image's file map
  (`filephysical`), a live VM's shared RAM, a pykd session's physical reads: anything that can hand
  out a 4 KiB page by frame number and list which frames it holds. Nothing here assumes a file.
- `AddressSpace`: bytes by virtual address, either translated through page tables over a
  `PhysicalSource` (`paged.PagedAddressSpace`, one walker for every paging mode) or served directly
  by a virtual-only source (triage minidumps, user-mode minidumps, pykd).

Both raise `MemoryReadError(fault, readable)` on memory they cannot provide; nothing returns None.
Caches are per object and droppable (`drop_caches`) so a live target can refresh per command.
"""
from abc import ABC, abstractmethod
from typing import Any, Dict, Iterator, List, Optional, Tuple

from pykd_ext.errors import MemoryReadError
from pykd_ext.memory.faults import NO_PHYSICAL, NOT_IN_DUMP, Fault

PAGE_SIZE = 0x1000
PAGE_SHIFT = 12

#: Bytes handed to one `bytes.find` by the generic scan (a bounded buffer, whatever the source).
SCAN_CHUNK = 1 << 20


class PhysicalSource(ABC):
    """Physical memory by address, from wherever it lives; absent pages raise NOT_IN_DUMP.

    A new source (a live VM's RAM, a debugger session) implements `page` and `runs`; reads, scans
    and page counts follow from them. Sources that can scan faster (a mapped file: `mmap.find`)
    override `find`; sources that hold a file or a mapping release it in `close`.
    """

    @abstractmethod
    def page(self, pfn: int) -> Optional[memoryview]:
        """The 4 KiB page with this frame number, or None when the source does not hold it.

        The hot path of address translation: implementations make this O(1) and copy-free.
        """

    @abstractmethod
    def runs(self) -> List[Tuple[int, int]]:
        """Present memory as sorted, merged (first_pfn, page_count) runs."""

    def ranges(self) -> List[Tuple[int, int]]:
        """Present memory as (physical address, size in bytes), in address order."""
        return [(first << PAGE_SHIFT, count << PAGE_SHIFT) for first, count in self.runs()]

    def page_count(self) -> int:
        """Number of pages present."""
        return sum(count for _, count in self.runs())

    def read(self, address: int, size: int) -> bytes:
        """Bytes at a physical address; a missing page raises with the readable prefix length."""
        out = bytearray()
        while size > 0:
            offset = address & (PAGE_SIZE - 1)
            chunk = min(size, PAGE_SIZE - offset)
            data = self.page(address >> PAGE_SHIFT)
            if data is None:
                raise MemoryReadError(Fault(NOT_IN_DUMP, address), len(out))
            out += data[offset:offset + chunk]
            address += chunk
            size -= chunk
        return bytes(out)

    def find(self, needle: bytes, start: int = 0, end: Optional[int] = None) -> int:
        """Physical address of the first `needle` in [start, end) of present memory, else -1.

        A match lies inside one run of present pages (a hole between runs breaks it). This
        generic version reads the runs in bounded chunks; mapped-file sources override it.
        """
        if not needle:
            raise ValueError("empty search pattern")
        for first, count in self.runs():
            low = max(start, first << PAGE_SHIFT)
            high = (first + count) << PAGE_SHIFT
            if end is not None:
                high = min(high, end)
            position = self._scan(needle, low, high)
            if position >= 0:
                return position
        return -1

    def _scan(self, needle: bytes, low: int, high: int) -> int:
        """`find` inside one run of present pages, chunk by chunk (chunks overlap by the
        pattern's length so no match is cut in two)."""
        step = max(SCAN_CHUNK, len(needle))
        cursor = low
        while high - cursor >= len(needle):
            stop = min(high, cursor + step + len(needle) - 1)
            data = self.read(cursor, stop - cursor)
            at = data.find(needle)
            if at >= 0:
                return cursor + at
            cursor += step
        return -1

    def drop_caches(self) -> None:
        """Forget anything cached (live targets change between commands)."""

    def close(self) -> None:
        """Release what backs the memory (a file mapping, a connection). Default: nothing."""


#: The name this interface had before sources other than files existed; kept for callers.
PhysicalMemory = PhysicalSource


class AddressSpace(ABC):
    """Virtual memory as one address space sees it (a DTB, or a virtual-only dump)."""

    #: 8 for 64-bit address spaces, 4 for 32-bit ones.
    pointer_size = 8

    @abstractmethod
    def read(self, address: int, size: int) -> bytes:
        """Exactly `size` bytes at `address`, or MemoryReadError(fault, readable_prefix)."""

    def translate(self, address: int) -> int:
        """Physical address of a virtual one. Virtual-only sources raise NO_PHYSICAL."""
        raise MemoryReadError(Fault(NO_PHYSICAL, address))

    def read_partial(self, address: int, size: int) -> Tuple[bytes, Optional[Fault]]:
        """The readable prefix of a request and the fault that ended it (None when complete)."""
        try:
            return self.read(address, size), None
        except MemoryReadError as err:
            if err.readable:
                return self.read(address, err.readable), err.fault
            return b"", err.fault

    def is_readable(self, address: int, size: int = 1) -> bool:
        try:
            self.read(address, size)
            return True
        except MemoryReadError:
            return False

    def read_pointer(self, address: int) -> int:
        data = self.read(address, self.pointer_size)
        return int.from_bytes(data, "little")

    def read_link(self, address: int) -> Tuple[int, int]:
        """(Flink, Blink) of the LIST_ENTRY at `address`: two pointers, one read.

        Why its own call: list walks read one per entry, thousands per command; paged spaces
        answer it straight from the cached page."""
        ptr = self.pointer_size
        data = self.read(address, 2 * ptr)
        return int.from_bytes(data[:ptr], "little"), int.from_bytes(data[ptr:], "little")

    def regions(self) -> Iterator[Tuple[int, int]]:
        """Known readable (start, size) regions, for sources that know them (virtual-only dumps).

        Paged address spaces may yield nothing: walking all page tables is a separate job.
        """
        return iter(())

    #: see `memo` (a plain attribute: touching `__dict__` would slow every attribute read of
    #: the hot read path on CPython 3.11+)
    _memo: Optional[Dict[Any, Any]] = None

    def memo(self) -> Dict[Any, Any]:
        """A cache for what is decoded from this space's memory and lives as long as its pages
        (the kernel image's PE headers: every layer asks for them); dropped with the caches."""
        found = self._memo
        if found is None:
            found = self._memo = {}
        return found

    def drop_caches(self) -> None:
        """Forget cached translations/pages (live targets change between commands)."""
        self._memo = None
