"""The forge's building blocks refuse what a real machine cannot have."""
from pathlib import Path

import pytest

from pykd_ext.errors import MemoryReadError
from pykd_ext.forge import (PAGE_2M, DumpSpec, KernelImage, PageTables, PhysicalImage, PteFormat,
                            write_full_dump)
from pykd_ext.forge.isf import table_for_build
from pykd_ext.memory.faults import NOT_IN_DUMP


@pytest.fixture(scope="module")
def ptes(isf_dir: Path) -> PteFormat:
    return PteFormat(table_for_build(19041, isf_dir))


def test_physical_image_memory_map() -> None:
    phys = PhysicalImage([(0x10, 4), (0x200, 0x400)], allocation_floor=0x10)
    with pytest.raises(ValueError):
        phys.write(0x14000, b"x")                      # the hole after the first run
    phys.write(0x13FFE, b"ab")
    with pytest.raises(MemoryReadError) as err:
        phys.read(0x13FFE, 4)
    assert err.value.readable == 2 and err.value.fault.reason == NOT_IN_DUMP
    assert phys.allocate(2) == 0x10
    assert phys.allocate(1, align_pages=0x200) == 0x200   # skips the run that cannot hold it
    with pytest.raises(MemoryError):
        phys.allocate(0x400)
    with pytest.raises(ValueError):
        PhysicalImage([(0, 10), (5, 10)])


def test_page_tables_refuse_impossible_mappings(ptes: PteFormat) -> None:
    pt = PageTables(PhysicalImage(), ptes)
    with pytest.raises(ValueError):
        pt.map(0x0000800000000000, 0x100000, 0x1000)   # not canonical
    with pytest.raises(ValueError):
        pt.map(0xFFFFF80000001000, 0x100000, PAGE_2M, page_size=PAGE_2M)   # misaligned
    pt.map(0xFFFFF80000000000, 0x200000, PAGE_2M, page_size=PAGE_2M)
    with pytest.raises(ValueError):
        pt.map(0xFFFFF80000003000, 0x5000, 0x1000)     # inside the large page
    assert pt.translate(0xFFFFF80000003123) == 0x203123


def test_self_map_entry_maps_the_pml4(ptes: PteFormat) -> None:
    pt = PageTables(PhysicalImage(), ptes, self_map_index=0x1ED)
    index = 0x1ED
    va = 0xFFFF000000000000 | index << 39 | index << 30 | index << 21 | index << 12
    assert pt.translate(va) == pt.dtb                  # the self-map property of x64 Windows


def test_pte_builders_check_ranges(ptes: PteFormat) -> None:
    with pytest.raises(ValueError):
        ptes.paged_out(1, 0)                           # would read as demand zero
    with pytest.raises(ValueError):
        ptes.paged_out(1 << 8, 5)                      # PageFileLow is 4 bits wide
    with pytest.raises(ValueError):
        KernelImage(guid="not-a-guid")


def test_full_dump_refuses_runs_the_header_cannot_hold(tmp_path: Path) -> None:
    phys = PhysicalImage([(first, 1) for first in range(0, 200, 2)])
    with pytest.raises(ValueError):
        write_full_dump(str(tmp_path / "many-runs.dmp"), phys, DumpSpec(build=19041, dtb=0))
    assert not (tmp_path / "many-runs.dmp").exists()
