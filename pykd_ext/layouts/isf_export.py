"""Write a build's layouts as a Volatility 3 ISF symbol table (`structs export BUILD --isf FILE`).

Why: the two ecosystems should interoperate. A layout imported from a PDB (`structs import
x.pdb`), built from a debugger's typeInfo, or shipped in `structs/` becomes a file Volatility 3
loads from its symbol directory (`windows/ntkrnlmp.pdb/<GUID>-<AGE>.json.xz`, found by the PDB
identity its scanner reads from memory), and `structs import` reads it back to the same layouts.

What is written is what the layout holds: the kept types (the walkers' by-value closure, see
`layouts/isf.py`), their enums and base types, and the global RVAs the build table keeps. Types
reached only through pointers are not kept, so such pointers name a type the file does not
define — as Volatility's own ISFs do for types the PDB lacks; it matters only on dereference.

ISF shape (Volatility 3 `schemas/schema-6.2.0.json`): `base_types` {name: {size, signed, kind,
endian}}, `user_types` {name: {kind, size, fields: {member: {offset, type}}}}, `enums` {name:
{size, base, constants}}, `symbols` {name: {address}}, `metadata.windows.pdb` {GUID, age,
database, machine_type}. Anonymous nested types get `__unnamed_<digest>` names (Volatility's
convention is `__unnamed_<hex>`, numbered per PDB; ours are stable across exports).
"""
import json
import lzma
import os
import tempfile
from typing import Any, Dict, List, Optional, Tuple

from construct import Array

from pykd_ext.errors import LayoutError
from pykd_ext.layouts.cons import Base, Bits, EnumDef, FuncType, Ptr, Record, member_parts
from pykd_ext.layouts.isf import ANONYMOUS, UNNAMED
from pykd_ext.layouts.model import KernelLayouts
from pykd_ext.targets.arch import DEFAULT_ARCH, arch_named

Json = Dict[str, Any]

#: ISF format version written (the schema Volatility 3 2.x validates against)
ISF_FORMAT = "6.2.0"
#: Types Volatility 3's Windows kernel symbol table binds classes to when it loads a table
#: (`WindowsKernelIntermedSymbols.__init__` in volatility3/framework/symbols/windows/__init__.py,
#: 2.x): a table lacking one is refused. Names only; those the layout does not hold are declared
#: opaque (see `OPAQUE`).
VOLATILITY_BOUND_TYPES = (
    "_ETHREAD", "_KTHREAD", "_LIST_ENTRY", "_EPROCESS", "_ERESOURCE", "_UNICODE_STRING", "_EX_FAST_REF",
    "_TOKEN", "_OBJECT_HEADER", "_FILE_OBJECT", "_DEVICE_OBJECT", "_CM_KEY_BODY", "_CMHIVE",
    "_CM_KEY_NODE", "_CM_KEY_VALUE", "_HMAP_ENTRY", "_MMVAD_SHORT", "_MMVAD", "_KSYSTEM_TIME",
    "_KMUTANT", "_DRIVER_OBJECT", "_OBJECT_SYMBOLIC_LINK", "_CONTROL_AREA", "_SHARED_CACHE_MAP",
    "_VACB", "_POOL_TRACKER_BIG_PAGES", "_IMAGE_DOS_HEADER", "_KTIMER", "_LDR_DATA_TABLE_ENTRY",
)
#: How a type the layout does not hold is declared: a struct of no known size or members, like an
#: incomplete C type. Reading through it fails in the consumer; nothing is invented.
OPAQUE: Json = {"kind": "struct", "size": 0, "fields": {}}
#: nested-type bound while collecting (a kept closure is a few levels deep; this only stops a
#: damaged table from looping)
MAX_TYPES = 100000



class _Writer:
    """Collects the ISF dictionaries of one KernelLayouts (iterative: no recursion)."""

    def __init__(self, layouts: KernelLayouts) -> None:
        self.layouts = layouts
        self.base_types: Json = {}
        self.user_types: Json = {}
        self.enums: Json = {}
        self.names: Dict[int, str] = {}           # id(Record) -> ISF name
        self.pending: List[Record] = []
        self.opaque: set = set()                     # names pointed at but not held
        self.base_refs: List[Json] = []              # pointees named as base types

    def finish_base_refs(self) -> None:
        """A pointee base type no member holds by value has no known size: it becomes void."""
        for ref in self.base_refs:
            if ref["name"] not in self.base_types:
                ref["name"] = self._void()["name"]

    # ---- names
    def record_name(self, rec: Record) -> str:
        name = self.names.get(id(rec))
        if name is not None:
            return name
        shown = rec.type_name
        if shown in (UNNAMED, ANONYMOUS) or not shown:
            tag = "__anonymous_" if shown == ANONYMOUS else "__unnamed_"
            name = tag + (rec.digest[:12] if rec.digest else "%x" % len(self.names))
        else:
            name = shown
        if name in self.user_types:                  # another variant already holds the name
            name = "%s__%s" % (name, rec.digest[:8] or len(self.names))
        self.names[id(rec)] = name
        self.user_types[name] = None                 # reserved; filled when popped
        self.pending.append(rec)
        if len(self.names) > MAX_TYPES:
            raise LayoutError("layout %s: more than %d types to export" % (self.layouts.label, MAX_TYPES))
        return name

    def base(self, b: Base) -> Json:
        if b.isf_name not in self.base_types:
            self.base_types[b.isf_name] = {"size": b.size, "signed": bool(b.signed), "kind": b.kind,
                                           "endian": "little"}
        return {"kind": "base", "name": b.isf_name}

    def enum(self, e: EnumDef) -> Json:
        storage = e.subcon
        if e.enum_name not in self.enums:
            base = self.base(storage) if isinstance(storage, Base) else {"name": "int"}
            self.enums[e.enum_name] = {"size": int(getattr(storage, "size", 4)), "base": base["name"],
                                       "constants": dict(e.constants)}
        return {"kind": "enum", "name": e.enum_name}

    def pointer(self, p: Ptr) -> Json:
        if p.target_kind == "function":
            inner: Json = {"kind": "function"}
        elif p.target_kind == "base":                  # its size is known once every member is seen
            inner = {"kind": "base", "name": p.target}
            self.base_refs.append(inner)
        elif p.target_kind in ("struct", "union", "enum"):
            named = self.layouts.construct(p.target) if self._known(p.target) else None
            if isinstance(named, Record):
                inner = {"kind": named.kind, "name": self.record_name(named)}
            elif isinstance(named, EnumDef):
                inner = self.enum(named)
            else:                                      # reached only through pointers: not kept
                inner = {"kind": p.target_kind, "name": p.target}
                if p.target_kind in ("struct", "union") and p.target not in (UNNAMED, ANONYMOUS):
                    self.opaque.add(p.target)
                else:                                  # an anonymous or unknown pointee
                    inner = self._void()
        else:                                          # "<array>" and other shapes: untyped
            inner = self._void()
        for _ in range(p.depth):                       # Ptr64 Ptr64 ...: extra indirections
            inner = {"kind": "pointer", "subtype": inner}
        desc: Json = {"kind": "pointer", "subtype": inner}
        if p.size != self.layouts.pointer_size:       # Volatility's convention for other widths
            base = "pointer%d" % (p.size * 8)
            self.base_types.setdefault(base, {"size": p.size, "signed": False, "kind": "int",
                                              "endian": "little"})
            desc["base"] = base
        return desc

    def _void(self) -> Json:
        self.base_types.setdefault("void", {"size": 0, "signed": False, "kind": "void", "endian": "little"})
        return {"kind": "base", "name": "void"}

    def _known(self, name: str) -> bool:
        return self.layouts.has_type(name) or self.layouts.has_enum(name)

    def desc(self, sub: Any) -> Json:
        """The ISF type descriptor of one member subcon; arrays unwrap iteratively."""
        counts: List[int] = []
        while isinstance(sub, Array):
            counts.append(int(sub.count))
            sub = sub.subcon
        if isinstance(sub, Record):
            out: Json = {"kind": sub.kind, "name": self.record_name(sub)}
        elif isinstance(sub, Bits):
            storage = sub.storage
            inner = self.enum(storage) if isinstance(storage, EnumDef) else self.base(storage)
            out = {"kind": "bitfield", "bit_position": sub.position, "bit_length": sub.length, "type": inner}
        elif isinstance(sub, EnumDef):
            out = self.enum(sub)
        elif isinstance(sub, Ptr):
            out = self.pointer(sub)
        elif isinstance(sub, Base):
            out = self.base(sub)
        elif isinstance(sub, FuncType):
            out = {"kind": "function"}
        else:
            raise LayoutError("layout %s: member type %r cannot be exported" % (self.layouts.label, sub))
        for count in reversed(counts):
            out = {"kind": "array", "count": count, "subtype": out}
        return out

    def drain(self) -> None:
        while self.pending:
            rec = self.pending.pop()
            fields: Json = {}
            for member in rec.fields:
                name, offset, sub = member_parts(member)
                fields[name] = {"offset": offset, "type": self.desc(sub)}
            self.user_types[self.names[id(rec)]] = {"kind": rec.kind, "size": rec.size, "fields": fields}


def isf_of_layouts(layouts: KernelLayouts, producer_version: str = "") -> Json:
    """The ISF dictionary of one build's layouts (see the module docstring)."""
    writer = _Writer(layouts)
    for name in layouts.type_names():
        rec = layouts.construct(name)
        if isinstance(rec, Record) and id(rec) not in writer.names:
            writer.names[id(rec)] = name              # the table's own name wins for top-level types
            writer.user_types[name] = None
            writer.pending.append(rec)
    writer.drain()
    for name in layouts.enum_names():
        en = layouts.construct(name)
        if isinstance(en, EnumDef):
            writer.enum(en)
    writer.finish_base_refs()
    opaque = sorted((writer.opaque | set(VOLATILITY_BOUND_TYPES)) - set(writer.user_types))
    for name in opaque:
        writer.user_types[name] = dict(OPAQUE)
    writer.base_types.setdefault("pointer", {"size": layouts.pointer_size, "signed": False, "kind": "int",
                                             "endian": "little"})
    symbols = {name: {"address": layouts.symbol_rva(name)} for name in layouts.symbol_names()}
    arch = arch_named(layouts.arch) or DEFAULT_ARCH
    pdb: Json = {"database": "ntkrnlmp.pdb", "machine_type": arch.machine_types[0]}
    if layouts.guid:
        pdb["GUID"] = layouts.guid.upper()
        pdb["age"] = int(layouts.age if layouts.age is not None else 1)
    source: Json = {"name": "pykd-ext layouts %s" % layouts.build_id, "arch": layouts.arch}
    if layouts.version:
        source["version"] = layouts.version
    return {"metadata": {"format": ISF_FORMAT,
                         "producer": {"name": "pykd-ext", "version": producer_version or "0"},
                         "windows": {"pdb": pdb}, "source": source,
                         "pykd_ext": {"opaque_types": opaque}},
            "base_types": writer.base_types, "user_types": writer.user_types,
            "enums": writer.enums, "symbols": symbols}


def volatility_relative_path(doc: Json) -> Optional[str]:
    """Where Volatility 3 looks for this table under a symbol directory, or None (no PDB identity)."""
    pdb = doc.get("metadata", {}).get("windows", {}).get("pdb", {})
    if not pdb.get("GUID"):
        return None
    return os.path.join("windows", str(pdb.get("database", "ntkrnlmp.pdb")),
                        "%s-%s.json.xz" % (pdb["GUID"], pdb.get("age", 1)))


def write_isf_file(doc: Json, path: str) -> Tuple[str, int]:
    """Write `doc` to `path` (`.json.xz` compressed, else plain JSON) without following a link
    planted at `path`: a temporary file in the same folder, then an atomic rename.
    Returns (path, bytes written)."""
    folder = os.path.dirname(os.path.abspath(path)) or "."
    os.makedirs(folder, exist_ok=True)
    data = json.dumps(doc, indent=None, sort_keys=True, separators=(",", ":")).encode("utf-8")
    if path.endswith(".xz"):
        data = lzma.compress(data)
    fd, tmp = tempfile.mkstemp(prefix=".isf-export-", dir=folder)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path, len(data)
