"""x86 paging on hostile tables: any entry values, any address -> a physical address or a typed
`MemoryReadError`, never another exception; reads agree with the translation.

(Volatility is not the oracle here: on malformed entries it and the architecture part ways, e.g.
it treats a not-present PDPTE with bit 11 set as a transition entry and ignores PSE-36 bits; the
structured tests compare with it on well-formed tables.)
"""
import struct

from hypothesis import given, settings, strategies as st

from pykd_ext.errors import MemoryReadError
from pykd_ext.forge.physmem import PhysicalImage
from pykd_ext.layouts.registry import load_layouts
from pykd_ext.memory.paged import X86AddressSpace
from pykd_ext.memory.pte import software_pte_from_layouts

FRAMES = 8          # physical pages 0..7, every table and data page among them
SOFTWARE = {True: software_pte_from_layouts(load_layouts("10.0.19041.1288-x86")),
            False: software_pte_from_layouts(load_layouts("6.1.7601.17514-x86"))}


def _memory(words: list, pae: bool) -> PhysicalImage:
    phys = PhysicalImage(((0, FRAMES),), allocation_floor=0)
    fmt = "<Q" if pae else "<I"
    per_page = 0x1000 // (8 if pae else 4)
    for pfn in range(FRAMES):
        page = b"".join(struct.pack(fmt, words[(pfn * 7 + i) % len(words)]) for i in range(per_page))
        phys.write(pfn * 0x1000, page)
    return phys


def _entry(pae: bool):
    limit = (1 << 64) - 1 if pae else 0xFFFFFFFF
    inside = st.builds(lambda f, flags: (f << 12) | flags, st.integers(0, FRAMES - 1), st.integers(0, 0xFFF))
    return st.one_of(inside, st.integers(0, limit))


@settings(max_examples=150, deadline=None)
@given(st.booleans(), st.booleans(), st.data())
def test_any_tables_any_address(pae: bool, with_layout: bool, data: st.DataObject) -> None:
    words = data.draw(st.lists(_entry(pae), min_size=1, max_size=40))
    phys = _memory(words, pae)
    dtb = data.draw(st.integers(0, FRAMES - 1)) * 0x1000 + (data.draw(st.integers(0, 127)) * 32 if pae else 0)
    ours = X86AddressSpace(phys, dtb, pae, SOFTWARE[pae] if with_layout else None)
    for va in data.draw(st.lists(st.integers(-1, 1 << 33), min_size=1, max_size=8)):
        try:
            pa = ours.translate(va)
        except MemoryReadError as err:
            assert err.fault is not None and err.readable == 0
            assert va >= 0 or err.fault.reason == "invalid address"
            continue
        assert 0 <= va < 1 << 32
        assert 0 <= pa < (1 << 52 if pae else 1 << 40)
        walk = ours.walk(va)
        assert walk.physical_address == pa and len(walk.steps) <= (3 if pae else 2)
        try:
            got = ours.read(va, 1)
        except MemoryReadError as err:
            assert err.fault.reason == "not in dump" and phys.page(pa >> 12) is None
        else:
            assert got == phys.read(pa, 1)
