"""Writing Windows structures into a forged machine by field name: layouts, memory, pool arenas.

Why: scenario code plants hundreds of kernel objects per dump. Every field it writes must land
at the offset (and bit position) the build's symbol data says — never a typed number — and the
writes must be cheap enough for dumps with thousands of threads. This module holds the three
primitives `kernel_objects` builds on:

- `BuildFacts`: one build's structure facts by name. Types the shipped layouts carry
  (`pykd_ext.layouts`, generated from the ISF) come from there; types the reduced layouts leave
  out (`_POOL_HEADER`, `_KUSER_SHARED_DATA`, `_OBJECT_NAME_INFORMATION`, ...) and enums they
  lack (`_KOBJECTS`) come straight from the same ISF file (`pykd_ext.forge.isf`).
- `KernelMemory`: little-endian writes through one address space's page tables, with the
  virtual-to-physical translation cached per page; `put(type, address, path, value)` writes a
  scalar or read-modify-writes a bitfield.
- `Arena`: a bump allocator over a kernel virtual range (pool-like: an allocation up to a page
  never straddles pages, so physical scans see it whole), mapping fresh frames as it grows.
"""
import json
import lzma
from typing import Any, Dict, List, NamedTuple, Optional, Tuple

from pykd_ext.errors import MissingLayoutError
from pykd_ext.forge.isf import SymbolTable
from pykd_ext.forge.pagetables import PageTables, canonical
from pykd_ext.layouts.model import KernelLayouts
from pykd_ext.memory.space import PAGE_SIZE

#: `_KTHREAD_STATE` values for kernels whose PDB has no such enum (Windows 7's). Source: the
#: public Windows Research Kernel v1.2, base/ntos/inc/ke.h (`KTHREAD_STATE`).
KTHREAD_STATE_WRK = {"Initialized": 0, "Ready": 1, "Running": 2, "Standby": 3, "Terminated": 4,
                     "Waiting": 5, "Transition": 6, "DeferredReady": 7, "GateWait": 8}
#: `_WAIT_TYPE` (wdm.h, public WDK header): no kernel PDB carries it as an enum.
WAIT_ALL = 0
WAIT_ANY = 1
#: `_MODE` (wdm.h): KernelMode / UserMode.
MODES = {"KernelMode": 0, "UserMode": 1}


class FieldInfo(NamedTuple):
    offset: int
    size: int                       # bytes of the field (of the storage unit for bitfields)
    bit_position: Optional[int]
    bit_length: Optional[int]
    signed: bool


_RAW: Dict[str, Dict[str, Any]] = {}


def _raw_isf(path: str) -> Dict[str, Any]:
    """The parts of an ISF file the facts need (read once per process)."""
    found = _RAW.get(path)
    if found is None:
        with lzma.open(path, "rb") if path.endswith(".xz") else open(path, "rb") as handle:
            raw = json.load(handle)
        found = {key: raw.get(key, {}) for key in ("user_types", "enums", "base_types")}
        _RAW[path] = found
    return found


class BuildFacts:
    """Structure facts of one kernel build (see the module docstring)."""

    def __init__(self, table: SymbolTable, layouts: KernelLayouts) -> None:
        self.table = table
        self.layouts = layouts
        raw = _raw_isf(table.path)
        self._isf_types: Dict[str, Any] = raw.get("user_types", {})
        self._isf_enums: Dict[str, Any] = raw.get("enums", {})
        self._isf_base: Dict[str, Any] = raw.get("base_types", {})
        self._fields: Dict[Tuple[str, str], FieldInfo] = {}

    # --- types ---------------------------------------------------------------------------------

    def has_type(self, name: str) -> bool:
        return self.layouts.has_type(name) or name in self._isf_types

    def size(self, name: str) -> int:
        if self.layouts.has_type(name):
            return self.layouts.type(name).size
        try:
            return int(self._isf_types[name]["size"])
        except KeyError:
            raise MissingLayoutError("build %s has no type %s" % (self.table.version, name)) \
                from None

    def has(self, type_name: str, path: str) -> bool:
        try:
            self.field(type_name, path)
        except (MissingLayoutError, KeyError):
            return False
        return True

    def offset(self, type_name: str, path: str) -> int:
        return self.field(type_name, path).offset

    def field(self, type_name: str, path: str) -> FieldInfo:
        key = (type_name, path)
        found = self._fields.get(key)
        if found is None:
            found = self._resolve(type_name, path)
            self._fields[key] = found
        return found

    def _resolve(self, type_name: str, path: str) -> FieldInfo:
        if self.layouts.has_type(type_name):
            fl = self.layouts.type(type_name).field(path)
            return FieldInfo(fl.offset, fl.size, fl.bit_position, fl.bit_length, fl.signed)
        return self._resolve_isf(type_name, path)

    def _type_size(self, desc: Dict[str, Any]) -> int:
        kind = desc.get("kind")
        if kind == "pointer":
            return 8
        if kind == "base":
            return int(self._isf_base[desc["name"]]["size"])
        if kind == "enum":
            return int(self._isf_enums[desc["name"]]["size"])
        if kind in ("struct", "union"):
            return int(self._isf_types[desc["name"]]["size"])
        if kind == "array":
            return int(desc["count"]) * self._type_size(desc["subtype"])
        if kind == "bitfield":
            return self._type_size(desc["type"])
        raise MissingLayoutError("no size for %r" % (desc,))

    def _resolve_isf(self, type_name: str, path: str) -> FieldInfo:
        current = type_name
        offset = 0
        parts = path.split(".")
        for depth, part in enumerate(parts):
            name, index = part, None
            if part.endswith("]"):
                name, _, idx = part[:-1].partition("[")
                index = int(idx, 0)
            try:
                member = self._isf_types[current]["fields"][name]
            except KeyError:
                raise MissingLayoutError("%s has no field %s (%s)" % (current, name,
                                                                      self.table.version)) from None
            desc = member["type"]
            offset += int(member["offset"])
            if index is not None:
                if desc.get("kind") != "array" or not 0 <= index < int(desc["count"]):
                    raise MissingLayoutError("%s.%s: bad index" % (type_name, path))
                desc = desc["subtype"]
                offset += index * self._type_size(desc)
            if depth + 1 < len(parts):
                if desc.get("kind") not in ("struct", "union"):
                    raise MissingLayoutError("%s.%s: %s is not a struct" % (type_name, path, part))
                current = desc["name"]
                continue
            if desc.get("kind") == "bitfield":
                inner = desc["type"]
                signed = bool(self._isf_base.get(inner.get("name", ""), {}).get("signed"))
                return FieldInfo(offset, self._type_size(inner), int(desc["bit_position"]),
                                 int(desc["bit_length"]), signed)
            signed = desc.get("kind") == "base" and bool(
                self._isf_base.get(desc["name"], {}).get("signed"))
            return FieldInfo(offset, self._type_size(desc), None, None, signed)
        raise MissingLayoutError("empty path for %s" % type_name)

    # --- enums and globals ---------------------------------------------------------------------

    def enum(self, name: str) -> Dict[str, int]:
        """Constants of an enum: the layouts' copy, else the ISF's; KeyError when neither."""
        if self.layouts.has_enum(name):
            return dict(self.layouts.enum(name).items())
        if name in self._isf_enums:
            return {k: int(v) for k, v in self._isf_enums[name]["constants"].items()}
        if name == "_KTHREAD_STATE":
            return dict(KTHREAD_STATE_WRK)
        raise KeyError("build %s has no enum %s" % (self.table.version, name))

    def rva(self, symbol: str) -> int:
        return self.table.rva(symbol)

    def has_symbol(self, symbol: str) -> bool:
        try:
            self.table.rva(symbol)
        except KeyError:
            return False
        return True


class KernelMemory:
    """Writes through one address space (the forged kernel's page tables).

    Each virtual page's physical buffer is looked up once (translation, then the page itself)
    and kept: planting a thread writes ~60 fields, mostly into one or two pages, so the
    per-field cost is a slice assignment. Mappings must not change under a page once written
    through (the builder only maps new pages, and unmaps only pages nothing was written to).
    """

    def __init__(self, pt: PageTables, facts: BuildFacts) -> None:
        self.pt = pt
        self.phys = pt.phys
        self.facts = facts
        self._pages: Dict[int, bytearray] = {}

    def _page(self, vpn: int) -> bytearray:
        page = self._pages.get(vpn)
        if page is None:
            pa = self.pt.translate(canonical(vpn * PAGE_SIZE))
            if pa is None:
                raise ValueError("0x%x is not mapped" % (vpn * PAGE_SIZE))
            page = self.phys.writable_page(pa // PAGE_SIZE)
            self._pages[vpn] = page
        return page

    def write(self, va: int, data: bytes) -> None:
        va &= 0xFFFFFFFFFFFFFFFF
        offset = va & (PAGE_SIZE - 1)
        total = len(data)
        if offset + total <= PAGE_SIZE:                 # the common case: one page
            if total:
                self._page(va >> 12)[offset:offset + total] = data
            return
        done = 0
        while done < total:
            address = (va + done) & 0xFFFFFFFFFFFFFFFF
            offset = address & (PAGE_SIZE - 1)
            chunk = min(total - done, PAGE_SIZE - offset)
            self._page(address >> 12)[offset:offset + chunk] = data[done:done + chunk]
            done += chunk

    def read(self, va: int, size: int) -> bytes:
        """Bytes at `va`; a mapped page never written reads as zeros (and stays absent)."""
        out = bytearray()
        while len(out) < size:
            address = (va + len(out)) & 0xFFFFFFFFFFFFFFFF
            offset = address & (PAGE_SIZE - 1)
            chunk = min(size - len(out), PAGE_SIZE - offset)
            page = self._pages.get(address >> 12)
            if page is None:
                pa = self.pt.translate(canonical(address & ~(PAGE_SIZE - 1)))
                if pa is None:
                    raise ValueError("0x%x is not mapped" % address)
                present = self.phys.page(pa // PAGE_SIZE)
                out += present[offset:offset + chunk] if present is not None else bytes(chunk)
                continue
            out += page[offset:offset + chunk]
        return bytes(out)

    def u64(self, va: int, value: int) -> None:
        self.write(va, (value & 0xFFFFFFFFFFFFFFFF).to_bytes(8, "little"))

    def put(self, type_name: str, address: int, path: str, value: int) -> None:
        """Write one field of the structure at `address` (bitfields: read-modify-write)."""
        info = self.facts.field(type_name, path)
        at = address + info.offset
        if info.bit_length is not None:
            assert info.bit_position is not None        # set together with bit_length
            mask = (1 << info.bit_length) - 1
            old = int.from_bytes(self.read(at, info.size), "little")
            new = (old & ~(mask << info.bit_position)) | ((value & mask) << info.bit_position)
            self.write(at, new.to_bytes(info.size, "little"))
            return
        if info.size == 0:
            raise MissingLayoutError("%s.%s has no storage" % (type_name, path))
        self.write(at, (value & ((1 << (8 * info.size)) - 1)).to_bytes(info.size, "little"))

    def put_if(self, type_name: str, address: int, path: str, value: int) -> bool:
        """`put` when the build has the field; False (nothing written) when it does not."""
        if not self.facts.has(type_name, path):
            return False
        self.put(type_name, address, path, value)
        return True

    def put_bytes(self, type_name: str, address: int, path: str, data: bytes) -> None:
        info = self.facts.field(type_name, path)
        if len(data) > info.size:
            raise ValueError("%d bytes do not fit %s.%s" % (len(data), type_name, path))
        self.write(address + info.offset, data + bytes(info.size - len(data)))

    def list_init(self, head: int) -> None:
        """An empty LIST_ENTRY at `head` (Flink = Blink = head)."""
        self.put("_LIST_ENTRY", head, "Flink", head)
        self.put("_LIST_ENTRY", head, "Blink", head)

    def list_link(self, head: int, entries: List[int]) -> None:
        """Make `head` the head of a circular doubly linked list of `entries` (in order)."""
        chain = [head] + list(entries)
        for i, entry in enumerate(chain):
            self.put("_LIST_ENTRY", entry, "Flink", chain[(i + 1) % len(chain)])
            self.put("_LIST_ENTRY", entry, "Blink", chain[i - 1])

    def unicode_string(self, type_name: str, address: int, path: str, text: str,
                       buffer: int) -> int:
        """Fill the UNICODE_STRING at `address`+path with `text` stored at `buffer`; returns
        the end of the written buffer (8-byte aligned)."""
        data = text.encode("utf-16-le")
        base = address + self.facts.offset(type_name, path)
        self.put("_UNICODE_STRING", base, "Length", len(data))
        self.put("_UNICODE_STRING", base, "MaximumLength", len(data) + 2)
        self.put("_UNICODE_STRING", base, "Buffer", buffer)
        self.write(buffer, data + b"\0\0")
        return (buffer + len(data) + 2 + 7) & ~7


class Arena:
    """A bump allocator over [base, base+limit) of kernel virtual memory (see module doc)."""

    def __init__(self, pt: PageTables, base: int, limit: int = 1 << 36,
                 chunk_pages: int = 64) -> None:
        self.pt = pt
        self.base = base
        self.limit = limit
        self.cursor = base
        self.mapped_end = base
        self.chunk = chunk_pages * PAGE_SIZE

    def _ensure(self, end: int) -> None:
        while self.mapped_end < end:
            if self.mapped_end + self.chunk > self.base + self.limit:
                raise MemoryError("arena at 0x%x is full" % self.base)
            self.pt.map_new(self.mapped_end, self.chunk, user=False, materialise=False)
            self.mapped_end += self.chunk

    def alloc(self, size: int, align: int = 16) -> int:
        """Address of `size` fresh bytes. Up to a page: inside one page; larger: page aligned."""
        size = max(size, 1)
        if size > PAGE_SIZE:
            align = max(align, PAGE_SIZE)
        start = -(-self.cursor // align) * align
        if size <= PAGE_SIZE and (start // PAGE_SIZE) != ((start + size - 1) // PAGE_SIZE):
            start = -(-start // PAGE_SIZE) * PAGE_SIZE
        end = start + size
        self._ensure(end)
        self.cursor = end
        return start

    def page(self, count: int = 1) -> int:
        """`count` whole, page-aligned pages."""
        return self.alloc(count * PAGE_SIZE, PAGE_SIZE)


__all__ = ["Arena", "BuildFacts", "FieldInfo", "KTHREAD_STATE_WRK", "KernelMemory", "MODES",
           "WAIT_ALL", "WAIT_ANY"]
