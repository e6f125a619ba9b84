"""The small construct vocabulary the generated `structs/` modules are written in.

Why not plain `construct.Struct`: a kernel structure is a set of members at *fixed offsets* with
unions, overlapping bitfields and padding the PDB does not name. `construct.Struct` lays members
out sequentially, so a PDB layout would need Padding/Union gymnastics that hide the offsets a
reader wants to see. Instead every member is `"Name" / At(offset, subcon)` inside a `Record` of a
known size: one line per member, the offset visible, and parse/build still work.

The runtime (`pykd_ext.layouts.model`) compiles its precomputed offset/format tables by
introspecting these objects (`Record.fields`, `At.offset`, `Base.fmt`, `Bits.position`, ...), so
the generated construct definitions are the single source of every layout.
"""
import struct as _struct
from typing import Any, Callable, Dict, Iterable, Optional, Tuple

from construct import Array, Construct, Container, Renamed, Subconstruct, SizeofError
from construct.core import stream_read, stream_seek, stream_tell, stream_write

_new_renamed = object.__new__

__all__ = ["Base", "Ptr", "Bits", "EnumDef", "At", "Record", "Array", "FuncType"]

#: struct-module format characters by (kind, size, signed)
_INT_FORMATS = {(1, False): "B", (1, True): "b", (2, False): "H", (2, True): "h",
                (4, False): "I", (4, True): "i", (8, False): "Q", (8, True): "q"}
_FLOAT_FORMATS = {4: "f", 8: "d"}


def _format_for(kind: str, size: int, signed: bool) -> str:
    if kind == "float":
        return _FLOAT_FORMATS[size]
    if size == 0:
        return ""
    return _INT_FORMATS[(size, signed)]


class Scalar(Construct):
    """A little-endian scalar at the stream position (base type, pointer)."""

    def __init__(self, size: int, fmt: str) -> None:
        super().__init__()
        self.size = size
        self.fmt = fmt                       # struct-module character ("" for void)
        self._packer = _struct.Struct("<" + fmt) if fmt else None

    def _parse(self, stream: Any, context: Any, path: str) -> Any:
        if self._packer is None:
            return None
        return self._packer.unpack(stream_read(stream, self.size, path))[0]

    def _build(self, obj: Any, stream: Any, context: Any, path: str) -> Any:
        if self._packer is not None:
            stream_write(stream, self._packer.pack(obj if obj is not None else 0), self.size, path)
        return obj

    def _sizeof(self, context: Any, path: str) -> int:
        return self.size


class Base(Scalar):
    """A base type of the ISF (`unsigned long`, `wchar`, ...), with its signedness and kind."""

    def __init__(self, isf_name: str, size: int, signed: bool, kind: str = "int") -> None:
        super().__init__(size, _format_for(kind, size, signed))
        self.isf_name = isf_name
        self.signed = signed
        self.kind = kind                     # ISF base kind: int, char, float, bool, void

    def __repr__(self) -> str:
        return "Base(%r)" % self.isf_name


class Ptr(Scalar):
    """A pointer: an unsigned integer of the target's pointer size, carrying the pointee's name.

    `target` is the pointee type name (`_EPROCESS`, `void`, `<function>`, `<unnamed-tag>`),
    `target_kind` its ISF kind (struct, union, base, function, pointer, enum, array), `depth` the
    number of extra indirections (`Ptr64 Ptr64 Void` has depth 1).
    """

    def __init__(self, target: str, size: int = 8, target_kind: str = "struct", depth: int = 0) -> None:
        super().__init__(size, "Q" if size == 8 else "I")
        self.target = target
        self.target_kind = target_kind
        self.depth = depth

    def __repr__(self) -> str:
        return "Ptr(%r)" % self.target


class FuncType(Construct):
    """A member whose type is a function (never stored by value; kept so the PDB member exists)."""

    def _parse(self, stream: Any, context: Any, path: str) -> Any:
        return None

    def _build(self, obj: Any, stream: Any, context: Any, path: str) -> Any:
        return obj

    def _sizeof(self, context: Any, path: str) -> int:
        return 0


class Bits(Construct):
    """A bitfield: `length` bits from bit `position` of a `storage` base type (unsigned result)."""

    def __init__(self, position: int, length: int, storage: Base) -> None:
        super().__init__()
        self.position = position
        self.length = length
        self.storage = storage
        self.mask = (1 << length) - 1

    def _parse(self, stream: Any, context: Any, path: str) -> int:
        raw = stream_read(stream, self.storage.size, path)
        return (int.from_bytes(raw, "little") >> self.position) & self.mask

    def _build(self, obj: Any, stream: Any, context: Any, path: str) -> Any:
        # read-modify-write: sibling bitfields share the storage unit
        size = self.storage.size
        where = stream_tell(stream, path)
        current = int.from_bytes(stream_read(stream, size, path), "little")
        value = (current & ~(self.mask << self.position)) | ((int(obj or 0) & self.mask) << self.position)
        stream_seek(stream, where, 0, path)
        stream_write(stream, value.to_bytes(size, "little"), size, path)
        return obj

    def _sizeof(self, context: Any, path: str) -> int:
        return self.storage.size


class EnumDef(Subconstruct):
    """An enum type: its storage base type and its constants (name -> value). Parses to int."""

    def __init__(self, enum_name: str, storage: Base, constants: Dict[str, int]) -> None:
        super().__init__(storage)
        self.enum_name = enum_name
        self.constants = dict(constants)

    def __repr__(self) -> str:
        return "EnumDef(%r)" % self.enum_name


class At(Subconstruct):
    """A member at a fixed `offset` from the start of the enclosing `Record`.

    Construction is the start-up cost of a generated layout module (one `"Name" / At(...)` per
    member, ~5,900 in one build module, paid by every `!py` command): construct's generic
    `Subconstruct.__init__` -> `Construct.__init__` chain and its `__rtruediv__` -> `Renamed`
    chain cost ~2 us per member. Both are done here directly, setting exactly the attributes
    construct 2.10's `Construct.__init__`/`Subconstruct.__init__`/`Renamed.__init__` set (name,
    docs, flagbuildnone, parsed, subcon), so parse/build/sizeof behave the same.
    """

    def __init__(self, offset: int, subcon: Construct) -> None:
        if not isinstance(subcon, Construct):
            raise TypeError("subcon should be a Construct field")
        self.name = None
        self.docs = ""
        self.parsed = None
        self.flagbuildnone = subcon.flagbuildnone
        self.subcon = subcon
        self.offset = offset

    def __rtruediv__(self, name: Any) -> Renamed:
        """`"Name" / At(...)`: the construct `Renamed` member, made without the init chain."""
        if not isinstance(name, str) or not name:
            return super().__rtruediv__(name)
        member = _new_renamed(Renamed)
        member.name = name
        member.docs = ""
        member.parsed = None
        member.flagbuildnone = self.flagbuildnone
        member.subcon = self
        return member

    def _parse(self, stream: Any, context: Any, path: str) -> Any:
        stream_seek(stream, context._start + self.offset, 0, path)
        return self.subcon._parsereport(stream, context, path)

    def _build(self, obj: Any, stream: Any, context: Any, path: str) -> Any:
        stream_seek(stream, context._start + self.offset, 0, path)
        return self.subcon._build(obj, stream, context, path)


class Record(Construct):
    """A struct or union of `size` bytes whose members are `"Name" / At(offset, subcon)`.

    `type_name` is the PDB name (`<unnamed-tag>` for anonymous types), `kind` "struct" or
    "union", `variant` the generated module's name for this layout (e.g. `_EPROCESS_2`) and
    `digest` the content hash that identifies the variant across builds.
    """

    def __init__(self, type_name: str, size: int, kind: str, *fields: Any,
                 variant: str = "", digest: str = "") -> None:
        super().__init__()
        self.type_name = type_name
        self.size = size
        self.kind = kind
        self._members: Optional[Callable[[], Iterable[Renamed]]] = None
        self._fields: Optional[Tuple[Renamed, ...]] = None
        if len(fields) == 1 and callable(fields[0]) and not isinstance(fields[0], Construct):
            self._members = fields[0]        # generated modules: members made on first use
        else:
            self._fields = tuple(fields)
        self.variant = variant
        self.digest = digest

    @property
    def fields(self) -> Tuple[Renamed, ...]:
        """The members, `"Name" / At(offset, subcon)`, in offset order.

        Why deferred: a generated build module holds a few hundred types with thousands of
        members, and a command touches a dozen types; building every member when the module is
        imported was most of its import time. Generated modules pass `lambda: (members...)`.
        """
        fields = self._fields
        if fields is None:
            # idempotent, never a half state: threads (batch workers) that meet here at once each
            # build the same members, and one of the equal tuples is kept
            members = self._members
            fields = self._fields = tuple(members()) if members is not None else ()
        return fields

    def __repr__(self) -> str:
        return "Record(%r, 0x%x, %s)" % (self.type_name, self.size, self.variant or "?")

    def _context(self, context: Any, start: int, stream: Any) -> Container:
        ctx = Container(_=context, _start=start, _io=stream)
        for key in ("_parsing", "_building", "_sizing", "_params", "_root"):
            if key in context:
                ctx[key] = context[key]
        return ctx

    def _parse(self, stream: Any, context: Any, path: str) -> Container:
        start = stream_tell(stream, path)
        ctx = self._context(context, start, stream)
        obj = Container()
        for member in self.fields:
            obj[member.name] = member._parsereport(stream, ctx, "%s -> %s" % (path, member.name))
        stream_seek(stream, start + self.size, 0, path)
        return obj

    def _build(self, obj: Any, stream: Any, context: Any, path: str) -> Any:
        start = stream_tell(stream, path)
        stream_write(stream, bytes(self.size), self.size, path)
        ctx = self._context(context, start, stream)
        obj = obj or {}
        for member in self.fields:
            if member.name in obj:
                member._build(obj[member.name], stream, ctx, "%s -> %s" % (path, member.name))
        stream_seek(stream, start + self.size, 0, path)
        return obj

    def _sizeof(self, context: Any, path: str) -> int:
        return self.size


def member_parts(member: Renamed) -> Tuple[str, int, Construct]:
    """(name, offset, subcon) of one `"Name" / At(offset, subcon)` member of a Record."""
    at = member.subcon
    if not isinstance(at, At):
        raise SizeofError("member %r is not At(offset, ...)" % member.name)
    return member.name, at.offset, at.subcon


def sizeof(subcon: Construct) -> int:
    """Size of a member subcon (Record, Base, Ptr, Bits storage, EnumDef, Array)."""
    if isinstance(subcon, Array):
        return int(subcon.count) * sizeof(subcon.subcon)
    return subcon.sizeof()
