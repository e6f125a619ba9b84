"""`--fetch-symbols`: a dump whose kernel has no layout gets its PDB, the way WinDbg does.

Why: WinDbg simply downloads `ntkrnlmp.pdb` by the GUID and age the kernel's CodeView record
names (or, for triage dumps, through the kernel image's TimeDateStamp and SizeOfImage). With
`--fetch-symbols`, `--symbol-path` or `_NT_SYMBOL_PATH` set, a command does the same before it
chooses layouts: it fetches the PDB into the WinDbg-shaped cache (`symbols/fetch.py`), converts
it once into the user store (`structs import`, validated and built as data) and goes on; the
next run finds it offline by GUID. Without any of the three, nothing is fetched: the network is
never touched unless the user asked for symbols.
"""
import os
from typing import Any, NamedTuple, Optional

from pykd_ext.errors import PykdExtError


class Fetched(NamedTuple):
    """What `ensure_kernel_layouts` did: whether a build was imported, and the note to show."""
    imported: bool
    note: str


def fetch_wanted(session: Any) -> bool:
    """Whether the user asked for symbols: the flag, a symbol path option, or the environment."""
    return bool(getattr(session, "fetch_symbols", False) or getattr(session, "symbol_path", None)
                or os.environ.get("_NT_SYMBOL_PATH", "").strip())


def ensure_kernel_layouts(session: Any, by_image: bool = False) -> Optional[Fetched]:
    """Fetch and import the target's kernel PDB unless its layouts are already known.

    Without `by_image`, only a target whose kernel names its PDB (GUID, age) is looked up: the
    exact PDB is worth fetching even when a near build would fit. With it, a target that names
    only its kernel image (triage dumps) fetches the image, then the PDB it names: the caller
    does that once no shipped layout fits.

    Returns what was done (or why it could not be done: the caller goes on with the shipped
    layouts and adds the note to what it reports), or None when nothing was needed.
    """
    from pykd_ext.layouts.registry import find_by_guid, import_isf
    from pykd_ext.symbols.fetch import FetchOptions
    from pykd_ext.symbols.for_target import fetch_kernel_pdb, kernel_identity
    from pykd_ext.symbols.path import symbol_path_from_env
    extra = session.target.info().extra or {}
    ident = kernel_identity(extra)
    if ident.pdb is not None and find_by_guid(ident.pdb[1].strip("{}").replace("-", "").upper(),
                                              ident.pdb[2]) is not None:
        return None                                   # already shipped or imported
    if ident.pdb is None and not by_image:
        return None
    spath = symbol_path_from_env(getattr(session, "symbol_path", None))
    options = FetchOptions(progress=False if getattr(session, "quiet", False) else None)
    try:
        found = fetch_kernel_pdb(extra, spath, options)
        pdb = found[-1]
        entry = import_isf(pdb.path)
    except PykdExtError as err:
        return Fetched(False, "symbols: the kernel PDB could not be fetched and imported (%s)" % err.one_line())
    how = "downloaded from" if pdb.downloaded else "found in"
    return Fetched(True, "symbols: %s %s %s, imported as build %s (used offline from now on)"
                   % (os.path.basename(pdb.path), how, pdb.source, entry.build_id))
