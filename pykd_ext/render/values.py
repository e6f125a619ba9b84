"""Formatting of single values, shared by every renderer (one place for hex widths and markers)."""
from typing import Any

from pykd_ext.memory.faults import Fault


def json_default(value: Any) -> Any:
    """What `json`'s C encoder calls for a value it cannot write itself (`default=`).

    Why not `plain()` first: walking every value of every record in Python cost a third of
    `threads`' time; the C encoder walks dicts, lists, str, int, bool and None itself and asks
    here only for the rest, with the same result as `plain()`.
    """
    if isinstance(value, Fault):
        return {"unreadable": value.to_dict()}
    if isinstance(value, (bytes, bytearray)):
        return value.hex()
    to_dict = getattr(value, "to_dict", None)
    if to_dict is not None:
        return to_dict()
    raise TypeError("%s is not JSON serializable" % type(value).__name__)


def plain(value: Any) -> Any:
    """A JSON-safe form: Faults become their dict, bytes become hex, tuples lists (for the small
    `meta`; records go through `json_default`)."""
    if isinstance(value, Fault):
        return {"unreadable": value.to_dict()}
    if isinstance(value, (bytes, bytearray)):
        return value.hex()
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if hasattr(value, "to_dict"):
        return plain(value.to_dict())
    return value


def show(value: Any, fmt: str = "str") -> str:
    """Text for tables and CSV."""
    if value is None:
        return ""
    if isinstance(value, Fault):
        return value.marker
    if fmt == "addr" and isinstance(value, int):
        return "%016x" % value
    if fmt == "hex" and isinstance(value, int):
        return "0x%x" % value
    if fmt == "hex4" and isinstance(value, int):
        return "%04x" % value
    if fmt == "bool":
        return "yes" if value else "no"
    if isinstance(value, (list, tuple)):
        return ",".join(show(v, fmt) for v in value)
    if isinstance(value, dict):
        return ";".join("%s=%s" % (k, show(v)) for k, v in value.items())
    return str(value)


def hex_addr(value: Any, width: int = 16) -> str:
    """WinDbg-style zero-padded hex (no 0x, no backtick), or the fault marker."""
    if isinstance(value, Fault):
        return value.marker
    if value is None:
        return "?" * width
    return "%0*x" % (width, value)
