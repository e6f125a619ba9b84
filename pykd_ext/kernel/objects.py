"""Executive objects: the `_OBJECT_HEADER` in front of every object body, its type and its name.

Why: handles, tokens, jobs and the CID table all lead to object bodies, and the same three
questions come back: what type is this (the header's `TypeIndex` into `ObTypeIndexTable`, XORed
since Windows 10 with the `ObHeaderCookie` byte and the second byte of the header address), what
is it called (an optional `_OBJECT_HEADER_NAME_INFO` in front of the header, present when
`InfoMask` says so), and in which object directory does it live.

The optional headers sit *below* the object header, in a fixed order by `InfoMask` bit; the
distance of one of them is the sum of the sizes of the present headers whose bit is not above its
own (what the kernel's `ObpInfoMaskToOffset` table holds). The bit -> header type assignment is a
format fact (table below, with its source); every size comes from the build's layout, so a build
whose headers grew (Windows 10's `Reserved` fields) is handled by the layout, not by code.
"""
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple, Union, cast

from pykd_ext.errors import MemoryReadError
from pykd_ext.kernel.view import StructView
from pykd_ext.memory.faults import INVALID, Fault

if TYPE_CHECKING:
    from pykd_ext.kernel.context import KernelContext

#: `_OBJECT_HEADER.InfoMask` bits and the optional header each announces, nearest to the object
#: header first. Source: Windows Internals 7th ed., Part 1, ch. 8 "Object headers and bodies"
#: (Table 8-4 "Conditions required for presence of object information structures"); ReactOS
#: `ob.h` (OB_INFOMASK_*); the order is what `ObpInfoMaskToOffset` encodes.
INFO_MASK_HEADERS: Tuple[Tuple[int, str], ...] = (
    (0x01, "_OBJECT_HEADER_CREATOR_INFO"),
    (0x02, "_OBJECT_HEADER_NAME_INFO"),
    (0x04, "_OBJECT_HEADER_HANDLE_INFO"),
    (0x08, "_OBJECT_HEADER_QUOTA_INFO"),
    (0x10, "_OBJECT_HEADER_PROCESS_INFO"),
    (0x20, "_OBJECT_HEADER_AUDIT_INFO"),
)
INFO_CREATOR = 0x01
INFO_NAME = 0x02
#: Object directory chains are short (`\Sessions\1\BaseNamedObjects\x` is 4 deep); the bound
#: keeps a corrupt Directory pointer loop from running away.
MAX_DIRECTORY_DEPTH = 32
#: Names longer than this are not names (UNICODE_STRING lengths are 16-bit anyway).
MAX_NAME_CHARS = 32767


class ObjectHeader:
    """The decoded `_OBJECT_HEADER` of one object body (values may be Faults)."""

    __slots__ = ("header", "body", "type_index", "type_name", "info_mask", "pointer_count",
                 "handle_count", "flags", "fault")

    def __init__(self, header: int, body: int) -> None:
        self.header = header
        self.body = body
        self.type_index: Union[int, Fault, None] = None
        self.type_name: Union[str, Fault, None] = None
        self.info_mask: Union[int, Fault, None] = None
        self.pointer_count: Union[int, Fault, None] = None
        self.handle_count: Union[int, Fault, None] = None
        self.flags: Union[int, Fault, None] = None
        self.fault: Optional[Fault] = None

    def to_dict(self) -> Dict[str, Any]:
        return {"header": self.header, "body": self.body, "type_index": self.type_index,
                "type": self.type_name, "info_mask": self.info_mask,
                "pointer_count": self.pointer_count, "handle_count": self.handle_count}


class ObjectReader:
    """Object header decoding for one `KernelContext` (cookie, type names and offsets cached)."""

    def __init__(self, ctx: "KernelContext") -> None:
        self.ctx = ctx
        self.layouts = ctx.layouts
        self.space = ctx.space
        self.header_type = self.layouts.type("_OBJECT_HEADER")
        self.body_offset = self.header_type.offset("Body")
        self._cookie: Any = False
        self._offsets: Dict[Tuple[int, int], Optional[int]] = {}
        self._sizes = {bit: (self.layouts.type(name).size if self.layouts.has_type(name) else None)
                       for bit, name in INFO_MASK_HEADERS}
        self._names: Dict[int, Union[str, Fault, None]] = {}
        self._headers: Dict[int, ObjectHeader] = {}
        self._readers = {path: self.header_type.reader(path)
                         for path in ("TypeIndex", "InfoMask", "PointerCount", "HandleCount", "Flags")}
        self._name_info = (self.layouts.type("_OBJECT_HEADER_NAME_INFO")
                           if self.layouts.has_type("_OBJECT_HEADER_NAME_INFO") else None)

    # ---- addresses
    def header_of(self, body: int) -> int:
        return body - self.body_offset

    def body_of(self, header: int) -> int:
        return header + self.body_offset

    # ---- type
    @property
    def cookie(self) -> Union[int, Fault, None]:
        """The `ObHeaderCookie` byte (Windows 10+); None on builds without it."""
        if self._cookie is False:
            if not self.layouts.has_symbol("ObHeaderCookie") and getattr(self.layouts, "types_only", False):
                # H10: types-only layout: the Windows 10+ cookie derived from known objects
                from pykd_ext.kernel.typeindex_scan import COOKIE_FIRST_BUILD, derive_header_cookie
                address, how = self.ctx.resolve_global("ObHeaderCookie")
                if int(getattr(self.layouts, "build", 0) or 0) < COOKIE_FIRST_BUILD:
                    self._cookie = None
                elif address is not None and how.startswith("disasm:"):
                    # H12: ObGetObjectType's own byte load names the cookie's address
                    try:
                        self._cookie = self.space.read(address, 1)[0]
                    except MemoryReadError as err:
                        self._cookie = err.fault
                else:
                    derived = derive_header_cookie(self.ctx)
                    self._cookie = derived if derived is not None else Fault(INVALID, 0)
            elif not self.layouts.has_symbol("ObHeaderCookie"):
                self._cookie = None
            else:
                address = self.ctx.global_address("ObHeaderCookie")
                if address is None:
                    self._cookie = Fault(INVALID, 0)
                else:
                    try:
                        self._cookie = self.space.read(address, 1)[0]
                    except MemoryReadError as err:
                        self._cookie = err.fault
        return self._cookie

    def decode_type_index(self, header: int, stored: int) -> Union[int, Fault]:
        """The real type index from the stored byte (undoing the Windows 10 encoding)."""
        cookie = self.cookie
        if cookie is None:
            return stored
        if isinstance(cookie, Fault):
            return cookie
        return (stored ^ cookie ^ (header >> 8)) & 0xFF

    def type_name_of_index(self, index: int) -> Union[str, Fault, None]:
        return self.ctx.type_name_of_index(index)

    # ---- headers
    def header(self, body: int) -> ObjectHeader:
        """The decoded header of the object whose body is at `body` (cached per body)."""
        found = self._headers.get(body)
        if found is not None:
            return found
        result = ObjectHeader(self.header_of(body), body)
        try:
            data = self.space.read(result.header, self.body_offset)
        except MemoryReadError as err:
            result.fault = err.fault
            result.type_index = result.type_name = result.info_mask = err.fault
            result.pointer_count = result.handle_count = err.fault
        else:
            r = self._readers
            stored = r["TypeIndex"](data)
            result.info_mask = r["InfoMask"](data)
            result.pointer_count = r["PointerCount"](data)
            result.handle_count = r["HandleCount"](data)
            result.flags = r["Flags"](data)
            index = self.decode_type_index(result.header, stored)
            result.type_index = index
            result.type_name = index if isinstance(index, Fault) else self.type_name_of_index(index)
        self._headers[body] = result
        return result

    def optional_header_offset(self, info_mask: int, bit: int) -> Optional[int]:
        """Distance below the object header of the optional header `bit`, or None when absent
        (or when this layout lacks a header type it would need)."""
        key = (info_mask & 0xFF, bit)
        if key in self._offsets:
            return self._offsets[key]
        result: Optional[int] = None
        if info_mask & bit:
            total = 0
            for each, _name in INFO_MASK_HEADERS:
                if each > bit:
                    break
                if info_mask & each:
                    size = self._sizes.get(each)
                    if size is None:
                        total = -1
                        break
                    total += size
            result = total if total > 0 else None
        self._offsets[key] = result
        return result

    def optional_header(self, header: ObjectHeader, bit: int) -> Optional[int]:
        """Address of an optional header of the object, or None."""
        if not isinstance(header.info_mask, int):
            return None
        offset = self.optional_header_offset(header.info_mask, bit)
        return None if offset is None else header.header - offset

    def name_info(self, header: ObjectHeader) -> Optional[StructView]:
        address = self.optional_header(header, INFO_NAME)
        if address is None or self._name_info is None:
            return None
        return StructView(self.space, self._name_info, address)

    def name(self, body: int) -> Union[str, Fault, None]:
        """The object's own name (`_OBJECT_HEADER_NAME_INFO.Name`), None when unnamed."""
        found = self._names.get(body)
        if found is not None or body in self._names:
            return found
        view = self.name_info(self.header(body))
        result: Union[str, Fault, None] = None
        if view is not None:
            if view.fault is not None and not view.data:
                result = view.fault
            else:
                result = self.ctx.read_unicode(view, "Name")
                if result == "":
                    result = None
        self._names[body] = result
        return result

    def directory_of(self, body: int) -> Union[int, Fault, None]:
        view = self.name_info(self.header(body))
        if view is None:
            return None
        value = cast(Union[int, Fault], view["Directory"])      # a pointer field: int or Fault
        return value if not isinstance(value, int) or value else None

    def full_name(self, body: int) -> Union[str, Fault, None]:
        """`\\KnownDlls\\ntdll.dll`: the name with its object directory chain (bounded, cycle-safe);
        the bare name when a directory on the way is unreadable."""
        own = self.name(body)
        if not isinstance(own, str):
            return own
        first = self.directory_of(body)
        if not isinstance(first, int) or not first:
            return own                      # not in a directory: the name as stored
        parts: List[str] = [own]
        seen = {body}
        current: Union[int, Fault, None] = first
        budget = getattr(self.ctx, "budget", None)
        while isinstance(current, int) and current and len(parts) < MAX_DIRECTORY_DEPTH:
            if current in seen:
                return own                  # a directory loop: not a real chain
            if budget is not None and not budget.take_entry():
                return own                  # the work budget ran out (its note says so)
            seen.add(current)
            name = self.name(current)
            if isinstance(name, Fault):
                return own                  # an unreadable directory: keep what is known
            if name is None or name == "\\":
                break                       # the root directory
            parts.append(name)
            current = self.directory_of(current)
        if isinstance(current, Fault):
            return own
        return "\\" + "\\".join(reversed(parts))


def reader_for(ctx: "KernelContext") -> ObjectReader:
    """The context's ObjectReader (one per KernelContext, so caches are shared by commands)."""
    reader = getattr(ctx, "_object_reader", None)
    if reader is None:
        reader = ObjectReader(ctx)
        ctx._object_reader = reader
    return reader


__all__ = ["INFO_CREATOR", "INFO_MASK_HEADERS", "INFO_NAME", "ObjectHeader", "ObjectReader",
           "reader_for"]
