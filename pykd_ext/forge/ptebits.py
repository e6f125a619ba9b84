"""Page-table entry values for forged page tables, with bit positions from the kernel's ISF.

Why: valid (hardware) entries and the software formats a reader must classify (transition,
prototype, paged out, demand zero) are Windows' `_MMPTE_*` bitfield layouts. They differ between
builds, so the forge takes every position from the build's symbol table (`_MMPTE_HARDWARE`,
`_MMPTE_SOFTWARE`, `_MMPTE_TRANSITION`, `_MMPTE_PROTOTYPE`) rather than typing them.

Entries are built unswizzled: the forge does not apply the kernel's invalid-PTE mask (L1TF
mitigation, `MiInvalidPteMask`); a forged dump has no such mask to read either.
"""
from typing import Any, Dict, Tuple, Union

from pykd_ext.forge.isf import SymbolTable

#: MM_READWRITE, the protection code of an ordinary read/write page in software PTEs
#: (Windows Internals 7th ed., part 1, ch. 5 "Page protection"; not a PDB type).
MM_READWRITE = 4

_TYPES = ("_MMPTE_HARDWARE", "_MMPTE_SOFTWARE", "_MMPTE_TRANSITION", "_MMPTE_PROTOTYPE")


class LayoutBits:
    """`PteFormat`'s view of a `KernelLayouts` (generated from any ISF, derived ones included):
    `has_member(type, member)` and `bits(type, member)` -> (position, length)."""

    def __init__(self, layouts: Any) -> None:
        self.layouts = layouts

    def has_member(self, type_name: str, member: str) -> bool:
        return bool(self.layouts.has_type(type_name) and self.layouts.type(type_name).has_field(member))

    def bits(self, type_name: str, member: str) -> Tuple[int, int]:
        f = self.layouts.type(type_name).field(member)
        if f.bit_position is None:
            raise ValueError("%s.%s is not a bit field" % (type_name, member))
        return int(f.bit_position), int(f.bit_length)


def _field(bits: Dict[str, Tuple[int, int]], name: str, value: int) -> int:
    position, length = bits[name]
    if value < 0 or value >> length:
        raise ValueError("%s=0x%x does not fit %d bits" % (name, value, length))
    return value << position


class PteFormat:
    """Builds raw 64-bit MMPTE values for one kernel build."""

    def __init__(self, table: Union[SymbolTable, LayoutBits]) -> None:
        self.table = table
        self._bits: Dict[str, Dict[str, Tuple[int, int]]] = {}
        for type_name in _TYPES:
            fields = {}
            for member in ("Valid", "Dirty1", "Owner", "Accessed", "Dirty", "LargePage", "Global",
                           "Write", "PageFrameNumber", "NoExecute", "Protection", "Prototype",
                           "Transition", "PageFileLow", "PageFileHigh", "ProtoAddress"):
                if table.has_member(type_name, member):
                    fields[member] = table.bits(type_name, member)
            self._bits[type_name] = fields
        hw = self._bits["_MMPTE_HARDWARE"]
        self.pfn_shift, self.pfn_bits = hw["PageFrameNumber"]
        self.large_bit = 1 << hw["LargePage"][0]
        self.valid_bit = 1 << hw["Valid"][0]

    def bits(self, type_name: str, member: str) -> Tuple[int, int]:
        """(position, length) of a member, as the ISF states it."""
        return self._bits[type_name][member]

    # --- valid entries (every paging level uses the hardware layout) -------------------------

    def hardware(self, pfn: int, large: bool = False, writable: bool = True, user: bool = False,
                 no_execute: bool = False, global_page: bool = False) -> int:
        """A valid entry pointing at frame `pfn` (a table, a 4 KiB page, or a large page)."""
        hw = self._bits["_MMPTE_HARDWARE"]
        value = _field(hw, "Valid", 1) | _field(hw, "PageFrameNumber", pfn)
        value |= _field(hw, "Accessed", 1) | _field(hw, "Dirty", 1 if writable else 0)
        if writable:
            value |= _field(hw, "Dirty1", 1)       # the processor's R/W bit
            if "Write" in hw:
                value |= _field(hw, "Write", 1)    # Windows' software copy of it
        if user:
            value |= _field(hw, "Owner", 1)
        if large:
            value |= _field(hw, "LargePage", 1)
        if global_page and not user:
            value |= _field(hw, "Global", 1)
        if no_execute:
            value |= _field(hw, "NoExecute", 1)
        return value

    def frame_of(self, entry: int) -> int:
        return (entry >> self.pfn_shift) & ((1 << self.pfn_bits) - 1)

    # --- invalid (software) entries ------------------------------------------------------------

    def transition(self, pfn: int, protection: int = MM_READWRITE) -> int:
        """A page on the standby/modified list: still in frame `pfn`, not valid."""
        bits = self._bits["_MMPTE_TRANSITION"]
        return (_field(bits, "Transition", 1) | _field(bits, "PageFrameNumber", pfn)
                | _field(bits, "Protection", protection))

    def prototype(self, proto_address: int) -> int:
        """A PTE that refers to a prototype PTE (shared/section memory) at `proto_address`."""
        bits = self._bits["_MMPTE_PROTOTYPE"]
        length = bits["ProtoAddress"][1]
        return _field(bits, "Prototype", 1) | _field(bits, "ProtoAddress",
                                                     proto_address & ((1 << length) - 1))

    def paged_out(self, pagefile: int, page_offset: int, protection: int = MM_READWRITE) -> int:
        """A page written to pagefile number `pagefile` at page index `page_offset`."""
        bits = self._bits["_MMPTE_SOFTWARE"]
        if page_offset == 0:
            raise ValueError("page offset 0 would read as demand zero")
        return (_field(bits, "PageFileLow", pagefile) | _field(bits, "PageFileHigh", page_offset)
                | _field(bits, "Protection", protection))

    def demand_zero(self, protection: int = MM_READWRITE) -> int:
        """A committed page never touched: protection only."""
        return _field(self._bits["_MMPTE_SOFTWARE"], "Protection", protection)


class Aarch64Descriptors:
    """Valid AArch64 descriptors (4 KiB granule) with `PteFormat`'s interface, so the one builder
    (`pagetables.PageTables` in mode `AARCH64_4K`) writes ARM64 tables.

    Arm ARM (DDI 0487) D8.3 "Translation table descriptor formats": bit 0 valid; bits[1:0] 0b11
    a table (L0-L2) or a page (L3), 0b01 a block (L1 1 GiB, L2 2 MiB); output/next-table address
    in bits 47:12; bit 10 AF, bits 9:8 SH (0b11 inner shareable), AP[2:1] bits 7:6 (bit 7 read
    only, bit 6 EL0 access), bit 53 PXN, bit 54 UXN. Table descriptors ignore the lower attribute
    bits, so one encoding serves tables and pages. Not-present (software) entries of Windows on
    ARM64 are not described: planting them is refused.
    """

    valid_bit = 1
    ADDRESS_MASK = ((1 << 48) - 1) & ~0xFFF
    AF = 1 << 10
    SH_INNER = 0b11 << 8
    READ_ONLY = 1 << 7
    EL0 = 1 << 6
    PXN = 1 << 53
    UXN = 1 << 54

    def hardware(self, pfn: int, large: bool = False, writable: bool = True, user: bool = False,
                 no_execute: bool = False, global_page: bool = False) -> int:
        """A valid descriptor naming frame `pfn`: a block when `large`, else a table or page."""
        del global_page                         # nG (bit 11) left clear: every mapping global
        address = pfn << 12
        if address & ~self.ADDRESS_MASK:
            raise ValueError("frame 0x%x is beyond a 48-bit output address" % pfn)
        value = address | (0b01 if large else 0b11) | self.AF | self.SH_INNER
        if not writable:
            value |= self.READ_ONLY
        if user:
            value |= self.EL0
        if no_execute:
            value |= self.PXN | self.UXN
        return value

    def frame_of(self, entry: int) -> int:
        return (entry & self.ADDRESS_MASK) >> 12

    def _no_software(self) -> int:
        raise ValueError("Windows on ARM64's not-present PTE formats are not described here")

    def transition(self, pfn: int, protection: int = MM_READWRITE) -> int:
        return self._no_software()

    def prototype(self, proto_address: int) -> int:
        return self._no_software()

    def paged_out(self, pagefile: int, page_offset: int, protection: int = MM_READWRITE) -> int:
        return self._no_software()

    def demand_zero(self, protection: int = MM_READWRITE) -> int:
        return self._no_software()
