"""Reading a symbol file (or a stored layout) from disk with hard limits: regular files only,
bounded on disk, bounded after decompression.

Why: symbol tables come from strangers (a colleague's Volatility cache, a download). A FIFO or
`/dev/zero` given as `--symbols` must fail at once instead of hanging or filling memory, and a
small `.json.xz` that inflates to gigabytes must be stopped after the limit, not after the last
byte. The limits come from measurement of the real tables in `shared/isf` and
`shared/isf-derived` (207 files): the largest is 616 KiB compressed and 6.4 MiB of JSON
(10.0.22000 ntkrnlmp, 1,772 types and 43,061 symbols), and its parsed JSON takes ~23 MB. The limits
below are ~13x and ~5x those: wide enough for any kernel's ISF, small enough that the worst
legal input stays in the hundreds of MB.
"""
import gzip
import lzma
import os
import stat
import zlib
from typing import Any, Optional

from pykd_ext.errors import LayoutError

#: a compressed (.json.xz / .json.gz) file on disk; the largest real one is 616 KiB
MAX_COMPRESSED_BYTES = 8 << 20
#: JSON text (a plain .json file, or what a compressed one inflates to); the largest real one is
#: 6.4 MiB. A decompression bomb is stopped at this many bytes of output.
MAX_JSON_BYTES = 32 << 20
#: output produced per decompression step: memory stays at MAX_JSON_BYTES + this
_STEP = 1 << 20

_XZ_MAGIC = b"\xfd7zXZ\x00"
_GZIP_MAGIC = b"\x1f\x8b"

#: what a non-regular file is, for the error line
_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISSOCK, "a socket"))


def _kind_of(mode: int) -> str:
    for test, name in _KINDS:
        if test(mode):
            return name
    return "not a regular file"


class _Capped:
    """A raw file that refuses to deliver more than `limit` bytes (the file may grow while read)."""

    def __init__(self, fh: Any, limit: int, what: str, path: str) -> None:
        self.fh = fh
        self.left = limit
        self.limit = limit
        self.what = what
        self.path = path

    def read(self, size: int = -1) -> bytes:
        want = self.left + 1 if size is None or size < 0 else min(size, self.left + 1)
        data = self.fh.read(want)
        self.left -= len(data)
        if self.left < 0:
            raise LayoutError("%s is larger than %d MiB" % (self.what, self.limit >> 20), path=self.path)
        return data

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        pass


def open_regular(path: str, what: str) -> Any:
    """A binary file object of `path`, which must be a regular file (checked before opening, so a
    FIFO is never opened, and again on the open descriptor, so a swap in between is caught)."""
    try:
        st = os.stat(path)
    except OSError as err:
        raise LayoutError("cannot read %s: %s" % (what, err.strerror or err), path=path) from None
    if not stat.S_ISREG(st.st_mode):
        raise LayoutError("cannot read %s: %s, not a file" % (what, _kind_of(st.st_mode)), path=path)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0) | getattr(os, "O_NOCTTY", 0)
    try:
        fd = os.open(path, flags)
    except OSError as err:
        raise LayoutError("cannot read %s: %s" % (what, err.strerror or err), path=path) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise LayoutError("cannot read %s: %s, not a file" % (what, _kind_of(st.st_mode)), path=path)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_bounded(path: str, what: str = "ISF symbol table", max_json: int = MAX_JSON_BYTES,
                 max_compressed: int = MAX_COMPRESSED_BYTES) -> bytearray:
    """The (decompressed) bytes of a JSON file, plain or xz/gzip-compressed (told by content,
    not by name: Volatility's cache and users rename files); LayoutError beyond the limits."""
    with open_regular(path, what) as fh:
        size = os.fstat(fh.fileno()).st_size
        head = fh.read(6)
        compressed: Optional[str] = None
        if head.startswith(_XZ_MAGIC):
            compressed = "xz"
        elif head.startswith(_GZIP_MAGIC):
            compressed = "gzip"
        limit = max_compressed if compressed else max_json
        if size > limit:
            raise LayoutError("%s is %.1f MiB on disk; the limit for %s is %d MiB"
                              % (what, size / 1048576.0, "%s-compressed files" % compressed if compressed else "JSON files", limit >> 20), path=path)
        fh.seek(0)
        raw: Any = _Capped(fh, limit, what, path)
        out = bytearray()
        try:
            if compressed is None:
                while True:
                    chunk = raw.read(_STEP)
                    if not chunk:
                        break
                    out += chunk
                return out
            stream: Any = lzma.LZMAFile(raw) if compressed == "xz" else gzip.GzipFile(fileobj=raw, mode="rb")
            with stream:
                while True:
                    # each step inflates at most _STEP bytes: a bomb is stopped at the limit
                    chunk = stream.read(_STEP)
                    if not chunk:
                        break
                    out += chunk
                    if len(out) > max_json:
                        raise LayoutError("%s decompresses to more than %d MiB (a real kernel ISF is "
                                          "under 8 MiB); refusing it" % (what, max_json >> 20), path=path)
        except (lzma.LZMAError, EOFError, zlib.error, OSError) as err:
            raise LayoutError("cannot read %s: %s data is damaged (%s)" % (what, compressed or "file", err),
                              path=path) from None
        return out
