"""Colour for people at a terminal: names, PIDs, addresses and markers in WinDbg-shaped text.

Why at the sink, by pattern: the text of every command keeps WinDbg's shapes (`PROCESS <addr>`,
`Cid: 027c`, `Image: lsass.exe`, `THREAD <addr> Cid 027c.0280`), so one set of patterns colours
all of them, and the commands stay free of terminal concerns. It runs after escaping
(`render/escape.py`), so the only escape sequences in a coloured line are the ones added here.

When: `--color auto` (the default) colours only a terminal stdout, never a pipe or a file, and
never when NO_COLOR is set to a non-empty value (https://no-color.org) or TERM is `dumb`;
`--color always` / `never` decide for themselves. JSON, JSONL and CSV are never coloured.
"""
import os
import re
from typing import Any, Callable, Optional, Tuple

CHOICES = ("auto", "always", "never")
RESET = "\x1b[0m"
#: SGR colours (ECMA-48): what each kind of word is drawn in
STYLES = {"address": "\x1b[36m", "pid": "\x1b[33m", "name": "\x1b[1;32m", "marker": "\x1b[31m",
          "heading": "\x1b[1m", "note": "\x1b[33m"}

#: what is painted how, in this order (compiled on first use: most runs never colour anything):
#: - what is not in the dump;
#: - 64-bit kernel addresses as WinDbg prints them (ffffb30c8a027040, ffffb30c`8a027040);
#: - `Cid: 027c`, `Cid 027c.0280`, `ParentCid: 0220` in !process/!thread lines;
#: - the image name after `Image: ` (to the end of the line's first word run);
#: - !process / !thread headings
PATTERNS = (("marker", r"<(?:not in dump|paged out|invalid[^>]*|unreadable[^>]*)>"),
            ("address", r"\b(?:0x)?ffff[0-9a-f]{4}`?[0-9a-f]{8}\b"),
            ("pid", r"(?<=Cid: )[0-9a-f]+|(?<=Cid )[0-9a-f]+(?:\.[0-9a-f]+)?"),
            ("name", r"(?<=Image: )\S[^\s]*"),
            ("heading", r"^(?:PROCESS|THREAD)\b"))

def wanted(stream: Any, mode: Optional[str] = "auto") -> bool:
    """Whether text written to `stream` is coloured (see the module docstring)."""
    if mode == "always":
        return True
    if mode == "never":
        return False
    if os.environ.get("NO_COLOR", "") != "" or os.environ.get("TERM", "") == "dumb":
        return False
    try:
        return bool(stream is not None and stream.isatty())
    except (AttributeError, ValueError):
        return False


def _wrap(kind: str) -> Callable[["re.Match[str]"], str]:
    style = STYLES[kind]
    return lambda m: "%s%s%s" % (style, m.group(0), RESET)


_Rules = Tuple[Tuple["re.Pattern[str]", Callable[["re.Match[str]"], str]], ...]
_RULES: Optional[_Rules] = None


def colour_line(line: str) -> str:
    """One escaped output line with its names, PIDs, addresses and markers coloured."""
    global _RULES
    rules = _RULES
    if rules is None:
        rules = _RULES = tuple((re.compile(pattern), _wrap(kind)) for kind, pattern in PATTERNS)
    for pattern, paint in rules:
        line = pattern.sub(paint, line)
    return line


def colour_note(text: str) -> str:
    return "%s%s%s" % (STYLES["note"], text, RESET)
