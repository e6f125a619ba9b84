"""A PDB as a Volatility ISF document: the seam into the project's validated ISF reduction.

Why ISF and not layouts directly: user-supplied symbol files take one road (issue 10): the
ISF reduction (`pykd_ext.layouts.isf.reduce_isf`) validates every value and builds layouts as
data. A PDB is turned into the same dictionary Volatility 3's `pdbconv` writes, so a PDB and an
ISF converted from it by Volatility give the same layouts, and the PDB path inherits every check.

What becomes what (Volatility's conventions, so existing ISF consumers read it alike):
- every complete struct/class/interface (kind "struct") and union (kind "union") with its size
  and data members: offset, type; bitfields as {"kind": "bitfield", "bit_position",
  "bit_length", "type"}; arrays with their element count; pointers (a pointer whose size is not
  the machine's gets a "base" naming a `pointer<bits>` base type); functions as {"kind":
  "function"}; C++ base classes as members named after the base class, the vtable pointer as
  `__VFN_table` (WinDbg's name); static members, methods and nested-type entries are not data
  and are left out, so are virtual bases (their offset is known only at run time);
- unnamed types (`<unnamed-tag>`, `S::<unnamed-tag>`, `__unnamed`, and the `<anonymous-tag>`
  forms) are named `__unnamed_<index>` / `__anonymous_<index>` (hex type index), as pdbconv does;
- forward references are resolved to their definition by unique (decorated) name, else by name;
- a later, different definition of a name already taken is kept as `<name>__<index>`; an
  identical one is the same type (unnamed members compared by content, not by number);
- enums with their underlying base type and constants (values wrapped to the underlying type's
  width and signedness, as the compiler meant them);
- symbols: RVAs of publics and global data, names stripped as pdbconv strips them, with the
  decorated name as `linkage_name` when it differs;
- metadata.windows.pdb: GUID, age, database (file name), machine_type.

Bounded: type chains (pointer/array/modifier/bitfield) are followed iteratively up to
MAX_TYPE_DEPTH levels, field lists through `tpi.field_members`; nothing from the file is
evaluated, every number is an int checked against its range.
"""
import json
import os
import re
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

from pykd_ext.errors import LayoutError
from pykd_ext.layouts.pdb import cvconst as cv
from pykd_ext.layouts.pdb import tpi
from pykd_ext.layouts.pdb.msf import MsfFile
from pykd_ext.layouts.pdb.streams import (TPI_STREAM, PdbIdentity, read_dbi, read_identity,
                                          read_symbols)

ISF_FORMAT = "6.1.0"
#: a member type is at most this many pointer/array/modifier/bitfield levels deep
MAX_TYPE_DEPTH = 64
MAX_ARRAY_COUNT = 1 << 31
MAX_TYPE_SIZE = 1 << 32
#: what a kept note list may hold (conflicts, skipped members), so a hostile file cannot grow it
MAX_NOTES = 50

_UNNAMED = ("<unnamed-tag>", "__unnamed", "<unnamed-type>")
_ANONYMOUS = ("<anonymous-tag>", "__anonymous")
_VOID = {"kind": "base", "name": "void"}
#: a reference token in the identity pass: a NUL cannot occur in a name read from the file
#: (C names end at NUL; length-prefixed names have theirs replaced), so no name can forge one
_TOKEN = re.compile(r'"\\u0000#([0-9a-f]+)"')
Json = Dict[str, Any]


@dataclass
class PdbConversion:
    """The ISF document of a PDB and what the conversion noticed."""

    isf: Json
    identity: PdbIdentity
    #: type index of every converted definition -> its ISF name (user_types or enums key)
    names: Dict[int, str] = field(default_factory=dict)
    notes: List[str] = field(default_factory=list)
    stats: Dict[str, int] = field(default_factory=dict)


class _Undefined(Exception):
    """A member's type is a struct/union this PDB never defines (not a malformed file)."""


def _placeholder(name: str, index: int) -> Optional[str]:
    """The pdbconv-style name of an unnamed type, or None when the name is a real one."""
    last = name.rsplit("::", 1)[-1]
    if not name or last in _UNNAMED:
        return "__unnamed_%x" % index
    if last in _ANONYMOUS:
        return "__anonymous_%x" % index
    return None


class _Converter:
    def __init__(self, types: tpi.TypeStream, pointer_size: int, path: str) -> None:
        self.types = types
        self.pointer_size = pointer_size
        self.path = path
        self.base_types: Json = {}
        self.notes: List[str] = []
        self.stats: Dict[str, int] = {"skipped_virtual_bases": 0, "duplicate_members": 0,
                                      "conflicting_names": 0, "identical_duplicates": 0,
                                      "undefined_member_types": 0}
        self._defs: List[int] = []                      # definitions, in index order
        self._by_unique: Dict[Tuple[str, str], int] = {}
        self._by_name: Dict[Tuple[str, str], int] = {}
        self.names: Dict[int, str] = {}                 # definition index -> ISF name
        self._add_base("pointer", "int", False, pointer_size)
        self._add_base("void", "void", True, 0)

    # --- helpers -----------------------------------------------------------------------------
    def _bad(self, what: str) -> LayoutError:
        return LayoutError("malformed PDB: %s" % what, path=self.path or None)

    def _note(self, text: str) -> None:
        if len(self.notes) < MAX_NOTES:
            self.notes.append(text)

    def _add_base(self, name: str, kind: str, signed: bool, size: int) -> None:
        if name not in self.base_types:
            self.base_types[name] = {"endian": "little", "kind": kind, "signed": signed,
                                     "size": size}

    @staticmethod
    def _group(udt: tpi.Udt) -> str:
        # a `class` may be forward-declared as `struct` and the reverse: one namespace
        return "enum" if udt.kind == "enum" else ("union" if udt.kind == "union" else "struct")

    def _udt(self, index: int) -> Optional[tpi.Udt]:
        rec = self.types.get(index)
        return rec if isinstance(rec, tpi.Udt) else None

    # --- pass 1: definitions, forward-reference resolution, names ----------------------------
    def index_definitions(self) -> None:
        """Every definition in index order; a name or unique name maps to its FIRST definition.

        Why the first: that is what a forward reference means to the PDB's own TPI hash lookup
        (LLVM `TpiStream::findFullDeclForForwardRef` walks the name's hash bucket in index
        order), and real PDBs do hold several different definitions of one name (kernel PDBs
        two _KPRCB, the MSVC PDB in ../shared two _TP_CALLBACK_PRIORITY). Volatility's pdbconv
        keeps the last one instead (its dictionaries are overwritten)."""
        udt_leaves = (cv.CLASS_KINDS | cv.CLASS2_KINDS | cv.UNION_KINDS | cv.ENUM_KINDS
                      | {cv.LF_UNION2})
        for index in self.types.indices():
            if self.types.leaf(index) not in udt_leaves:
                continue
            udt = self._udt(index)
            if udt is None or udt.forward:
                continue
            self._defs.append(index)
            group = self._group(udt)
            if udt.unique_name:
                self._by_unique.setdefault((group, udt.unique_name), index)
            self._by_name.setdefault((group, udt.name), index)

    def resolve(self, index: int) -> Optional[int]:
        """The definition a struct/union/enum type index stands for (None: never defined)."""
        udt = self._udt(index)
        if udt is None:
            return None
        if not udt.forward:
            return index
        group = self._group(udt)
        if udt.unique_name:
            found = self._by_unique.get((group, udt.unique_name))
            if found is not None:
                return found
        return self._by_name.get((group, udt.name))

    def assign_names(self) -> None:
        """ISF names for every definition: the first definition of a name keeps it, a later
        identical one is the same type, a later different one gets `<name>__<index>`.

        "Identical" is decided by partition refinement over content: definitions start in
        classes by name (unnamed types all in one class per kind), and a class splits while
        its members differ in size, members, or the classes of the types they reference. So
        two copies of a struct whose unnamed members were numbered apart are one type, and
        two structs that differ only in which of two different same-named enums they use
        are two (the real MSVC PDB in ../shared has both cases)."""
        groups: Dict[Tuple[str, str], List[int]] = {}
        for index in self._defs:
            udt = self._udt(index)
            assert udt is not None
            name = _placeholder(udt.name, index) or udt.name
            self.names[index] = name
            groups.setdefault(("enum" if udt.kind == "enum" else "user", name), []).append(index)
        conflicting = [members for members in groups.values() if len(members) > 1]
        if not conflicting:
            return
        classes = self._identity_classes([i for members in conflicting for i in members])
        renamed: Dict[int, str] = {}
        for members in conflicting:
            first_of: Dict[int, int] = {}
            for index in members:
                first = first_of.setdefault(classes[index], index)
                if first != index:
                    renamed[index] = renamed.get(first, self.names[first])
                    self.stats["identical_duplicates"] += 1
                elif index != members[0]:
                    renamed[index] = "%s__%x" % (self.names[index], index)
                    self.stats["conflicting_names"] += 1
                    self._note("%s: a later, different definition (type 0x%x) is kept as %s"
                               % (self.names[index], index, renamed[index]))
        self.names.update(renamed)

    def _identity_classes(self, roots: List[int]) -> Dict[int, int]:
        """Definition index -> content class (see assign_names), for `roots` and every
        definition they reach; bounded rounds."""
        # convert with a token per definition instead of names, quietly (the real pass notes)
        saved = (self.names, dict(self.stats), list(self.notes))
        self.names = {index: "\x00#%x" % index for index in self._defs}
        bodies: Dict[int, Tuple[str, List[int]]] = {}
        pending = list(roots)
        while pending:
            index = pending.pop()
            if index in bodies:
                continue
            udt = self._udt(index)
            assert udt is not None
            body = self.convert_enum(index) if udt.kind == "enum" else self.convert_record(index)
            text = json.dumps(body, sort_keys=True)
            refs = [int(tok, 16) for tok in _TOKEN.findall(text)]
            start = ("enum" if udt.kind == "enum" else "user",
                     "" if _placeholder(udt.name, index) else udt.name)
            bodies[index] = (json.dumps(start) + _TOKEN.sub("#", text), refs)
            pending.extend(r for r in refs if r not in bodies)
        self.names, self.stats, self.notes = saved
        labels: Dict[Any, int] = {}
        classes = {i: labels.setdefault(text, len(labels)) for i, (text, _refs) in bodies.items()}
        for _ in range(MAX_TYPE_DEPTH):
            labels = {}
            refined = {i: labels.setdefault((classes[i], tuple(classes.get(r, -1) for r in refs)),
                                            len(labels))
                       for i, (_text, refs) in bodies.items()}
            stable = len(labels) == len(set(classes.values()))
            classes = refined
            if stable:
                break
        return classes

    # --- sizes and member types --------------------------------------------------------------
    def _simple(self, index: int) -> Json:
        mode, kind = index & cv.SIMPLE_MODE_MASK, index & cv.SIMPLE_KIND_MASK
        spec = cv.PRIMITIVES.get(kind)
        if spec is None or index & ~0x7FF:
            raise self._bad("unknown primitive type 0x%x" % index)
        name, bkind, signed, size = spec
        self._add_base(name, bkind, signed, size)
        base: Json = {"kind": "base", "name": name}
        if mode:
            psize = cv.SIMPLE_POINTER_SIZES.get(mode)
            if psize is None:
                raise self._bad("unknown pointer mode in primitive type 0x%x" % index)
            return self._pointer_to(base, psize)
        return base

    def _record(self, index: int) -> tpi.Record:
        if not self.types.valid(index):
            raise self._bad("type index 0x%x is not in the type stream" % index)
        return self.types.get(index)

    def _pointer_to(self, target: Json, size: int) -> Json:
        out: Json = {"kind": "pointer", "subtype": target}
        if size != self.pointer_size:
            bname = "pointer%d" % (size * 8)
            self._add_base(bname, "int", False, size)
            out["base"] = bname
        return out

    def size_of(self, index: int) -> int:
        """Bytes a value of this type occupies (iterative over modifiers and typedef-like hops)."""
        for _ in range(MAX_TYPE_DEPTH):
            if index < cv.FIRST_NON_SIMPLE:
                simple = self._simple(index)
                if simple["kind"] == "pointer":
                    return int(self.base_types[simple.get("base", "pointer")]["size"])
                return int(self.base_types[simple["name"]]["size"])
            rec = self._record(index)
            if isinstance(rec, tpi.Modifier):
                index = rec.referent
            elif isinstance(rec, tpi.Pointer):
                return self._pointer_size(rec, index)
            elif isinstance(rec, tpi.ArrayType):
                return rec.size
            elif isinstance(rec, tpi.Bitfield):
                index = rec.base
            elif isinstance(rec, tpi.Udt):
                target = self.resolve(index)
                if target is None:
                    if rec.kind == "enum" and rec.underlying:
                        index = rec.underlying
                        continue
                    raise self._bad("type 0x%x (%s) has no definition" % (index, rec.name))
                udt = self._udt(target)
                assert udt is not None
                if udt.kind == "enum":
                    index = udt.underlying
                    continue
                return udt.size
            else:
                raise self._bad("type 0x%x (leaf 0x%04x) has no size" % (index, _leaf(rec)))
        raise self._bad("type 0x%x is nested more than %d levels" % (index, MAX_TYPE_DEPTH))

    def _pointer_size(self, rec: tpi.Pointer, index: int) -> int:
        size = rec.size
        if not size:
            kind = rec.attrs & cv.PTR_KIND_MASK
            size = 8 if kind == cv.PTR_KIND_64 else (4 if kind == cv.PTR_KIND_NEAR32 else self.pointer_size)
        if size > 32:
            raise self._bad("pointer 0x%x of %d bytes" % (index, size))
        return size

    def describe(self, index: int) -> Json:
        """The ISF type of a member: built inside-out after walking the chain iteratively."""
        wrappers: List[Tuple[str, Any]] = []
        start = index
        inner: Optional[Json] = None
        for _ in range(MAX_TYPE_DEPTH):
            if index < cv.FIRST_NON_SIMPLE:
                inner = self._simple(index)
                break
            rec = self._record(index)
            if isinstance(rec, tpi.Modifier):
                index = rec.referent
            elif isinstance(rec, tpi.Pointer):
                size = self._pointer_size(rec, index)
                if rec.mode in (cv.PTR_MODE_DATA_MEMBER, cv.PTR_MODE_MEMBER_FUNCTION) \
                        and size != self.pointer_size:
                    # a member pointer is an offset or a (code, adjustor...) tuple: bytes
                    self._add_base("unsigned char", "char", False, 1)
                    inner = {"kind": "array", "count": size,
                             "subtype": {"kind": "base", "name": "unsigned char"}}
                    break
                wrappers.append(("pointer", size))
                index = rec.referent
            elif isinstance(rec, tpi.ArrayType):
                wrappers.append(("array", self._count(rec, index)))
                index = rec.element
            elif isinstance(rec, tpi.Bitfield):
                wrappers.append(("bitfield", rec))
                index = rec.base
            elif isinstance(rec, tpi.Function):
                inner = {"kind": "function"}
                break
            elif isinstance(rec, tpi.Udt):
                inner = self._udt_reference(index, rec, bool(wrappers) and wrappers[-1][0] == "pointer")
                break
            else:
                raise self._bad("type 0x%x used by a member is a leaf 0x%04x record"
                                % (index, _leaf(rec)))
        else:
            raise self._bad("type 0x%x is nested more than %d levels" % (start, MAX_TYPE_DEPTH))
        assert inner is not None
        for kind, arg in reversed(wrappers):
            if kind == "pointer":
                inner = self._pointer_to(inner, arg)
            elif kind == "array":
                inner = {"kind": "array", "count": arg, "subtype": inner}
            else:
                inner = self._bitfield(arg, inner)
        return inner

    def _udt_reference(self, index: int, rec: tpi.Udt, via_pointer: bool) -> Json:
        target = self.resolve(index)
        kind = "struct" if rec.kind == "class" else rec.kind
        if target is not None:
            return {"kind": kind, "name": self.names.get(target, rec.name)}
        if rec.kind == "enum" and 0 < rec.underlying < cv.FIRST_NON_SIMPLE and not via_pointer:
            # an opaque enum (`enum class E : int;`) used by value: its underlying integer
            return self._simple(rec.underlying)
        if via_pointer:
            # a pointer to a type this PDB never defines (an opaque handle): name only
            return {"kind": kind, "name": _placeholder(rec.name, index) or rec.name}
        raise self._bad_ref(index, rec)

    @staticmethod
    def _bad_ref(index: int, rec: tpi.Udt) -> "_Undefined":
        return _Undefined("type 0x%x (%s %s) is used by value but never defined"
                          % (index, rec.kind, rec.name))

    def _count(self, rec: tpi.ArrayType, index: int) -> int:
        if rec.size == 0:
            return 0
        elem = rec.stride or self.size_of(rec.element)
        if elem <= 0:
            raise self._bad("array 0x%x of %d bytes has elements of size 0" % (index, rec.size))
        count = rec.size // elem
        if count > MAX_ARRAY_COUNT:
            raise self._bad("array 0x%x of %d elements" % (index, count))
        return count

    def _bitfield(self, rec: tpi.Bitfield, inner: Json) -> Json:
        storage = self.size_of(rec.base)
        if not (0 < rec.length <= 64 and rec.position < 64 and 0 < storage <= 8
                and rec.position + rec.length <= storage * 8):
            raise self._bad("bitfield at bit %d of %d bits in a %d-byte field"
                            % (rec.position, rec.length, storage))
        return {"kind": "bitfield", "bit_position": rec.position, "bit_length": rec.length,
                "type": inner}

    # --- definitions -------------------------------------------------------------------------
    def convert_record(self, index: int) -> Json:
        udt = self._udt(index)
        assert udt is not None
        where = "type 0x%x (%s)" % (index, udt.name)
        if udt.size > MAX_TYPE_SIZE:
            raise self._bad("%s: size %d" % (where, udt.size))
        fields: Json = {}
        members = tpi.field_members(self.types, udt.field_list, where) if udt.field_list else []
        for ordinal, m in enumerate(members):
            try:
                entry = self._data_member(m, ordinal)
            except _Undefined as err:
                # real MSVC PDBs hold such members (types defined only in another PDB or
                # never emitted); the other members' offsets stay right without them
                self.stats["undefined_member_types"] += 1
                self._note("%s: member %s left out: %s" % (where, m.name or "?", err))
                continue
            if entry is None:
                continue
            name, offset, mtype = entry
            if not 0 <= offset <= udt.size:
                raise self._bad("%s: member %s at offset %d outside its %d bytes"
                                % (where, name, offset, udt.size))
            if name in fields:
                self.stats["duplicate_members"] += 1
                self._note("%s: second member named %s dropped" % (where, name))
                continue
            fields[name] = {"offset": offset, "type": mtype}
        return {"kind": "union" if udt.kind == "union" else "struct", "size": udt.size,
                "fields": fields}

    def _data_member(self, m: tpi.Member, ordinal: int) -> Optional[Tuple[str, int, Json]]:
        """(name, offset, ISF type) of a field-list entry that occupies bytes, else None."""
        if m.kind in (cv.LF_MEMBER, cv.LF_MEMBER_ST):
            return m.name or "__unnamed_member_%d" % ordinal, m.value, self.describe(m.type)
        if m.kind in (cv.LF_BCLASS, cv.LF_BINTERFACE):
            base = self.describe(m.type)
            return str(base.get("name", "__base_%d" % ordinal)), m.value, base
        if m.kind == cv.LF_VFUNCTAB:
            return "__VFN_table", 0, self._pointer_to(dict(_VOID), self.pointer_size)
        if m.kind in (cv.LF_VBCLASS, cv.LF_IVBCLASS):
            self.stats["skipped_virtual_bases"] += 1
        return None

    def convert_enum(self, index: int) -> Json:
        udt = self._udt(index)
        assert udt is not None
        where = "enum 0x%x (%s)" % (index, udt.name)
        underlying = udt.underlying
        if underlying >= cv.FIRST_NON_SIMPLE or underlying & cv.SIMPLE_MODE_MASK \
                or (underlying & cv.SIMPLE_KIND_MASK) not in cv.PRIMITIVES:
            raise self._bad("%s: underlying type 0x%x is not an integer type" % (where, underlying))
        base = self._simple(underlying)
        bname, bkind, signed, size = cv.PRIMITIVES[underlying & cv.SIMPLE_KIND_MASK]
        if bkind not in ("int", "char", "bool") or not 0 < size <= 8:
            raise self._bad("%s: underlying type %s" % (where, bname))
        bits = size * 8
        constants: Json = {}
        members = tpi.field_members(self.types, udt.field_list, where) if udt.field_list else []
        for m in members:
            if m.kind not in (cv.LF_ENUMERATE, cv.LF_ENUMERATE_ST):
                continue
            value = m.value & ((1 << bits) - 1)
            if signed and value >> (bits - 1):
                value -= 1 << bits
            constants.setdefault(m.name, value)
        return {"base": base["name"], "size": size, "constants": constants}


def _leaf(rec: object) -> int:
    return int(getattr(rec, "leaf", 0))


def convert_pdb(path: str, database: Optional[str] = None) -> PdbConversion:
    """Read a PDB file and convert it to an ISF document (see the module docstring).

    `database` is the PDB's file name as the executable names it (default: the file's name).
    Raises LayoutError (one line) for anything that is not a well-formed MSF 7.0 PDB.
    """
    with MsfFile(path) as msf:
        dbi = read_dbi(msf)
        identity = read_identity(msf, dbi)
        machine = identity.machine
        pointer_size = cv.MACHINE_POINTER_SIZE.get(machine or 0, 0)
        types = tpi.TypeStream(msf.stream(TPI_STREAM, "TPI stream"), path)
        if not pointer_size:
            pointer_size = _guess_pointer_size(types)
        conv = _Converter(types, pointer_size, path)
        conv.index_definitions()
        conv.assign_names()
        user_types: Json = {}
        enums: Json = {}
        for index in conv._defs:
            name = conv.names[index]
            udt = conv._udt(index)
            assert udt is not None
            target = enums if udt.kind == "enum" else user_types
            if name in target:
                continue              # an identical duplicate definition
            target[name] = conv.convert_enum(index) if udt.kind == "enum" else conv.convert_record(index)
        symbols: Json = {}
        if dbi is not None:
            for name, (rva, linkage) in sorted(read_symbols(msf, dbi).items()):
                entry: Json = {"address": rva}
                if linkage != name:
                    entry["linkage_name"] = linkage
                symbols[name] = entry
    pdb_meta: Json = {"GUID": identity.guid, "age": identity.age,
                      "database": database or os.path.basename(path)}
    if machine is not None:
        pdb_meta["machine_type"] = machine
    isf = {
        "metadata": {"format": ISF_FORMAT, "producer": {"name": "pykd-ext", "version": "1"},
                     "windows": {"pdb": pdb_meta}},
        "base_types": dict(sorted(conv.base_types.items())),
        "user_types": user_types,
        "enums": enums,
        "symbols": symbols,
    }
    stats = dict(conv.stats)
    stats.update(types=len(types), user_types=len(user_types), enums=len(enums),
                 symbols=len(symbols))
    return PdbConversion(isf=isf, identity=identity, names=dict(conv.names), notes=conv.notes,
                         stats=stats)


def _guess_pointer_size(types: tpi.TypeStream) -> int:
    """Without a DBI machine type: the size the first sized pointer record gives (else 8)."""
    for index in types.indices():
        if types.leaf(index) == cv.LF_POINTER:
            rec = types.get(index)
            if isinstance(rec, tpi.Pointer) and rec.size in (4, 8):
                return rec.size
    return 8


def pdb_to_isf(path: str, database: Optional[str] = None) -> Json:
    """The Volatility-ISF dictionary of a PDB file (the seam for `isf.load_isf`)."""
    return convert_pdb(path, database).isf
