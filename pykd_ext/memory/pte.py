"""Windows software PTEs: what a not-present paging entry means, decoded once for every mode.

Why a separate descriptor: the hardware half of an entry (Present, PS, frame bits) is an
architecture fact (`paging_modes`), but what Windows stores in an entry whose Present bit is clear
(`_MMPTE_SOFTWARE`, `_MMPTE_TRANSITION`, `_MMPTE_PROTOTYPE`) is a Windows structure: its bit
positions must come from the kernel's symbols, not from this code. `SoftwarePteLayout` holds them,
built from ISF `user_types`, a chosen `KernelLayouts`, or an ISF file, whatever the mode (x64,
x86 PAE with 8-byte `_MMPTE`, x86 without PAE with 4-byte ones). `decode_not_present` is the one
decoder every walk uses; without a layout it only says "paged out" (keeping the raw value).
"""
from typing import Any, Callable, Dict, NamedTuple, Optional, Tuple, Union

from pykd_ext.errors import MissingLayoutError
from pykd_ext.memory.faults import DEMAND_ZERO, INVALID, PAGED_OUT, PROTOTYPE, Fault

BitField = Tuple[int, int]     # (bit_position, bit_length)

PAGE_SHIFT = 12

#: (SoftwarePteLayout field, Windows type, member): where each bit field comes from.
SOURCE_FIELDS: Tuple[Tuple[str, str, str], ...] = (
    ("prototype", "_MMPTE_SOFTWARE", "Prototype"),
    ("transition", "_MMPTE_SOFTWARE", "Transition"),
    ("protection", "_MMPTE_SOFTWARE", "Protection"),
    ("pagefile_low", "_MMPTE_SOFTWARE", "PageFileLow"),
    ("pagefile_high", "_MMPTE_SOFTWARE", "PageFileHigh"),
    ("transition_pfn", "_MMPTE_TRANSITION", "PageFrameNumber"),
)


class SoftwarePteLayout(NamedTuple):
    """Bit fields of Windows' not-present PTE formats (from `_MMPTE_*` in the symbol data)."""

    prototype: BitField          # _MMPTE_SOFTWARE.Prototype
    transition: BitField         # _MMPTE_SOFTWARE.Transition
    protection: BitField         # _MMPTE_SOFTWARE.Protection
    pagefile_low: BitField       # _MMPTE_SOFTWARE.PageFileLow  (pagefile number)
    pagefile_high: BitField      # _MMPTE_SOFTWARE.PageFileHigh (page offset in the pagefile)
    transition_pfn: BitField     # _MMPTE_TRANSITION.PageFrameNumber

    @staticmethod
    def field(value: int, bits: BitField) -> int:
        return (value >> bits[0]) & ((1 << bits[1]) - 1)

    @classmethod
    def from_lookup(cls, bits: Callable[[str, str], Optional[BitField]],
                    source: str) -> "SoftwarePteLayout":
        """Build from `bits(type, member)` -> (position, length) or None when absent."""
        found: Dict[str, BitField] = {}
        for name, type_name, member in SOURCE_FIELDS:
            got = bits(type_name, member)
            if got is None:
                raise MissingLayoutError("%s has no bit field %s.%s" % (source, type_name, member))
            found[name] = got
        return cls(**found)

    @classmethod
    def from_user_types(cls, user_types: Dict[str, Any]) -> "SoftwarePteLayout":
        """Build from ISF `user_types` (the dict of one kernel's structures)."""
        def bits(type_name: str, member: str) -> Optional[BitField]:
            try:
                ftype = user_types[type_name]["fields"][member]["type"]
                return int(ftype["bit_position"]), int(ftype["bit_length"])
            except (KeyError, TypeError, ValueError):
                return None
        return cls.from_lookup(bits, "symbol data")

    @classmethod
    def from_layouts(cls, layouts: Any) -> "SoftwarePteLayout":
        """Build from a chosen `KernelLayouts` (the generated structs: the runtime's source)."""
        def bits(type_name: str, member: str) -> Optional[BitField]:
            if not layouts.has_type(type_name) or not layouts.type(type_name).has_field(member):
                return None
            fl = layouts.type(type_name).field(member)
            if fl.bit_position is None or fl.bit_length is None:
                return None
            return int(fl.bit_position), int(fl.bit_length)
        return cls.from_lookup(bits, "layout %s" % getattr(layouts, "build_id", "?"))


def software_pte_from_layouts(layouts: Any) -> Optional[SoftwarePteLayout]:
    """The not-present PTE layout of a kernel build, or None when its layout lacks the
    `_MMPTE_*` bit fields (e.g. the derived 26100 file)."""
    try:
        return SoftwarePteLayout.from_layouts(layouts)
    except MissingLayoutError:
        return None


def decode_not_present(address: int, entry: int, level: str,
                       layout: Optional[SoftwarePteLayout]) -> Union[int, Fault]:
    """A not-present entry: the physical page of a transition entry, or the Fault it stands for.

    Zero is an invalid address. Without the kernel's layout every other value is reported as
    paged out (raw value kept): prototype, transition and pagefile entries cannot be told apart.
    With it: prototype PTE; transition (the frame is still in memory: its physical page is
    returned); PageFileHigh 0 is demand zero when a protection is set, else invalid; all ones is
    Windows' "look the VAD up" marker (MI_PTE_LOOKUP_NEEDED), no pagefile data; anything else is
    paged out, with its pagefile number and offset.
    """
    if entry == 0:
        return Fault(INVALID, address, level=level, pte=0)
    if layout is None:
        return Fault(PAGED_OUT, address, level=level, pte=entry)
    field_of = SoftwarePteLayout.field
    if field_of(entry, layout.prototype):
        return Fault(PROTOTYPE, address, level=level, pte=entry)
    if field_of(entry, layout.transition):
        return field_of(entry, layout.transition_pfn) << PAGE_SHIFT
    pagefile_high = field_of(entry, layout.pagefile_high)
    if pagefile_high == 0:
        if field_of(entry, layout.protection):
            return Fault(DEMAND_ZERO, address, level=level, pte=entry)
        return Fault(INVALID, address, level=level, pte=entry)
    if pagefile_high == (1 << layout.pagefile_high[1]) - 1:
        return Fault(INVALID, address, level=level, pte=entry)
    return Fault(PAGED_OUT, address, level=level, pte=entry,
                 pagefile=field_of(entry, layout.pagefile_low),
                 pagefile_offset=pagefile_high << PAGE_SHIFT)


def describe_software_pte(pte: int, layout: Optional[SoftwarePteLayout]) -> Dict[str, int]:
    """The software fields of a not-present PTE, for `!pte`-like output."""
    if layout is None:
        return {}
    names = ("prototype", "transition", "protection", "pagefile_low", "pagefile_high")
    return {name: SoftwarePteLayout.field(pte, getattr(layout, name)) for name in names}
