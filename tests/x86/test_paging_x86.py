"""x86 paging (PAE and non-PAE) against Volatility 3's WindowsIntel/WindowsIntelPAE layers.

Tables are planted with the forge's `PageTables` in an x86 mode (entry bits from the derived layouts'
`_MMPTE_*`); every translation of ours must equal Volatility's on the same bytes, and faults must
carry what was planted (pagefile number and offset, level, raw entry).
"""
import pytest

from x86world import new_space, vol_translate, volatility_layer
from pykd_ext.errors import MemoryReadError
from pykd_ext.memory import faults
from pykd_ext.memory.paged import X86AddressSpace
from pykd_ext.memory.pte import software_pte_from_layouts

KBASE = 0x82000000


def _plant(pae: bool):
    phys, pt, layouts = new_space(pae)
    large = pt.large_page
    pages = {}
    for i in range(6):                                   # kernel 4 KiB pages with content
        va = KBASE + i * 0x1000
        pt.map_new(va, bytes([0x40 + i]) * 0x1000)
        pages[va] = bytes([0x40 + i]) * 16
    user = pt.map_new(0x00400000, b"MZuser" + bytes(100))  # a user page
    pages[user] = b"MZuser" + bytes(10)
    big_pa = phys.allocate(large // 0x1000, align_pages=large // 0x1000) * 0x1000
    pt.map(0x90000000, big_pa, large, page_size=large)       # one large page
    phys.write(big_pa + large - 0x1000, b"end of large page")
    pages[0x90000000 + large - 0x1000] = b"end of large page"
    standby = phys.allocate(1)
    phys.write(standby * 0x1000, b"standby page")
    pt.set_transition(KBASE + 0x10000, standby)
    pt.set_paged_out(KBASE + 0x11000, 2, 0x345)
    pt.set_demand_zero(KBASE + 0x12000)
    return phys, pt, layouts, pages, standby


@pytest.mark.parametrize("pae", [True, False], ids=["PAE", "non-PAE"])
def test_translations_agree_with_volatility(pae: bool) -> None:
    phys, pt, layouts, pages, standby = _plant(pae)
    ours = X86AddressSpace(phys, pt.dtb, pae, software_pte_from_layouts(layouts))
    vol = volatility_layer(phys, pt.dtb, pae)
    probes = set(pages) | {KBASE + 0x10000 + 0x123, KBASE + 0x11000, KBASE + 0x12000,
                           0x90000000 + 0x1234, 0x90000000 + pt.large_page - 1, 0x7FFE0000,
                           0xC0000000, 0xC0300000 if not pae else 0xC0600000, 0xFFFFF000}
    for va in sorted(probes):
        expected = vol_translate(vol, va)
        if expected is None:
            with pytest.raises(MemoryReadError):
                ours.translate(va)
        else:
            assert ours.translate(va) == expected, hex(va)
    # content through both
    for va, data in pages.items():
        assert ours.read(va, len(data)) == data == vol.read(va, len(data))
    # transition: still in memory, both read it
    assert ours.read(KBASE + 0x10000, 12) == b"standby page" == vol.read(KBASE + 0x10000, 12)


@pytest.mark.parametrize("pae", [True, False], ids=["PAE", "non-PAE"])
def test_self_map_reads_the_tables(pae: bool) -> None:
    # Windows' recursive mapping, planted as Windows does it, gives the PTE of a VA at a fixed VA
    phys, pt, layouts, pages, _ = _plant(pae)
    ours = X86AddressSpace(phys, pt.dtb, pae)
    va = KBASE + 0x3000
    if pae:
        pte_va = 0xC0000000 + (va >> 12) * 8
        raw = int.from_bytes(ours.read(pte_va, 8), "little")
    else:
        pte_va = 0xC0000000 + (va >> 12) * 4
        raw = int.from_bytes(ours.read(pte_va, 4), "little")
    assert raw & ~0xFFF & 0xFFFFFFFFFF == ours.translate(va)


@pytest.mark.parametrize("pae", [True, False], ids=["PAE", "non-PAE"])
def test_faults_carry_what_was_planted(pae: bool) -> None:
    phys, pt, layouts, pages, _ = _plant(pae)
    ours = X86AddressSpace(phys, pt.dtb, pae, software_pte_from_layouts(layouts))
    with pytest.raises(MemoryReadError) as err:
        ours.read(KBASE + 0x11000 + 8, 4)
    f = err.value.fault
    assert (f.reason, f.level, f.pagefile, f.pagefile_offset) == (faults.PAGED_OUT, "PTE", 2, 0x345000)
    assert f.pte == pt.ptes.paged_out(2, 0x345)
    with pytest.raises(MemoryReadError) as err:
        ours.read(KBASE + 0x12000, 1)
    assert err.value.fault.reason == faults.DEMAND_ZERO
    with pytest.raises(MemoryReadError) as err:
        ours.read(0x60000000, 1)                      # no table at all
    assert (err.value.fault.reason, err.value.fault.level) == (faults.INVALID, "PDE")
    with pytest.raises(MemoryReadError) as err:
        ours.read(0x1_0000_0000, 1)                   # beyond 32 bits
    assert err.value.fault.reason == faults.INVALID
    # a read across into a bad page reports the readable prefix
    with pytest.raises(MemoryReadError) as err:
        ours.read(KBASE + 0x5FF0, 0x20)
    assert err.value.readable == 0x10
    # without the kernel's PTE layout a transition entry is only "paged out" (raw entry kept)
    bare = X86AddressSpace(phys, pt.dtb, pae)
    with pytest.raises(MemoryReadError) as err:
        bare.read(KBASE + 0x10000, 1)
    assert err.value.fault.reason == faults.PAGED_OUT


def test_walk_steps_and_page_sizes() -> None:
    phys, pt, layouts, pages, _ = _plant(True)
    ours = X86AddressSpace(phys, pt.dtb, True)
    walk = ours.walk(KBASE + 0x2010)
    assert [s.level for s in walk.steps] == ["PDPTE", "PDE", "PTE"]
    assert walk.page_size == 0x1000 and walk.physical_address == ours.translate(KBASE + 0x2010)
    assert walk.steps[0].entry_address == pt.dtb + 2 * 8
    assert ours.walk(0x90000010).page_size == 0x200000
    phys, pt, layouts, pages, _ = _plant(False)
    ours = X86AddressSpace(phys, pt.dtb, False)
    walk = ours.walk(0x90000010)
    assert [s.level for s in walk.steps] == ["PDE"] and walk.page_size == 0x400000


def test_pse36_large_page_above_4gib() -> None:
    # PSE-36: a non-PAE 4 MiB page whose frame is above 4 GiB (Intel SDM 4.3, table 4-4)
    phys, pt, layouts = new_space(False, memory_map=None)
    pa = 0x1_2340_0000
    pt.map(0xA0000000, pa, 0x400000, page_size=0x400000)
    phys.write(pa + 0x1234, b"high")
    ours = X86AddressSpace(phys, pt.dtb, False)
    assert ours.translate(0xA0001234) == pa + 0x1234
    assert ours.read(0xA0001234, 4) == b"high"


def test_pae_dtb_need_not_be_page_aligned() -> None:
    # Windows packs PAE PDPTs 32 bytes apart; CR3 bits 11:5 are part of the PDPT address
    phys, pt, layouts, pages, _ = _plant(True)
    pdpt = bytes(phys.page(pt.dtb >> 12))[:32]
    other = phys.allocate(1)
    phys.write(other * 0x1000 + 0x60, pdpt)
    moved = X86AddressSpace(phys, other * 0x1000 + 0x60, True)
    assert moved.read(KBASE, 4) == pages[KBASE][:4]
    assert moved.dtb == other * 0x1000 + 0x60
