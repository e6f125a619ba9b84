"""Paging modes as data: what a page-table walker needs to know about one way of translating.

Why data and not code: x86 without PAE, x86 PAE, x64 4-level (and 5-level, AArch64) walk tables
the same way: split the virtual address into indexes, read one entry per level, stop at a present
leaf or a large page. They differ only in numbers (bits per level, entry size, which levels may
map large pages, where the frame bits are, how wide an address is). Described here as small immutable
records (NamedTuple), after the way Volatility 3's `layers/intel.py` lists its levels, they drive the one
walker (`paged.PagedAddressSpace`) and the table scan of the raw-image reader. What Windows keeps
in a *not-present* entry is not an architecture fact; `pte.SoftwarePteLayout` decodes it for every
mode.

Architecture facts used:
- Intel SDM Vol. 3A ch. 4.3 "32-Bit Paging": CR3 bits 31:12, VA bits 31:22 / 21:12, 4-byte
  entries with frame bits 31:12; a PDE with PS (bit 7) maps 4 MiB, its entry bits 20:13 giving PA
  bits 39:32 (PSE-36).
- ch. 4.4 "PAE Paging": CR3 bits 31:5 name a 32-byte table of 4 PDPTEs (VA bits 31:30), then
  9-bit directory and table indexes, 8-byte entries with frame bits up to MAXPHYADDR-1; a PDE with
  PS maps 2 MiB; NX is bit 63.
- ch. 4.5 "4-Level Paging and 5-Level Paging": four (five with CR4.LA57) 9-bit indexes from VA bit
  47 (56) down, 8-byte entries; PS in a PDPTE maps 1 GiB, in a PDE 2 MiB; a VA is canonical when
  the bits above 47 (56) copy bit 47 (56). AMD APM Vol. 2 ch. 5 agrees.
- Arm ARM (DDI 0487) D8 "The AArch64 Virtual Memory System Architecture", 4 KiB granule, 48-bit
  VA: four 9-bit levels (L0-L3), 8-byte descriptors; bit 0 valid; at L1/L2 bit 1 clear is a block
  (1 GiB / 2 MiB), set a table; output address bits 47:12; UXN is bit 54. The upper half of the
  VA space is translated from TTBR1, the lower from TTBR0: a space is built from the root of the
  half it serves.

Adding a mode: describe it here (and register it in `PAGING_MODES`), give it a test that walks
tables planted for it (`tests/memory/test_paging_modes.py`); the walker needs no change unless
the mode translates in a way these fields cannot say.
"""
from typing import Dict, NamedTuple, Optional, Tuple

PAGE_SHIFT = 12


class PagingLevel(NamedTuple):
    """One level of tables: which VA bits index it and what its entries may be."""

    name: str                   # the entry's name in faults and walks: "PML4E", "PDE", "L2", ...
    shift: int                  # lowest VA bit this level indexes
    index_bits: int             # VA bits this level indexes (9 = 512 entries)
    large_pages: bool = False   # a present entry here may map memory directly (PS bit / block)
    software_ptes: bool = True  # a not-present entry here is a Windows software PTE (decoded);
    #                             otherwise it only means "invalid address" (PAE PDPTEs)
    large_high: Optional[Tuple[int, int, int]] = None
    #: PSE-36: (entry bit, bit count, physical bit): extra high address bits of a large page

    @property
    def span(self) -> int:
        """Bytes of virtual memory one entry of this level covers (a large page's size)."""
        return 1 << self.shift

    @property
    def entries(self) -> int:
        return 1 << self.index_bits


class EntryFormat(NamedTuple):
    """The hardware half of a paging-structure entry (present, large page, frame, NX)."""

    size: int                   # bytes per entry
    frame_bits: int             # highest frame bit + 1 an entry can carry (32, 48, 52)
    present_mask: int = 1
    large_mask: int = 1 << 7    # an entry maps a large page when (entry & large_mask) == large_value
    large_value: int = 1 << 7
    nx_bit: Optional[int] = None

    def is_large(self, entry: int) -> bool:
        return (entry & self.large_mask) == self.large_value

    def executable(self, entry: int) -> bool:
        """False when the entry's no-execute bit is set (modes without NX: always True)."""
        return self.nx_bit is None or not (entry >> self.nx_bit) & 1


class PagingMode(NamedTuple):
    """One way of translating virtual addresses (see the module docstring for the sources)."""

    name: str                           # "x64 4-level", "x86 PAE", ...
    levels: Tuple[PagingLevel, ...]     # from the root table down to the 4 KiB leaf
    entry: EntryFormat
    va_bits: int                        # meaningful VA bits (32, 48, 57)
    canonical: bool                     # the VA bits above va_bits copy its top bit
    pointer_size: int                   # bytes of a virtual address in this mode
    maxphyaddr: int                     # default MAXPHYADDR (physical address bits)
    maxphyaddr_range: Tuple[int, int]   # what a caller may ask for (inclusive)
    root_mask: Optional[int] = None     # CR3 bits naming the root table; None: the frame mask
    #                                     (PAE: 0xFFFFFFE0, a 32-byte-aligned PDPT)

    # -- derived numbers (cheap; the walker copies what it needs into attributes) ---------------

    @property
    def leaf(self) -> PagingLevel:
        return self.levels[-1]

    @property
    def leaf_table_shift(self) -> int:
        """log2 of the VA span one leaf table maps (x64: 2 MiB, x86 non-PAE: 4 MiB)."""
        return self.leaf.shift + self.leaf.index_bits

    @property
    def va_limit(self) -> int:
        """One past the highest address a pointer of this mode can hold."""
        return 1 << (8 * self.pointer_size)

    def check_maxphyaddr(self, maxphyaddr: Optional[int]) -> int:
        value = self.maxphyaddr if maxphyaddr is None else maxphyaddr
        low, high = self.maxphyaddr_range
        if not low <= value <= high:
            raise ValueError("MAXPHYADDR must be within %d..%d, not %d" % (low, high, value))
        return value

    def frame_mask(self, maxphyaddr: Optional[int] = None) -> int:
        """Entry bits naming the next table or a 4 KiB page (bits 12..MAXPHYADDR-1)."""
        bits = min(self.check_maxphyaddr(maxphyaddr), self.entry.frame_bits)
        return ((1 << bits) - 1) & ~((1 << PAGE_SHIFT) - 1)

    def root(self, dtb: int, maxphyaddr: Optional[int] = None) -> int:
        """The root table's physical address from a CR3/TTBR value (PCID, ASID, flags masked)."""
        mask = self.frame_mask(maxphyaddr) if self.root_mask is None else self.root_mask
        return dtb & mask

    def is_valid_address(self, address: int) -> bool:
        """Inside the pointer width and, for canonical modes, sign-extended from the top VA bit."""
        if address < 0 or address >= self.va_limit:
            return False
        if not self.canonical:
            return address < 1 << self.va_bits
        top = address >> (self.va_bits - 1)
        return top == 0 or top == (1 << (8 * self.pointer_size - self.va_bits + 1)) - 1

    def split(self, address: int) -> Tuple[int, ...]:
        """The table index at every level, then the page offset."""
        return tuple((address >> level.shift) & (level.entries - 1) for level in self.levels) + \
            (address & ((1 << PAGE_SHIFT) - 1),)

    def canonical_address(self, bits: int) -> int:
        """The VA whose low `va_bits` are `bits` (canonical modes: top bit sign-extended)."""
        if self.canonical and bits >> (self.va_bits - 1) & 1:
            return bits | ((self.va_limit - 1) & ~((1 << self.va_bits) - 1))
        return bits

    def address_of(self, indexes: Tuple[int, ...], offset: int = 0) -> int:
        """The VA with these level indexes and page offset: the inverse of `split`."""
        bits = offset
        for level, index in zip(self.levels, indexes):
            bits |= index << level.shift
        return self.canonical_address(bits)


# --- the modes -----------------------------------------------------------------------------------

_INTEL_64BIT_ENTRY = EntryFormat(size=8, frame_bits=52, nx_bit=63)

X86_NONPAE = PagingMode(
    name="x86 non-PAE",
    levels=(PagingLevel("PDE", 22, 10, large_pages=True, large_high=(13, 8, 32)),
            PagingLevel("PTE", 12, 10)),
    entry=EntryFormat(size=4, frame_bits=32),
    va_bits=32, canonical=False, pointer_size=4, maxphyaddr=52, maxphyaddr_range=(32, 52),
    root_mask=0xFFFFF000)

X86_PAE = PagingMode(
    name="x86 PAE",
    levels=(PagingLevel("PDPTE", 30, 2, software_ptes=False),
            PagingLevel("PDE", 21, 9, large_pages=True),
            PagingLevel("PTE", 12, 9)),
    entry=_INTEL_64BIT_ENTRY,
    va_bits=32, canonical=False, pointer_size=4, maxphyaddr=52, maxphyaddr_range=(32, 52),
    root_mask=0xFFFFFFE0)

X64_4LEVEL = PagingMode(
    name="x64 4-level",
    levels=(PagingLevel("PML4E", 39, 9),
            PagingLevel("PDPTE", 30, 9, large_pages=True),
            PagingLevel("PDE", 21, 9, large_pages=True),
            PagingLevel("PTE", 12, 9)),
    entry=_INTEL_64BIT_ENTRY,
    va_bits=48, canonical=True, pointer_size=8, maxphyaddr=52, maxphyaddr_range=(36, 52))

#: 5-level paging (CR4.LA57): described, walked by the same code, tested on planted tables; no
#: reader selects it yet (a dump states it only through the kernel's own variables).
X64_5LEVEL = PagingMode(
    name="x64 5-level",
    levels=(PagingLevel("PML5E", 48, 9),) + X64_4LEVEL.levels,
    entry=_INTEL_64BIT_ENTRY,
    va_bits=57, canonical=True, pointer_size=8, maxphyaddr=52, maxphyaddr_range=(36, 52))

#: AArch64, 4 KiB granule, 48-bit VA, four levels: described and tested on planted tables; no
#: ARM64 reader exists yet (Windows ARM64 dumps need their CONTEXT and KDBG checks first).
#: Its table geometry is x64's (4 KiB pages, 9 VA bits per level from bit 47, blocks of 1 GiB and
#: 2 MiB at the middle levels); its entries are not (valid bit 0, bit 1 clear = block).
AARCH64_4K = PagingMode(
    name="AArch64 4K granule 4-level",
    levels=tuple(level._replace(name=name)
                 for level, name in zip(X64_4LEVEL.levels, ("L0", "L1", "L2", "L3"))),
    entry=EntryFormat(size=8, frame_bits=48, present_mask=1, large_mask=0b10, large_value=0,
                      nx_bit=54),
    va_bits=48, canonical=True, pointer_size=8, maxphyaddr=48, maxphyaddr_range=(32, 52))

PAGING_MODES: Dict[str, PagingMode] = {mode.name: mode for mode in (
    X86_NONPAE, X86_PAE, X64_4LEVEL, X64_5LEVEL, AARCH64_4K)}
