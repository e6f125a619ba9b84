"""The per-user layout store ($PYKD_EXT_HOME/layouts): imported builds kept as checked data.

Why a module: `structs import` writes here and every command may read here, and the store is a
folder anyone with the user's rights may have edited. So it holds data only (`index.json` plus
one `<module>.json` reduced build per import, see `reduced_json`), every read is bounded and
checked again, and a damaged entry costs only that entry: it is reported once (a `note:` line on
stderr) and skipped, and every other build keeps working.

Stores written by older versions held generated Python modules (`u_*.py`) indexed by an
`index.json` without a `format`. Those modules are never imported: they are renamed to
`*.py.disabled`, dropped from the index, and a note names them and says to import the ISF again.
"""
import json
import os
import sys
from typing import Any, List, Set

from pykd_ext.errors import LayoutError
from pykd_ext.layouts.bounded_read import read_bounded
from pykd_ext.layouts.entry import BuildEntry
from pykd_ext.layouts.isf import ReducedBuild
from pykd_ext.layouts.isf_check import printable

#: version of the store's index.json (absent in stores of generated modules)
INDEX_FORMAT = 2
INDEX_NAME = "index.json"
#: an index lists a few builds (~400 bytes each)
MAX_INDEX_BYTES = 4 << 20
ABOUT = ("pykd-ext user layouts: one checked reduced build per <module>.json (data, never code); "
         "add with `pykd-ext structs import FILE`")

_noted: Set[str] = set()


def note_once(key: str, text: str) -> None:
    """A `note:` line on stderr, once per process per key (a damaged store must not flood output)."""
    if key in _noted:
        return
    _noted.add(key)
    try:
        sys.stderr.write("note: %s\n" % printable(text, 600))
    except (OSError, ValueError):
        pass


def data_path(store: str, module: str) -> str:
    return os.path.join(store, module + ".json")


def _retire_legacy(store: str, index: Any) -> None:
    """Disable generated modules of an older store (never imported) and say to import again."""
    try:
        names = sorted(n for n in os.listdir(store) if n.endswith(".py"))
    except OSError:
        names = []
    legacy_ids: List[str] = []
    if isinstance(index, dict) and index.get("format") != INDEX_FORMAT:
        for entry in index.get("builds") or []:
            if isinstance(entry, dict):
                legacy_ids.append("%s (%s)" % (printable(entry.get("build_id"), 60),
                                               printable(entry.get("source") or "?", 80)))
    if not names and not legacy_ids:
        return
    for name in names:
        try:
            os.replace(os.path.join(store, name), os.path.join(store, name + ".disabled"))
        except OSError:
            pass
    if legacy_ids:
        try:
            _write_index(store, [])
        except OSError:
            pass
    what = ", ".join(legacy_ids) if legacy_ids else ", ".join(names)
    note_once("legacy:" + store, "ignored layouts that an older pykd-ext stored as Python code in %s: %s. "
              "They are never run (renamed *.py.disabled); import the ISF file again with "
              "`pykd-ext structs import FILE`" % (store, what))


def read_index(store: str) -> List[Any]:
    """The BuildEntry of every usable entry of a store's index (bad entries noted and skipped)."""
    from pykd_ext.layouts.from_reduced import check_meta
    from pykd_ext.layouts.reduced_json import meta_from_dict
    path = os.path.join(store, INDEX_NAME)
    if not os.path.lexists(path):
        if os.path.isdir(store):
            _retire_legacy(store, None)
        return []
    try:
        index = json.loads(read_bounded(path, "layout store index", MAX_INDEX_BYTES, MAX_INDEX_BYTES))
    except (LayoutError, RecursionError, ValueError) as err:
        why = err.one_line() if isinstance(err, LayoutError) else "not JSON"
        note_once("index:" + path, "the user layout index %s is damaged (%s); imported layouts are skipped"
                  % (path, why))
        return []
    if not isinstance(index, dict) or index.get("format") != INDEX_FORMAT or not isinstance(index.get("builds"), list):
        _retire_legacy(store, index)
        return []
    _retire_legacy(store, None)
    out = []
    seen: Set[str] = set()
    for number, raw in enumerate(index["builds"]):
        try:
            meta = meta_from_dict(raw, path, "builds[%d]" % number)
            check_meta(meta, path)
            if not meta.module or meta.build_id in seen:
                raise LayoutError("builds[%d]: no module, or build %s listed twice" % (number, meta.build_id), path=path)
        except LayoutError as err:
            note_once("entry:%s:%d" % (path, number), "skipped a damaged entry of the user layout index: %s"
                      % err.one_line())
            continue
        seen.add(meta.build_id)
        out.append(BuildEntry.from_dict(meta.to_dict(), store))
    return out


def _write_index(store: str, entries: List[Any]) -> None:
    from pykd_ext.layouts.reduced_json import write_atomic
    doc = {"format": INDEX_FORMAT, "about": ABOUT,
           "builds": [e.to_dict() for e in sorted(entries, key=lambda e: (e.build, e.revision or 0, e.build_id))]}
    write_atomic(os.path.join(store, INDEX_NAME),
                 (json.dumps(doc, indent=1, sort_keys=True, ensure_ascii=True) + "\n").encode("ascii"))


def store_build(store: str, rb: ReducedBuild) -> Any:
    """Write a checked reduced build and its index entry (replacing one of the same build id)."""
    from pykd_ext.layouts.reduced_json import dumps_reduced, write_atomic
    os.makedirs(store, exist_ok=True)
    entries = [e for e in read_index(store) if e.build_id != rb.meta.build_id]
    write_atomic(data_path(store, rb.meta.module), dumps_reduced(rb))
    entry = BuildEntry.from_dict(rb.meta.to_dict(), store)
    _write_index(store, entries + [entry])
    return entry


def load_stored(entry: Any) -> Any:
    """The KernelLayouts of a stored build, read and checked again (LayoutError when damaged)."""
    from pykd_ext.layouts.from_reduced import layouts_from_reduced
    from pykd_ext.layouts.reduced_json import read_reduced
    path = data_path(entry.store, entry.module)
    rb = read_reduced(path)
    if rb.meta.to_dict() != entry.to_dict():
        raise LayoutError("stored layout does not match its index entry %s" % entry.build_id, path=path)
    return layouts_from_reduced(rb, entry.store, path)
