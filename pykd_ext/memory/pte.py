"""Where Windows keeps its software bits in a not-present x64 PTE, taken from symbol data.

Why a separate descriptor: the hardware half of a PTE (Present bit 0, PS bit 7, frame bits 12-51)
is an Intel/AMD architecture fact, but what Windows stores in an entry whose Present bit is clear
(`_MMPTE_SOFTWARE`, `_MMPTE_TRANSITION`, `_MMPTE_PROTOTYPE`) is a Windows structure: its bit
positions must come from the kernel's symbols (ISF), not from this code. The paging code therefore
takes a `SoftwarePteLayout` built by the layouts layer (or a test) from ISF `user_types`, and works
without one (it then only says "not present").
"""
import json
import lzma
from typing import Any, Dict, NamedTuple, Optional, Tuple

from pykd_ext.errors import MissingLayoutError

BitField = Tuple[int, int]     # (bit_position, bit_length)


class SoftwarePteLayout(NamedTuple):
    """Bit fields of Windows' not-present PTE formats (from `_MMPTE_*` in the ISF)."""

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
    def from_user_types(cls, user_types: Dict[str, Any]) -> "SoftwarePteLayout":
        """Build from ISF `user_types` (the dict of one kernel's structures)."""
        def bits(type_name: str, field_name: str) -> BitField:
            try:
                ftype = user_types[type_name]["fields"][field_name]["type"]
                return int(ftype["bit_position"]), int(ftype["bit_length"])
            except (KeyError, TypeError, ValueError):
                raise MissingLayoutError("symbol data has no bit field %s.%s"
                                         % (type_name, field_name)) from None
        return cls(prototype=bits("_MMPTE_SOFTWARE", "Prototype"),
                   transition=bits("_MMPTE_SOFTWARE", "Transition"),
                   protection=bits("_MMPTE_SOFTWARE", "Protection"),
                   pagefile_low=bits("_MMPTE_SOFTWARE", "PageFileLow"),
                   pagefile_high=bits("_MMPTE_SOFTWARE", "PageFileHigh"),
                   transition_pfn=bits("_MMPTE_TRANSITION", "PageFrameNumber"))

    @classmethod
    def from_layouts(cls, layouts: Any) -> "SoftwarePteLayout":
        """Build from a chosen `KernelLayouts` (the generated structs: the runtime's source)."""
        def bits(type_name: str, field_name: str) -> BitField:
            if not layouts.has_type(type_name) or not layouts.type(type_name).has_field(field_name):
                raise MissingLayoutError("layout %s has no bit field %s.%s"
                                         % (getattr(layouts, "build_id", "?"), type_name, field_name))
            fl = layouts.type(type_name).field(field_name)
            return int(fl.bit_position or 0), int(fl.bit_length or 0)
        return cls(prototype=bits("_MMPTE_SOFTWARE", "Prototype"),
                   transition=bits("_MMPTE_SOFTWARE", "Transition"),
                   protection=bits("_MMPTE_SOFTWARE", "Protection"),
                   pagefile_low=bits("_MMPTE_SOFTWARE", "PageFileLow"),
                   pagefile_high=bits("_MMPTE_SOFTWARE", "PageFileHigh"),
                   transition_pfn=bits("_MMPTE_TRANSITION", "PageFrameNumber"))

    @classmethod
    def from_isf_file(cls, path: str) -> "SoftwarePteLayout":
        """Build from an ISF JSON file (`.json` or `.json.xz`)."""
        opener: Any = lzma.open if path.endswith(".xz") else open
        with opener(path, "rt") as handle:
            data = json.load(handle)
        return cls.from_user_types(data.get("user_types", {}))


def describe_software_pte(pte: int, layout: Optional[SoftwarePteLayout]) -> Dict[str, int]:
    """The software fields of a not-present PTE, for `!pte`-like output."""
    if layout is None:
        return {}
    names = ("prototype", "transition", "protection", "pagefile_low", "pagefile_high")
    return {name: SoftwarePteLayout.field(pte, getattr(layout, name)) for name in names}
