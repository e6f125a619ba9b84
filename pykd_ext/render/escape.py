"""Strings from a dump made safe for a terminal: every character that could drive it, visible.

Why: process names, image paths and command lines come from the dump, and an attacker writes them.
`ESC [2J` clears the screen, `ESC ] 0;...BEL` sets the window title, CR/LF forge whole report
lines, C1 `CSI` (0x9b) is ESC[ on some terminals, and bidi overrides (U+202E) or line separators
(U+2028) reorder or hide what the user reads. Every human-facing sink (text/table/CSV on stdout,
notes and errors on stderr, WinDbg's output window) passes its lines through `escape_text` once;
JSON escapes by itself (`ensure_ascii`).

The rule is Python's own `str.isprintable()` (what `repr()` escapes): C0 controls, DEL, C1
controls, format characters (bidi embeddings/overrides/isolates and marks, zero-width characters,
BOM, tag characters), line/paragraph separators, non-ASCII spaces, lone surrogates, private-use
and unassigned code points. Each becomes `\\xNN`, `\\uNNNN` or `\\UNNNNNNNN`; everything else -
including backslashes in Windows paths - stays as it is.
"""
from typing import Iterable, Iterator


def _escape_char(char: str) -> str:
    code = ord(char)
    if code < 0x100:
        return "\\x%02x" % code
    if code < 0x10000:
        return "\\u%04x" % code
    return "\\U%08x" % code


def escape_text(text: str) -> str:
    """`text` with every character a terminal could act on written as a visible escape."""
    if text.isprintable():
        return text
    return "".join(char if char.isprintable() else _escape_char(char) for char in text)


def escape_lines(lines: Iterable[str]) -> Iterator[str]:
    """Each line escaped (`str.isprintable` is one C call: clean lines cost nearly nothing)."""
    for line in lines:
        yield line if line.isprintable() else escape_text(line)
