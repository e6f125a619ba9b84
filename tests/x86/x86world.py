"""Test-only helpers: forged x86 address spaces and Volatility 3's x86 layers over the same bytes.

The expected values of the paging tests are what these helpers planted and what Volatility 3's
`WindowsIntel` / `WindowsIntelPAE` layers (an independent implementation of the same
architecture, with Windows' transition rule) translate from the same physical bytes.
"""
from typing import Any, Tuple

from pykd_ext.forge.pagetables import PageTables
from pykd_ext.forge.physmem import PhysicalImage
from pykd_ext.forge.ptebits import LayoutBits, PteFormat
from pykd_ext.layouts.registry import load_layouts
from pykd_ext.memory.paging_modes import X86_NONPAE, X86_PAE

PAE_BUILD = "10.0.19041.1288-x86"        # ntkrpamp: 8-byte _MMPTE
NON_PAE_BUILD = "6.1.7601.17514-x86"     # ntkrnlmp: 4-byte _MMPTE


def new_space(pae: bool, memory_map: Any = ((0x1, 0x9E), (0x100, 0x1700))) -> Tuple[PhysicalImage, PageTables, Any]:
    layouts = load_layouts(PAE_BUILD if pae else NON_PAE_BUILD)
    phys = PhysicalImage(memory_map)
    pt = PageTables(phys, PteFormat(LayoutBits(layouts)), X86_PAE if pae else X86_NONPAE)
    return phys, pt, layouts


def flat_bytes(phys: PhysicalImage) -> bytes:
    """The physical image as one buffer (address = offset), up to its last present page."""
    pfns = phys.present_pfns()
    out = bytearray((max(pfns) + 1) * 0x1000)
    for pfn in pfns:
        out[pfn * 0x1000:(pfn + 1) * 0x1000] = bytes(phys.page(pfn))
    return bytes(out)


def volatility_layer(phys: PhysicalImage, dtb: int, pae: bool) -> Any:
    from volatility3.framework import contexts
    from volatility3.framework.layers import intel, physical
    ctx = contexts.Context()
    ctx.add_layer(physical.BufferDataLayer(ctx, "mem", "mem", flat_bytes(phys)))
    ctx.config["x86.memory_layer"] = "mem"
    ctx.config["x86.page_map_offset"] = dtb
    cls = intel.WindowsIntelPAE if pae else intel.WindowsIntel
    layer = cls(ctx, "x86", "x86")
    ctx.add_layer(layer)
    return layer


def vol_translate(layer: Any, va: int) -> Any:
    """Volatility's physical address for `va`, or None when it reports the address invalid."""
    from volatility3.framework import exceptions
    try:
        pa, _ = layer.translate(va)
        return pa
    except exceptions.InvalidAddressException:
        return None
