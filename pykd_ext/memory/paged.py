"""What every page-table address space shares: the page cache, reads across pages, walks.

x64 and x86 (PAE or not) differ only in how a virtual address resolves to a physical page
(`_resolve`); reading bytes through cached pages, reporting the readable prefix of a partial read,
and recording a walk for `!pte`-like output are the same, so they live here once.
"""
import struct
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Union

from pykd_ext.errors import MemoryReadError
from pykd_ext.memory.faults import NOT_IN_DUMP, Fault
from pykd_ext.memory.pte import SoftwarePteLayout
from pykd_ext.memory.space import PAGE_SHIFT, PAGE_SIZE, AddressSpace, PhysicalMemory

#: Pages cached per address space before the cache is reset (bounded memory).
PAGE_CACHE_LIMIT = 1 << 16


@dataclass
class WalkStep:
    """One paging-structure entry read during a walk."""

    level: str              # "PML4E", "PDPTE", "PDE", "PTE"
    table: int              # physical address of the table
    index: int              # entry index in the table
    entry_address: int      # physical address of the entry
    entry: Optional[int]    # the raw value (None when the table page is not in the dump)


@dataclass
class PageWalk:
    """The full story of one translation (for `!pte`-like teaching output)."""

    address: int
    steps: List[WalkStep] = field(default_factory=list)
    physical_address: Optional[int] = None
    page_size: Optional[int] = None          # 0x1000, 0x200000, 0x400000 or 0x40000000
    transition: bool = False                 # resolved through a transition entry
    fault: Optional[Fault] = None


class PagedAddressSpace(AddressSpace):
    """An address space translated through page tables; subclasses implement `_resolve`."""

    pointer_size = 8
    #: `unpack_from` of one pointer (little-endian, `pointer_size` bytes)
    _unpack_pointer: Any = staticmethod(struct.Struct("<Q").unpack_from)

    def _init_paging(self, physical: PhysicalMemory,
                     software_pte: Optional[SoftwarePteLayout]) -> None:
        self.physical = physical
        self._page = physical.page
        self.software_pte = software_pte
        self._pages: Dict[int, memoryview] = {}      # VA page number -> data page
        self._tables: Dict[int, memoryview] = {}     # page-table cache of the subclass

    def _resolve(self, address: int, walk: Optional[PageWalk]) -> Union[int, Fault]:
        """Physical address of the page holding `address`, or the Fault that stops it."""
        raise NotImplementedError

    # -- configuration ------------------------------------------------------------------------

    def set_software_pte(self, software_pte: Optional[SoftwarePteLayout]) -> None:
        """Install the not-present PTE layout (from the chosen kernel layout)."""
        self.software_pte = software_pte
        self.drop_caches()

    def drop_caches(self) -> None:
        self._pages.clear()
        self._tables.clear()

    # -- hot path -----------------------------------------------------------------------------

    def read(self, address: int, size: int) -> bytes:
        offset = address & 0xFFF
        if 0 <= size and offset + size <= PAGE_SIZE:
            page = self._pages.get(address >> PAGE_SHIFT)
            if page is None:
                page = self._load(address, 0)
            return bytes(page[offset:offset + size])
        return self._read_span(address, size)

    def read_pointer(self, address: int) -> int:
        offset = address & 0xFFF
        size = self.pointer_size
        if offset <= PAGE_SIZE - size:
            page = self._pages.get(address >> PAGE_SHIFT)
            if page is None:
                page = self._load(address, 0)
            return self._unpack_pointer(page, offset)[0]
        return int.from_bytes(self._read_span(address, size), "little")

    def _read_span(self, address: int, size: int) -> bytes:
        if size < 0:
            raise ValueError("negative read size %d" % size)
        out = bytearray()
        while size > 0:
            offset = address & 0xFFF
            chunk = min(size, PAGE_SIZE - offset)
            page = self._pages.get(address >> PAGE_SHIFT)
            if page is None:
                page = self._load(address, len(out))
            out += page[offset:offset + chunk]
            address += chunk
            size -= chunk
        return bytes(out)

    def _load(self, address: int, readable: int) -> memoryview:
        """Resolve the page of `address`, cache it, or raise MemoryReadError(fault, readable)."""
        result = self._resolve(address, None)
        if isinstance(result, Fault):
            raise MemoryReadError(result, readable)
        page = self._page(result >> PAGE_SHIFT)
        if page is None:
            # Translation worked; the data page was not captured: report its physical address.
            raise MemoryReadError(Fault(NOT_IN_DUMP, result | (address & 0xFFF)), readable)
        if len(self._pages) >= PAGE_CACHE_LIMIT:
            self._pages.clear()
        self._pages[address >> PAGE_SHIFT] = page
        return page

    # -- translation ----------------------------------------------------------------------------

    def translate(self, address: int) -> int:
        """Physical address of `address` (the data page itself may be absent from the dump)."""
        result = self._resolve(address, None)
        if isinstance(result, Fault):
            raise MemoryReadError(result)
        return result | (address & 0xFFF)

    def walk(self, address: int) -> PageWalk:
        """Every entry read to translate `address`, and the outcome."""
        walk = PageWalk(address=address)
        result = self._resolve(address, walk)
        if isinstance(result, Fault):
            walk.fault = result
        else:
            walk.physical_address = result | (address & 0xFFF)
        return walk
