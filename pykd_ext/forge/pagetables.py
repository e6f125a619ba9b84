"""x64 4-level page tables built inside a forged `PhysicalImage`.

Why: readers translate virtual addresses by walking real page tables in physical memory, so a
forged dump must carry real tables: a PML4 (with Windows' self-map entry), PDPTs, PDs and PTs,
4 KiB / 2 MiB / 1 GiB mappings, and invalid entries planted on purpose (transition, prototype,
paged out, demand zero) so the reader's fault classification can be tested.

Table geometry (4 levels of 512 8-byte entries, 9 index bits each above a 12-bit page offset,
canonical 48-bit addresses) is the architecture's (Intel SDM vol. 3A, 4.5 "4-level paging");
entry bit layouts come from the kernel's ISF via `PteFormat`.
"""
from typing import List, NamedTuple, Optional, Tuple, Union

from pykd_ext.forge.physmem import PhysicalImage
from pykd_ext.forge.ptebits import PteFormat
from pykd_ext.memory.space import PAGE_SIZE

# Intel SDM vol. 3A, 4.5: 512 entries per table, index bits per level, page sizes.
ENTRIES = 512
ENTRY_SIZE = 8
LEVELS = ("PML4E", "PDPTE", "PDE", "PTE")
SHIFTS = (39, 30, 21, 12)
PAGE_2M = 0x200000
PAGE_1G = 0x40000000
LEAF_LEVEL = {PAGE_SIZE: 3, PAGE_2M: 2, PAGE_1G: 1}
USER_LIMIT = 0x800000000000         # canonical lower half ends here
CANONICAL_MASK = 0xFFFFFFFFFFFF

#: Index of the PML4 self-map entry before Windows 10 1607 randomised it (0x1ED); any index works.
DEFAULT_SELF_MAP_INDEX = 0x1ED


class Mapping(NamedTuple):
    """One mapping made through `map`/`map_new`."""

    va: int
    pa: int
    size: int
    page_size: int


def canonical(va: int) -> int:
    """Sign-extend a 48-bit address."""
    va &= CANONICAL_MASK
    return va | 0xFFFF000000000000 if va & 0x800000000000 else va


class PageTables:
    """One address space (a DTB) with its tables stored in `phys`."""

    def __init__(self, phys: PhysicalImage, ptes: PteFormat,
                 self_map_index: Optional[int] = DEFAULT_SELF_MAP_INDEX,
                 pml4_pfn: Optional[int] = None) -> None:
        self.phys = phys
        self.ptes = ptes
        self.pml4_pfn = pml4_pfn if pml4_pfn is not None else phys.allocate(1)
        phys.touch(self.pml4_pfn)
        self.mappings: List[Mapping] = []
        self._owner_bit = ptes.hardware(0, user=True) ^ ptes.hardware(0)
        self.self_map_index = self_map_index
        if self_map_index is not None:
            self._set_entry(self.pml4_pfn, self_map_index,
                            ptes.hardware(self.pml4_pfn, no_execute=True))

    @property
    def dtb(self) -> int:
        return self.pml4_pfn * PAGE_SIZE

    # --- raw entries ---------------------------------------------------------------------------

    def _entry_address(self, table_pfn: int, index: int) -> int:
        return table_pfn * PAGE_SIZE + index * ENTRY_SIZE

    def _get_entry(self, table_pfn: int, index: int) -> int:
        page = self.phys.page(table_pfn)
        if page is None:
            return 0
        return int.from_bytes(page[index * ENTRY_SIZE:(index + 1) * ENTRY_SIZE], "little")

    def _set_entry(self, table_pfn: int, index: int, value: int) -> None:
        self.phys.write_u64(self._entry_address(table_pfn, index), value)

    @staticmethod
    def _indices(va: int) -> Tuple[int, int, int, int]:
        va &= CANONICAL_MASK
        pml4, pdpt, pd, pt = ((va >> shift) & (ENTRIES - 1) for shift in SHIFTS)
        return pml4, pdpt, pd, pt

    @staticmethod
    def _check_va(va: int) -> None:
        if canonical(va) != va:
            raise ValueError("0x%x is not a canonical address" % va)

    def _table_for(self, va: int, level: int, user: bool) -> int:
        """PFN of the table that holds the entry of `va` at `level` (0 = PML4), creating tables."""
        table = self.pml4_pfn
        indices = self._indices(va)
        for depth in range(level):
            entry = self._get_entry(table, indices[depth])
            valid = entry & self.ptes.valid_bit
            if valid and entry & self.ptes.large_bit and depth > 0:
                raise ValueError("0x%x is already inside a large page (%s)" % (va, LEVELS[depth]))
            if not valid:
                child = self.phys.allocate(1)
                self.phys.touch(child)
                entry = self.ptes.hardware(child, user=user)
                self._set_entry(table, indices[depth], entry)
            elif user and not entry & self._owner_bit:
                entry |= self._owner_bit            # a user page below: upper levels allow user
                self._set_entry(table, indices[depth], entry)
            table = self.ptes.frame_of(entry)
        return table

    def set_pte_raw(self, va: int, value: int, level: str = "PTE") -> None:
        """Write a raw entry for `va` at a level ("PML4E", "PDPTE", "PDE", "PTE")."""
        self._check_va(va)
        depth = LEVELS.index(level)
        table = self._table_for(va, depth, user=va < USER_LIMIT)
        self._set_entry(table, self._indices(va)[depth], value)

    def get_pte_raw(self, va: int, level: str = "PTE") -> Optional[int]:
        """The raw entry of `va` at a level, or None when an upper level is not valid."""
        table = self.pml4_pfn
        indices = self._indices(va)
        depth = LEVELS.index(level)
        for current in range(depth):
            entry = self._get_entry(table, indices[current])
            if not entry & self.ptes.valid_bit or (current and entry & self.ptes.large_bit):
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
        """Map [va, va+size) to [pa, pa+size) with pages of `page_size` (4 KiB, 2 MiB, 1 GiB)."""
        if page_size not in LEAF_LEVEL:
            raise ValueError("page size must be 4 KiB, 2 MiB or 1 GiB, not 0x%x" % page_size)
        if va % page_size or pa % page_size or size <= 0 or size % page_size:
            raise ValueError("va 0x%x, pa 0x%x and size 0x%x must be multiples of 0x%x"
                             % (va, pa, size, page_size))
        self._check_va(va)
        self._check_va(canonical(va + size - 1))
        is_user = (va < USER_LIMIT) if user is None else user
        depth = LEAF_LEVEL[page_size]
        for offset in range(0, size, page_size):
            page_va = canonical(va + offset)
            table = self._table_for(page_va, depth, is_user)
            self._set_entry(table, self._indices(page_va)[depth],
                            self.ptes.hardware((pa + offset) // PAGE_SIZE,
                                               large=page_size != PAGE_SIZE, writable=writable,
                                               user=is_user, no_execute=no_execute))
        self.mappings.append(Mapping(va, pa, size, page_size))

    def map_new(self, va: int, data_or_size: Union[bytes, bytearray, int],
                page_size: int = PAGE_SIZE, user: Optional[bool] = None,
                materialise: bool = True) -> int:
        """Map fresh frames at `va` and copy `data` into them (or zero `size` bytes); returns va.

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
        is_user = (va < USER_LIMIT) if user is None else user
        self.map(va, first * PAGE_SIZE, size, page_size, user=is_user)
        if materialise and not data:
            for pfn in range(first, first + pages):
                self.phys.touch(pfn)
        if data:
            self.phys.write(first * PAGE_SIZE, data)
        if is_user:
            self.phys.mark_user(range(first, first + pages))
        return va

    # --- the forge's own walk (to write through virtual addresses) ----------------------------

    def translate(self, va: int) -> Optional[int]:
        """Physical address of `va` through these tables, or None (not valid)."""
        table = self.pml4_pfn
        indices = self._indices(va)
        for depth in range(4):
            entry = self._get_entry(table, indices[depth])
            if not entry & self.ptes.valid_bit:
                return None
            frame = self.ptes.frame_of(entry)
            if depth in (1, 2) and entry & self.ptes.large_bit:
                span = 1 << SHIFTS[depth]
                return (frame * PAGE_SIZE & ~(span - 1)) + (va & (span - 1))
            table = frame
        return table * PAGE_SIZE + (va & (PAGE_SIZE - 1))

    def write_virtual(self, va: int, data: bytes) -> None:
        """Write bytes through the mapping (materialises the physical pages)."""
        done = 0
        while done < len(data):
            address = va + done
            chunk = min(len(data) - done, PAGE_SIZE - (address & (PAGE_SIZE - 1)))
            pa = self.translate(canonical(address))
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
            pa = self.translate(canonical(address))
            if pa is None:
                raise ValueError("0x%x is not mapped" % address)
            out += self.phys.read(pa, chunk)
        return bytes(out)
