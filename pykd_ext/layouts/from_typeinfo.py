"""Kernel layouts built from DbgEng's own PDB through pykd `typeInfo`, in the shipped form.

Why: inside WinDbg the debugger has loaded the kernel's exact PDB. When no shipped or imported
layout matches the kernel's PDB GUID, the exact layouts are one `typeInfo("nt!_EPROCESS")` away.
They are turned into an ISF-shaped dict (Volatility's symbol-table format), checked and reduced
like the shipped `structs/` (`layouts.isf.reduce_isf`) and built as data into the same construct
objects (`layouts.from_reduced`; the debuggee's PDB is not trusted to become code), so commands see
exactly the in-memory form they always see.
The same dict, written to disk (`!py layouts export FILE`), is a file `pykd-ext structs import`
accepts: a student takes the VM's exact layouts home.

What pykd's typeInfo tells (pykd 0.3.x / kdlib facts): `fields()` → [(name, typeInfo)],
`fieldOffset(name)`, `size()`, `isBitField()` + `bitOffset()`/`bitWidth()`, `isPointer()` /
`isArray()` + `deref()` (pointee / element type), `len()` of an array = element count,
`isEnum()` with the constants as fields (`int(enum.field(name))` = value), `isUserDefined()`,
`isFunction()`, `isVoid()`, base type names `Char WChar Int1B UInt1B Int2B UInt2B Int4B UInt4B
Int8B UInt8B Long ULong Float Double Bool Void Hresult` (DbgEng reports the PDB's long/ulong as
Int4B/UInt4B). What it does not tell: whether a UDT is a struct or a union (kdlib prints both as
"class/struct"); every UDT is recorded as a struct. Offsets, sizes, bit positions, signedness
and enum values — all a decoder uses — are exact.

Per `!py` invocation the interpreter is fresh, so the reduced build is cached by PDB GUID-age
under `$PYKD_EXT_HOME/typeinfo/` as JSON data (`reduced_json`), read back and checked next time.
"""
import json
import os
import re
from typing import Any, Dict, List, Optional, Tuple, Type, cast

from pykd_ext.errors import LayoutError, PykdExtError, UnknownBuildError
from pykd_ext.layouts.isf import GLOBAL_SYMBOLS, ROOT_ENUMS, ROOT_TYPES
from pykd_ext.layouts.isf_check import GUID_RE, MAX_RVA, leading_version
from pykd_ext.layouts.model import KernelLayouts
from pykd_ext.targets.arch import DEFAULT_ARCH, arch_named, decodable_arches

#: pykd/kdlib base type name -> (ISF base type name, size, signed, ISF kind)
PYKD_BASE_TYPES: Dict[str, Tuple[str, int, bool, str]] = {
    "Char": ("char", 1, True, "char"), "Int1B": ("char", 1, True, "char"),
    "UInt1B": ("unsigned char", 1, False, "char"), "WChar": ("wchar", 2, True, "int"),
    "Int2B": ("short", 2, True, "int"), "UInt2B": ("unsigned short", 2, False, "int"),
    "Int4B": ("long", 4, True, "int"), "UInt4B": ("unsigned long", 4, False, "int"),
    "Long": ("long", 4, True, "int"), "ULong": ("unsigned long", 4, False, "int"),
    "Hresult": ("long", 4, True, "int"),
    "Int8B": ("long long", 8, True, "int"), "UInt8B": ("unsigned long long", 8, False, "int"),
    "Float": ("float", 4, True, "float"), "Double": ("double", 8, True, "float"),
    "Bool": ("bool", 1, False, "bool"), "Void": ("void", 0, True, "void"),
}
_UNSIGNED_BY_SIZE = {1: "UInt1B", 2: "UInt2B", 4: "UInt4B", 8: "UInt8B"}

#: bound on pointer/array nesting of one member type (C declarations nest a few levels)
MAX_TYPE_DEPTH = 16
#: bound on the number of struct types expanded (the kept closure is ~200 types)
MAX_TYPES = 5000
#: bound on the members of one type (the largest kernel struct has a few hundred)
MAX_MEMBERS = 100000
#: how the target learnt the PDB identity -> words for the layout choice's reason
#: looked up with the dump's `pdb_source` (None when the dump does not say)
PDB_SOURCES: Dict[Optional[str], str] = {"CodeView record of nt": "the kernel image", "symbol file path": "the debugger's symbol file"}
#: format version written into exported files
EXPORT_FORMAT = "6.1.0"


class TypeInfoCollector:
    """Walks pykd typeInfo objects into ISF `user_types`/`enums`/`base_types` (iteratively)."""

    def __init__(self, errors: Tuple[Type[BaseException], ...], pointer_size: int) -> None:
        self.errors = errors
        self.pointer_size = pointer_size
        self.user_types: Dict[str, Dict[str, Any]] = {}
        self.enums: Dict[str, Dict[str, Any]] = {}
        self.base_types: Dict[str, Dict[str, Any]] = {
            "pointer": {"endian": "little", "kind": "int", "signed": False, "size": pointer_size}}
        self._pending: List[Tuple[str, Any]] = []
        self._unnamed = 0

    # -- names ------------------------------------------------------------------------------

    def _base(self, pykd_name: str, size: Optional[int]) -> Dict[str, Any]:
        name = pykd_name.split(":", 1)[0].strip()
        if name not in PYKD_BASE_TYPES:
            name = _UNSIGNED_BY_SIZE.get(size or 0, "UInt4B")
        isf_name, bsize, signed, kind = PYKD_BASE_TYPES[name]
        self.base_types.setdefault(isf_name, {"endian": "little", "kind": kind, "signed": signed, "size": bsize})
        return {"kind": "base", "name": isf_name}

    def _udt_name(self, ti: Any) -> Tuple[str, bool]:
        name = str(ti.name())
        if "!" in name:
            name = name.split("!", 1)[1]
        if not name or name.startswith("<") or name.startswith("__unnamed") or name.startswith("__anonymous"):
            self._unnamed += 1
            return "__unnamed_%04x" % self._unnamed, True
        return name, False

    # -- type descriptors -------------------------------------------------------------------

    def desc(self, ti: Any, expand: bool = True) -> Dict[str, Any]:
        """ISF type descriptor of one member type; by-value UDTs are queued for expansion."""
        wrappers: List[Tuple[str, int]] = []
        for _ in range(MAX_TYPE_DEPTH):
            if ti.isBitField():
                storage = self._storage(ti)
                inner = {"kind": "bitfield", "bit_position": int(ti.bitOffset()),
                         "bit_length": int(ti.bitWidth()), "type": storage}
                break
            if ti.isPointer():
                wrappers.append(("pointer", 0))
                ti = ti.deref()
                expand = False           # a pointee is named, never laid out
                continue
            if ti.isArray():
                wrappers.append(("array", int(len(ti))))
                ti = ti.deref()
                continue
            inner = self._leaf(ti, expand)
            break
        else:
            raise LayoutError("typeInfo nests deeper than %d levels" % MAX_TYPE_DEPTH)
        for kind, count in reversed(wrappers):
            inner = {"kind": kind, "subtype": inner} if kind == "pointer" else \
                {"kind": "array", "count": count, "subtype": inner}
        return inner

    def _storage(self, ti: Any) -> Dict[str, Any]:
        if ti.isEnum():
            return {"kind": "enum", "name": self.enum(ti)}
        return self._base(str(ti.name()), int(ti.size()))

    def _leaf(self, ti: Any, expand: bool) -> Dict[str, Any]:
        if ti.isFunction():
            return {"kind": "function"}
        if ti.isVoid():
            return self._base("Void", 0)
        if ti.isEnum():
            return {"kind": "enum", "name": self.enum(ti)}
        if ti.isUserDefined():
            name, unnamed = self._udt_name(ti)
            if (expand or unnamed) and name not in self.user_types:
                self.user_types[name] = {}          # placeholder: expanded by collect()
                self._pending.append((name, ti))
            return {"kind": "struct", "name": name}
        size: Optional[int]
        try:
            size = int(ti.size())
        except self.errors:
            size = None
        return self._base(str(ti.name()), size)

    def enum(self, ti: Any) -> str:
        name = str(ti.name()).split("!", 1)[-1].split(":", 1)[0]
        if name in self.enums:
            return name
        constants: Dict[str, int] = {}
        try:
            for cname, const in _fields_of(ti):
                constants[cname] = int(const)
        except self.errors + (AttributeError, TypeError, ValueError) as err:
            raise LayoutError("typeInfo of enum %s cannot be read: %s" % (name, err)) from None
        size = int(ti.size()) if ti.size() else 4
        base = {1: "unsigned char", 2: "short", 4: "int", 8: "long long"}.get(size, "int")
        self.base_types.setdefault(base, {"endian": "little", "kind": "char" if size == 1 else "int",
                                          "signed": size != 1, "size": size})
        self.enums[name] = {"base": base, "constants": constants, "size": size}
        return name

    # -- whole types ------------------------------------------------------------------------

    def add_root(self, name: str, ti: Any) -> None:
        if name not in self.user_types:
            self.user_types[name] = {}
            self._pending.append((name, ti))

    def collect(self) -> None:
        """Expand queued UDTs until none is left (a worklist, no recursion)."""
        expanded = 0
        while self._pending:
            expanded += 1
            if expanded > MAX_TYPES:
                raise LayoutError("typeInfo closure exceeds %d types" % MAX_TYPES)
            name, ti = self._pending.pop()
            fields: Dict[str, Any] = {}
            try:
                for fname, fti in _fields_of(ti):
                    fields[fname] = {"offset": int(ti.fieldOffset(fname)), "type": self.desc(fti)}
                size = int(ti.size())
            except self.errors + (AttributeError, TypeError, ValueError) as err:
                raise LayoutError("typeInfo of %s cannot be read: %s" % (name, err)) from None
            self.user_types[name] = {"kind": "struct", "size": size, "fields": fields}


def _fields_of(ti: Any) -> List[Tuple[str, Any]]:
    """(name, typeInfo) of each member: `fields()` (pykd 0.3.x), else by index (`len()`,
    `fieldName(i)`, `field(i)`) for pykd versions without `fields()`."""
    if hasattr(ti, "fields"):
        return [(str(n), t) for n, t in ti.fields()]
    count = len(ti)
    if count > MAX_MEMBERS:
        raise LayoutError("typeInfo %s claims %d members" % (ti.name(), count))
    return [(str(ti.fieldName(i)), ti.field(i)) for i in range(count)]


def isf_from_pykd(pykd: Any, guid: Optional[str], age: Optional[int], version: Optional[str],
                  arch: str = DEFAULT_ARCH.name, kernel_base: Optional[int] = None,
                  module: str = "nt") -> Dict[str, Any]:
    """An ISF-shaped dict of the kept kernel types, enums and globals, from pykd typeInfo."""
    # pykd's exception classes (the classes it exports are exceptions)
    errors = cast(Tuple[Type[BaseException], ...],
                  tuple(t for t in (getattr(pykd, "DbgException", None), getattr(pykd, "BaseException", None))
                        if isinstance(t, type)) or (Exception,))
    described = arch_named(arch)
    if described is None or described not in decodable_arches():
        raise UnknownBuildError("the debugger's target is a %s machine: pykd-ext decodes %s"
                                % (arch, ", ".join(a.name for a in decodable_arches())))
    pointer_size = described.pointer_size
    collector = TypeInfoCollector(errors, pointer_size)
    found = 0
    for name in ROOT_TYPES:
        try:
            ti = pykd.typeInfo("%s!%s" % (module, name))
        except errors:
            continue
        collector.add_root(name, ti)
        found += 1
    if not found:
        raise UnknownBuildError("the debugger has no type information for %s (are the kernel's symbols "
                                "loaded? try `.reload /f nt`)" % module)
    collector.collect()
    for name in ROOT_ENUMS:
        try:
            collector.enum(pykd.typeInfo("%s!%s" % (module, name)))
        except errors:
            continue
    symbols: Dict[str, Dict[str, int]] = {}
    if kernel_base:
        for sym in GLOBAL_SYMBOLS:
            try:
                va = int(pykd.getOffset("%s!%s" % (module, sym)))
            except errors:
                continue
            if 0 <= va - kernel_base <= MAX_RVA:      # an RVA inside a 4 GiB image
                symbols[sym] = {"address": va - kernel_base}
    pdb: Dict[str, Any] = {"database": "ntkrnlmp.pdb", "machine_type": described.machine_types[0]}
    if isinstance(guid, str) and GUID_RE.match(guid):   # the target's words: kept only when well-formed
        pdb["GUID"] = guid.upper()
        pdb["age"] = int(age if age is not None else 1)
    source: Dict[str, Any] = {"name": "pykd typeInfo", "arch": arch}
    if isinstance(version, str) and leading_version(version):
        source["version"] = version
    from pykd_ext.version import __version__
    return {"metadata": {"format": EXPORT_FORMAT,
                         "producer": {"name": "pykd-ext", "version": __version__},
                         "windows": {"pdb": pdb}, "source": source},
            "base_types": collector.base_types, "user_types": collector.user_types,
            "enums": collector.enums, "symbols": symbols}


def reduced_of_doc(doc: Dict[str, Any], source: str, version: Optional[str] = None) -> Any:
    """The checked reduced build of an ISF dict (the shipped tree's reduction)."""
    from pykd_ext.layouts.isf import meta_from_isf, reduce_isf
    meta = meta_from_isf(doc, version=version, source=source)
    reduced = reduce_isf(doc, meta, "<%s>" % source)
    meta.module = "t_" + re.sub(r"[^0-9A-Za-z]", "_", meta.build_id)
    return reduced


def layouts_from_isf_doc(doc: Dict[str, Any], source: str, version: Optional[str] = None) -> KernelLayouts:
    """KernelLayouts of an ISF dict, checked and built as data like a user's ISF file."""
    from pykd_ext.layouts.from_reduced import layouts_from_reduced
    return layouts_from_reduced(reduced_of_doc(doc, source, version), None, "<%s>" % source, check_digests=False)


def cache_dir() -> str:
    home = os.environ.get("PYKD_EXT_HOME") or os.path.join(os.path.expanduser("~"), ".pykd-ext")
    return os.path.join(home, "typeinfo")


def _cache_path(guid: Any, age: Any) -> Optional[str]:
    """The cached reduced build of one PDB, or None when the identity is not a GUID and an age
    (they come from the target: never let them shape a path)."""
    if not isinstance(guid, str) or not re.match(r"^[0-9A-Fa-f]{32}$", guid):
        return None
    if age is not None and (not isinstance(age, int) or isinstance(age, bool) or not 0 <= age < 1 << 32):
        return None
    return os.path.join(cache_dir(), "nt_%s_%s.json" % (guid.upper(), age if age is not None else 1))


def _load_cached(path: str) -> Optional[KernelLayouts]:
    """The cached layouts, checked like any stored layout; None (rebuilt) when absent or damaged."""
    if not os.path.isfile(path):
        return None
    from pykd_ext.layouts.from_reduced import layouts_from_reduced
    from pykd_ext.layouts.reduced_json import read_reduced
    try:
        return layouts_from_reduced(read_reduced(path), None, path)
    except LayoutError:
        return None                  # a damaged cache entry is rebuilt


def write_isf(doc: Dict[str, Any], path: str) -> None:
    """Write an ISF dict as JSON (atomically: a partial file is never left behind)."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(doc, fh, indent=1, sort_keys=True)
        fh.write("\n")
    os.replace(tmp, path)


def _store_cached(reduced: Any, path: str) -> None:
    from pykd_ext.layouts.reduced_json import dumps_reduced, write_atomic
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        write_atomic(path, dumps_reduced(reduced))
    except OSError:
        pass                         # a read-only home only costs the next invocation time


def _identity(target: Any) -> Tuple[Optional[str], Optional[int], Optional[str], str, Optional[int]]:
    """(guid, age, version, arch, kernel base) of a pykd target."""
    info = target.info()
    extra = info.extra or {}
    version = kernel_version(target)
    return extra.get("pdb_guid"), extra.get("pdb_age"), version, info.arch or DEFAULT_ARCH.name, info.kernel_base


def kernel_version(target: Any) -> Optional[str]:
    """`major.minor.build[.revision]` of nt as the pykd target states it (None when unknown)."""
    getter = getattr(target, "kernel_version", None)
    return getter() if callable(getter) else None


def typeinfo_layouts(target: Any) -> KernelLayouts:
    """The kernel's layouts from the debugger's PDB: the cached reduced build of this PDB
    GUID-age, or built from typeInfo now (and cached)."""
    from pykd_ext.layouts.from_reduced import layouts_from_reduced
    guid, age, version, arch, base = _identity(target)
    path = _cache_path(guid, age) if guid else None
    if path is not None:
        cached = _load_cached(path)
        if cached is not None:
            return cached
    doc = isf_from_pykd(target.api.mod, guid, age, version, arch, base)
    reduced = reduced_of_doc(doc, "pykd typeInfo", version if version and version.count(".") >= 2 else None)
    layouts = layouts_from_reduced(reduced, None, "<pykd typeInfo>", check_digests=False)
    if path is not None:
        _store_cached(reduced, path)
    return layouts


def choose_layouts_for_pykd(target: Any) -> KernelLayouts:
    """Layouts for a pykd session: exact PDB match, else typeInfo, else the offline choice."""
    from pykd_ext.layouts.registry import find_by_guid
    from pykd_ext.layouts.select import choose_for_target
    info = target.info()
    extra = info.extra or {}
    guid, age = extra.get("pdb_guid"), extra.get("pdb_age")
    if guid:
        exact = find_by_guid(guid, age if age is not None else 1)
        if exact is not None:
            exact.choice = {"method": "pdb-guid", "warnings": [], "candidates": [exact.build_id],
                            "chosen": exact.build_id,
                            "reason": "PDB %s-%s of %s" % (guid, age, PDB_SOURCES.get(extra.get("pdb_source"),
                                                                                  "the kernel image"))}
            version = _exact_kernel_version(info)
            if version:                  # as the offline choice states it (layouts.select)
                exact.choice["kernel_version"] = version
            return exact
    why = ""
    try:
        lay = typeinfo_layouts(target)
        lay.choice = {"method": "pykd-typeinfo", "warnings": [], "candidates": [lay.build_id],
                      "chosen": lay.build_id,
                      "reason": "built from the debugger's PDB through typeInfo%s"
                                % (" (PDB %s-%s)" % (guid, age) if guid else "")}
        return lay
    except PykdExtError as err:
        why = err.one_line()
    lay = choose_for_target(target)
    if why:
        lay.choice.setdefault("warnings", []).append("typeInfo layouts unavailable: %s" % why)
    return lay


def _exact_kernel_version(info: Any) -> Optional[str]:
    """The exact kernel file version the offline choice reports (`layouts.version_choice`)."""
    try:
        from pykd_ext.layouts import version_choice
    except ImportError:
        return None
    found = version_choice.annotate_info(info)
    return found.get("version") if isinstance(found, dict) else None


def export_typeinfo_layouts(target: Any, path: str) -> Dict[str, Any]:
    """`layouts export FILE`: write the kernel's layouts from typeInfo as an ISF file."""
    guid, age, version, arch, base = _identity(target)
    doc = isf_from_pykd(target.api.mod, guid, age, version, arch, base)
    write_isf(doc, path)
    return doc
