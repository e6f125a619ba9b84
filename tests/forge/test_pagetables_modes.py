"""The forge's one page-table builder, driven by each paging mode's data, round-trips through the
reader's one walker (`memory.paged.PagedAddressSpace`) in the same mode (x64 4- and 5-level,
x86 PAE and non-PAE with Windows' `_MMPTE` bits, AArch64 with the Arm ARM's descriptors).

Expected values are what the test planted (bytes, frames, pagefile numbers and offsets) and the
Intel SDM's geometry (which VA bits index which level, large page sizes, Windows' recursive map:
the self-map entry's VA reads the root table's own bytes). Entry bits come from each build's
ISF (`_MMPTE_*`), as the forge takes them.
"""
from typing import Any, Tuple

import pytest

from pykd_ext.errors import MemoryReadError
from pykd_ext.forge.pagetables import SELF_MAP, PageTables
from pykd_ext.forge.physmem import PhysicalImage
from pykd_ext.forge.ptebits import Aarch64Descriptors, LayoutBits, PteFormat
from pykd_ext.layouts.registry import load_layouts
from pykd_ext.memory import faults
from pykd_ext.memory.paged import PagedAddressSpace
from pykd_ext.memory.paging_modes import (AARCH64_4K, X64_4LEVEL, X64_5LEVEL, X86_NONPAE, X86_PAE,
                                          PagingMode)
from pykd_ext.memory.pte import software_pte_from_layouts

#: (mode, a build whose _MMPTE_* entries have the mode's width, a kernel VA to plant at)
CASES = [
    (X64_4LEVEL, "10.0.19041.1288", 0xFFFFF80000000000),
    (X64_5LEVEL, "10.0.19041.1288", 0xFF00000000000000),
    (X86_PAE, "10.0.19041.1288-x86", 0x82000000),
    (X86_NONPAE, "6.1.7601.17514-x86", 0x82000000),
]


def _builder(mode: PagingMode, build: str) -> Tuple[PhysicalImage, PageTables, Any]:
    layouts = load_layouts(build)
    phys = PhysicalImage(((0x1, 0x9E), (0x100, 0x3000)))
    return phys, PageTables(phys, PteFormat(LayoutBits(layouts)), mode), layouts


@pytest.mark.parametrize("mode,build,kbase", CASES, ids=[c[0].name for c in CASES])
def test_forged_tables_read_back_through_the_walker(mode: PagingMode, build: str, kbase: int) -> None:
    phys, pt, layouts = _builder(mode, build)
    planted = {}
    for i in range(3):
        va = kbase + i * 0x1000
        pt.map_new(va, bytes([0x30 + i]) * 0x1000)
        planted[va + 0x10] = bytes([0x30 + i]) * 8
    user = pt.map_new(0x00400000, b"MZuser" + bytes(10))
    planted[user] = b"MZuser"
    large = pt.large_page
    assert large == (0x400000 if mode is X86_NONPAE else 0x200000)
    big = phys.allocate(large // 0x1000, align_pages=large // 0x1000) * 0x1000
    big_va = kbase + 0x10000000
    pt.map(big_va, big, large, page_size=large)
    phys.write(big + large - 0x20, b"end of large page")
    planted[big_va + large - 0x20] = b"end of large page"
    standby = phys.allocate(1)
    phys.write(standby * 0x1000, b"standby page")
    pt.set_transition(kbase + 0x20000, standby)
    pt.set_paged_out(kbase + 0x21000, 2, 0x345)

    space = PagedAddressSpace(phys, pt.dtb, mode, software_pte_from_layouts(layouts))
    for va, data in planted.items():
        assert space.read(va, len(data)) == data
        assert space.translate(va) == pt.translate(va)
    assert space.translate(big_va + 0x1234) == big + 0x1234
    assert space.read(kbase + 0x20000, 12) == b"standby page"      # a transition page reads
    with pytest.raises(MemoryReadError) as info:
        space.read(kbase + 0x21000 + 8, 4)
    fault = info.value.fault
    # the planted page index 0x345 of pagefile 2, as a byte offset
    assert (fault.reason, fault.level, fault.pagefile, fault.pagefile_offset) == \
        (faults.PAGED_OUT, "PTE", 2, 0x345 * 0x1000)
    assert fault.pte == pt.ptes.paged_out(2, 0x345)
    # a user page's upper entries allow user access; the kernel's do not
    assert space.translate(0x00400000) == pt.translate(0x00400000)


@pytest.mark.parametrize("mode,build,kbase", CASES, ids=[c[0].name for c in CASES])
def test_self_map_reads_the_tables_themselves(mode: PagingMode, build: str, kbase: int) -> None:
    """Windows' recursive map: through the self-map VA the tables read as memory."""
    phys, pt, layouts = _builder(mode, build)
    pt.map_new(kbase, b"x" * 16)
    space = PagedAddressSpace(phys, pt.dtb, mode, software_pte_from_layouts(layouts))
    index = SELF_MAP[mode.name][0]
    if pt.children:
        # PAE: directory `index` maps the four directories: the VA with root index `index` and
        # directory index i is directory i's page
        for i, child in enumerate(pt.children):
            va = mode.address_of((index, index, i))
            assert space.read(va, 0x1000) == bytes(phys.page(child))
    else:
        va = mode.address_of((index,) * len(mode.levels))
        assert space.read(va, 0x1000) == bytes(phys.page(pt.root_pfn))


@pytest.mark.parametrize("mode,build,kbase", CASES, ids=[c[0].name for c in CASES])
def test_shared_kernel_half(mode: PagingMode, build: str, kbase: int) -> None:
    """A process space built with `kernel_from` reads the kernel's pages, not its user pages."""
    phys, kernel, layouts = _builder(mode, build)
    kernel.map_new(kbase, b"kernel data")
    kernel.map_new(0x00400000, b"kernel's user page")
    process = PageTables(phys, kernel.ptes, mode, kernel_from=kernel)
    process.map_new(0x00400000, b"process page")
    space = PagedAddressSpace(phys, process.dtb, mode, software_pte_from_layouts(layouts))
    assert space.read(kbase, 11) == b"kernel data"
    assert space.read(0x00400000, 12) == b"process page"
    assert process.dtb != kernel.dtb


def test_aarch64_tables_read_back_through_the_walker() -> None:
    """AArch64 (4 KiB granule): the same builder with the Arm ARM's descriptor format; the walker
    reads pages, a 2 MiB and a 1 GiB block, kernel (TTBR1) and user (TTBR0) halves alike."""
    phys = PhysicalImage(((0x1, 0x9E), (0x100, 0x3000)))
    pt = PageTables(phys, Aarch64Descriptors(), AARCH64_4K)
    kbase = 0xFFFFF80000000000
    pt.map_new(kbase, b"kernel page" + bytes(8))
    pt.map_new(0x00400000, b"user page")
    block = phys.allocate(0x200, align_pages=0x200) * 0x1000
    phys.write(block + 0x1FFF00, b"end of block")
    pt.map(kbase + 0x40000000, block, 0x200000, page_size=0x200000)
    pt.map(kbase + 0x80000000, 0x40000000, 0x40000000, page_size=0x40000000)   # a 1 GiB block
    space = PagedAddressSpace(phys, pt.dtb, AARCH64_4K)
    assert space.read(kbase, 11) == b"kernel page"
    assert space.read(0x00400000, 9) == b"user page"
    assert space.read(kbase + 0x40000000 + 0x1FFF00, 12) == b"end of block"
    assert space.translate(kbase + 0x80000000 + 0x1234567) == 0x40000000 + 0x1234567
    # descriptor types as the Arm ARM states them: a page at L3 and a table at L0 are 0b11,
    # a block at L2 is 0b01; a user page's descriptor grants EL0 access (AP[1], bit 6)
    assert pt.get_pte_raw(kbase, "L3") & 0b11 == 0b11
    assert pt.get_pte_raw(kbase, "L0") & 0b11 == 0b11
    assert pt.get_pte_raw(kbase + 0x40000000, "L2") & 0b11 == 0b01
    assert pt.get_pte_raw(0x00400000, "L3") & (1 << 6)
    assert not pt.get_pte_raw(kbase, "L3") & (1 << 6)
    with pytest.raises(ValueError):
        pt.set_transition(kbase + 0x1000, 5)        # Windows ARM64 software PTEs: not described
