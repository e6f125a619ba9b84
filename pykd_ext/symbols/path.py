"""Symbol paths in WinDbg's syntax (`_NT_SYMBOL_PATH`, `.sympath`, `--symbol-path`).

Why WinDbg's syntax: users already have it set (in the environment, in their WinDbg workspace);
pykd-ext reading the same string finds the same files and fills the same cache.

Grammar (Debugging Tools for Windows, "Symbol path syntax" / "Using a symbol server"):
- entries are separated by `;`; each is searched in order;
- `srv*[DOWNSTREAM*...]SERVER`: a symbol-server chain; the last element is the server (an
  http(s) URL, or a directory or UNC share laid out as a symbol store), the elements before it
  are downstream stores (caches), nearest first. `srv*SERVER` alone caches into the default
  downstream store; `srv*` alone means the default store and Microsoft's public server.
  `symsrv*symsrv.dll*...` is the long form of `srv*...` (the DLL name is dropped);
- `cache*[DIR]`: DIR (default: the default store) caches whatever the entries after it find;
- anything else is a plain directory searched for the file itself.
Keywords are case-insensitive; surrounding blanks are ignored; empty entries are skipped.
"""
import os
from dataclasses import dataclass, field
from typing import List, Optional

#: Microsoft's public symbol server (what WinDbg's `.symfix` sets)
MICROSOFT_SYMBOL_SERVER = "https://msdl.microsoft.com/download/symbols"
#: bounds on a hostile or mistyped path string
MAX_PATH_ENTRIES = 64
MAX_PATH_LENGTH = 32768


def default_store() -> str:
    """The downstream store used when a path names none: $PYKD_EXT_SYMBOL_CACHE, else
    %LOCALAPPDATA%/pykd-ext/symbols on Windows, ~/.cache/pykd-ext/symbols elsewhere. Point
    WinDbg's `srv*DIR*...` at the same directory to share one cache."""
    env = os.environ.get("PYKD_EXT_SYMBOL_CACHE")
    if env:
        return env
    base = os.environ.get("LOCALAPPDATA") if os.name == "nt" else None
    if not base:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "pykd-ext", "symbols")


def is_url(text: str) -> bool:
    return text.lower().startswith(("http://", "https://"))


@dataclass
class PathEntry:
    """One element of a symbol path: a plain directory or a symbol-server chain."""

    kind: str                                   # "dir" or "server"
    location: str                               # the directory, or the server (URL or store)
    caches: List[str] = field(default_factory=list)   # downstream stores, nearest first

    def describe(self) -> str:
        if self.kind == "dir":
            cached = " (what it holds is cached in %s)" % ", ".join(self.caches) if self.caches else ""
            return "directory %s%s" % (self.location, cached)
        chain = " -> ".join(self.caches + [self.location])
        return "symbol server %s" % chain


@dataclass
class SymbolPath:
    """A parsed `_NT_SYMBOL_PATH`-style path: its entries in order, and the text it came from."""

    entries: List[PathEntry]
    text: str = ""

    @property
    def servers(self) -> List[str]:
        return [e.location for e in self.entries if e.kind == "server" and is_url(e.location)]


def parse_symbol_path(text: str, default_cache: Optional[str] = None) -> SymbolPath:
    """Parse a WinDbg symbol path. Never raises for odd text: unknown forms are directories
    (as WinDbg treats them); overlong strings and entry lists are cut at fixed bounds."""
    store = default_cache or default_store()
    text = (text or "")[:MAX_PATH_LENGTH]
    entries: List[PathEntry] = []
    extra_caches: List[str] = []                # from cache*DIR, for the entries after it
    for raw in text.split(";"):
        item = raw.strip()
        if not item:
            continue
        if len(entries) >= MAX_PATH_ENTRIES:
            break
        parts = [p.strip() for p in item.split("*")]
        head = parts[0].lower()
        if head == "cache":
            extra_caches.append(parts[1] if len(parts) > 1 and parts[1] else store)
            continue
        if head in ("srv", "symsrv"):
            rest = parts[1:]
            if head == "symsrv" and rest:
                rest = rest[1:]                 # symsrv*symsrv.dll*...
            if not rest or (len(rest) == 1 and not rest[0]):
                server, downstream = MICROSOFT_SYMBOL_SERVER, [store]
            else:
                server = rest[-1] or MICROSOFT_SYMBOL_SERVER
                downstream = [p or store for p in rest[:-1]]
                if not downstream and is_url(server):
                    downstream = [store]
            entries.append(PathEntry("server", server, list(extra_caches) + downstream))
            continue
        entries.append(PathEntry("dir", item, list(extra_caches)))
    return SymbolPath(entries=entries, text=text)


def symbol_path_from_env(explicit: Optional[str] = None, default_cache: Optional[str] = None
                         ) -> SymbolPath:
    """`--symbol-path` if given, else `_NT_SYMBOL_PATH` (+ `_NT_ALT_SYMBOL_PATH` first, as
    WinDbg does), else `srv*<default store>*<Microsoft's server>`."""
    if explicit:
        return parse_symbol_path(explicit, default_cache)
    parts = [os.environ.get("_NT_ALT_SYMBOL_PATH", ""), os.environ.get("_NT_SYMBOL_PATH", "")]
    text = ";".join(p for p in parts if p.strip())
    if not text:
        text = "srv*%s*%s" % (default_cache or default_store(), MICROSOFT_SYMBOL_SERVER)
    return parse_symbol_path(text, default_cache)
