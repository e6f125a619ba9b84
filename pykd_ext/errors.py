"""Typed exceptions of pykd-ext.

Every error a user can cause (a wrong file, a truncated dump, an unknown build, a missing layout)
is one of these, so the CLI can print one line (`pykd-ext: <path>: <what is wrong>`, exit 2) and API
callers can catch by kind. Unreadable memory *inside* a good dump is not an error of the target:
readers raise `MemoryReadError` carrying a `Fault`, and decoders turn it into a field marker.
"""
from typing import TYPE_CHECKING, Optional

if TYPE_CHECKING:
    from pykd_ext.memory.faults import Fault


class PykdExtError(Exception):
    """Base of every error pykd-ext raises on purpose."""

    def __init__(self, message: str, path: Optional[str] = None) -> None:
        super().__init__(message)
        self.message = message
        self.path = path

    def one_line(self) -> str:
        """The CLI's single error line (without the program name)."""
        text = " ".join(self.message.split())
        return "%s: %s" % (self.path, text) if self.path else text


class TargetError(PykdExtError):
    """The target (dump file, image, debugger session) cannot be opened or used."""


class DumpFormatError(TargetError):
    """The file is not a format we read, or its structures contradict themselves."""


class TruncatedDumpError(DumpFormatError):
    """The file ends before a structure its header promises."""


class UnsupportedDumpError(TargetError):
    """A format we recognise but do not (yet) read, e.g. an unknown dump type."""


class NotFoundError(PykdExtError):
    """What the user named (a process, a thread, a build) is not in the target, or is ambiguous."""


class LayoutError(PykdExtError):
    """A structure layout needed for decoding is not available."""


class UnknownBuildError(LayoutError):
    """No shipped or imported layout matches the target's kernel build."""


class MissingLayoutError(LayoutError):
    """The chosen layout has no such type, field, enum or global symbol."""


class MemoryReadError(PykdExtError):
    """A read hit memory that the target cannot provide.

    `fault` says why (see `pykd_ext.memory.faults`); `readable` is how many leading bytes of the
    request could be read before the fault (0 when none).
    """

    def __init__(self, fault: "Fault", readable: int = 0) -> None:
        super().__init__(str(fault))
        self.fault = fault
        self.readable = readable
