"""Page tables of any paging mode built inside a forged `PhysicalImage`: one builder for all.

Why: readers translate virtual addresses by walking real page tables in physical memory, so a
forged dump must carry real tables (with Windows' self map, large pages, and invalid entries
planted on purpose: transition, prototype, paged out, demand zero) so the reader's fault
classification can be tested. x64 4-level (and 5-level), x86 PAE and x86 without PAE differ only
in numbers, which `memory.paging_modes.PagingMode` holds (the same data the reader's walker,
`memory.paged`, uses): levels and their index bits, entry size, which levels map large pages,
PSE-36 high address bits, the canonical form of an address. So one builder, driven by the mode,
writes them all. Entry bit layouts (Valid, Write, Owner, LargePage, PageFrameNumber and the
software formats) come from the kernel's ISF via `PteFormat`; AArch64 descriptors from
`ptebits.Aarch64Descriptors` (the Arm ARM's format), through the same interface.

Mode facts used beyond `PagingMode` (Intel SDM vol. 3A 4.4.1): a PAE PDPTE (a level whose
not-present entries are not Windows software PTEs) holds only Present and the frame, its bits
1-2 and 5-8 being reserved; a root table smaller than a page (the 32-byte PDPT) is kept, as
Windows does, with all of its next-level tables in consecutive frames.
Windows' recursive mapping (the self map Volatility's DTB scans look for), per mode: x64 PML4
entry 0x1ED before Windows 10 1607 randomised it (any index works); x86 non-PAE PDE 0x300 maps
the directory itself (page tables at 0xC0000000); PAE directory 3's entries 0-3 map the four
directories (directories at 0xC0600000).
"""
from typing import Dict, List, NamedTuple, Optional, Tuple, Union

from pykd_ext.forge.physmem import PhysicalImage
from pykd_ext.forge.ptebits import Aarch64Descriptors, PteFormat
from pykd_ext.memory.paging_modes import X64_4LEVEL, X64_5LEVEL, X86_NONPAE, X86_PAE, PagingMode
from pykd_ext.memory.space import PAGE_SIZE

PAGE_2M = 0x200000
PAGE_4M = 0x400000
PAGE_1G = 0x40000000

#: Windows' self-map per mode: (index in the root table, or in the table under it when the root
#: is smaller than a page; whether the entry is no-execute). See the module docstring.
SELF_MAP: Dict[str, Tuple[int, bool]] = {
    X64_4LEVEL.name: (0x1ED, True), X64_5LEVEL.name: (0x1ED, True),
    X86_NONPAE.name: (0x300, False), X86_PAE.name: (3, False)}
#: Index of the x64 PML4 self-map entry before Windows 10 1607 randomised it (0x1ED).
DEFAULT_SELF_MAP_INDEX = SELF_MAP[X64_4LEVEL.name][0]


#: What writes the entries: Windows' `_MMPTE` bits from the build's ISF (x86, x64), or AArch64's
#: descriptor format (no ISF of an ARM64 kernel is at hand; Windows keeps the hardware format).
EntryEncoder = Union[PteFormat, Aarch64Descriptors]


class _ModeDefault:
    """`self_map_index` not given: the mode's Windows self map (`SELF_MAP`)."""


MODE_DEFAULT = _ModeDefault()


class Mapping(NamedTuple):
    """One mapping made through `map`/`map_new`."""

    va: int
    pa: int
    size: int
    page_size: int


def canonical(va: int, mode: PagingMode = X64_4LEVEL) -> int:
    """`va` cut to the mode's VA bits and, in canonical modes, sign-extended (x64: 48-bit)."""
    return mode.canonical_address(va & ((1 << mode.va_bits) - 1)) if mode.canonical else va


class PageTables:
    """One address space (a DTB) of one paging mode, with its tables stored in `phys`."""

    def __init__(self, phys: PhysicalImage, ptes: EntryEncoder, mode: PagingMode = X64_4LEVEL,
                 self_map_index: Union[int, None, _ModeDefault] = MODE_DEFAULT,
                 pml4_pfn: Optional[int] = None,
                 kernel_from: Optional["PageTables"] = None) -> None:
        """`self_map_index`: None for no self map; `pml4_pfn`: the root table's frame (default:
        a fresh one); `kernel_from`: share that space's kernel half, as every Windows process
        does."""
        self.phys = phys
        self.ptes = ptes
        self.mode = mode
        self.levels = mode.levels
        self.entry_size = mode.entry.size
        self.mappings: List[Mapping] = []
        #: (shift, index mask) per level, root first (what `_indices` splits a VA by)
        self._index_bits = tuple((level.shift, level.entries - 1) for level in self.levels)
        #: levels whose present entries may map a large page
        self._large_levels = tuple(level.large_pages for level in self.levels)
        #: the mode's hardware format says which present entries map large pages (PS bit / block)
        self._entry_format = mode.entry
        self._owner_bit = ptes.hardware(0, user=True) ^ ptes.hardware(0)
        #: a VA below this is a user address (the lower half: x64 canonical, x86 without /3GB)
        self.user_limit = 1 << (mode.va_bits - 1)
        #: page size -> index of the level whose entries map it
        self.leaf_level: Dict[int, int] = {PAGE_SIZE: len(self.levels) - 1}
        for depth, level in enumerate(self.levels):
            if level.large_pages:
                self.leaf_level[level.span] = depth
        found = SELF_MAP.get(mode.name)
        if isinstance(self_map_index, _ModeDefault):
            self_map_index = found[0] if found is not None else None
        self.self_map_index: Optional[int] = self_map_index
        no_execute = bool(found and found[1])
        root = self.levels[0]
        #: the tables under a root smaller than a page (PAE's four directories), else empty
        self.children: List[int] = []
        if root.entries * self.entry_size < PAGE_SIZE:
            first = phys.allocate(1 + root.entries)
            for pfn in range(first, first + 1 + root.entries):
                phys.touch(pfn)
            self.pml4_pfn = first
            self.children = [first + 1 + i for i in range(root.entries)]
            for i, child in enumerate(self.children):
                self._set_entry(first, i, self._link(0, child, user=False))
            if self_map_index is not None:
                for i, child in enumerate(self.children):
                    self._set_entry(self.children[self_map_index], i,
                                    self._link(1, child, user=False, no_execute=no_execute))
        else:
            self.pml4_pfn = pml4_pfn if pml4_pfn is not None else phys.allocate(1)
            phys.touch(self.pml4_pfn)
            if self_map_index is not None:
                self._set_entry(self.pml4_pfn, self_map_index,
                                self._link(0, self.pml4_pfn, user=False, no_execute=no_execute))
        if kernel_from is not None:
            self.share_kernel(kernel_from)

    @property
    def root_pfn(self) -> int:
        return self.pml4_pfn

    @property
    def dtb(self) -> int:
        """CR3: the root table's physical address (PML4, PAE PDPT or x86 directory)."""
        return self.pml4_pfn * PAGE_SIZE

    @property
    def large_page(self) -> int:
        """The smallest large page of the mode (x64 and PAE: 2 MiB; x86 non-PAE: 4 MiB)."""
        return min(size for size in self.leaf_level if size != PAGE_SIZE)

    # --- raw entries ---------------------------------------------------------------------------

    def _link(self, depth: int, pfn: int, user: bool, no_execute: bool = False) -> int:
        """A valid entry at level `depth` naming the table (or page) in frame `pfn`."""
        if not self.levels[depth].software_ptes:
            return pfn * PAGE_SIZE | self.mode.entry.present_mask     # PAE PDPTE: Present + frame
        return self.ptes.hardware(pfn, user=user, no_execute=no_execute)

    def _entry_address(self, table_pfn: int, index: int) -> int:
        return table_pfn * PAGE_SIZE + index * self.entry_size

    def _get_entry(self, table_pfn: int, index: int) -> int:
        page = self.phys.page(table_pfn)
        if page is None:
            return 0
        at = index * self.entry_size
        return int.from_bytes(page[at:at + self.entry_size], "little")

    def _set_entry(self, table_pfn: int, index: int, value: int) -> None:
        self.phys.write(self._entry_address(table_pfn, index), value.to_bytes(self.entry_size, "little"))

    def _indices(self, va: int) -> Tuple[int, ...]:
        return tuple((va >> shift) & mask for shift, mask in self._index_bits)

    def _check_va(self, va: int) -> None:
        if not self.mode.is_valid_address(va):
            raise ValueError("0x%x is not a valid %s address" % (va, self.mode.name))

    def _is_large(self, depth: int, entry: int) -> bool:
        return bool(self._large_levels[depth] and self._entry_format.is_large(entry))

    def _table_for(self, va: int, level: int, user: bool) -> int:
        """PFN of the table that holds the entry of `va` at `level` (0 = root), creating tables."""
        table = self.pml4_pfn
        indices = self._indices(va)
        for depth in range(level):
            entry = self._get_entry(table, indices[depth])
            valid = entry & self.ptes.valid_bit
            if valid and self._is_large(depth, entry):
                raise ValueError("0x%x is already inside a large page (%s)" % (va, self.levels[depth].name))
            if not valid:
                child = self.phys.allocate(1)
                self.phys.touch(child)
                entry = self._link(depth, child, user)
                self._set_entry(table, indices[depth], entry)
            elif user and self.levels[depth].software_ptes and not entry & self._owner_bit:
                entry |= self._owner_bit            # a user page below: upper levels allow user
                self._set_entry(table, indices[depth], entry)
            table = self.ptes.frame_of(entry)
        return table

    def _depth(self, level: str) -> int:
        names = [lv.name for lv in self.levels]
        if level not in names:
            raise ValueError("%s has no %s level (%s)" % (self.mode.name, level, ", ".join(names)))
        return names.index(level)

    def set_pte_raw(self, va: int, value: int, level: str = "PTE") -> None:
        """Write a raw entry for `va` at a level named as the mode names it ("PDE", "PTE", ...)."""
        self._check_va(va)
        depth = self._depth(level)
        table = self._table_for(va, depth, user=va < self.user_limit)
        self._set_entry(table, self._indices(va)[depth], value)

    def get_pte_raw(self, va: int, level: str = "PTE") -> Optional[int]:
        """The raw entry of `va` at a level, or None when an upper level is not valid."""
        table = self.pml4_pfn
        indices = self._indices(va)
        depth = self._depth(level)
        for current in range(depth):
            entry = self._get_entry(table, indices[current])
            if not entry & self.ptes.valid_bit or self._is_large(current, entry):
                return None
            table = self.ptes.frame_of(entry)
        return self._get_entry(table, indices[depth])

    # --- planted invalid entries ---------------------------------------------------------------

    def set_transition(self, va: int, pfn: int) -> None:
        self.set_pte_raw(va, self.ptes.transition(pfn))

    def set_prototype(self, va: int, proto_address: int) -> None:
        self.set_pte_raw(va, self.ptes.prototype(proto_address))

    def set_paged_out(self, va: int, pagefile: int, page_offset: int) -> None:
        self.set_pte_raw(va, self.ptes.paged_out(pagefile, page_offset))

    def set_demand_zero(self, va: int) -> None:
        self.set_pte_raw(va, self.ptes.demand_zero())

    # --- mappings ------------------------------------------------------------------------------

    def map(self, va: int, pa: int, size: int, page_size: int = PAGE_SIZE,
            writable: bool = True, user: Optional[bool] = None, no_execute: bool = False) -> None:
        """Map [va, va+size) to [pa, pa+size) with pages of `page_size` (4 KiB or a size one of
        the mode's levels maps: x64 2 MiB / 1 GiB, PAE 2 MiB, x86 non-PAE 4 MiB)."""
        if page_size not in self.leaf_level:
            raise ValueError("page size must be one of %s, not 0x%x"
                             % (", ".join("0x%x" % s for s in sorted(self.leaf_level)), page_size))
        if va % page_size or pa % page_size or size <= 0 or size % page_size:
            raise ValueError("va 0x%x, pa 0x%x and size 0x%x must be multiples of 0x%x"
                             % (va, pa, size, page_size))
        self._check_va(va)
        self._check_va(canonical(va + size - 1, self.mode))
        if page_size == PAGE_SIZE and pa + size > 1 << self.mode.entry.frame_bits:
            raise ValueError("%s 4 KiB pages reach only the first 0x%x bytes"
                             % (self.mode.name, 1 << self.mode.entry.frame_bits))
        is_user = (va < self.user_limit) if user is None else user
        depth = self.leaf_level[page_size]
        high_bits = self.levels[depth].large_high if page_size != PAGE_SIZE else None
        for offset in range(0, size, page_size):
            page_va = canonical(va + offset, self.mode)
            frame_pa = pa + offset
            high = 0
            if high_bits is not None:
                # PSE-36 (Intel SDM 4.3): PA bits above 32 of a 4 MiB page sit in PDE bits 20:13
                bit, count, physical = high_bits
                high = ((frame_pa >> physical) & ((1 << count) - 1)) << bit
                frame_pa &= (1 << physical) - 1
            table = self._table_for(page_va, depth, is_user)
            self._set_entry(table, self._indices(page_va)[depth],
                            self.ptes.hardware(frame_pa // PAGE_SIZE, large=page_size != PAGE_SIZE,
                                               writable=writable, user=is_user,
                                               no_execute=no_execute) | high)
        self.mappings.append(Mapping(va, pa, size, page_size))

    def map_new(self, va: int, data_or_size: Union[bytes, bytearray, int],
                page_size: int = PAGE_SIZE, user: Optional[bool] = None,
                materialise: bool = True, no_execute: bool = False) -> int:
        """Map fresh frames at `va` and copy `data` into them (or zero `size` bytes); returns va
        (`translate(va)` is where the data went).

        With `materialise=False` (size only) the frames are reserved but not present: reads of
        them hit "not in dump", as with RAM a dump left out.
        """
        if isinstance(data_or_size, int):
            data = b""
            size = data_or_size
        else:
            data = bytes(data_or_size)
            size = len(data)
        size = -(-max(size, 1) // page_size) * page_size
        pages = size // PAGE_SIZE
        first = self.phys.allocate(pages, align_pages=page_size // PAGE_SIZE)
        is_user = (va < self.user_limit) if user is None else user
        self.map(va, first * PAGE_SIZE, size, page_size, user=is_user, no_execute=no_execute)
        if materialise and not data:
            for pfn in range(first, first + pages):
                self.phys.touch(pfn)
        if data:
            self.phys.write(first * PAGE_SIZE, data)
        if is_user:
            self.phys.mark_user(range(first, first + pages))
        return va

    def _kernel_slots(self) -> List[Tuple[int, int]]:
        """(table index in `children` or -1 for the root, entry index) of every entry mapping the
        kernel half, this space's self map left out."""
        root = self.levels[0]
        upper = range(root.entries // 2, root.entries)
        if not self.children:
            return [(-1, index) for index in upper if index != self.self_map_index]
        below = self.levels[1].entries
        return [(child, index) for child in upper for index in range(below)
                if not (child == self.self_map_index and index < len(self.children))]

    def share_kernel(self, other: "PageTables") -> None:
        """Copy the kernel half's entries (the upper half of the VA space) from `other`."""
        if other.mode != self.mode:
            raise ValueError("cannot share tables between %s and %s spaces" % (other.mode.name, self.mode.name))
        for child, index in self._kernel_slots():
            source = other.children[child] if child >= 0 else other.pml4_pfn
            value = other._get_entry(source, index)
            if value:
                self._set_entry(self.children[child] if child >= 0 else self.pml4_pfn, index, value)

    # --- the forge's own walk (to write through virtual addresses) ----------------------------

    def translate(self, va: int) -> Optional[int]:
        """Physical address of `va` through these tables, or None (not valid)."""
        table = self.pml4_pfn
        indices = self._indices(va)
        for depth, level in enumerate(self.levels):
            entry = self._get_entry(table, indices[depth])
            if not entry & self.ptes.valid_bit:
                return None
            frame = self.ptes.frame_of(entry)
            if self._is_large(depth, entry):
                span = level.span
                base = frame * PAGE_SIZE & ~(span - 1)
                if level.large_high is not None:
                    bit, count, physical = level.large_high
                    base = (base & ((1 << physical) - 1)) | (((entry >> bit) & ((1 << count) - 1)) << physical)
                return base + (va & (span - 1))
            table = frame
        return table * PAGE_SIZE + (va & (PAGE_SIZE - 1))

    def write_virtual(self, va: int, data: bytes) -> None:
        """Write bytes through the mapping (materialises the physical pages)."""
        done = 0
        while done < len(data):
            address = va + done
            chunk = min(len(data) - done, PAGE_SIZE - (address & (PAGE_SIZE - 1)))
            pa = self.translate(canonical(address, self.mode))
            if pa is None:
                raise ValueError("0x%x is not mapped" % address)
            self.phys.write(pa, data[done:done + chunk])
            done += chunk

    def write_u64(self, va: int, value: int) -> None:
        self.write_virtual(va, (value & 0xFFFFFFFFFFFFFFFF).to_bytes(8, "little"))

    def read_virtual(self, va: int, size: int) -> bytes:
        out = bytearray()
        while len(out) < size:
            address = va + len(out)
            chunk = min(size - len(out), PAGE_SIZE - (address & (PAGE_SIZE - 1)))
            pa = self.translate(canonical(address, self.mode))
            if pa is None:
                raise ValueError("0x%x is not mapped" % address)
            out += self.phys.read(pa, chunk)
        return bytes(out)
