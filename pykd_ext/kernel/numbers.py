"""Numbers as a WinDbg user types them: hex by default, `0n` decimal, `0y` binary, backticks.

Why a module of its own: every command argument naming a PID, TID, address or count goes through
`parse_number` (via `lookup.parse_spec`, `dt`'s address, `teb`'s TEB/TID), and the CLI sets the
radix of bare numbers (`--radix`) before a command runs; this module imports nothing heavy, so
the CLI can do that without loading the kernel decoders.
"""
import contextlib
import contextvars
from typing import Iterator, Optional

__all__ = ["RADIXES", "default_radix", "parse_number", "using_radix"]

#: WinDbg's `n` command: the radix of bare numbers (16 unless `--radix 10`)
_RADIX: "contextvars.ContextVar[int]" = contextvars.ContextVar("pykd_ext_radix", default=16)
RADIXES = (8, 10, 16)
_PREFIXES = {"0x": 16, "0n": 10, "0y": 2, "0t": 8}
_DIGITS = {2: "01", 8: "01234567", 10: "0123456789", 16: "0123456789abcdef"}


def default_radix() -> int:
    """The radix of bare numbers for this command (16 like WinDbg, or `--radix`)."""
    return _RADIX.get()


@contextlib.contextmanager
def using_radix(radix: int) -> Iterator[None]:
    """Bare numbers read inside this block are in `radix` (the CLI's `--radix`)."""
    if radix not in RADIXES:
        raise ValueError("radix %r (WinDbg knows 8, 10, 16)" % (radix,))
    token = _RADIX.set(radix)
    try:
        yield
    finally:
        _RADIX.reset(token)


def parse_number(text: str, radix: Optional[int] = None) -> Optional[int]:
    """A number as WinDbg reads it, or None when `text` is not one.

    `0x`/`0n`/`0y`/`0t` prefixes choose hex/decimal/binary/octal; otherwise `radix` (default: the
    command's `default_radix()`, 16). WinDbg's backtick in 64-bit values is dropped; a leading `-`
    is a sign. No `h` suffix (it would turn names like `ah` into numbers).
    """
    t = text.strip().replace("`", "").lower()
    negative = t.startswith("-")
    if negative:
        t = t[1:]
    base = default_radix() if radix is None else radix
    if len(t) > 2 and t[:2] in _PREFIXES:
        base, t = _PREFIXES[t[:2]], t[2:]
    if not t or len(t) > 66 or any(c not in _DIGITS[base] for c in t):
        return None
    value = int(t, base)
    return -value if negative else value
