"""AArch64 page tables (4 KiB granule, 4 levels) forged by the one builder (`forge.pagetables`
with `ptebits.Aarch64Descriptors`) and walked by the one walker (`memory.paged` with `AARCH64_4K`), alone and inside a forged ARM64 full dump.

Oracles: the mappings the test plants (virtual address -> physical address and bytes), the
descriptor bit layout recomputed here from the Arm ARM (D8.3), and kdmp-parser, which translates
the same dump's 4 KiB pages. kdmp-parser does not implement AArch64 translation: it walks every
dump as x64 4-level, which coincides with AArch64 for table and page descriptors (valid bit 0,
address bits 47:12, bit 7 clear) but not for AArch64 blocks (bit 1 clear instead of bit 7 set),
so it is compared on 4 KiB pages only.
"""
import random

import pytest

from pykd_ext.errors import MemoryReadError
from pykd_ext.forge.dumpfile import DumpSpec, write_full_dump
from pykd_ext.forge.pagetables import PageTables
from pykd_ext.forge.physmem import PhysicalImage
from pykd_ext.forge.ptebits import Aarch64Descriptors
from pykd_ext.memory.paged import PagedAddressSpace
from pykd_ext.memory.paging_modes import AARCH64_4K
from pykd_ext.targets.arch import ARM64
from pykd_ext.targets.opener import open_target

KERNEL = 0xFFFFF803F2E00000
POOL = 0xFFFFBB8EB1600000
# Arm ARM D8.3 (4 KiB granule): bits[1:0] 0b11 table/page, 0b01 block; bit 10 AF; 53 PXN; 54 UXN
DESC_TABLE = 0b11
DESC_BLOCK = 0b01
AF = 1 << 10
PXN = 1 << 53
UXN = 1 << 54


@pytest.fixture
def planted():
    rng = random.Random(15)
    phys = PhysicalImage([(0, 0x8000)])
    pt = PageTables(phys, Aarch64Descriptors(), AARCH64_4K)
    pages = {}
    for n in range(24):                          # scattered 4 KiB pages, kernel and user half
        va = (KERNEL if n % 3 else 0x7FF712340000) + rng.randrange(0, 1 << 20) * 0x1000
        if va in pages:
            continue
        data = bytes(rng.randrange(256) for _ in range(16))
        pt.map_new(va, data, no_execute=n % 2 == 1)
        pages[va] = (pt.translate(va), data)
    pt.map_new(POOL, b"two megabytes", page_size=0x200000, no_execute=True)
    block_pa = pt.translate(POOL)
    return phys, pt, pages, block_pa


def test_descriptors_are_the_arm_formats(planted):
    phys, pt, pages, block_pa = planted
    va, (pa, _data) = next(iter(pages.items()))
    table = pt.dtb
    for level in range(3):                        # L0..L2: table descriptors
        entry = phys.read_u64(table + 8 * ((va >> (39 - 9 * level)) & 0x1FF))
        assert entry & 0b11 == DESC_TABLE
        table = entry & ((1 << 48) - 1) & ~0xFFF
    leaf = phys.read_u64(table + 8 * ((va >> 12) & 0x1FF))
    assert leaf & 0b11 == 0b11 and leaf & AF and leaf & ((1 << 48) - 1) & ~0xFFF == pa
    l1 = phys.read_u64(pt.dtb + 8 * ((POOL >> 39) & 0x1FF)) & ((1 << 48) - 1) & ~0xFFF
    l2 = phys.read_u64(l1 + 8 * ((POOL >> 30) & 0x1FF)) & ((1 << 48) - 1) & ~0xFFF
    block = phys.read_u64(l2 + 8 * ((POOL >> 21) & 0x1FF))
    assert block & 0b11 == DESC_BLOCK and block & (PXN | UXN) == PXN | UXN
    assert block & ((1 << 48) - 1) & ~0x1FFFFF == block_pa


def test_walker_translates_what_was_planted(planted):
    phys, pt, pages, block_pa = planted
    space = PagedAddressSpace(phys, pt.dtb, AARCH64_4K)
    for va, (pa, data) in pages.items():
        assert space.read(va, len(data)) == data
        walk = space.walk(va + 5)
        assert walk.physical_address == pa + 5 and walk.page_size == 0x1000
        assert [step.level for step in walk.steps] == ["L0", "L1", "L2", "L3"]
    walk = space.walk(POOL + 0x12345)
    assert walk.physical_address == block_pa + 0x12345 and walk.page_size == 0x200000
    assert space.read(POOL, 13) == b"two megabytes"
    with pytest.raises(MemoryReadError):
        space.read(KERNEL - 0x1000, 4)          # never mapped


def test_arm64_full_dump_agrees_with_kdmp_parser(planted, tmp_path):
    import kdmp_parser
    phys, pt, pages, _block = planted
    path = str(tmp_path / "arm64-full.dmp")
    write_full_dump(path, phys, DumpSpec(build=22000, dtb=pt.dtb, machine_type=0xAA64))
    with open_target(path) as target:
        info = target.info()
        assert info.arch == ARM64.name and info.extra["paging"] == AARCH64_4K.name
        parser = kdmp_parser.KernelDumpParser(path)
        assert parser.directory_table_base == pt.dtb
        for va, (pa, data) in pages.items():
            assert target.kernel.read(va, len(data)) == data
            assert parser.translate_virtual(va + 7) == pa + 7
            assert bytes(parser.read_virtual_page(va))[:len(data)] == data
