"""A kernel structure read once from memory, its fields decoded by precomputed offset.

The one way to read a field (issue 11): the build's `TypeLayout.accessor(path)` gives its end
offset and compiled reader; everything here applies it. `StructView` (read the structure once,
`view[path]`) is what decoders use; `field_plan`/`read_plan` apply a fixed list of fields of one
view at once (records of thousands of threads); `read_field` reads a single field of a structure
without the rest. Code that holds bytes that are not in an address space (a triage dump's
blocks) calls `TypeLayout.reader(path)` on them directly: the same decoder.

Walkers never parse a whole structure with construct: they read `TypeLayout.size` bytes in one
request and pull single fields out with the layout's compiled readers (about a microsecond each).
When only a prefix of the structure is readable (a page boundary into missing memory), fields in
the readable part still decode and the others come back as the `Fault` that stopped the read —
so "unreadable" is data a renderer shows, never an exception a command dies of.
"""
from typing import Any, Dict, List, Optional, Tuple, Union

from pykd_ext.errors import MemoryReadError
from pykd_ext.memory.faults import Fault
from pykd_ext.memory.space import AddressSpace

Value = Union[int, bytes, Fault]


class StructView:
    """`view["Pcb.DirectoryTableBase"]` → int, or the Fault when that part was not readable."""

    __slots__ = ("space", "type", "address", "data", "fault", "_accessors")

    def __init__(self, space: AddressSpace, type_layout: Any, address: int,
                 size: Optional[int] = None) -> None:
        self.space = space
        self.type = type_layout
        self.address = address
        self.data, self.fault = space.read_partial(address, size or type_layout.size)
        # the layout's (end, reader) per field path, shared by every view of this type
        self._accessors: Dict[str, Any] = type_layout.accessors

    @property
    def complete(self) -> bool:
        """True when the whole structure was read."""
        return self.fault is None

    def has(self, path: str) -> bool:
        """Whether this build's layout has the field (fields come and go between builds)."""
        entry = self._accessors.get(path)
        if entry is None:
            entry = self.type.accessor(path)
        return entry is not None

    def __getitem__(self, path: str) -> Value:
        entry = self._accessors.get(path)
        if entry is None:
            entry = self.type.accessor(path)
            if entry is None:
                self.type.field(path)      # raises MissingLayoutError naming the missing field
        end, reader = entry
        if end > len(self.data):
            return self.fault or Fault("not in dump", self.address)
        return reader(self.data)

    def get(self, path: str, default: Any = None) -> Any:
        """The field's value, or `default` when this build has no such field."""
        entry = self._accessors.get(path)
        if entry is None:
            entry = self.type.accessor(path)
            if entry is None:
                return default
        end, reader = entry
        if end > len(self.data):
            return self.fault or Fault("not in dump", self.address)
        return reader(self.data)

    def address_of(self, path: str) -> int:
        """Virtual address of a field (for `&EPROCESS.ActiveProcessLinks`-style list heads)."""
        return self.address + self.type.offset(path)

    def raw(self, path: str) -> Union[bytes, Fault]:
        """The field's raw bytes (arrays, embedded structures)."""
        field = self.type.field(path)
        end = field.offset + field.size
        if end > len(self.data):
            return self.fault or Fault("not in dump", self.address)
        return bytes(self.data[field.offset:end])


def read_unicode_string(space: AddressSpace, view: StructView, path: str,
                        max_chars: int = 32768, budget: Any = None) -> Union[str, Fault]:
    """Decode a `_UNICODE_STRING` member: Length/Buffer from the view, the text from `space`.

    The bytes read are charged to `budget` (a `kernel.budget.Budget`) when one is given; once it
    is spent the text is a Fault of reason `BUDGET_CUT` (a cut value, never a truncated one)."""
    length = view[path + ".Length"]
    buffer = view[path + ".Buffer"]
    if isinstance(length, Fault):
        return length
    if isinstance(buffer, Fault):
        return buffer
    return read_utf16(space, buffer, length, max_chars, budget)


def read_utf16(space: AddressSpace, buffer: Any, length: Any, max_chars: int = 32768,
               budget: Any = None) -> Union[str, Fault]:
    """`length` bytes of UTF-16 text at `buffer` (a `_UNICODE_STRING`'s Buffer/Length), at most
    `max_chars` characters, charged to `budget` when given."""
    if not length or not buffer:
        return ""
    length = min(int(length), max_chars * 2) & ~1
    if budget is not None and budget.take_bytes(length) < length:
        from pykd_ext.kernel.budget import BUDGET_CUT
        return Fault(BUDGET_CUT, int(buffer))
    try:
        data = space.read(int(buffer), length)
    except MemoryReadError as err:
        return err.fault
    return data.decode("utf-16-le", errors="replace")


def read_field(space: AddressSpace, type_layout: Any, address: int, path: str) -> Value:
    """One field of the structure at `address`, reading only that field's bytes (a pointer
    chased across thousands of objects, where a whole `StructView` would read kilobytes each).

    Decoded by the same layout accessor a `StructView` uses; the Fault when unreadable;
    `MissingLayoutError` when the build has no such field (ask `type_layout.has_field` first)."""
    f = type_layout.field(path)
    size = max(f.size, 1)
    data, fault = space.read_partial(address + f.offset, size)
    if len(data) < size:
        return fault or Fault("not in dump", address + f.offset)
    return type_layout.reader(path)(data, -f.offset)


def fast_ref_mask(layouts: Any) -> int:
    """Mask that clears `_EX_FAST_REF`'s reference count (its width comes from the layout)."""
    refcnt = layouts.type("_EX_FAST_REF").field("RefCnt")
    return ~((1 << int(refcnt.bit_length)) - 1) & ((1 << (8 * layouts.pointer_size)) - 1)


#: A compiled list of (key, end offset, reader) for one structure type (see `field_plan`).
Plan = List[Tuple[str, int, Any]]


def field_plan(type_layout: Any, items: Tuple[Tuple[str, str], ...]) -> Plan:
    """(key, end, reader) per (key, field path) the type has; missing fields get reader None.

    Cached on the TypeLayout: decoding thousands of threads then costs one reader call per field.
    """
    cache = type_layout.__dict__.get("_field_plans")
    if cache is None:
        cache = type_layout.__dict__["_field_plans"] = {}
    plan = cache.get(items)
    if plan is None:
        plan = []
        for key, path in items:
            if type_layout.has_field(path):
                f = type_layout.field(path)
                plan.append((key, f.offset + max(f.size, 1), type_layout.reader(path)))
            else:
                plan.append((key, 0, None))
        cache[items] = plan
    return plan


def read_plan(view: StructView, plan: Plan) -> Dict[str, Any]:
    """Every planned field of a view: value, None (no such field) or the view's Fault."""
    data = view.data
    size = len(data)
    fault = view.fault or Fault("not in dump", view.address)
    out: Dict[str, Any] = {}
    for key, end, reader in plan:
        if reader is None:
            out[key] = None
        elif end > size:
            out[key] = fault
        else:
            out[key] = reader(data)
    return out
