"""The two memory interfaces every source implements: physical memory and virtual address spaces.

Layers (bottom-up):
- `PhysicalMemory`: pages by physical address (crash dumps, raw images, pykd physical reads).
- `AddressSpace`: bytes by virtual address, either translated through page tables over a
  `PhysicalMemory` (see `paging_x64`) or served directly by a virtual-only source (triage
  minidumps, user-mode minidumps, pykd).

Both raise `MemoryReadError(fault, readable)` on memory they cannot provide; nothing returns None.
Caches are per object and droppable (`drop_caches`) so a live target can refresh per command.
"""
from abc import ABC, abstractmethod
from typing import Iterator, List, Optional, Tuple

from pykd_ext.errors import MemoryReadError
from pykd_ext.memory.faults import Fault

PAGE_SIZE = 0x1000
PAGE_SHIFT = 12


class PhysicalMemory(ABC):
    """Physical memory by address; pages absent from the source raise NOT_IN_DUMP."""

    @abstractmethod
    def page(self, pfn: int) -> Optional[memoryview]:
        """The 4 KiB page with this frame number, or None when the source does not hold it.

        The hot path of address translation: implementations make this O(1) and copy-free.
        """

    @abstractmethod
    def runs(self) -> List[Tuple[int, int]]:
        """Present memory as sorted, merged (first_pfn, page_count) runs."""

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
                from pykd_ext.memory.faults import NOT_IN_DUMP
                raise MemoryReadError(Fault(NOT_IN_DUMP, address), len(out))
            out += data[offset:offset + chunk]
            address += chunk
            size -= chunk
        return bytes(out)

    def drop_caches(self) -> None:
        """Forget anything cached (live targets change between commands)."""


class AddressSpace(ABC):
    """Virtual memory as one address space sees it (a DTB, or a virtual-only dump)."""

    #: 8 for x64, 4 for x86.
    pointer_size = 8

    @abstractmethod
    def read(self, address: int, size: int) -> bytes:
        """Exactly `size` bytes at `address`, or MemoryReadError(fault, readable_prefix)."""

    def translate(self, address: int) -> int:
        """Physical address of a virtual one. Virtual-only sources raise NO_PHYSICAL."""
        from pykd_ext.memory.faults import NO_PHYSICAL
        raise MemoryReadError(Fault(NO_PHYSICAL, address))

    def read_partial(self, address: int, size: int) -> Tuple[bytes, Optional[Fault]]:
        """The readable prefix of a request and the fault that ended it (None when complete)."""
        try:
            return self.read(address, size), None
        except MemoryReadError as err:
            if err.readable:
                return self.read(address, err.readable), err.fault  # type: ignore[return-value]
            return b"", err.fault  # type: ignore[return-value]

    def is_readable(self, address: int, size: int = 1) -> bool:
        try:
            self.read(address, size)
            return True
        except MemoryReadError:
            return False

    def read_pointer(self, address: int) -> int:
        data = self.read(address, self.pointer_size)
        return int.from_bytes(data, "little")

    def regions(self) -> Iterator[Tuple[int, int]]:
        """Known readable (start, size) regions, for sources that know them (virtual-only dumps).

        Paged address spaces may yield nothing: walking all page tables is a separate job.
        """
        return iter(())

    def drop_caches(self) -> None:
        """Forget cached translations/pages (live targets change between commands)."""
