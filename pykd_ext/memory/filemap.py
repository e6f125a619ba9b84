"""Read-only memory mapping of a dump or image file.

Why: dumps are gigabytes; readers must not load them. A `FileMap` maps the whole file once
(`mmap.ACCESS_READ`, never writable) and hands out zero-copy `memoryview` slices, so a page lookup
costs a slice, not a read() system call. Errors opening the file become typed `TargetError`s.
"""
import mmap
import os
from typing import Optional

from pykd_ext.errors import DumpFormatError, TargetError


class FileMap:
    """A read-only mapping of one file: `mm` (the mmap), `view` (a memoryview over it), `size`."""

    __slots__ = ("path", "size", "mm", "view", "_closed")

    def __init__(self, path: str) -> None:
        self.path = path
        self._closed = False
        if os.path.isdir(path):
            raise TargetError("is a directory, not a dump file", path)
        try:
            handle = open(path, "rb")
        except OSError as err:
            raise TargetError("cannot open: %s" % (err.strerror or err), path) from None
        with handle:
            size = os.fstat(handle.fileno()).st_size
            if size == 0:
                raise DumpFormatError("empty file", path)
            try:
                self.mm = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
            except (OSError, ValueError) as err:
                raise TargetError("cannot map the file: %s" % err, path) from None
        self.size = size
        self.view: memoryview = memoryview(self.mm)

    def slice(self, offset: int, size: int) -> memoryview:
        """Zero-copy view of `size` bytes at `offset` (caller checked the bounds)."""
        return self.view[offset:offset + size]

    def bytes_at(self, offset: int, size: int) -> bytes:
        return self.mm[offset:offset + size]

    def find(self, needle: bytes, start: int = 0, end: Optional[int] = None) -> int:
        """`mmap.find`: a C-speed scan, -1 when absent."""
        return self.mm.find(needle, start, self.size if end is None else end)

    def detach(self) -> mmap.mmap:
        """Give the mmap to another owner (who closes it); this object forgets it."""
        self.view.release()
        self._closed = True
        return self.mm

    def close(self) -> None:
        """Unmap. Views still held by callers keep the mapping alive until they are dropped."""
        if self._closed:
            return
        self._closed = True
        try:
            self.view.release()
            self.mm.close()
        except BufferError:
            # Someone still holds a page view; the mapping is freed when the last view dies.
            pass

    def __enter__(self) -> "FileMap":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
