"""Open a target from a path: sniff the first bytes, hand the file to the reader that claims it.

Readers register themselves in `_READERS` below (signature prefix → opener). Anything that is not
a known signature but has a raw-image extension goes to the raw-image reader. All failures are
typed (`TargetError` and subclasses) with the path attached, so the CLI prints one line.
"""
import os
from typing import Callable, List, Tuple

from pykd_ext.errors import DumpFormatError, TargetError
from pykd_ext.targets.base import Target, TargetDescription

RAW_EXTENSIONS = (".raw", ".mem", ".vmem", ".bin", ".img", ".lime")

# (signature bytes at offset 0, "module:function" taking a path and returning a Target)
_READERS: List[Tuple[bytes, str]] = [
    (b"PAGEDU64", "pykd_ext.targets.crashdump:open_crashdump64"),
    (b"PAGEDUMP", "pykd_ext.targets.crashdump:open_crashdump32"),
    (b"MDMP", "pykd_ext.targets.minidump:open_minidump"),
    (b"USERDU64", "pykd_ext.targets.userdump:open_userdump64"),
]
_RAW_READER = "pykd_ext.targets.rawimage:open_raw_image"


def _load(spec: str) -> Callable[[str], Target]:
    import importlib
    module_name, func = spec.split(":")
    return getattr(importlib.import_module(module_name), func)


def open_target(path: str) -> Target:
    """Open any supported dump or image; raise TargetError (with the path) when we cannot."""
    if os.path.isdir(path):
        raise TargetError("is a directory, not a dump file", path)
    if not os.path.exists(path):
        raise TargetError("no such file", path)
    try:
        with open(path, "rb") as handle:
            head = handle.read(8)
    except OSError as err:
        raise TargetError("cannot read: %s" % (err.strerror or err), path) from None
    if not head:
        raise DumpFormatError("empty file", path)
    for signature, spec in _READERS:
        if head.startswith(signature):
            return _open_with(spec, path)
    if path.lower().endswith(RAW_EXTENSIONS):
        return _open_with(_RAW_READER, path)
    raise DumpFormatError(
        "not a Windows dump (signature %r); raw physical images need one of the extensions %s"
        % (head, " ".join(RAW_EXTENSIONS)), path)


def _open_with(spec: str, path: str) -> Target:
    try:
        return _load(spec)(path)
    except TargetError as err:
        if err.path is None:
            err.path = path
        raise


def open_description(description: TargetDescription) -> Target:
    """Re-open a target from its description (batch workers)."""
    if description.kind == "file":
        return open_target(description.locator)
    raise TargetError("cannot re-open a %r target from a description" % description.kind,
                      description.locator)
