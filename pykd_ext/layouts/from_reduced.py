"""Kernel layouts built directly from a reduced build (`isf.ReducedBuild`), as data.

Why: layouts from a user's file (`--symbols`, `structs import`, the debugger's PDB through
typeInfo) must never become code. The shipped `structs/` modules are code because they are made in
the repository; everything else is turned straight into the same construct objects those modules
define (`cons.Record` with `"Name" / At(offset, subcon)` members, `Base`, `Ptr`, `Bits`,
`EnumDef`, `Array`, `FuncType`; one object per variant digest) and wrapped in `KernelLayouts`.

It is also the last gate before a layout is used or stored, so it checks everything it builds,
whatever produced the reduced build (an ISF reduction or a stored JSON file someone may have
edited): names, kinds and sizes; every member inside its record (offset + size <= record size);
bitfields inside their storage; enum constants inside their storage; pointer sizes equal to the
build's; no type containing itself; digests equal to the content (recomputed). A violation is a
`LayoutError` naming the type and member.
"""
import re
from typing import Any, Dict, List, NoReturn, Optional, Tuple

from construct import Array, Construct, Renamed

from pykd_ext.errors import LayoutError
from pykd_ext.layouts.entry import BuildEntry
from pykd_ext.layouts.cons import At, Base, Bits, EnumDef, FuncType, Ptr, Record
from pykd_ext.layouts.isf import ANONYMOUS, MAX_ARRAY_COUNT, UNNAMED, ReducedBuild, _digest
from pykd_ext.layouts.isf_check import (CheckSteps, ARCHES, BASE_SIZES, GUID_RE, INTEGER_KINDS, MAX_NAME, MAX_NESTING,
                                        MAX_RVA, MAX_TEXT, MAX_U32, RECORD_KINDS, FORBIDDEN_RE, Where, int_problem,
                                        name_problem, shown, version_problem)
from pykd_ext.layouts.model import KernelLayouts
from pykd_ext.targets.arch import arch_named

#: the largest record kept (measured over the 207 real tables: _KPRCB, tens of KiB) is far below
#: this; a record's members are read into one buffer by `dt`
MAX_RECORD_SIZE = 1 << 24
#: extra pointer levels of a pointer member (the reduction follows at most 16)
MAX_POINTER_DEPTH = 16
#: what a pointer may point to, besides a named type (`isf._Reducer.pointee`)
POINTEE_KINDS = ("base", "struct", "union", "enum", "array", "function", "pointer", "bitfield")
BUILD_ID_RE = re.compile(r"^[0-9A-Za-z][0-9A-Za-z._-]{0,99}$")
MODULE_RE = re.compile(r"^[A-Za-z0-9_]{1,120}$")
_NON_IDENT_RE = re.compile(r"[^0-9A-Za-z_]")


def _fail(path: str, what: str) -> NoReturn:
    raise LayoutError("invalid layout data: %s" % what, path=path or None)


def check_meta(meta: Any, path: str = "") -> None:
    """A build's identity: the values an index entry and `structs list` show."""
    def bad(field: str, what: str) -> NoReturn:
        _fail(path, "build identity: %s %s" % (field, what))

    if not isinstance(meta.build_id, str) or not BUILD_ID_RE.match(meta.build_id):
        bad("build_id", "%s is not letters, digits, dots and dashes" % shown(meta.build_id))
    if int_problem(meta.build, 0, MAX_U32):
        bad("build", int_problem(meta.build, 0, MAX_U32) or "")
    if meta.revision is not None and int_problem(meta.revision, 0, MAX_U32):
        bad("revision", int_problem(meta.revision, 0, MAX_U32) or "")
    if meta.version != "":
        problem = version_problem(meta.version)
        if problem:
            bad("version", problem)
        parts = [int(p) for p in meta.version.split(".")]
        if meta.build != parts[2] or meta.revision != (parts[3] if len(parts) > 3 else None):
            bad("build/revision", "%s/%s do not match version %s" % (meta.build, meta.revision, meta.version))
    elif meta.build != 0 or meta.revision is not None:
        bad("build/revision", "%s/%s without a version" % (meta.build, meta.revision))
    if meta.guid is not None and (not isinstance(meta.guid, str) or not GUID_RE.match(meta.guid)
                                  or meta.guid != meta.guid.upper()):
        bad("guid", "%s is not 32 upper-case hex digits" % shown(meta.guid))
    if meta.age is not None and int_problem(meta.age, 0, MAX_U32):
        bad("age", int_problem(meta.age, 0, MAX_U32) or "")
    if meta.arch not in ARCHES:
        bad("arch", "%s is not one of %s" % (shown(meta.arch), ", ".join(ARCHES)))
    described = arch_named(meta.arch)
    if described is None or meta.pointer_size != described.pointer_size or type(meta.pointer_size) is not int:
        bad("pointer_size", "%s does not fit arch %s" % (shown(meta.pointer_size), meta.arch))
    if not isinstance(meta.products, list):
        bad("products", "must be a list")
    for product in meta.products:
        if name_problem(product, 64):
            bad("products", "%s %s" % (shown(product), name_problem(product, 64)))
    for field, value, limit in (("source", meta.source, MAX_TEXT), ("pdb", meta.pdb, MAX_NAME)):
        if name_problem(value, limit):
            bad(field, "%s %s" % (shown(value), name_problem(value, limit)))
    if not isinstance(meta.types_only, bool):
        bad("types_only", "must be true or false")
    if meta.module != "" and (not isinstance(meta.module, str) or not MODULE_RE.match(meta.module)):
        bad("module", "%s is not letters, digits and underscores" % shown(meta.module))
    if meta.extra != {}:
        bad("extra", "is only for shipped layouts")


class _Builder(CheckSteps):
    """Builds (and checks) the construct objects of one reduced build."""

    def __init__(self, rb: ReducedBuild, path: str, check_digests: bool) -> None:
        self.rb = rb
        self.path = path
        self.check_digests = check_digests
        self.pointer_size = rb.meta.pointer_size
        self.bases: Dict[Tuple[Any, ...], Base] = {}
        self.pointers: Dict[Tuple[Any, ...], Ptr] = {}
        self.records: Dict[str, Record] = {}
        self.enums: Dict[str, EnumDef] = {}
        self.variant_counts: Dict[str, int] = {}

    def fail(self, where: Any, what: str) -> NoReturn:
        _fail(self.path, "%s: %s" % (where, what))

    def name(self, value: Any, where: Any, limit: int = MAX_NAME) -> str:
        problem = name_problem(value, limit)
        if problem:
            self.fail(where, "name %s %s" % (shown(value), problem))
        return value


    def variant(self, name: str) -> str:
        stem = _NON_IDENT_RE.sub("_", name.strip("<>").split("-")[0] if name.startswith("<") else name)
        stem = ("_" + stem) if name.startswith("<") else stem
        self.variant_counts[stem] = self.variant_counts.get(stem, 0) + 1
        return "%s_%d" % (stem[:80], self.variant_counts[stem])

    # ------------------------------------------------------------------------- leaf types

    def base(self, desc: Any, where: Any, integer: bool = False) -> Base:
        try:
            found = self.bases.get(desc) if isinstance(desc, tuple) else None
        except TypeError:                 # a list inside: not a desc the reduction makes
            found = None
        if found is not None and (not integer or found.kind in INTEGER_KINDS):
            return found
        if not isinstance(desc, tuple) or len(desc) != 5 or desc[0] != "base":
            self.fail(where, "%s is not a base type" % shown(desc))
        _, name, size, signed, kind = desc
        self.name(name, where + ": base type")
        if not isinstance(kind, str) or kind not in BASE_SIZES or type(size) is not int or size not in BASE_SIZES[kind]:
            self.fail(where, "base type %s: size %s is not one of kind %s's" % (shown(name), shown(size), shown(kind)))
        if integer and kind not in INTEGER_KINDS:
            self.fail(where, "base type %s is a %s, not an integer" % (shown(name), kind))
        if not isinstance(signed, bool):
            self.fail(where, "base type %s: signed must be true or false" % shown(name))
        base = Base(name, size, signed, kind)
        self.bases[(desc[0], name, size, signed, kind)] = base
        return base

    def pointer(self, desc: Tuple[Any, ...], where: Any) -> Ptr:
        try:
            found = self.pointers.get(desc)
        except TypeError:
            found = None
        if found is not None:
            return found
        if len(desc) != 5:
            self.fail(where, "malformed pointer %s" % shown(desc))
        _, target, target_kind, depth, size = desc
        if not isinstance(target, str) or target not in ("<function>", "<array>"):
            self.name(target, where + ": pointer target")
        if target_kind not in POINTEE_KINDS:
            self.fail(where, "pointer to a %s" % shown(target_kind))
        self.integer(depth, 0, MAX_POINTER_DEPTH, where + ": pointer depth")
        if size != self.pointer_size or type(size) is not int:
            self.fail(where, "pointer size %s differs from the build's %d" % (shown(size), self.pointer_size))
        ptr = Ptr(target, size, target_kind, depth)
        self.pointers[("ptr", target, target_kind, depth, size)] = ptr
        return ptr

    def storage(self, desc: Any, where: Any) -> Tuple[Construct, int]:
        """A bitfield's storage unit: an integer base type or an enum."""
        if isinstance(desc, tuple) and len(desc) == 2 and desc[0] == "enum":
            enum = self.enums.get(desc[1]) if isinstance(desc[1], str) else None
            if enum is None:
                self.fail(where, "unknown enum digest %s" % shown(desc[1]))
            return enum, enum.subcon.size
        base = self.base(desc, where, integer=True)
        return base, base.size

    def member(self, desc: Any, where: Any) -> Tuple[Construct, int]:
        """(subcon, size in bytes) of one member type; arrays unwrapped iteratively."""
        counts: List[int] = []
        for _ in range(MAX_NESTING + 1):
            if not isinstance(desc, tuple) or not desc or desc[0] != "array":
                break
            if len(desc) != 3:
                self.fail(where, "malformed array %s" % shown(desc))
            counts.append(self.integer(desc[1], 0, MAX_ARRAY_COUNT, where + ": array count"))
            desc = desc[2]
        else:
            self.fail(where, "arrays nested more than %d levels" % MAX_NESTING)
        if not isinstance(desc, tuple) or not desc:
            self.fail(where, "malformed type %s" % shown(desc))
        kind = desc[0]
        sub: Construct
        if kind == "base":
            sub = self.base(desc, where)
            size = sub.size
        elif kind == "ptr":
            sub = self.pointer(desc, where)
            size = sub.size
        elif kind in RECORD_KINDS or kind == "enum":
            if len(desc) != 2:
                self.fail(where, "malformed %s reference" % kind)
            found = (self.enums if kind == "enum" else self.records).get(desc[1]) if isinstance(desc[1], str) else None
            if found is None:
                self.fail(where, "%s digest %s is not defined before use" % (kind, shown(desc[1])))
            if kind != "enum" and found.kind != kind:
                self.fail(where, "%s digest %s is a %s" % (kind, shown(desc[1]), found.kind))
            sub = found
            size = found.subcon.size if kind == "enum" else found.size
        elif kind == "bits" and not counts:
            if len(desc) != 4:
                self.fail(where, "malformed bitfield")
            storage, unit = self.storage(desc[3], where)
            position = self.integer(desc[1], 0, 63, where + ": bit position")
            length = self.integer(desc[2], 1, 64, where + ": bit length")
            if position + length > 8 * unit:
                self.fail(where, "bits %d..%d do not fit the %d-byte storage" % (position, position + length - 1, unit))
            sub = Bits(position, length, storage)
            size = unit
        elif kind == "func" and not counts and len(desc) == 1:
            sub, size = FuncType(), 0
        else:
            self.fail(where, "member type %s is not allowed here" % shown(kind))
        for count in reversed(counts):
            sub = Array(count, sub)
            size *= count
        return sub, size

    # ------------------------------------------------------------------------- whole types

    def enum(self, digest: str, defn: Any) -> EnumDef:
        where = "enum %s" % shown(getattr(defn, "name", "?"))
        name = self.name(defn.name, where)
        storage = self.base(defn.storage, where + ": storage", integer=True)
        if not isinstance(defn.constants, list):
            self.fail(where, "constants must be a list")
        low, high = -(1 << (8 * storage.size - 1)), (1 << (8 * storage.size)) - 1
        constants: Dict[str, int] = {}
        for item in defn.constants:
            if not isinstance(item, tuple) or len(item) != 2:
                self.fail(where, "malformed constant %s" % shown(item))
            cname, value = item
            self.name(cname, where + ": constant")
            self.integer(value, low, high, "%s.%s" % (where, shown(cname)))
            if cname in constants:
                self.fail(where, "constant %s appears twice" % shown(cname))
            constants[cname] = value
        if self.check_digests and digest != _digest(["enum", name, list(defn.storage), defn.constants]):
            self.fail(where, "content does not match its digest %s" % shown(digest))
        return EnumDef(name, storage, constants)

    def record(self, digest: str, defn: Any) -> Record:
        where = Where(getattr(defn, "name", "?"))
        name = defn.name
        if name not in (UNNAMED, ANONYMOUS):
            self.name(name, where)
        if defn.kind not in RECORD_KINDS:
            self.fail(where, "kind %s is not struct or union" % shown(defn.kind))
        size = self.integer(defn.size, 0, MAX_RECORD_SIZE, where + ": size")
        if not isinstance(defn.fields, list):
            self.fail(where, "fields must be a list")
        members: List[Renamed] = []
        seen = set()
        for item in defn.fields:
            if not isinstance(item, tuple) or len(item) != 3:
                self.fail(where, "malformed member %s" % shown(item))
            mname, offset, desc = item
            mwhere = Where(name, mname)
            if type(mname) is not str or not 0 < len(mname) <= MAX_NAME or FORBIDDEN_RE.search(mname):
                self.name(mname, mwhere)
            if mname in seen:
                self.fail(mwhere, "appears twice")
            seen.add(mname)
            if type(offset) is not int or not 0 <= offset <= size:
                self.integer(offset, 0, size, mwhere + ": offset")
            sub, msize = self.member(desc, mwhere)
            if offset + msize > size:
                self.fail(mwhere, "0x%x bytes at offset 0x%x end beyond the type's size 0x%x" % (msize, offset, size))
            members.append(Renamed(At(offset, sub), newname=mname))
        if self.check_digests and digest != _digest([name, defn.kind, size, [[m[0], m[1], m[2]] for m in defn.fields]]):
            self.fail(where, "content does not match its digest %s" % shown(digest))
        return Record(name, size, defn.kind, *members, variant=self.variant(name), digest=digest)

    def record_order(self) -> List[str]:
        """Record digests, dependencies (by-value members) first; cycles and unknown digests refused."""
        records = self.rb.records
        order: List[str] = []
        state: Dict[str, int] = {}            # 1 = on the stack, 2 = done
        for root in sorted(records):
            if state.get(root) == 2:
                continue
            stack: List[Tuple[str, List[str]]] = [(root, _deps(records[root]))]
            state[root] = 1
            while stack:
                digest, deps = stack[-1]
                if deps:
                    dep = deps.pop()
                    if dep not in records:
                        self.fail("type %s" % shown(records[digest].name), "member type digest %s is not defined" % shown(dep))
                    if state.get(dep) == 1:
                        self.fail("type %s" % shown(records[dep].name), "contains itself by value")
                    if state.get(dep) != 2:
                        state[dep] = 1
                        stack.append((dep, _deps(records[dep])))
                    continue
                stack.pop()
                state[digest] = 2
                order.append(digest)
        return order

    def build(self) -> Tuple[Dict[str, Construct], Dict[str, int]]:
        rb = self.rb
        check_meta(rb.meta, self.path)
        for digest in sorted(rb.enums):
            self.enums[digest] = self.enum(digest, rb.enums[digest])
        for digest in self.record_order():
            self.records[digest] = self.record(digest, rb.records[digest])
        table: Dict[str, Construct] = {}
        for name, digest in sorted(rb.type_names.items()):
            self.name(name, "type table")
            found = self.records.get(digest) if isinstance(digest, str) else None
            if found is None or found.type_name != name:
                self.fail("type table", "%s names digest %s, which is not a type of that name" % (shown(name), shown(digest)))
            table[name] = found
        for name, digest in sorted(rb.enum_names.items()):
            self.name(name, "enum table")
            enum = self.enums.get(digest) if isinstance(digest, str) else None
            if enum is None or enum.enum_name != name:
                self.fail("enum table", "%s names digest %s, which is not an enum of that name" % (shown(name), shown(digest)))
            if name in table:
                self.fail("enum table", "%s is both a type and an enum" % shown(name))
            table[name] = enum
        symbols: Dict[str, int] = {}
        for name, rva in sorted(rb.symbols.items()):
            self.name(name, "symbols")
            symbols[name] = self.integer(rva, 0, MAX_RVA, "symbol %s" % shown(name))
        return table, symbols


def _deps(defn: Any) -> List[str]:
    """Digests of the records a record holds by value (through arrays); shapes are checked later."""
    out = set()
    fields = defn.fields if isinstance(defn.fields, list) else []
    for item in fields:
        desc = item[2] if isinstance(item, tuple) and len(item) == 3 else None
        for _ in range(MAX_NESTING + 1):
            if not isinstance(desc, tuple) or len(desc) < 2:
                break
            if desc[0] in RECORD_KINDS:
                if isinstance(desc[1], str):
                    out.add(desc[1])
                break
            if desc[0] != "array" or len(desc) != 3:
                break
            desc = desc[2]
    return sorted(out, reverse=True)


def build_table(rb: ReducedBuild, path: str = "", check_digests: bool = True
                ) -> Tuple[Dict[str, Construct], Dict[str, int]]:
    """(types and enums by name, global RVAs) of a reduced build, checked; LayoutError otherwise.

    `check_digests=False` only for a build the reduction has just made from a checked document
    (its digests were computed from this very content); anything read back is checked in full."""
    return _Builder(rb, path, check_digests).build()


def layouts_from_reduced(rb: ReducedBuild, store: Optional[str] = None, path: str = "",
                         check_digests: bool = True) -> KernelLayouts:
    """The KernelLayouts of a reduced build (see the module docstring). `store` is the user store
    folder the build was read from (None for ad hoc layouts)."""
    table, symbols = build_table(rb, path, check_digests)
    return KernelLayouts(BuildEntry.from_dict(rb.meta.to_dict(), store), table, symbols)
