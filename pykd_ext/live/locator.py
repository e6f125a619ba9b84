"""`qemu:SOCKET?ram=PATH&pause` and `live:PATH?lowmem=SIZE`: split a live target string.

Why a parser of its own: the path part may itself contain `?` or `=`, so only a trailing
`?key[=value]&...` whose keys are all known options is taken as options; anything else stays part
of the path. Sizes accept `0x` hex and K/M/G suffixes (`lowmem=2G`).
"""
from typing import Dict, Sequence, Tuple
from urllib.parse import parse_qsl

from pykd_ext.errors import TargetError

SCHEMES = ("qemu:", "live:")


def split_locator(text: str, known: Sequence[str]) -> Tuple[str, Dict[str, str]]:
    """(path, options) of `PATH?key=value&flag` (options only when every key is known)."""
    path, mark, query = text.rpartition("?")
    if not mark:
        return text, {}
    pairs = parse_qsl(query, keep_blank_values=True)
    if not pairs or any(key not in known for key, _ in pairs):
        unknown = [key for key, _ in pairs if key not in known]
        if unknown and all(key.isidentifier() for key in unknown):
            raise TargetError("unknown option %r (known: %s)" % (unknown[0], ", ".join(known)),
                              text)
        return text, {}
    return path, dict(pairs)


def parse_size(text: str, what: str) -> int:
    """`2G`, `2048M`, `0x80000000`, `2147483648` -> bytes."""
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    value = text.strip().upper().rstrip("B") or "?"
    scale = units.get(value[-1], 1)
    if scale > 1:
        value = value[:-1]
    try:
        return int(value, 0) * scale
    except ValueError:
        raise TargetError("%s: not a size: %r" % (what, text)) from None


def flag(options: Dict[str, str], name: str) -> bool:
    """An option given as `name`, `name=1`, `name=yes`, `name=on`, `name=true`."""
    if name not in options:
        return False
    return options[name].lower() in ("", "1", "yes", "on", "true")


def with_pause(target: str) -> str:
    """`qemu:SOCKET[?...]` with `pause` added (a global `--pause` option would pass its target
    through this); other targets unchanged."""
    if not target.startswith("qemu:"):
        return target
    _, options = split_locator(target[len("qemu:"):], ("ram", "pause", "backend", "timeout"))
    if "pause" in options:
        return target
    return target + ("&pause" if options else "?pause")
