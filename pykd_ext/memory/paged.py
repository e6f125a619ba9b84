"""The one page-table walker: virtual reads, translation and walks for every paging mode.

Why one: x64 4-level, x86 PAE and x86 without PAE (and 5-level, AArch64) differ only in numbers,
which `paging_modes.PagingMode` holds; the walk, the page cache, reads across pages, the readable
prefix of a partial read, Windows' not-present entries (`pte.decode_not_present`) and the record of
a walk for `!pte`-like output are the same, so they are written here once.

Speed (translation is the hot path, see `benchmarks/bench_memory.py`): the mode's numbers are
copied into attributes at construction; a read first looks its page up in a per-space cache
(VA page -> data page); a miss first looks the leaf table up in a second cache (VA >> leaf table
span -> table page) so most walks read one entry; only then are all levels walked.
"""
import struct
from typing import Any, Dict, Iterator, List, Optional, Set, Tuple, Union

from pykd_ext.errors import MemoryReadError
from pykd_ext.memory.faults import INVALID, NOT_IN_DUMP, Fault
from pykd_ext.memory.paging_modes import X64_4LEVEL, X86_NONPAE, X86_PAE, PagingMode
from pykd_ext.memory.pte import SoftwarePteLayout, decode_not_present
from pykd_ext.memory.space import PAGE_SHIFT, PAGE_SIZE, AddressSpace, PhysicalSource

#: Pages cached per address space before the cache is reset (bounded memory).
PAGE_CACHE_LIMIT = 1 << 16
#: Leaf page tables cached per address space before that cache is reset.
TABLE_CACHE_LIMIT = 1 << 14
#: Upper bound of tables one `mappings_of` scan reads (it visits the kernel half of a space).
MAX_TABLES_SCANNED = 200000

_UNPACK = {4: struct.Struct("<L").unpack_from, 8: struct.Struct("<Q").unpack_from}
#: a LIST_ENTRY's Flink and Blink, by pointer size
_UNPACK_LINK = {4: struct.Struct("<LL").unpack_from, 8: struct.Struct("<QQ").unpack_from}
_OFFSET_MASK = PAGE_SIZE - 1


class WalkStep:
    """One paging-structure entry read during a walk.

    (Plain classes, these two: the walker is imported by every command, and dataclass
    decorators were most of this module's import time.)"""

    __slots__ = ("level", "table", "index", "entry_address", "entry")

    def __init__(self, level: str, table: int, index: int, entry_address: int,
                 entry: Optional[int]) -> None:
        self.level = level                  # "PML4E", "PDPTE", "PDE", "PTE" (the mode's level names)
        self.table = table                  # physical address of the table
        self.index = index                  # entry index in the table
        self.entry_address = entry_address  # physical address of the entry
        self.entry = entry                  # the raw value (None when the table page is not in the dump)

    def __repr__(self) -> str:
        return "WalkStep(%s, table=0x%x, index=%d, entry=%s)" % (
            self.level, self.table, self.index, "None" if self.entry is None else "0x%x" % self.entry)


class PageWalk:
    """The full story of one translation (for `!pte`-like teaching output)."""

    __slots__ = ("address", "steps", "physical_address", "page_size", "transition", "fault")

    def __init__(self, address: int) -> None:
        self.address = address
        self.steps: List[WalkStep] = []
        self.physical_address: Optional[int] = None
        self.page_size: Optional[int] = None   # 0x1000, 0x200000, 0x400000 or 0x40000000
        self.transition = False                # resolved through a transition entry
        self.fault: Optional[Fault] = None

    def __repr__(self) -> str:
        physical = "None" if self.physical_address is None else "0x%x" % self.physical_address
        return "PageWalk(0x%x, steps=%r, physical_address=%s, page_size=%s, fault=%r)" % (
            self.address, self.steps, physical, self.page_size, self.fault)


# One level, as the walker reads it: (name, shift, index mask, large-page frame mask or 0,
# large-page offset mask, decode software PTEs?, PSE-36 (entry bit, mask, physical bit) or None,
# is the leaf level?).
_Level = Tuple[str, int, int, int, int, bool, Optional[Tuple[int, int, int]], bool]


class PagedAddressSpace(AddressSpace):
    """A virtual address space: a root table (CR3/TTBR) over physical memory, in one mode."""

    def __init__(self, physical: PhysicalSource, dtb: int, mode: PagingMode = X64_4LEVEL,
                 software_pte: Optional[SoftwarePteLayout] = None,
                 maxphyaddr: Optional[int] = None) -> None:
        self.mode = mode
        self.physical = physical
        self._page = physical.page
        self.software_pte = software_pte
        self.pointer_size = mode.pointer_size
        self._unpack_pointer: Any = _UNPACK[mode.pointer_size]
        self._unpack_link: Any = _UNPACK_LINK[mode.pointer_size]
        self.maxphyaddr = mode.check_maxphyaddr(maxphyaddr)
        self._frame = mode.frame_mask(self.maxphyaddr)
        self.dtb = mode.root(dtb, self.maxphyaddr)
        entry = mode.entry
        self._width = entry.size
        self._unpack_entry: Any = _UNPACK[entry.size]
        self._present = entry.present_mask
        self._large_mask = entry.large_mask
        self._large_value = entry.large_value
        self._levels: Tuple[_Level, ...] = tuple(
            (level.name, level.shift, level.entries - 1,
             self._frame & ~(level.span - 1) if level.large_pages else 0,
             (level.span - 1) & ~_OFFSET_MASK, level.software_ptes,
             (level.large_high[0], (1 << level.large_high[1]) - 1, level.large_high[2])
             if level.large_high else None,
             level is mode.leaf)
            for level in mode.levels)
        self._leaf_name = mode.leaf.name
        self._leaf_key = mode.leaf_table_shift
        # byte offset of a VA's entry in its leaf table: ((va >> 12) & (entries - 1)) * size,
        # as one shift and one mask (entry sizes are powers of two)
        self._leaf_offset_shift = PAGE_SHIFT - (entry.size.bit_length() - 1)
        self._leaf_offset_mask = (mode.leaf.entries - 1) * entry.size
        if mode.canonical:
            self._top_shift = mode.va_bits - 1
            self._top_high = (1 << (8 * mode.pointer_size - mode.va_bits + 1)) - 1
        else:
            self._top_shift = mode.va_bits
            self._top_high = 0
        self._pages: Dict[int, memoryview] = {}      # VA page number -> data page
        self._tables: Dict[int, memoryview] = {}     # VA >> leaf span -> leaf table page
        self._memo = None

    # -- configuration ------------------------------------------------------------------------

    def set_software_pte(self, software_pte: Optional[SoftwarePteLayout]) -> None:
        """Install the not-present PTE layout (from the chosen kernel layout)."""
        self.software_pte = software_pte
        self.drop_caches()

    def drop_caches(self) -> None:
        super().drop_caches()
        self._pages.clear()
        self._tables.clear()

    def space_for(self, dtb: int) -> "PagedAddressSpace":
        """Another space (a process's DTB) in the same mode over the same memory."""
        return PagedAddressSpace(self.physical, dtb, self.mode, self.software_pte,
                                 self.maxphyaddr)

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

    def read_link(self, address: int) -> Tuple[int, int]:
        offset = address & 0xFFF
        if offset <= PAGE_SIZE - 2 * self.pointer_size:
            page = self._pages.get(address >> PAGE_SHIFT)
            if page is None:
                page = self._load(address, 0)
            return self._unpack_link(page, offset)
        return super().read_link(address)

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

    # -- the walk ------------------------------------------------------------------------------

    def _resolve(self, address: int, walk: Optional[PageWalk]) -> Union[int, Fault]:
        """Physical address of the page holding `address`, or the Fault that stops it."""
        top = address >> self._top_shift
        if top and top != self._top_high:
            return Fault(INVALID, address)          # negative, too wide, or not canonical
        if walk is None:
            leaf = self._tables.get(address >> self._leaf_key)
            if leaf is not None:                    # upper levels already walked for this span
                entry = self._unpack_entry(leaf, (address >> self._leaf_offset_shift)
                                           & self._leaf_offset_mask)[0]
                if entry & self._present:
                    return entry & self._frame
                return self._not_present(address, entry, self._leaf_name, None)
        width = self._width
        unpack = self._unpack_entry
        page_of = self._page
        present = self._present
        frame = self._frame
        table = self.dtb
        for (name, shift, index_mask, large_frame, large_offset, software, large_high,
             last) in self._levels:
            index = (address >> shift) & index_mask
            entry_address = table + index * width
            page = page_of(entry_address >> PAGE_SHIFT)
            if page is None:
                if walk is not None:
                    walk.steps.append(WalkStep(name, table, index, entry_address, None))
                # The paging structure itself is not in the dump.
                return Fault(NOT_IN_DUMP, entry_address, level=name)
            entry = unpack(page, entry_address & 0xFFF)[0]
            if walk is not None:
                walk.steps.append(WalkStep(name, table, index, entry_address, entry))
            if entry & present:
                if large_frame and (entry & self._large_mask) == self._large_value:
                    if walk is not None:
                        walk.page_size = 1 << shift
                    physical = (entry & large_frame) | (address & large_offset)
                    if large_high is not None:        # PSE-36: high address bits elsewhere
                        physical |= ((entry >> large_high[0]) & large_high[1]) << large_high[2]
                    return physical
                next_frame = entry & frame
            elif software:
                resolved = self._not_present(address, entry, name, walk)
                if isinstance(resolved, Fault):
                    return resolved
                next_frame = resolved
            else:
                return Fault(INVALID, address, level=name, pte=entry)
            if last:
                if walk is not None:
                    walk.page_size = PAGE_SIZE
                else:
                    if len(self._tables) >= TABLE_CACHE_LIMIT:
                        self._tables.clear()
                    self._tables[address >> self._leaf_key] = page
                return next_frame
            table = next_frame
        raise AssertionError("unreachable")

    def _not_present(self, address: int, entry: int, level: str,
                     walk: Optional[PageWalk]) -> Union[int, Fault]:
        result = decode_not_present(address, entry, level, self.software_pte)
        if walk is not None and not isinstance(result, Fault):
            walk.transition = True
        return result

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

    # -- reverse mapping ---------------------------------------------------------------------------

    def mappings_of(self, frames: Set[int], lowest: int = 0,
                    max_tables: int = MAX_TABLES_SCANNED) -> Iterator[Tuple[int, int]]:
        """(VA of a page, its frame) for every present mapping at or above `lowest` of a frame in
        `frames` (4 KiB pages and large pages), in VA order.

        Bounded by `max_tables` tables read. Entries naming a table already walked (Windows'
        self-map: the PML4 entry naming itself, the x86 directories at 0xC0000000/0xC0600000)
        are skipped: they would show page tables as pages.
        """
        mode = self.mode
        width = self._width
        last = len(self._levels) - 1
        walked: Set[int] = {self.dtb}
        # Work items, popped in VA order: a table to read (depth, address, entries, VA bits
        # above it) or a hit to report (-1, VA, frame, 0).
        stack: List[Tuple[int, int, int, int]] = [(0, self.dtb, mode.levels[0].entries, 0)]
        tables = 0
        while stack:
            depth, table, count, base = stack.pop()
            if depth < 0:
                yield table, count
                continue
            tables += 1
            if tables > max_tables:
                return
            raw = self._table_bytes(table, count * width)
            if raw is None:
                continue
            _name, shift, _mask, large_frame, _offset, _software, large_high, _last = \
                self._levels[depth]
            items: List[Tuple[int, int, int, int]] = []
            for index, entry in enumerate(struct.unpack("<%d%s" % (count, "Q" if width == 8 else "L"),
                                                        raw)):
                if not entry & self._present:
                    continue
                bits = base | (index << shift)
                va = mode.canonical_address(bits)
                if va + (1 << shift) <= lowest:
                    continue
                if depth == last:
                    frame = (entry & self._frame) >> PAGE_SHIFT
                    if frame in frames:
                        items.append((-1, va, frame, 0))
                elif large_frame and (entry & self._large_mask) == self._large_value:
                    first = (entry & large_frame) >> PAGE_SHIFT
                    if large_high is not None:
                        first |= ((entry >> large_high[0]) & large_high[1]) << \
                            (large_high[2] - PAGE_SHIFT)
                    span = 1 << (shift - PAGE_SHIFT)
                    for frame in sorted(f for f in frames if first <= f < first + span):
                        items.append((-1, va | ((frame - first) << PAGE_SHIFT), frame, 0))
                else:
                    child = entry & self._frame
                    if child not in walked:
                        walked.add(child)
                        items.append((depth + 1, child, mode.levels[depth + 1].entries, bits))
            stack.extend(reversed(items))

    def _table_bytes(self, table: int, size: int) -> Optional[bytes]:
        page = self._page(table >> PAGE_SHIFT)
        if page is None:
            return None
        offset = table & 0xFFF
        return bytes(page[offset:offset + size])


# --- the constructors callers knew before modes were data (kept for them) ----------------------

class X64AddressSpace(PagedAddressSpace):
    """x64 4-level paging (`PagedAddressSpace` in mode `X64_4LEVEL`)."""

    def __init__(self, physical: PhysicalSource, dtb: int,
                 software_pte: Optional[SoftwarePteLayout] = None, maxphyaddr: int = 52) -> None:
        super().__init__(physical, dtb, X64_4LEVEL, software_pte, maxphyaddr)


class X86AddressSpace(PagedAddressSpace):
    """32-bit x86 paging, PAE or not (`PagedAddressSpace` in mode `X86_PAE`/`X86_NONPAE`)."""

    def __init__(self, physical: PhysicalSource, dtb: int, pae: bool,
                 software_pte: Optional[SoftwarePteLayout] = None, maxphyaddr: int = 52) -> None:
        super().__init__(physical, dtb, X86_PAE if pae else X86_NONPAE, software_pte, maxphyaddr)

    @property
    def pae(self) -> bool:
        return self.mode is X86_PAE
