"""Open a target from a path: a registry of openers, each saying how it recognises a file.

An `Opener` declares its recognition (magic bytes at offset 0, file-name extensions, an optional
probe of the first bytes) and how it opens a path. `open_target` reads the first bytes once and
hands the file to the first registered opener that recognises it; `register_opener` adds one
(a live-VM file format, a test double) ahead of the built-in ones. All failures are typed
(`TargetError` and subclasses) with the path attached, so the CLI prints one line.

The built-in openers import their reader when they open a file, not when this module is
imported: opening a crash dump then costs only the crash-dump reader's import (start-up time is
measured in `benchmarks/bench_memory.py`), and the readers never import this module (no cycle).
"""
import os
import stat
from typing import Callable, List, NamedTuple, Optional, Tuple

from pykd_ext.errors import DumpFormatError, TargetError
from pykd_ext.targets.base import Target, TargetDescription

RAW_EXTENSIONS = (".raw", ".mem", ".vmem", ".bin", ".img", ".lime")
#: Bytes read from the start of a file for recognition.
HEAD_SIZE = 8


class Opener(NamedTuple):
    """How one kind of file is recognised and opened.

    A file is recognised when every criterion the opener declares holds: one of `magic` starts
    the file, its name ends with one of `extensions`, `probe(head, path)` is true. An opener
    declaring none recognises nothing.
    """

    name: str
    open: Callable[[str], Target]
    magic: Tuple[bytes, ...] = ()
    extensions: Tuple[str, ...] = ()
    probe: Optional[Callable[[bytes, str], bool]] = None

    def recognises(self, head: bytes, path: str) -> bool:
        if not (self.magic or self.extensions or self.probe):
            return False
        if self.magic and not head.startswith(self.magic):
            return False
        if self.extensions and not path.lower().endswith(self.extensions):
            return False
        return self.probe is None or bool(self.probe(head, path))


def _crash_dump(path: str) -> Target:
    from pykd_ext.targets.crashdump import open_crashdump
    return open_crashdump(path)


def _minidump(path: str) -> Target:
    from pykd_ext.targets.minidump import open_minidump
    return open_minidump(path)


def _user_dump(path: str) -> Target:
    from pykd_ext.targets.userdump import open_userdump64
    return open_userdump64(path)


def _raw_image(path: str) -> Target:
    from pykd_ext.targets.rawimage import open_raw_image
    return open_raw_image(path)


#: The registry, in the order files are offered to it.
OPENERS: List[Opener] = [
    Opener("kernel crash dump", _crash_dump, magic=(b"PAGEDU64", b"PAGEDUMP")),
    Opener("user-mode minidump", _minidump, magic=(b"MDMP",)),
    Opener("legacy user-mode dump", _user_dump, magic=(b"USERDU64",)),
    Opener("raw physical image (flat or LiME)", _raw_image, extensions=RAW_EXTENSIONS),
]


def register_opener(opener: Opener, first: bool = True) -> None:
    """Add an opener, ahead of the others (`first`) or after them."""
    if first:
        OPENERS.insert(0, opener)
    else:
        OPENERS.append(opener)


def unregister_opener(opener: Opener) -> None:
    if opener in OPENERS:
        OPENERS.remove(opener)


def opener_for(head: bytes, path: str) -> Optional[Opener]:
    """The first registered opener that recognises a file with these first bytes and this name."""
    for opener in OPENERS:
        if opener.recognises(head, path):
            return opener
    return None


def _read_head(path: str) -> bytes:
    """The first HEAD_SIZE bytes of a regular file. A FIFO, socket or device is refused before
    anything reads it (opened non-blocking, checked with fstat): a FIFO as --target must give
    one line, not a hang (issue 10)."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags)
    except OSError as err:
        raise TargetError("cannot read: %s" % (err.strerror or err), path) from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise TargetError("not a regular file (a FIFO, socket or device): dumps and images "
                              "are read from files", path)
        return os.read(fd, HEAD_SIZE)
    except OSError as err:
        raise TargetError("cannot read: %s" % (err.strerror or err), path) from None
    finally:
        os.close(fd)


def open_target(path: str) -> Target:
    """Open any supported dump or image; raise TargetError (with the path) when we cannot.

    `qemu:SOCKET[?...]` and `live:PATH[?...]` open a running VM (`pykd_ext.live`), unless a
    file of exactly that name exists."""
    scheme = _live_scheme(path)
    if scheme is not None:
        return _open_live(scheme, path)
    if os.path.isdir(path):
        raise TargetError("is a directory, not a dump file", path)
    if not os.path.exists(path):
        raise TargetError("no such file", path)
    head = _read_head(path)
    if not head:
        raise DumpFormatError("empty file", path)
    opener = opener_for(head, path)
    if opener is None:
        by_name = list(dict.fromkeys(ext for o in OPENERS if not o.magic for ext in o.extensions))
        raise DumpFormatError(
            "not a Windows dump (signature %r); raw physical images need one of the extensions %s"
            % (head, " ".join(by_name)), path)
    try:
        return opener.open(path)
    except TargetError as err:
        if err.path is None:
            err.path = path
        raise


#: live-VM target strings (issue 14): scheme -> module and function opening the rest
LIVE_SCHEMES = {"qemu:": ("pykd_ext.live.qemu", "open_qemu_locator"),
                "live:": ("pykd_ext.live.livefile", "open_live_locator")}


def _live_scheme(path: str) -> Optional[str]:
    for scheme in LIVE_SCHEMES:
        if path.startswith(scheme) and not os.path.exists(path):
            return scheme
    return None


def _open_live(scheme: str, text: str) -> Target:
    """A live VM target; its module is imported only when asked for (no start-up cost)."""
    import importlib
    module_name, function = LIVE_SCHEMES[scheme]
    opener = getattr(importlib.import_module(module_name), function)
    try:
        return opener(text[len(scheme):])
    except TargetError as err:
        if err.path is None:
            err.path = text
        raise


def open_description(description: TargetDescription) -> Target:
    """Re-open a target from its description (batch workers)."""
    if description.kind == "file":
        return open_target(description.locator)
    if description.kind in ("qemu", "live"):
        query = "&".join("%s=%s" % pair for pair in description.options)
        return open_target("%s:%s%s" % (description.kind, description.locator,
                                        "?" + query if query else ""))
    raise TargetError("cannot re-open a %r target from a description" % description.kind,
                      description.locator)
