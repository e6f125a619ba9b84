"""The TPI stream (stream 2): CodeView type records, decoded on demand and bounded.

Why lazy: a kernel PDB holds ~100,000 type records, most of them member-function signatures
and argument lists that no layout needs. The stream is split into records once (an offset per
type index); a record is decoded the first time the converter asks for it.

Format facts: LLVM `llvm/DebugInfo/PDB/Native/RawTypes.h` (TpiStreamHeader),
https://llvm.org/docs/PDB/TpiStream.html and https://llvm.org/docs/PDB/CodeViewTypes.html;
record shapes from LLVM `TypeRecordMapping.cpp` and Microsoft's `cvinfo.h` (the 0x16xx class
records). Each record is `u16 length` (not counting itself), `u16 kind`, then the body; a field
list is a run of member records without lengths, separated by LF_PAD bytes (0xF0..0xFF).

Everything is checked: the header's sizes against the stream, every record's length against
the stream's end, every name against its record's end, every numeric leaf's kind; a field list
chain (LF_INDEX continuations) is followed iteratively with a visited set and a member budget.
"""
import struct
from array import array
from typing import Dict, List, Optional, Tuple, Union

from construct import Int16ul, Int32sl, Int32ul, Struct

from pykd_ext.errors import LayoutError
from pykd_ext.layouts.pdb import cvconst as cv

TPI_HEADER = Struct(                  # llvm/DebugInfo/PDB/Native/RawTypes.h: TpiStreamHeader
    "Version" / Int32ul,              # +0x00 20040203 (V80) in every current PDB
    "HeaderSize" / Int32ul,           # +0x04 56
    "TypeIndexBegin" / Int32ul,       # +0x08 0x1000
    "TypeIndexEnd" / Int32ul,         # +0x0c one past the last type index
    "TypeRecordBytes" / Int32ul,      # +0x10 bytes of records after the header
    "HashStreamIndex" / Int16ul,      # +0x14
    "HashAuxStreamIndex" / Int16ul,   # +0x16
    "HashKeySize" / Int32ul,          # +0x18
    "NumHashBuckets" / Int32ul,       # +0x1c
    "HashValueBufferOffset" / Int32sl, "HashValueBufferLength" / Int32ul,
    "IndexOffsetBufferOffset" / Int32sl, "IndexOffsetBufferLength" / Int32ul,
    "HashAdjBufferOffset" / Int32sl, "HashAdjBufferLength" / Int32ul,
)
TPI_HEADER_SIZE = 56
MAX_HEADER_SIZE = 1024
#: bounds for file-controlled counts (a kernel PDB has ~10^5 types; 2^24 is far beyond any)
MAX_TYPES = 1 << 24
MAX_FIELD_LIST_MEMBERS = 1 << 20      # members of one type, over all its LF_INDEX continuations

_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_I32 = struct.Struct("<i")
_NUMERIC_FORMATS: Dict[int, struct.Struct] = {
    leaf: struct.Struct("<" + {(1, True): "b", (2, True): "h", (2, False): "H", (4, True): "i",
                               (4, False): "I", (8, True): "q", (8, False): "Q"}[spec])
    for leaf, spec in cv.NUMERIC_LEAVES.items() if spec[0] <= 8
}


class Udt:
    """A struct/class/interface/union/enum record (definition or forward reference)."""

    __slots__ = ("leaf", "kind", "props", "field_list", "size", "name", "unique_name",
                 "underlying", "derived")

    def __init__(self, leaf: int, kind: str, props: int, field_list: int, size: int, name: str,
                 unique_name: str, underlying: int = 0, derived: int = 0) -> None:
        self.leaf = leaf
        self.kind = kind                  # "struct", "class", "union" or "enum"
        self.props = props
        self.field_list = field_list
        self.size = size
        self.name = name
        self.unique_name = unique_name
        self.underlying = underlying      # enums: the underlying integer type
        self.derived = derived

    @property
    def forward(self) -> bool:
        return bool(self.props & cv.PROP_FORWARD_REF)


class Pointer:
    __slots__ = ("referent", "attrs", "size", "mode")

    def __init__(self, referent: int, attrs: int, size: int, mode: int) -> None:
        self.referent = referent
        self.attrs = attrs
        self.size = size
        self.mode = mode


class Modifier:
    __slots__ = ("referent",)

    def __init__(self, referent: int) -> None:
        self.referent = referent


class ArrayType:
    __slots__ = ("element", "size", "stride")

    def __init__(self, element: int, size: int, stride: int = 0) -> None:
        self.element = element
        self.size = size
        self.stride = stride


class Bitfield:
    __slots__ = ("base", "length", "position")

    def __init__(self, base: int, length: int, position: int) -> None:
        self.base = base
        self.length = length
        self.position = position


class Function:
    """LF_PROCEDURE / LF_MFUNCTION: only 'a function' matters for layouts."""

    __slots__ = ("leaf",)

    def __init__(self, leaf: int) -> None:
        self.leaf = leaf


class Other:
    """Any record a layout never needs (argument lists, method lists, vtable shapes, ...)."""

    __slots__ = ("leaf",)

    def __init__(self, leaf: int) -> None:
        self.leaf = leaf


class Member:
    """One entry of a field list. `kind` is the member record's leaf; `value` is the offset
    (data members, base classes) or the enumerator's value."""

    __slots__ = ("kind", "name", "type", "value")

    def __init__(self, kind: int, name: str, type_index: int, value: int) -> None:
        self.kind = kind
        self.name = name
        self.type = type_index
        self.value = value


class FieldList:
    __slots__ = ("members", "continuation")

    def __init__(self, members: List[Member], continuation: int) -> None:
        self.members = members
        self.continuation = continuation


Record = Union[Udt, Pointer, Modifier, ArrayType, Bitfield, Function, Other, FieldList]


class _Cursor:
    """Reads one record body with every read checked against the record's end."""

    __slots__ = ("data", "pos", "end", "where")

    def __init__(self, data: bytes, pos: int, end: int, where: str) -> None:
        self.data = data
        self.pos = pos
        self.end = end
        self.where = where

    def bad(self, what: str) -> LayoutError:
        return LayoutError("malformed PDB type record %s: %s" % (self.where, what))

    def need(self, size: int) -> None:
        if self.pos + size > self.end:
            raise self.bad("ends inside a field (needs %d more bytes)" % (self.pos + size - self.end))

    def u8(self) -> int:
        self.need(1)
        value = self.data[self.pos]
        self.pos += 1
        return value

    def u16(self) -> int:
        self.need(2)
        value = _U16.unpack_from(self.data, self.pos)[0]
        self.pos += 2
        return value

    def u32(self) -> int:
        self.need(4)
        value = _U32.unpack_from(self.data, self.pos)[0]
        self.pos += 4
        return value

    def i32(self) -> int:
        self.need(4)
        value = _I32.unpack_from(self.data, self.pos)[0]
        self.pos += 4
        return value

    def numeric(self) -> int:
        """A CodeView numeric leaf: the value itself below 0x8000, else a typed integer."""
        leaf = self.u16()
        if leaf < cv.LF_NUMERIC:
            return leaf
        spec = cv.NUMERIC_LEAVES.get(leaf)
        if spec is None:
            raise self.bad("numeric leaf 0x%04x is not an integer" % leaf)
        width, signed = spec
        self.need(width)
        fmt = _NUMERIC_FORMATS.get(leaf)
        if fmt is not None:
            value = int(fmt.unpack_from(self.data, self.pos)[0])
        else:
            value = int.from_bytes(self.data[self.pos:self.pos + width], "little", signed=signed)
        self.pos += width
        return value

    def name(self, pascal: bool = False) -> str:
        if pascal:
            length = self.u8()
            self.need(length)
            raw = self.data[self.pos:self.pos + length]
            self.pos += length
        else:
            stop = self.data.find(b"\x00", self.pos, self.end)
            if stop < 0:
                raise self.bad("name without its terminating NUL")
            raw = self.data[self.pos:stop]
            self.pos = stop + 1
        # a NUL inside a length-prefixed name would be unlike any C name (and the converter
        # reserves NUL for its own markers)
        return raw.replace(b"\x00", b"?").decode("utf-8", "replace")

    def skip_padding(self) -> None:
        # LF_PAD0..LF_PAD15: the low nibble is the distance to the next member record
        # (each step moves forward, so the loop ends at the record's end at the latest)
        while self.pos < self.end and self.data[self.pos] >= 0xF0:
            self.pos += max(1, self.data[self.pos] & 0x0F)


class TypeStream:
    """The type records of one TPI stream, by type index."""

    def __init__(self, data: bytes, path: str = "") -> None:
        self.data = data
        self.path = path
        if len(data) < TPI_HEADER_SIZE:
            raise self._bad("TPI stream of %d bytes has no header" % len(data))
        head = TPI_HEADER.parse(data[:TPI_HEADER_SIZE])
        if not TPI_HEADER_SIZE <= head.HeaderSize <= MAX_HEADER_SIZE:
            raise self._bad("TPI header size %d" % head.HeaderSize)
        if head.TypeIndexBegin < cv.FIRST_NON_SIMPLE or head.TypeIndexEnd < head.TypeIndexBegin:
            raise self._bad("TPI type indices 0x%x..0x%x" % (head.TypeIndexBegin, head.TypeIndexEnd))
        count = head.TypeIndexEnd - head.TypeIndexBegin
        if count > MAX_TYPES:
            raise self._bad("TPI claims %d types" % count)
        if head.HeaderSize + head.TypeRecordBytes > len(data):
            raise self._bad("TPI records end at %d, after the stream's %d bytes"
                            % (head.HeaderSize + head.TypeRecordBytes, len(data)))
        self.begin = head.TypeIndexBegin
        self.end = head.TypeIndexEnd
        self._offsets = array("I")        # record start (its length field) per type index
        pos, stop = head.HeaderSize, head.HeaderSize + head.TypeRecordBytes
        while pos < stop:
            if len(self._offsets) >= count:
                raise self._bad("TPI holds more records than its %d type indices" % count)
            if pos + 4 > stop:
                raise self._bad("TPI record at %d is cut by the stream's end" % pos)
            length = _U16.unpack_from(data, pos)[0]
            if length < 2 or pos + 2 + length > stop:
                raise self._bad("TPI record 0x%x has length %d"
                                % (self.begin + len(self._offsets), length))
            self._offsets.append(pos)
            pos += 2 + length
        if len(self._offsets) != count:
            raise self._bad("TPI holds %d records for %d type indices" % (len(self._offsets), count))
        self._cache: Dict[int, Record] = {}

    def _bad(self, what: str) -> LayoutError:
        return LayoutError("malformed PDB: %s" % what, path=self.path or None)

    def __len__(self) -> int:
        return len(self._offsets)

    def valid(self, index: int) -> bool:
        return self.begin <= index < self.end

    def leaf(self, index: int) -> int:
        """The leaf kind of a record (without decoding it)."""
        if not self.begin <= index < self.end:
            raise self._bad("type index 0x%x outside 0x%x..0x%x" % (index, self.begin, self.end))
        return int(_U16.unpack_from(self.data, self._offsets[index - self.begin] + 2)[0])

    def indices(self) -> range:
        return range(self.begin, self.end)

    def get(self, index: int) -> Record:
        """The decoded record of a type index (cached)."""
        rec = self._cache.get(index)
        if rec is None:
            leaf = self.leaf(index)
            start = self._offsets[index - self.begin]
            end = start + 2 + _U16.unpack_from(self.data, start)[0]
            cur = _Cursor(self.data, start + 4, end, "0x%x" % index)
            try:
                rec = self._decode(leaf, cur)
            except LayoutError as err:
                raise LayoutError(err.message, path=self.path or None) from None
            self._cache[index] = rec
        return rec

    @staticmethod
    def _decode(leaf: int, cur: _Cursor) -> Record:
        if leaf in cv.CLASS_KINDS:
            cur.u16()                      # member count
            props = cur.u16()
            field_list, derived, _vshape = cur.u32(), cur.u32(), cur.u32()
            size = cur.numeric()
            return _udt(leaf, props, field_list, size, cur, derived=derived)
        if leaf in cv.CLASS2_KINDS:
            props, field_list, derived, _vshape = cur.u32(), cur.u32(), cur.u32(), cur.u32()
            cur.numeric()                  # member count
            size = cur.numeric()
            return _udt(leaf, props, field_list, size, cur, derived=derived)
        if leaf in cv.UNION_KINDS:
            _count, props, field_list = cur.u16(), cur.u16(), cur.u32()
            return _udt(leaf, props, field_list, cur.numeric(), cur)
        if leaf == cv.LF_UNION2:
            props, field_list = cur.u32(), cur.u32()
            _count = cur.numeric()
            return _udt(leaf, props, field_list, cur.numeric(), cur)
        if leaf in cv.ENUM_KINDS:
            _count, props, underlying, field_list = cur.u16(), cur.u16(), cur.u32(), cur.u32()
            return _udt(leaf, props, field_list, 0, cur, underlying=underlying)
        if leaf == cv.LF_POINTER:
            referent, attrs = cur.u32(), cur.u32()
            size = (attrs >> cv.PTR_SIZE_SHIFT) & cv.PTR_SIZE_MASK
            mode = (attrs >> cv.PTR_MODE_SHIFT) & cv.PTR_MODE_MASK
            return Pointer(referent, attrs, size, mode)
        if leaf == cv.LF_MODIFIER:
            return Modifier(cur.u32())
        if leaf in (cv.LF_ARRAY, cv.LF_ARRAY_ST):
            element, _index = cur.u32(), cur.u32()
            return ArrayType(element, cur.numeric())
        if leaf == cv.LF_STRIDED_ARRAY:
            element, _index, stride = cur.u32(), cur.u32(), cur.u32()
            return ArrayType(element, cur.numeric(), stride)
        if leaf == cv.LF_BITFIELD:
            base = cur.u32()
            length = cur.u8()
            return Bitfield(base, length, cur.u8())
        if leaf in cv.FUNCTION_KINDS:
            return Function(leaf)
        if leaf == cv.LF_FIELDLIST:
            return _field_list(cur)
        return Other(leaf)


def _udt(leaf: int, props: int, field_list: int, size: int, cur: _Cursor, underlying: int = 0,
         derived: int = 0) -> Udt:
    pascal = leaf < cv.LF_ST_MAX and leaf not in cv.CLASS2_KINDS and leaf != cv.LF_UNION2
    name = cur.name(pascal)
    unique = ""
    if props & cv.PROP_HAS_UNIQUE_NAME and not pascal and cur.pos < cur.end:
        unique = cur.name()
    if leaf in cv.ENUM_KINDS:
        kind = "enum"
    elif leaf in cv.UNION_KINDS or leaf == cv.LF_UNION2:
        kind = "union"
    elif leaf in (cv.LF_CLASS, cv.LF_CLASS_ST, cv.LF_CLASS2, cv.LF_INTERFACE, cv.LF_INTERFACE2):
        kind = "class"
    else:
        kind = "struct"
    if size < 0:
        raise cur.bad("negative size %d" % size)
    return Udt(leaf, kind, props & 0xFFFF, field_list, size, name, unique, underlying, derived)


#: member record leaf -> (shape, name is length-prefixed). Shapes:
#:   "member"   u16 attrs, u32 type, numeric offset, name        (LF_MEMBER)
#:   "static"   u16 attrs, u32 type, name                        (LF_STMEMBER, LF_NESTTYPEEX, ...)
#:   "enum"     u16 attrs, numeric value, name                   (LF_ENUMERATE)
#:   "base"     u16 attrs, u32 type, numeric offset              (LF_BCLASS)
#:   "vbase"    u16 attrs, u32 type, u32 vbptr, numeric, numeric (LF_VBCLASS, LF_IVBCLASS)
#:   "typeonly" u16 pad, u32 type                                (LF_INDEX, LF_VFUNCTAB, LF_FRIENDCLS)
#:   "vfuncoff" u16 pad, u32 type, i32 offset                    (LF_VFUNCOFF)
#:   "method"   u16 count, u32 method list, name                 (LF_METHOD)
#:   "one"      u16 attrs, u32 type, [u32 vtable offset], name   (LF_ONEMETHOD)
#:   "named"    u16 pad, u32 type, name                          (LF_NESTTYPE, LF_FRIENDFCN)
_MEMBER_SHAPES: Dict[int, Tuple[str, bool]] = {
    cv.LF_MEMBER: ("member", False), cv.LF_MEMBER_ST: ("member", True),
    cv.LF_STMEMBER: ("static", False), cv.LF_STMEMBER_ST: ("static", True),
    cv.LF_NESTTYPEEX: ("static", False), cv.LF_NESTTYPEEX_ST: ("static", True),
    cv.LF_MEMBERMODIFY: ("static", False), cv.LF_MEMBERMODIFY_ST: ("static", True),
    cv.LF_ENUMERATE: ("enum", False), cv.LF_ENUMERATE_ST: ("enum", True),
    cv.LF_BCLASS: ("base", False), cv.LF_BINTERFACE: ("base", False),
    cv.LF_VBCLASS: ("vbase", False), cv.LF_IVBCLASS: ("vbase", False),
    cv.LF_INDEX: ("typeonly", False), cv.LF_VFUNCTAB: ("typeonly", False),
    cv.LF_FRIENDCLS: ("typeonly", False), cv.LF_VFUNCOFF: ("vfuncoff", False),
    cv.LF_METHOD: ("method", False), cv.LF_METHOD_ST: ("method", True),
    cv.LF_ONEMETHOD: ("one", False), cv.LF_ONEMETHOD_ST: ("one", True),
    cv.LF_NESTTYPE: ("named", False), cv.LF_NESTTYPE_ST: ("named", True),
    cv.LF_FRIENDFCN: ("named", False), cv.LF_FRIENDFCN_ST: ("named", True),
}


_ATTR_TYPE = struct.Struct("<HI")


def _field_list(cur: _Cursor) -> FieldList:
    """The member records of one LF_FIELDLIST. The common shapes (data members, enumerators,
    methods, nested types) are read with direct unpacks: a kernel PDB has ~10^5 of them."""
    members: List[Member] = []
    continuation = 0
    data, end = cur.data, cur.end
    while cur.pos < end:
        if len(members) >= MAX_FIELD_LIST_MEMBERS:
            raise cur.bad("field list of more than %d members" % MAX_FIELD_LIST_MEMBERS)
        kind = cur.u16()
        spec = _MEMBER_SHAPES.get(kind)
        if spec is None:
            raise cur.bad("unknown field-list member record 0x%04x" % kind)
        shape, pascal = spec
        name, type_index, value = "", 0, 0
        if shape in ("member", "static", "base", "method", "named") and cur.pos + 6 <= end:
            # u16 attrs (or count/pad), u32 type index
            _attrs, type_index = _ATTR_TYPE.unpack_from(data, cur.pos)
            cur.pos += 6
            if shape in ("member", "base"):
                value = cur.numeric()
            if shape != "base":
                name = cur.name(pascal)
        elif shape == "enum":
            cur.u16()
            value = cur.numeric()
            name = cur.name(pascal)
        elif shape == "vbase":
            cur.u16()
            type_index = cur.u32()
            cur.u32()
            cur.numeric()
            cur.numeric()
        elif shape == "typeonly":
            cur.u16()
            type_index = cur.u32()
            if kind == cv.LF_INDEX:
                continuation = type_index
        elif shape == "vfuncoff":
            cur.u16()
            type_index = cur.u32()
            cur.i32()
        elif shape == "one":
            attrs = cur.u16()
            type_index = cur.u32()
            if ((attrs >> cv.MPROP_SHIFT) & cv.MPROP_MASK) in (cv.MPROP_INTRO, cv.MPROP_PURE_INTRO):
                cur.u32()
            name = cur.name(pascal)
        else:
            cur.need(6)                    # a shape above whose fixed part is cut short
        members.append(Member(kind, name, type_index, value))
        cur.skip_padding()
    return FieldList(members, continuation)


def field_members(types: TypeStream, first: int, where: str) -> List[Member]:
    """Every member of a field list, following LF_INDEX continuations (bounded, cycle-safe)."""
    out: List[Member] = []
    seen = set()
    index: Optional[int] = first
    while index:
        if index in seen:
            raise LayoutError("malformed PDB: %s: field list 0x%x continues into itself"
                              % (where, index), path=types.path or None)
        seen.add(index)
        if not types.valid(index) or types.leaf(index) != cv.LF_FIELDLIST:
            raise LayoutError("malformed PDB: %s: field list 0x%x is not an LF_FIELDLIST"
                              % (where, index), path=types.path or None)
        rec = types.get(index)
        assert isinstance(rec, FieldList)
        out.extend(m for m in rec.members if m.kind != cv.LF_INDEX)
        if len(out) > MAX_FIELD_LIST_MEMBERS:
            raise LayoutError("malformed PDB: %s: more than %d members"
                              % (where, MAX_FIELD_LIST_MEMBERS), path=types.path or None)
        index = rec.continuation or None
    return out
