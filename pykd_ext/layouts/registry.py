"""Which kernel layouts exist and how to load one: shipped (`structs/`), user-imported, ad hoc.

Why: every consumer (layout choice for a target, `dt --build`, `structs list`) needs the same
answer to "which builds do we know, by version and by PDB GUID" without importing 193 builds'
worth of construct objects. The shipped `structs/index.json` and the per-user store's
`index.json` answer that; a build's module is imported only when its layouts are loaded.

The per-user store is `$PYKD_EXT_HOME/layouts` (default `~/.pykd-ext/layouts`): `structs import`
writes a generated module there with the same generator as the shipped tree.
"""
import importlib
import importlib.util
import json
import os
import re
import sys
import threading
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

from pykd_ext.errors import LayoutError, UnknownBuildError
from pykd_ext.layouts.model import KernelLayouts

_SHIPPED_PACKAGE = "pykd_ext.structs"
_USER_MODULE_PREFIX = "pykd_ext_user_layouts"

HOW_TO_ADD = (
    "To add it: get the kernel's ISF symbol table (Volatility 3 writes one per ntkrnlmp.pdb GUID into "
    "its symbol cache, e.g. volatility3/symbols/windows/ntkrnlmp.pdb/<GUID>-<AGE>.json.xz, or "
    "convert the PDB with volatility3's pdbconv) and run `pykd-ext structs import FILE.json.xz`; "
    "or use it once with `--symbols FILE`. `pykd-ext structs list` shows the builds we have.")


@dataclass
class BuildEntry:
    """One known build (shipped or user-imported): identity + where its layouts live."""

    build_id: str
    version: str
    build: int
    revision: Optional[int]
    guid: Optional[str]
    age: Optional[int]
    arch: str
    pointer_size: int
    products: List[str] = field(default_factory=list)
    source: str = ""
    types_only: bool = False
    pdb: str = "ntkrnlmp.pdb"
    module: str = ""
    store: Optional[str] = None          # folder of a user store; None = shipped
    #: H10: derived-layout facts from index.json (partial_types, absent_types, revision_range, ...)
    extra: Dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: Dict[str, Any], store: Optional[str] = None) -> "BuildEntry":
        return cls(build_id=str(d["build_id"]), version=str(d.get("version") or ""), build=int(d.get("build") or 0),
                   revision=d.get("revision"), guid=d.get("guid"), age=d.get("age"), arch=d.get("arch", "x64"),
                   pointer_size=int(d.get("pointer_size") or 8), products=list(d.get("products") or []),
                   source=str(d.get("source") or ""), types_only=bool(d.get("types_only")),
                   pdb=d.get("pdb") or "ntkrnlmp.pdb", module=str(d.get("module") or ""), store=store,
                   extra=dict(d.get("extra") or {}))

    def to_dict(self) -> Dict[str, Any]:
        return {"build_id": self.build_id, "version": self.version, "build": self.build,
                "revision": self.revision, "guid": self.guid, "age": self.age, "arch": self.arch,
                "pointer_size": self.pointer_size, "products": list(self.products), "source": self.source,
                "types_only": self.types_only, "pdb": self.pdb, "module": self.module,
                **({"extra": dict(self.extra)} if self.extra else {})}

    @property
    def guid_age(self) -> Optional[str]:
        return "%s-%s" % (self.guid, self.age) if self.guid else None


_lock = threading.Lock()
_shipped: Optional[List[BuildEntry]] = None
_loaded: Dict[Tuple[Optional[str], str], KernelLayouts] = {}


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
    store = store_dir()
    return _read_index(os.path.join(store, "index.json"), store)


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


def _module_for(entry: BuildEntry) -> Any:
    if entry.store is None:
        return importlib.import_module("%s.%s" % (_SHIPPED_PACKAGE, entry.module))
    name = "%s.%s" % (_USER_MODULE_PREFIX, entry.module)
    mod = sys.modules.get(name)
    if mod is None:
        path = os.path.join(entry.store, entry.module + ".py")
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None or not os.path.exists(path):
            raise LayoutError("imported layout module missing: %s" % path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        sys.modules[name] = mod
    return mod


def layouts_for_entry(entry: BuildEntry) -> KernelLayouts:
    key = (entry.store, entry.build_id)
    with _lock:
        found = _loaded.get(key)
        if found is None:
            mod = _module_for(entry)
            try:
                table, symbols = mod.BUILDS[entry.build_id]
            except KeyError:
                raise LayoutError("layout module %s lacks build %s (regenerate structs/)"
                                  % (entry.module, entry.build_id)) from None
            found = KernelLayouts(entry, table, symbols)
            _loaded[key] = found
    # each caller gets its own object (choice/warnings differ), sharing the compiled tables
    fresh = KernelLayouts(entry, found._table, found._symbols)
    return fresh


def load_layouts(key: str) -> KernelLayouts:
    """Layouts by build id ("10.0.19041.1288"), version, or GUID[-age]."""
    return layouts_for_entry(resolve(key))


def find_by_guid(guid: str, age: int) -> Optional[KernelLayouts]:
    g = _norm_guid(guid)
    for e in list_builds():
        if e.guid == g and (age is None or e.age == age):
            return layouts_for_entry(e)
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


def _reduce_file(path: str, version: Optional[str], source: str) -> Any:
    from pykd_ext.layouts.isf import load_isf, meta_from_isf, reduce_isf
    doc = load_isf(path)
    meta = meta_from_isf(doc, version=version, source=source, path=path)
    _fill_version_from_guid(meta)
    return reduce_isf(doc, meta, path)


def _module_name_for(build_id: str) -> str:
    return "u_" + re.sub(r"[^0-9A-Za-z]", "_", build_id)


def layouts_from_isf_doc(doc: Dict[str, Any], source: str, version: Optional[str] = None,
                         path: str = "") -> KernelLayouts:
    """Layouts of an ISF document held in memory, through the shipped tree's reduction and generator
    (ISF -> reduced closure -> construct module source -> construct objects -> compiled tables)."""
    from pykd_ext.layouts.generate import render_module
    from pykd_ext.layouts.isf import meta_from_isf, reduce_isf
    meta = meta_from_isf(doc, version=version, source=source, path=path)
    _fill_version_from_guid(meta)
    reduced = reduce_isf(doc, meta, path)
    meta.module = _module_name_for(meta.build_id)
    text = render_module(meta.module, [reduced], "Generated in memory from %s." % (os.path.basename(path) or source))
    namespace: Dict[str, Any] = {"__name__": "%s.adhoc_%s" % (_USER_MODULE_PREFIX, meta.module)}
    exec(compile(text, "<layouts from %s>" % (path or source), "exec"), namespace)
    table, symbols = namespace["BUILDS"][meta.build_id]
    return KernelLayouts(BuildEntry.from_dict(meta.to_dict(), store=None), table, symbols)


def load_isf_file(path: str, version: Optional[str] = None) -> KernelLayouts:
    """`--symbols`: layouts of one ISF file, generated in memory with the shipped tree's generator."""
    from pykd_ext.layouts.isf import load_isf
    path = str(path)
    return layouts_from_isf_doc(load_isf(path), "ad hoc: %s" % os.path.basename(path), version, path)


def import_isf(path: str, version: Optional[str] = None) -> BuildEntry:
    """`structs import`: generate a module for one ISF into the per-user store and index it."""
    from pykd_ext.layouts.generate import render_module
    path = str(path)
    reduced = _reduce_file(path, version, "user import: %s" % os.path.basename(path))
    meta = reduced.meta
    shipped_ids = {e.build_id for e in shipped_builds()}
    if meta.build_id in shipped_ids:
        meta.build_id = meta.build_id + "-user"
    meta.module = _module_name_for(meta.build_id)
    store = store_dir()
    os.makedirs(store, exist_ok=True)
    text = render_module(meta.module, [reduced],
                         "Imported by `pykd-ext structs import` from %s." % os.path.basename(path))
    tmp = os.path.join(store, meta.module + ".py.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(tmp, os.path.join(store, meta.module + ".py"))
    index_path = os.path.join(store, "index.json")
    entries = [e for e in _read_index(index_path, store) if e.build_id != meta.build_id]
    entries.append(BuildEntry.from_dict(meta.to_dict(), store))
    doc = {"builds": [e.to_dict() for e in sorted(entries, key=lambda e: (e.build, e.revision or 0, e.build_id))]}
    tmp = index_path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(doc, fh, indent=1, sort_keys=True)
        fh.write("\n")
    os.replace(tmp, index_path)
    # forget a previously loaded module of the same name
    sys.modules.pop("%s.%s" % (_USER_MODULE_PREFIX, meta.module), None)
    with _lock:
        _loaded.pop((store, meta.build_id), None)
    return BuildEntry.from_dict(meta.to_dict(), store)
