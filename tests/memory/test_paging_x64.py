"""x64 paging over page tables planted in a small in-memory physical memory.

Expected values are what each test planted (physical addresses, page bytes, PTE fields); the
Windows software-PTE bit positions come straight from an ISF file of /work/shared/isf.
"""
import csv
import json
import lzma
import struct
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from dumpbuild import DictPhysical, PageTables  # noqa: E402

from pykd_ext.errors import MemoryReadError  # noqa: E402
from pykd_ext.memory import faults  # noqa: E402
from pykd_ext.memory.paged import X64AddressSpace  # noqa: E402
from pykd_ext.layouts.isf import load_isf  # noqa: E402
from pykd_ext.memory.pte import SoftwarePteLayout  # noqa: E402

KVA = 0xFFFFF80000000000


@pytest.fixture(scope="module")
def isf_types(isf_dir):
    """user_types of one 19041 kernel (the ISF is the independent source of the PTE bits)."""
    with open(isf_dir / "INDEX.tsv") as handle:
        rows = [r for r in csv.DictReader(handle, delimiter="\t")
                if r["ntoskrnl_version"].startswith("10.0.19041.")]
    assert rows, "no 19041 kernel in INDEX.tsv"
    path = isf_dir / "windows" / "ntkrnlmp.pdb" / rows[0]["file"]
    with lzma.open(path, "rt") as handle:
        return json.load(handle)["user_types"]


def _bits(types, type_name, field):
    t = types[type_name]["fields"][field]["type"]
    return t["bit_position"], t["bit_length"]


def _put(types, type_name, field, value):
    pos, length = _bits(types, type_name, field)
    assert 0 <= value < (1 << length)
    return value << pos


@pytest.fixture()
def world():
    phys = DictPhysical()
    pt = PageTables(phys)
    return phys, pt


def test_4k_read_translate_and_cross_page(world):
    phys, pt = world
    phys.add(0x500, bytes(range(256)) * 16)
    phys.add(0x777, b"\xAA" * 4096)
    pt.map_4k(KVA + 0x1000, 0x500 << 12)
    pt.map_4k(KVA + 0x2000, 0x777 << 12)
    space = X64AddressSpace(phys, pt.dtb)
    assert space.translate(KVA + 0x1010) == 0x500010
    assert space.read(KVA + 0x1010, 4) == bytes([0x10, 0x11, 0x12, 0x13])
    assert space.read(KVA + 0x1FFE, 4) == b"\xFE\xFF\xAA\xAA"
    assert space.read(KVA + 0x1000, 0x2000) == bytes(phys.pages[0x500]) + bytes(phys.pages[0x777])
    assert space.read_pointer(KVA + 0x1008) == int.from_bytes(bytes(range(8, 16)), "little")
    assert space.read_pointer(KVA + 0x1FFC) == int.from_bytes(b"\xFC\xFD\xFE\xFF\xAA\xAA\xAA\xAA",
                                                              "little")
    assert space.read(KVA + 0x1000, 0) == b""
    # a LIST_ENTRY's two pointers in one read: inside a page, and straddling the page boundary
    assert space.read_link(KVA + 0x1010) == (int.from_bytes(bytes(range(0x10, 0x18)), "little"),
                                             int.from_bytes(bytes(range(0x18, 0x20)), "little"))
    straddling = space.read(KVA + 0x1FF8, 16)
    assert space.read_link(KVA + 0x1FF8) == (int.from_bytes(straddling[:8], "little"),
                                             int.from_bytes(straddling[8:], "little"))
    assert straddling[8:] == b"\xAA" * 8


def test_partial_read_reports_readable_prefix(world):
    phys, pt = world
    phys.add(0x500, b"\x11" * 4096)
    pt.map_4k(KVA + 0x1000, 0x500 << 12)
    space = X64AddressSpace(phys, pt.dtb)
    with pytest.raises(MemoryReadError) as err:
        space.read(KVA + 0x1F00, 0x200)
    assert err.value.readable == 0x100
    assert err.value.fault.address == KVA + 0x2000
    data, fault = space.read_partial(KVA + 0x1F00, 0x200)
    assert data == b"\x11" * 0x100 and fault.reason == faults.INVALID


def test_large_pages_2m_and_1g(world):
    phys, pt = world
    pt.map_2m(KVA + 0x40000000, 0x12600000)
    pt.map_1g(0xFFFF808000000000, 0x80000000)
    phys.add((0x12600000 + 0x1F3000) >> 12, b"two-mega")
    phys.add((0x80000000 + 0x2ABCD000) >> 12, b"one-giga")
    space = X64AddressSpace(phys, pt.dtb)
    assert space.translate(KVA + 0x40000000 + 0x1F3123) == 0x12600000 + 0x1F3123
    assert space.read(KVA + 0x40000000 + 0x1F3000, 8) == b"two-mega"
    assert space.translate(0xFFFF808000000000 + 0x2ABCD456) == 0x80000000 + 0x2ABCD456
    assert space.read(0xFFFF808000000000 + 0x2ABCD000, 8) == b"one-giga"
    walk = space.walk(KVA + 0x40000000)
    assert walk.page_size == 0x200000 and [s.level for s in walk.steps] == ["PML4E", "PDPTE", "PDE"]
    walk = space.walk(0xFFFF808000000000)
    assert walk.page_size == 0x40000000 and len(walk.steps) == 2


def test_data_page_not_in_dump_reports_physical_address(world):
    phys, pt = world
    pt.map_4k(KVA + 0x5000, 0x999000)           # frame 0x999 never added
    space = X64AddressSpace(phys, pt.dtb)
    assert space.translate(KVA + 0x5010) == 0x999010
    with pytest.raises(MemoryReadError) as err:
        space.read(KVA + 0x5010, 4)
    assert err.value.fault.reason == faults.NOT_IN_DUMP
    assert err.value.fault.address == 0x999010


def test_missing_page_table_page(world):
    phys, pt = world
    pt.map_4k(KVA + 0x5000, 0x500000)
    table, _ = pt.entry_location(KVA + 0x5000, 3)
    del phys.pages[table]                        # the PT page is not captured
    space = X64AddressSpace(phys, pt.dtb)
    with pytest.raises(MemoryReadError) as err:
        space.read(KVA + 0x5000, 1)
    assert err.value.fault.reason == faults.NOT_IN_DUMP and err.value.fault.level == "PTE"


def test_non_canonical_and_empty_entries(world):
    phys, pt = world
    space = X64AddressSpace(phys, pt.dtb)
    for bad in (0x0000800000000000, 0xFFFF7FFFFFFFFFFF, -1, 1 << 64):
        with pytest.raises(MemoryReadError) as err:
            space.read(bad, 1)
        assert err.value.fault.reason == faults.INVALID
    with pytest.raises(MemoryReadError) as err:
        space.read(0xFFFFF6FB7DBED000, 1)        # PML4E empty
    assert err.value.fault.level == "PML4E" and err.value.fault.pte == 0


def test_dtb_pcid_and_high_entry_bits_are_masked(world):
    phys, pt = world
    phys.add(0x321, b"pcid")
    pt.set_entry(KVA, 3, (1 << 63) | (0x321 << 12) | 0x3)    # NX set
    space = X64AddressSpace(phys, pt.dtb | 0x5A5)            # PCID bits in CR3
    assert space.dtb == pt.dtb
    assert space.read(KVA, 4) == b"pcid"


def test_software_ptes_with_isf_bits(world, isf_types):
    phys, pt = world
    layout = SoftwarePteLayout.from_user_types(isf_types)
    sw = "_MMPTE_SOFTWARE"
    # transition: still in memory at the frame
    phys.add(0x4444, b"transition page")
    transition = (_put(isf_types, sw, "Transition", 1) | _put(isf_types, sw, "Protection", 4)
                  | _put(isf_types, "_MMPTE_TRANSITION", "PageFrameNumber", 0x4444))
    pt.set_entry(KVA + 0x1000, 3, transition)
    # prototype
    pt.set_entry(KVA + 0x2000, 3, _put(isf_types, sw, "Prototype", 1)
                 | _put(isf_types, "_MMPTE_PROTOTYPE", "ProtoAddress", 0xFFFF8A0000123450 >> 16
                        & ((1 << 48) - 1)))
    # paged out: pagefile 2, page 0x1234 of the pagefile
    pt.set_entry(KVA + 0x3000, 3, _put(isf_types, sw, "PageFileLow", 2)
                 | _put(isf_types, sw, "PageFileHigh", 0x1234)
                 | _put(isf_types, sw, "Protection", 4))
    # demand zero: protection only
    pt.set_entry(KVA + 0x4000, 3, _put(isf_types, sw, "Protection", 4))
    space = X64AddressSpace(phys, pt.dtb, software_pte=layout)
    assert space.read(KVA + 0x1000, 15) == b"transition page"
    assert space.translate(KVA + 0x1004) == 0x4444004
    assert space.walk(KVA + 0x1000).transition
    cases = {KVA + 0x2000: faults.PROTOTYPE, KVA + 0x3000: faults.PAGED_OUT,
             KVA + 0x4000: faults.DEMAND_ZERO}
    for va, reason in cases.items():
        with pytest.raises(MemoryReadError) as err:
            space.read(va, 8)
        assert err.value.fault.reason == reason, hex(va)
        assert err.value.fault.level == "PTE"
    with pytest.raises(MemoryReadError) as err:
        space.read(KVA + 0x3000, 8)
    assert err.value.fault.pagefile == 2 and err.value.fault.pagefile_offset == 0x1234000
    # without the layout nothing is guessed: a not-present entry is reported as paged out, raw PTE
    bare = X64AddressSpace(phys, pt.dtb)
    with pytest.raises(MemoryReadError) as err:
        bare.read(KVA + 0x1000, 1)
    assert err.value.fault.reason == faults.PAGED_OUT and err.value.fault.pte == transition
    assert err.value.fault.pagefile_offset is None


def test_transition_page_table(world, isf_types):
    """A page table in transition (PDE not present, Transition set) is still walked."""
    phys, pt = world
    layout = SoftwarePteLayout.from_user_types(isf_types)
    phys.add(0x600, b"under a transition PDE")
    pt.map_4k(KVA + 0x7000, 0x600 << 12)
    table, index = pt.entry_location(KVA + 0x7000, 2)
    pde = struct.unpack_from("<Q", phys.pages[table], index * 8)[0]
    pt_frame = (pde & 0x000FFFFFFFFFF000) >> 12
    sw = "_MMPTE_SOFTWARE"
    pt.set_entry(KVA + 0x7000, 2, _put(isf_types, sw, "Transition", 1)
                 | _put(isf_types, "_MMPTE_TRANSITION", "PageFrameNumber", pt_frame))
    space = X64AddressSpace(phys, pt.dtb, software_pte=layout)
    assert space.read(KVA + 0x7000, 22) == b"under a transition PDE"


def test_cache_is_dropped(world):
    phys, pt = world
    phys.add(0x500, b"old!")
    phys.add(0x501, b"new!")
    pt.map_4k(KVA, 0x500000)
    space = X64AddressSpace(phys, pt.dtb)
    assert space.read(KVA, 4) == b"old!"
    pt.map_4k(KVA, 0x501000)                    # a live target changed its page tables
    assert space.read(KVA, 4) == b"old!"        # cached translation
    space.drop_caches()
    assert space.read(KVA, 4) == b"new!"


def test_walk_lists_each_level(world):
    phys, pt = world
    phys.add(0x500)
    pt.map_4k(KVA + 0x3000, 0x500000)
    space = X64AddressSpace(phys, pt.dtb)
    assert space.translate(KVA + 0x3123) == 0x500123     # fills the page-table cache
    assert space.translate(KVA + 0x3456) == 0x500456     # served from it
    walk = space.walk(KVA + 0x3123)                      # a walk still reads every level
    assert [s.level for s in walk.steps] == ["PML4E", "PDPTE", "PDE", "PTE"]
    assert walk.steps[0].table == pt.dtb and walk.steps[0].index == (KVA >> 39) & 0x1FF
    assert walk.steps[-1].entry & 0x000FFFFFFFFFF000 == 0x500000
    assert walk.physical_address == 0x500123 and walk.fault is None


def test_software_pte_layout_from_a_bounded_isf_read(isf_dir, isf_types):
    path = next((isf_dir / "windows" / "ntkrnlmp.pdb").glob("*.json.xz"))
    layout = SoftwarePteLayout.from_user_types(load_isf(str(path))["user_types"])
    with lzma.open(path, "rt") as handle:
        types = json.load(handle)["user_types"]
    assert layout.pagefile_high == _bits(types, "_MMPTE_SOFTWARE", "PageFileHigh")
    assert layout.transition_pfn == _bits(types, "_MMPTE_TRANSITION", "PageFrameNumber")
