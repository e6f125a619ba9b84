"""The runtime layout model: offset tables and precompiled field readers, compiled from construct.

Why: walkers touch a few fields of many structures. Parsing a whole `_EPROCESS` with construct
costs milliseconds; reading one field from a buffer we already hold should cost about a
microsecond. So a `TypeLayout` is compiled once per construct `Record` (by introspecting its
`At` members: offsets, sizes, formats, bit positions) and hands out `reader(path)` closures that
do a single `struct.unpack_from` (+ shift/mask for bitfields). The construct objects in `structs/`
stay the single source; nothing here reads an ISF.

Public API (other modules code against exactly this): `KernelLayouts`, `TypeLayout`,
`FieldLayout`, `EnumLayout`.
"""
import struct as _struct
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Tuple

from construct import Array, Construct

from pykd_ext.errors import MissingLayoutError
from pykd_ext.layouts.cons import Base, Bits, EnumDef, FuncType, Ptr, Record

Reader = Callable[..., Any]

#: WinDbg spellings of base types by (ISF kind, size, signed)
_WINDBG_BASE = {
    ("char", 1, True): "Char", ("char", 1, False): "UChar",
    ("int", 1, True): "Char", ("int", 1, False): "UChar",
    ("int", 2, True): "Int2B", ("int", 2, False): "Uint2B",
    ("int", 4, True): "Int4B", ("int", 4, False): "Uint4B",
    ("int", 8, True): "Int8B", ("int", 8, False): "Uint8B",
    ("float", 4, True): "Float", ("float", 8, True): "Double",
    ("bool", 1, False): "UChar", ("bool", 1, True): "UChar",
}


def windbg_base(base: Base) -> str:
    if base.isf_name == "wchar":
        return "Wchar"
    if base.kind == "void" or base.size == 0:
        return "Void"
    return _WINDBG_BASE.get((base.kind, base.size, base.signed), base.isf_name)


class FieldLayout:
    """One member (or a dotted path's final member): where it is and what it is.

    `offset` is relative to the type the field was asked from (absolute for dotted paths).
    """

    __slots__ = ("name", "offset", "size", "kind", "type_name", "bit_position", "bit_length",
                 "count", "element", "signed", "subcon", "pointer_size", "target_kind", "depth")

    def __init__(self, name: str, offset: int, subcon: Construct) -> None:
        self.name = name
        self.offset = offset
        self.subcon = subcon
        self.bit_position: Optional[int] = None
        self.bit_length: Optional[int] = None
        self.count: Optional[int] = None
        self.element: Optional["FieldLayout"] = None
        self.signed = False
        self.pointer_size = 0
        self.target_kind = ""
        self.depth = 0
        if isinstance(subcon, Record):
            self.kind, self.type_name, self.size = subcon.kind, subcon.type_name, subcon.size
        elif isinstance(subcon, Ptr):
            self.kind, self.type_name, self.size = "pointer", subcon.target, subcon.size
            self.pointer_size, self.target_kind, self.depth = subcon.size, subcon.target_kind, subcon.depth
        elif isinstance(subcon, Bits):
            self.kind, self.size = "bitfield", subcon.storage.size
            self.bit_position, self.bit_length = subcon.position, subcon.length
            storage = subcon.storage
            self.type_name = storage.enum_name if isinstance(storage, EnumDef) else storage.isf_name
            self.signed = bool(getattr(_storage_base(storage), "signed", False))
        elif isinstance(subcon, EnumDef):
            self.kind, self.type_name, self.size = "enum", subcon.enum_name, subcon.subcon.size
            self.signed = subcon.subcon.signed
        elif isinstance(subcon, Base):
            self.kind, self.type_name, self.size = "base", subcon.isf_name, subcon.size
            self.signed = subcon.signed
        elif isinstance(subcon, Array):
            self.element = FieldLayout(name, offset, subcon.subcon)
            self.kind, self.count = "array", int(subcon.count)
            self.type_name = self.element.type_name
            self.size = self.count * self.element.size
        elif isinstance(subcon, FuncType):
            self.kind, self.type_name, self.size = "function", "<function>", 0
        else:
            raise MissingLayoutError("unsupported member %r (%r)" % (name, subcon))

    def moved(self, offset: int, name: Optional[str] = None) -> "FieldLayout":
        """The same member seen at another offset (dotted paths, array elements)."""
        return FieldLayout(name or self.name, offset, self.subcon)

    @property
    def record(self) -> Optional[Record]:
        return self.subcon if isinstance(self.subcon, Record) else None

    def windbg_type(self) -> str:
        """WinDbg `dt` spelling: `Ptr64 _EPROCESS`, `Uint4B`, `[15] UChar`, `Pos 0, 1 Bit`."""
        sub = self.subcon
        if self.kind == "bitfield":
            assert self.bit_position is not None and self.bit_length is not None
            return "Pos %d, %d Bit%s" % (self.bit_position, self.bit_length, "" if self.bit_length == 1 else "s")
        if self.kind == "array":
            assert self.count is not None and self.element is not None
            return "[%d] %s" % (self.count, self.element.windbg_type())
        if self.kind == "pointer":
            prefix = "Ptr%d " % (self.pointer_size * 8)
            if self.target_kind == "function":
                inner = "    void "
            elif self.target_kind == "base":
                inner = "Void" if self.type_name == "void" else _base_spelling(self.type_name, sub)
            else:
                inner = self.type_name
            return prefix * (self.depth + 1) + inner
        if self.kind == "base":
            return windbg_base(sub)
        if self.kind == "function":
            return "void "
        return self.type_name

    def __repr__(self) -> str:
        return "FieldLayout(%s +0x%x %s)" % (self.name, self.offset, self.windbg_type())


def _storage_base(storage: Construct) -> Any:
    return storage.subcon if isinstance(storage, EnumDef) else storage


def _base_spelling(isf_name: str, ptr: Construct) -> str:
    # a pointer's pointee base type: spelled like the base type of that name
    sizes = {"char": (1, True, "char"), "unsigned char": (1, False, "char"), "short": (2, True, "int"),
             "unsigned short": (2, False, "int"), "wchar": (2, True, "int"), "int": (4, True, "int"),
             "unsigned int": (4, False, "int"), "long": (4, True, "int"), "unsigned long": (4, False, "int"),
             "long long": (8, True, "int"), "unsigned long long": (8, False, "int"),
             "double": (8, True, "float"), "float": (4, True, "float")}
    if isf_name == "wchar":
        return "Wchar"
    if isf_name in sizes:
        size, signed, kind = sizes[isf_name]
        return _WINDBG_BASE.get((kind, size, signed), isf_name)
    return isf_name


class EnumLayout:
    """An enum: value <-> name."""

    def __init__(self, definition: EnumDef) -> None:
        self.name = definition.enum_name
        self.size = definition.subcon.size
        self._by_name = dict(definition.constants)
        self._by_value: Dict[int, str] = {}
        for cname, value in definition.constants.items():
            self._by_value.setdefault(value, cname)

    def name_of(self, value: int) -> Optional[str]:
        return self._by_value.get(value)

    def names_by_value(self) -> Dict[int, str]:
        """The value -> name table itself (callers keep it for repeated lookups; do not modify)."""
        return self._by_value

    def value_of(self, name: str) -> int:
        try:
            return self._by_name[name]
        except KeyError:
            raise MissingLayoutError("enum %s has no constant %s" % (self.name, name)) from None

    def items(self) -> List[Tuple[str, int]]:
        return sorted(self._by_name.items(), key=lambda kv: (kv[1], kv[0]))


def _make_reader(fl: FieldLayout) -> Reader:
    """A closure reader(buf, base_offset=0) for one field at fl.offset."""
    off = fl.offset
    sub = fl.subcon
    if fl.kind in ("base", "pointer", "enum"):
        scalar = sub.subcon if isinstance(sub, EnumDef) else sub
        if not scalar.fmt:
            return lambda buf, base=0: None
        unpack = _struct.Struct("<" + scalar.fmt).unpack_from

        def read_scalar(buf: Any, base: int = 0, _u: Any = unpack, _o: int = off) -> Any:
            return _u(buf, base + _o)[0]
        return read_scalar
    if fl.kind == "bitfield":
        storage = _storage_base(sub.storage)
        unpack = _struct.Struct("<" + _INT_UNSIGNED[storage.size]).unpack_from
        shift, mask = sub.position, sub.mask

        def read_bits(buf: Any, base: int = 0, _u: Any = unpack, _o: int = off, _s: int = shift, _m: int = mask) -> int:
            return (_u(buf, base + _o)[0] >> _s) & _m
        return read_bits
    size = fl.size

    def read_bytes(buf: Any, base: int = 0, _o: int = off, _n: int = size) -> bytes:
        start = base + _o
        data = bytes(buf[start:start + _n])
        if len(data) != _n:
            raise _struct.error("buffer too short for %d bytes at %d" % (_n, start))
        return data
    return read_bytes


_INT_UNSIGNED = {1: "B", 2: "H", 4: "I", 8: "Q"}


def field_reader(fl: FieldLayout) -> Reader:
    """A precompiled reader(buf, base_offset=0) for a FieldLayout at its own offset."""
    return _make_reader(fl)


class MemberFields(Mapping[str, FieldLayout]):
    """A type's members by PDB name, in offset order, each `FieldLayout` made when first asked for.

    Why lazily: a command reads a few dozen fields of types with hundreds of members (`_EPROCESS`
    has ~250); describing every member of every type it touches was a millisecond of each run."""

    __slots__ = ("_members", "_made")

    def __init__(self, record: Record) -> None:
        self._members: Dict[str, Any] = {member.name: member for member in record.fields}
        self._made: Dict[str, FieldLayout] = {}

    def __getitem__(self, name: str) -> FieldLayout:
        found = self._made.get(name)
        if found is None:
            at = self._members[name].subcon          # KeyError: no such member
            found = self._made[name] = FieldLayout(name, at.offset, at.subcon)
        return found

    def __contains__(self, name: object) -> bool:
        return name in self._members

    def __iter__(self) -> Iterator[str]:
        return iter(self._members)

    def __len__(self) -> int:
        return len(self._members)


class TypeLayout:
    """A struct/union compiled from its construct `Record`: members by PDB name, in offset order."""

    def __init__(self, record: Record) -> None:
        self.record = record
        self.name = record.type_name
        self.size = record.size
        self.kind = record.kind
        self.variant = record.variant
        self.digest = record.digest
        self.fields: Mapping[str, FieldLayout] = MemberFields(record)
        self._paths: Dict[str, FieldLayout] = {}
        self._readers: Dict[str, Reader] = {}
        #: path -> (end offset, reader), or None when this layout has no such field: what a
        #: `StructView` needs per field access; shared by every view of this type (hot path)
        self.accessors: Dict[str, Optional[Tuple[int, Reader]]] = {}

    def __repr__(self) -> str:
        return "TypeLayout(%s, 0x%x, %s)" % (self.name, self.size, self.variant)

    def field(self, path: str) -> FieldLayout:
        """The member at a dotted path (`Pcb.DirectoryTableBase`, `ImageFileName[2]`), absolute offset."""
        found = self._paths.get(path)
        if found is None:
            found = self._resolve(path)
            self._paths[path] = found
        return found

    def _resolve(self, path: str) -> FieldLayout:
        current: TypeLayout = self
        offset = 0
        parts = path.split(".")
        result: Optional[FieldLayout] = None
        for i, part in enumerate(parts):
            name, index = part, None
            if part.endswith("]") and "[" in part:
                name, _, idx = part[:-1].partition("[")
                try:
                    index = int(idx, 0)
                except ValueError:
                    raise MissingLayoutError("bad index in %s.%s" % (self.name, path)) from None
            fl = current.fields.get(name)
            if fl is None:
                raise MissingLayoutError("%s has no field %s (in %s.%s, layout %s)"
                                         % (current.name, name, self.name, path, self.variant))
            offset += fl.offset
            if index is not None:
                if fl.kind != "array" or not 0 <= index < (fl.count or 0):
                    raise MissingLayoutError("%s.%s: index %d out of range" % (self.name, path, index))
                elem = fl.element
                assert elem is not None                # an array (checked just above) has one
                offset += index * elem.size
                fl = elem.moved(0, "%s[%d]" % (name, index))
            result = fl.moved(offset)
            if i < len(parts) - 1:
                if fl.record is None:
                    raise MissingLayoutError("%s.%s: %s is not a struct" % (self.name, path, part))
                current = compile_record(fl.record)
        assert result is not None
        return result

    def accessor(self, path: str) -> Optional[Tuple[int, Reader]]:
        """(end offset, reader) of a field, or None when this layout has no such field (cached)."""
        try:
            return self.accessors[path]
        except KeyError:
            pass
        try:
            fl = self.field(path)
            found: Optional[Tuple[int, Reader]] = (fl.offset + max(fl.size, 1), self.reader(path))
        except MissingLayoutError:
            found = None
        self.accessors[path] = found
        return found

    def has_field(self, path: str) -> bool:
        return self.accessor(path) is not None

    def offset(self, path: str) -> int:
        return self.field(path).offset

    def reader(self, path: str) -> Reader:
        """reader(buf, base_offset=0) -> int/bool/bytes; bitfields shifted+masked; pointers as int."""
        found = self._readers.get(path)
        if found is None:
            found = _make_reader(self.field(path))
            self._readers[path] = found
        return found

    def read(self, buf: Any, path: str, base: int = 0) -> Any:
        return self.reader(path)(buf, base)

    def parse(self, data: bytes) -> Any:
        """Full construct parse (display, tests): a Container of every member."""
        return self.record.parse(bytes(data[:self.size]))

    def walk(self) -> Iterator[FieldLayout]:
        return iter(self.fields.values())


def compile_record(record: Record) -> TypeLayout:
    """The TypeLayout of a Record, compiled once and cached on the (shared) Record object."""
    compiled = record.__dict__.get("_compiled")
    if compiled is None:
        compiled = TypeLayout(record)
        record.__dict__["_compiled"] = compiled
    return compiled


class KernelLayouts:
    """All layouts of one kernel build (see the module docstring and `registry`)."""

    def __init__(self, entry: Any, table: Dict[str, Any], symbols: Dict[str, int]) -> None:
        self.entry = entry
        self.build_id: str = entry.build_id
        self.version: str = entry.version
        self.build: int = entry.build
        self.guid: Optional[str] = entry.guid
        self.age: Optional[int] = entry.age
        self.arch: str = entry.arch
        self.pointer_size: int = entry.pointer_size
        self.source: str = entry.source
        self.types_only: bool = entry.types_only or not symbols
        self._table = table
        self._symbols = dict(symbols)
        #: how this layout was chosen for a target: method, warnings, candidates (select.py)
        self.choice: Dict[str, Any] = {"method": "explicit", "warnings": [], "candidates": []}

    def __repr__(self) -> str:
        return "KernelLayouts(%s)" % self.label

    @property
    def label(self) -> str:
        """What decoded a row: `10.0.19041.1288 (GUID-age)`."""
        if self.guid:
            return "%s (%s-%s)" % (self.version or self.build_id, self.guid, self.age)
        return "%s (%s)" % (self.build_id, self.source)

    def ident(self) -> Dict[str, Any]:
        return {"build_id": self.build_id, "version": self.version, "guid": self.guid, "age": self.age,
                "arch": self.arch, "source": self.source, "method": self.choice.get("method")}

    def type_names(self) -> List[str]:
        return sorted(n for n, v in self._table.items() if isinstance(v, Record))

    def enum_names(self) -> List[str]:
        return sorted(n for n, v in self._table.items() if isinstance(v, EnumDef))

    def symbol_names(self) -> List[str]:
        return sorted(self._symbols)

    def type(self, name: str) -> TypeLayout:
        rec = self._table.get(name)
        if not isinstance(rec, Record):
            raise MissingLayoutError("layout %s has no type %s" % (self.label, name))
        return compile_record(rec)

    def has_type(self, name: str) -> bool:
        return isinstance(self._table.get(name), Record)

    def enum(self, name: str) -> EnumLayout:
        en = self._table.get(name)
        if not isinstance(en, EnumDef):
            raise MissingLayoutError("layout %s has no enum %s" % (self.label, name))
        cached = en.__dict__.get("_compiled")
        if cached is None:
            cached = EnumLayout(en)
            en.__dict__["_compiled"] = cached
        return cached

    def has_enum(self, name: str) -> bool:
        return isinstance(self._table.get(name), EnumDef)

    def symbol_rva(self, name: str) -> int:
        try:
            return self._symbols[name]
        except KeyError:
            why = " (types-only layout: no symbol addresses)" if self.types_only else ""
            raise MissingLayoutError("layout %s has no global %s%s" % (self.label, name, why)) from None

    def has_symbol(self, name: str) -> bool:
        return name in self._symbols

    def construct(self, name: str) -> Construct:
        """The construct object (Record or EnumDef) for display and tests."""
        obj = self._table.get(name)
        if obj is None:
            raise MissingLayoutError("layout %s has no type %s" % (self.label, name))
        return obj

    def sizeof(self, name: str) -> int:
        return self.type(name).size
