"""Physical memory from a running guest's RAM file, read without ever writing to it.

Two sources, for two kinds of file:
- `mapped_ram(path, segments)`: QEMU's memory-backend file. Its size is fixed while QEMU runs
  (QEMU sizes it at start), so it is mmap'd once, read-only and shared (`FileMap`): a page is a
  zero-copy view that always shows the guest's current bytes; the segments (guest-physical
  address, file offset, length) come from `info mtree -f`.
- `PreadPhysicalMemory`: a file we do not control (a VMware `.vmem` of a running VM, a RAM file
  without QMP). It may be truncated or grow under us, and a mapped page beyond a shrunken end is a
  SIGBUS that kills the process, so nothing is mapped: each page is one `os.pread`, a short read is
  a missing page (a typed fault), and the size is re-read on `drop_caches` (between commands).
"""
import os
import stat
from bisect import bisect_right
from typing import List, Optional, Sequence, Tuple

from pykd_ext.errors import DumpFormatError, MemoryReadError, TargetError
from pykd_ext.memory.faults import NOT_IN_DUMP, Fault
from pykd_ext.memory.filemap import FileMap
from pykd_ext.memory.filephysical import RunPhysicalMemory, merge_runs
from pykd_ext.memory.space import PAGE_SHIFT, PAGE_SIZE, PhysicalSource

#: (guest-physical address, file offset, length in bytes) of one stretch of RAM
Segment = Tuple[int, int, int]
#: where q35/i440fx put RAM that does not fit below the PCI hole
HIGH_RAM_BASE = 1 << 32


def mapped_ram(path: str, segments: Sequence[Segment]) -> RunPhysicalMemory:
    """QEMU's RAM file mapped read-only, pages placed by `segments` (all inside the file)."""
    fmap = FileMap(path)
    try:
        for address, offset, length in segments:
            if offset + length > fmap.size:
                raise DumpFormatError("RAM at 0x%x needs file bytes up to 0x%x but the file has "
                                      "0x%x (is this the guest's RAM file?)"
                                      % (address, offset + length, fmap.size), path)
        return RunPhysicalMemory(fmap.view, [(a >> PAGE_SHIFT, n >> PAGE_SHIFT, o)
                                             for a, o, n in segments], store=fmap)
    except BaseException:
        fmap.close()
        raise


def split_segments(file_size: int, lowmem: Optional[int]) -> List[Segment]:
    """A RAM file's layout: all of it at physical 0 (`lowmem` None), or its first `lowmem` bytes
    at 0 and the rest at 4 GiB (QEMU's q35/pc split of a RAM file with no QMP to ask)."""
    size = file_size & ~(PAGE_SIZE - 1)
    if lowmem is None or size <= lowmem:
        return [(0, 0, size)] if size else []
    return [(0, 0, lowmem), (HIGH_RAM_BASE, lowmem, size - lowmem)]


class PreadPhysicalMemory(PhysicalSource):
    """A file that may change size under us: pages by `os.pread`, the size re-read on refresh."""

    def __init__(self, path: str, lowmem: Optional[int] = None) -> None:
        if lowmem is not None and (lowmem <= 0 or lowmem & (PAGE_SIZE - 1) or lowmem > HIGH_RAM_BASE):
            raise TargetError("lowmem must be a positive page multiple up to 4 GiB", path)
        self.path = path
        self.lowmem = lowmem
        flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
        try:
            self._fd: Optional[int] = os.open(path, flags)
        except OSError as err:
            raise TargetError("cannot open: %s" % (err.strerror or err), path) from None
        if not stat.S_ISREG(os.fstat(self._fd).st_mode):    # a FIFO must not hang us (issue 10)
            self.close()
            raise TargetError("not a regular file (a FIFO, socket or device)", path)
        self._segments: List[Segment] = []
        self._starts: List[int] = []
        self.drop_caches()
        if not self._segments:
            self.close()
            raise DumpFormatError("RAM file holds no whole page", path)

    @property
    def segments(self) -> List[Segment]:
        return list(self._segments)

    def drop_caches(self) -> None:
        """Re-read the file's size: the memory map follows the file as it is now."""
        if self._fd is None:
            return
        self._segments = split_segments(os.fstat(self._fd).st_size, self.lowmem)
        self._starts = [address for address, _, _ in self._segments]

    def _locate(self, address: int) -> Optional[Tuple[int, int]]:
        """(file offset, bytes left in its segment) of a physical address, None outside RAM."""
        i = bisect_right(self._starts, address) - 1
        if i < 0:
            return None
        start, offset, length = self._segments[i]
        if address >= start + length:
            return None
        return offset + address - start, start + length - address

    def _pread(self, offset: int, size: int) -> bytes:
        if self._fd is None:
            raise TargetError("RAM file is closed", self.path)
        return os.pread(self._fd, size, offset)

    def page(self, pfn: int) -> Optional[memoryview]:
        where = self._locate(pfn << PAGE_SHIFT)
        if where is None:
            return None
        data = self._pread(where[0], PAGE_SIZE)
        return memoryview(data) if len(data) == PAGE_SIZE else None

    def read(self, address: int, size: int) -> bytes:
        """One `pread` per segment crossed (so the generic `find` scans in 1 MiB preads); a short
        read (the file shrank) is a fault with the readable prefix, as for any missing page."""
        out = bytearray()
        while size > 0:
            where = self._locate(address)
            if where is None:
                raise MemoryReadError(Fault(NOT_IN_DUMP, address), len(out))
            chunk = min(size, where[1])
            data = self._pread(where[0], chunk)
            out += data
            if len(data) < chunk:
                raise MemoryReadError(Fault(NOT_IN_DUMP, address + len(data)), len(out))
            address += chunk
            size -= chunk
        return bytes(out)

    def runs(self) -> List[Tuple[int, int]]:
        return merge_runs([(a >> PAGE_SHIFT, n >> PAGE_SHIFT) for a, _, n in self._segments])

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
