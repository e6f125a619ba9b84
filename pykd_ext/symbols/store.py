"""The symbol-store layout (what symstore.exe, SymSrv and WinDbg's caches use) and safe writes.

Layout: `<store>/<file>/<index>/<file>`, where `<index>` is, for a PDB, the GUID as 32 upper-case
hex digits followed by the age in hex (`ntkrnlmp.pdb/1D4090613BF97F9B9529992E20E93897 1/...`
without the blank), and for an executable image the TimeDateStamp as 8 upper-case hex digits
followed by SizeOfImage in lower-case hex (`ntoskrnl.exe/5C8B33E2a6f000/ntoskrnl.exe`). The last
character of a compressed file is `_` (`ntkrnlmp.pd_`, a CAB). A store whose root holds
`index2.txt` is "two-tier": the path starts with the file name's first two characters
(`nt/ntkrnlmp.pdb/...`). Sources: Microsoft's SymStore and SymSrv documentation.

Writes are atomic (a temporary file in the same directory, then rename), never follow a
symbolic link planted at the destination, and never leave a partial file under the final name;
so pykd-ext and WinDbg can share one store.
"""
import os
import re
import tempfile
from typing import Iterator, List, Optional

from pykd_ext.errors import PykdExtError

_GUID = re.compile(r"^[0-9A-Fa-f]{32}$")
_NAME = re.compile(r"^[A-Za-z0-9_.$@+\-~ ]{1,128}$")


class SymbolStoreError(PykdExtError):
    """A symbol file cannot be named, stored or read as asked."""


def check_file_name(name: str) -> str:
    """A symbol file's name as it may appear in a store path: a plain file name, nothing that
    could climb out of the store (`..`, separators) or hide (leading dot)."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    if not _NAME.match(base) or base.startswith(".") or ".." in base:
        raise SymbolStoreError("not a symbol file name: %r" % name)
    return base


def pdb_index(guid: str, age: int) -> str:
    """`<GUID><AGE>` as stores name a PDB's folder (GUID without dashes or braces)."""
    plain = guid.strip("{}").replace("-", "")
    if not _GUID.match(plain):
        raise SymbolStoreError("not a PDB GUID: %r (want 32 hex digits)" % guid)
    if not 0 <= age <= 0xFFFFFFFF:
        raise SymbolStoreError("not a PDB age: %r" % age)
    return "%s%X" % (plain.upper(), age)


def image_index(timestamp: int, size_of_image: int) -> str:
    """`<TimeDateStamp><SizeOfImage>` as stores name an executable's folder."""
    if not (0 <= timestamp <= 0xFFFFFFFF and 0 < size_of_image <= 0xFFFFFFFF):
        raise SymbolStoreError("not an image identity: timestamp 0x%x, size 0x%x"
                               % (timestamp, size_of_image))
    return "%08X%x" % (timestamp, size_of_image)


def compressed_name(name: str) -> str:
    """`ntkrnlmp.pdb` -> `ntkrnlmp.pd_` (the CAB form on a server)."""
    return name[:-1] + "_"


def relative_path(name: str, index: str, two_tier: bool = False, file_name: Optional[str] = None) -> str:
    """`name/index/file_name` (URL-style separators), with the two-tier prefix if asked."""
    rel = "%s/%s/%s" % (name, index, file_name or name)
    if two_tier:
        rel = "%s/%s" % (name[:2], rel)
    return rel


def is_two_tier(store: str) -> bool:
    return os.path.isfile(os.path.join(store, "index2.txt"))


def local_candidates(store: str, name: str, index: str) -> Iterator[str]:
    """Where a file may be in a local store, in the order WinDbg looks (exact name, then the
    lower-case name: stores written on Windows are case-insensitive)."""
    two = is_two_tier(store)
    seen: List[str] = []
    for n in (name, name.lower()):
        path = os.path.join(store, *relative_path(n, index, two).split("/"))
        if path not in seen:
            seen.append(path)
            yield path


def find_local(store: str, name: str, index: str) -> Optional[str]:
    """A regular file for (name, index) in a local store, or None."""
    for path in local_candidates(store, name, index):
        if os.path.isfile(path) and not os.path.islink(path):
            return path
    return None


def store_path(store: str, name: str, index: str) -> str:
    """Where a file goes in a store (the store's own tier layout, the exact name)."""
    return os.path.join(store, *relative_path(name, index, is_two_tier(store)).split("/"))


def write_atomic(path: str, chunks: Iterator[bytes]) -> int:
    """Write chunks to `path` through a temporary file in its directory; returns the size.

    The temporary file is removed on any failure; the final rename replaces a regular file but
    refuses a symbolic link or a directory planted at `path`."""
    folder = os.path.dirname(path) or "."
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as err:
        raise SymbolStoreError("cannot create %s: %s" % (folder, err.strerror or err), path=folder) from None
    if os.path.islink(path) or os.path.isdir(path):
        raise SymbolStoreError("refusing to replace a link or directory", path=path)
    fd, tmp = tempfile.mkstemp(prefix=".pykd-ext-", suffix=".part", dir=folder)
    size = 0
    try:
        with os.fdopen(fd, "wb") as fh:
            for chunk in chunks:
                fh.write(chunk)
                size += len(chunk)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return size
