"""Which kernel layouts exist and how to load one: shipped (`structs/`), user-imported, ad hoc.

Why: every consumer (layout choice for a target, `dt --build`, `structs list`) needs the same
answer to "which builds do we know, by version and by PDB GUID" without importing 193 builds'
worth of construct objects. The shipped `structs/index.json` and the per-user store's
`index.json` answer that; a build's layouts are built only when they are loaded.

Shipped layouts are generated modules (made in the repository). Everything from a user's file
(`--symbols`, `structs import`) is checked and built as data (`from_reduced`), never as code:
the per-user store `$PYKD_EXT_HOME/layouts` (default `~/.pykd-ext/layouts`, see `user_store`)
keeps checked reduced builds as JSON. A stored build that no longer loads is noted once and
skipped by everything that goes over all builds.
"""
import importlib
import importlib.util
import json
import os
import re
import threading
from typing import Any, Dict, List, Optional, Tuple

from pykd_ext.errors import LayoutError, UnknownBuildError
from pykd_ext.layouts.entry import BuildEntry
from pykd_ext.layouts.model import KernelLayouts

__all__ = ["BuildEntry", "HOW_TO_ADD", "candidates_for_build", "find_by_guid", "import_isf", "layouts_for_entry",
           "layouts_from_isf_doc", "list_builds", "load_isf_file", "load_layouts", "resolve", "shipped_builds",
           "shipped_dir", "store_dir", "usable_layouts", "user_builds"]

_SHIPPED_PACKAGE = "pykd_ext.structs"

HOW_TO_ADD = (
    "To add it: get the kernel's ISF symbol table (Volatility 3 writes one per ntkrnlmp.pdb GUID into "
    "its symbol cache, e.g. volatility3/symbols/windows/ntkrnlmp.pdb/<GUID>-<AGE>.json.xz, or "
    "convert the PDB with volatility3's pdbconv) and run `pykd-ext structs import FILE.json.xz`; "
    "or use it once with `--symbols FILE`. `pykd-ext structs list` shows the builds we have.")


_lock = threading.Lock()
_shipped: Optional[List[BuildEntry]] = None
_loaded: Dict[Tuple[Optional[str], str], KernelLayouts] = {}
#: stored builds that failed to load in this process: (store, build id) -> the error
_broken: Dict[Tuple[Optional[str], str], LayoutError] = {}


def shipped_dir() -> str:
    spec = importlib.util.find_spec(_SHIPPED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise LayoutError("the shipped layouts package %s is missing" % _SHIPPED_PACKAGE)
    return list(spec.submodule_search_locations)[0]


def store_dir() -> str:
    """The per-user layout store: $PYKD_EXT_HOME/layouts or ~/.pykd-ext/layouts."""
    home = os.environ.get("PYKD_EXT_HOME") or os.path.join(os.path.expanduser("~"), ".pykd-ext")
    return os.path.join(home, "layouts")


def _read_index(path: str, store: Optional[str]) -> List[BuildEntry]:
    try:
        with open(path, "r", encoding="utf-8") as fh:
            doc = json.load(fh)
    except FileNotFoundError:
        return []
    except (OSError, ValueError) as err:
        raise LayoutError("layout index unreadable: %s" % err, path=path) from None
    return [BuildEntry.from_dict(d, store) for d in doc.get("builds", [])]


def shipped_builds() -> List[BuildEntry]:
    global _shipped
    if _shipped is None:
        _shipped = _read_index(os.path.join(shipped_dir(), "index.json"), None)
    return list(_shipped)


def user_builds() -> List[BuildEntry]:
    """The builds of the per-user store (damaged entries noted once and left out)."""
    store = store_dir()
    if not os.path.lexists(store):
        return []           # no store: the checker and the PDB/ISF readers are not even imported
    from pykd_ext.layouts.user_store import read_index
    return read_index(store)


def list_builds() -> List[BuildEntry]:
    """Shipped + user-imported builds (shipped first, each sorted by build/revision)."""
    return shipped_builds() + user_builds()


def _norm_guid(text: str) -> str:
    return text.strip().strip("{}").replace("-", "").upper()


def _match(key: str, entries: List[BuildEntry]) -> List[BuildEntry]:
    k = key.strip()
    exact = [e for e in entries if e.build_id == k]
    if exact:
        return exact
    exact = [e for e in entries if e.version and e.version == k]
    if exact:
        return exact
    # GUID, GUID-age, or the symbol-server form GUID+age (hex age appended)
    m = re.match(r"^\{?([0-9A-Fa-f-]{32,36})\}?(?:[-:/ ](\d+))?$", k)
    if m:
        guid = _norm_guid(m.group(1))
        if len(guid) == 32:
            age = int(m.group(2)) if m.group(2) else None
            return [e for e in entries if e.guid == guid and (age is None or e.age == age)]
    compact = k.replace("-", "").upper()
    if re.match(r"^[0-9A-F]{33,40}$", compact):
        guid, age_hex = compact[:32], compact[32:]
        return [e for e in entries if e.guid == guid and e.age == int(age_hex, 16)]
    return []


def resolve(key: str) -> BuildEntry:
    """The build a key names: build id, version, GUID, GUID-age; UnknownBuildError otherwise."""
    found = _match(key, list_builds())
    if not found:
        raise UnknownBuildError("no kernel layouts for %r. %s" % (key, HOW_TO_ADD))
    return found[0]


def layouts_for_entry(entry: BuildEntry) -> KernelLayouts:
    """The layouts of a known build; LayoutError when a stored build is damaged."""
    key = (entry.store, entry.build_id)
    with _lock:
        found = _loaded.get(key)
        if found is None:
            if key in _broken:
                raise _broken[key]
            if entry.store is None:
                mod = importlib.import_module("%s.%s" % (_SHIPPED_PACKAGE, entry.module))
                try:
                    table, symbols = mod.BUILDS[entry.build_id]
                except KeyError:
                    raise LayoutError("layout module %s lacks build %s (regenerate structs/)"
                                      % (entry.module, entry.build_id)) from None
                found = KernelLayouts(entry, table, symbols)
            else:
                from pykd_ext.layouts.user_store import load_stored
                try:
                    found = load_stored(entry)
                except LayoutError as err:
                    _broken[key] = err
                    raise
            _loaded[key] = found
    # each caller gets its own object (choice/warnings differ), sharing the compiled tables
    fresh = KernelLayouts(entry, found._table, found._symbols)
    return fresh


def usable_layouts(entry: BuildEntry) -> Optional[KernelLayouts]:
    """The layouts of a build, or None (noted once on stderr) when a stored build is damaged:
    for callers that go over many builds, which must keep working for every other build."""
    if entry.store is None:
        return layouts_for_entry(entry)
    try:
        return layouts_for_entry(entry)
    except LayoutError as err:
        from pykd_ext.layouts.user_store import note_once
        note_once("load:%s:%s" % (entry.store, entry.build_id),
                  "skipped the imported layouts %s: %s (import the ISF again with `pykd-ext structs "
                  "import FILE`)" % (entry.build_id, err.one_line()))
        return None


def load_layouts(key: str) -> KernelLayouts:
    """Layouts by build id ("10.0.19041.1288"), version, or GUID[-age]."""
    return layouts_for_entry(resolve(key))


def find_by_guid(guid: str, age: int) -> Optional[KernelLayouts]:
    g = _norm_guid(guid)
    for e in list_builds():
        if e.guid == g and (age is None or e.age == age):
            found = usable_layouts(e)
            if found is not None:
                return found
    return None


def candidates_for_build(build: int, arch: str = "x64") -> List[BuildEntry]:
    """Every known build with this build number and arch, sorted by revision."""
    out = [e for e in list_builds() if e.build == build and e.arch == arch]
    return sorted(out, key=lambda e: (e.revision or 0, e.build_id))


# ------------------------------------------------------------------ ISF files from users

def _fill_version_from_guid(meta: Any) -> None:
    # a known GUID tells us its version; otherwise the build number stays unknown (0)
    if not meta.version and meta.guid:
        for e in shipped_builds():
            if e.guid == meta.guid and e.age == meta.age:
                meta.version, meta.build, meta.revision = e.version, e.build, e.revision


def _reduced_of_doc(doc: Dict[str, Any], source: str, version: Optional[str], path: str) -> Any:
    """The checked reduced build of an ISF document (the whole document checked first)."""
    from pykd_ext.layouts.isf import meta_from_isf, reduce_isf
    meta = meta_from_isf(doc, version=version, source=source, path=path)
    _fill_version_from_guid(meta)
    reduced = reduce_isf(doc, meta, path)
    meta.module = _module_name_for(meta.build_id)
    return reduced


def _module_name_for(build_id: str) -> str:
    return "u_" + re.sub(r"[^0-9A-Za-z]", "_", build_id)


def _file_label(path: str) -> str:
    """A file's name as shown in a layout's source (escaped: file names can hold anything)."""
    from pykd_ext.layouts.isf_check import printable
    return printable(os.path.basename(path) or path, 120)


def layouts_from_isf_doc(doc: Dict[str, Any], source: str, version: Optional[str] = None,
                         path: str = "") -> KernelLayouts:
    """Layouts of an ISF document held in memory: checked, reduced like the shipped tree, built
    as data (`from_reduced`, no code)."""
    from pykd_ext.layouts.from_reduced import layouts_from_reduced
    return layouts_from_reduced(_reduced_of_doc(doc, source, version, path), None, path, check_digests=False)


def load_isf_file(path: str, version: Optional[str] = None) -> KernelLayouts:
    """`--symbols`: layouts of one ISF file (bounded read, whole file checked, built as data)."""
    from pykd_ext.layouts.isf import load_isf
    path = str(path)
    return layouts_from_isf_doc(load_isf(path), "ad hoc: %s" % _file_label(path), version, path)


def import_isf(path: str, version: Optional[str] = None) -> BuildEntry:
    """`structs import`: check one ISF file whole, build its layouts (proving they load), and
    store the reduced build as data in the per-user store; nothing is stored when any check fails."""
    from pykd_ext.layouts.from_reduced import build_table
    from pykd_ext.layouts.isf import load_isf
    from pykd_ext.layouts.user_store import store_build
    path = str(path)
    reduced = _reduced_of_doc(load_isf(path), "user import: %s" % _file_label(path), version, path)
    meta = reduced.meta
    shipped_ids = {e.build_id for e in shipped_builds()}
    if meta.build_id in shipped_ids:
        meta.build_id = meta.build_id + "-user"
        meta.module = _module_name_for(meta.build_id)
    build_table(reduced, path, check_digests=False)
    store = store_dir()
    entry = store_build(store, reduced)
    with _lock:
        _loaded.pop((store, meta.build_id), None)
        _broken.pop((store, meta.build_id), None)
    return entry
