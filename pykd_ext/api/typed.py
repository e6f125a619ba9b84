"""Typed, attribute-style access to one kernel structure: `e.UniqueProcessId`, `e.Pcb.DirectoryTableBase`.

Why its own small class instead of construct's parse: a notebook user pokes at a handful of
fields of a 2 KB `_EPROCESS`; the structure is read once (one `StructView`-style read of
`TypeLayout.size` bytes) and each attribute is decoded on demand with the layout's precompiled
reader, exactly like the walkers do. Embedded structures share the parent's bytes (no second
read); pointers stay integers (follow them with `Dump.struct(type, pointer)`); arrays come back as
lists; a field the dump does not hold is the `Fault` that says why.
"""
from typing import Any, Iterator, List, Optional, Tuple, Union

from pykd_ext.errors import MissingLayoutError
from pykd_ext.layouts.model import FieldLayout, TypeLayout, compile_record, field_reader
from pykd_ext.memory.faults import Fault
from pykd_ext.memory.space import AddressSpace

#: arrays longer than this come back as their raw bytes (a `[4096] UChar` is data, not a list)
MAX_ARRAY_ELEMENTS = 4096


class TypedStruct:
    """One structure of a build's layout at an address, decoded field by field on access."""

    __slots__ = ("_layout", "_address", "_data", "_fault", "_base")

    def __init__(self, space: AddressSpace, layout: TypeLayout, address: int,
                 _shared: Optional[Tuple[bytes, Optional[Fault], int]] = None) -> None:
        self._layout = layout
        self._address = address
        if _shared is None:
            data, fault = space.read_partial(address, layout.size)
            self._data, self._fault, self._base = bytes(data), fault, 0
        else:
            self._data, self._fault, self._base = _shared

    # ---- what it is
    @property
    def type_name(self) -> str:
        """The PDB type name (`_EPROCESS`, `<unnamed-tag>` for anonymous members)."""
        return self._layout.name

    @property
    def address(self) -> int:
        """Virtual address of the structure in the kernel address space."""
        return self._address

    @property
    def size(self) -> int:
        """Size in bytes, as the build's layout states it."""
        return self._layout.size

    def fields(self) -> List[str]:
        """Member names in offset order (as `dt` lists them)."""
        return list(self._layout.fields)

    def __dir__(self) -> List[str]:
        return sorted(set(self.fields()) | {"address", "size", "type_name", "fields", "offset_of"})

    def offset_of(self, name: str) -> int:
        """Offset of a member from the start of this structure."""
        return self._field(name).offset

    def __repr__(self) -> str:
        return "<%s at 0x%x>" % (self._layout.name, self._address)

    # ---- members
    def _field(self, name: str) -> FieldLayout:
        found = self._layout.fields.get(name)
        if found is None:
            raise AttributeError("%s has no field %s (layout %s)" % (self._layout.name, name,
                                                                     self._layout.variant))
        return found

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return self._decode(self._field(name), self._base)

    def __getitem__(self, path: str) -> Any:
        """Dotted paths work too: `e["Pcb.DirectoryTableBase"]`, `e["ImageFileName[2]"]`."""
        value: Any = self
        for part in path.split("."):
            index: Optional[int] = None
            if part.endswith("]") and "[" in part:
                part, _, idx = part[:-1].partition("[")
                index = int(idx, 0)
            if not isinstance(value, TypedStruct):
                raise MissingLayoutError("%s: %s is not a structure" % (path, part))
            value = getattr(value, part)
            if index is not None:
                if not isinstance(value, (list, bytes)):
                    raise MissingLayoutError("%s: %s is not an array" % (path, part))
                value = value[index]
        return value

    def _decode(self, fl: FieldLayout, base: int) -> Any:
        start = base + fl.offset
        if fl.kind in ("struct", "union"):
            record = fl.record
            assert record is not None
            return TypedStruct(None, compile_record(record), self._address + (start - self._base),  # type: ignore[arg-type]
                               _shared=(self._data, self._fault, start))
        end = start + max(fl.size, 1)
        if end > len(self._data):
            return self._fault or Fault("not in dump", self._address + (start - self._base))
        if fl.kind == "array":
            return self._array(fl, start)
        if fl.kind == "function":
            return None
        return field_reader(fl.moved(0))(self._data, start)

    def _array(self, fl: FieldLayout, start: int) -> Union[List[Any], bytes]:
        elem = fl.element
        assert elem is not None and fl.count is not None
        if elem.kind == "base" and elem.size == 1 or fl.count > MAX_ARRAY_ELEMENTS:
            return self._data[start:start + fl.size]
        return [self._decode(elem.moved(i * elem.size), start) for i in range(fl.count)]

    def __iter__(self) -> Iterator[Tuple[str, Any]]:
        """(name, value) of every member, in offset order."""
        for name in self._layout.fields:
            yield name, getattr(self, name)
