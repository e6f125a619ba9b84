"""Raw physical images: DTB from the low stub, kernel image and PDB identity, bad input.

Expected values are planted: the start block (facts from MemProcFS: Jmp signature at +0, LmTarget
at +0x70, CR3 at +0xA0), the page tables and a PE image with a chosen GUID/age.
"""
import sys
import uuid
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "memory"))
import dumpbuild as b  # noqa: E402

from pykd_ext.errors import MemoryReadError, TargetError  # noqa: E402
from pykd_ext.memory import faults  # noqa: E402
from pykd_ext.targets.opener import open_target  # noqa: E402
from pykd_ext.targets.rawimage import open_raw_image  # noqa: E402

GUID = uuid.UUID("1B8C3FA2-55E7-4A6B-9D44-0123456789AB")
BASE = 0xFFFFF80312600000


def _world(stub=True, lm_offset=0x2340, decoy=True):
    phys = b.DictPhysical()
    pt = b.PageTables(phys, pml4_pfn=0x1AD, next_table_pfn=0x200)
    image = b.minimal_pe64(GUID.bytes_le, 3, size_of_image=0x4000)
    for i in range(4):
        phys.add(0x500 + i, image[i * 4096:(i + 1) * 4096])
        pt.map_4k(BASE + i * 4096, (0x500 + i) << 12)
    if decoy:
        # an unmapped copy of another kernel's RSDS (e.g. a file-cache page): must not win
        other = b.minimal_pe64(uuid.UUID(int=1).bytes_le, 9)
        phys.add(0x700, other[0x1000:0x2000])
    if stub:
        phys.add(0x13, b.low_stub_page(pt.dtb, BASE + lm_offset))
    return phys, pt


def _write(tmp_path, phys, pages=0x800, name="mem.raw"):
    path = tmp_path / name
    path.write_bytes(b.raw_image_bytes(phys, pages))
    return str(path)


def test_dtb_and_kernel_from_low_stub(tmp_path):
    phys, pt = _world()
    with open_target(_write(tmp_path, phys)) as target:
        info = target.info()
        assert info.container == "raw" and info.directory_table_base == pt.dtb
        assert info.extra["low_stub"] == 0x13000 and info.extra["lm_target"] == BASE + 0x2340
        assert info.kernel_base == BASE
        assert (info.extra["pdb_guid"], info.extra["pdb_age"]) == (str(GUID).replace("-", "").upper(), 3)
        assert info.extra["pdb_name"] == "ntkrnlmp.pdb"
        assert info.pages_present == 0x800 and info.physical_runs == [(0, 0x800)]
        assert target.kernel.read(BASE, 2) == b"MZ"
        assert target.describe().locator.endswith("mem.raw")


def test_kernel_found_by_reverse_mapping_without_entry_hint(tmp_path):
    """LmTarget far from the image: the RSDS page is mapped back to its VA through the tables."""
    phys, pt = _world(lm_offset=0x10000000)
    with open_target(_write(tmp_path, phys, name="far.vmem")) as target:
        info = target.info()
        assert info.kernel_base == BASE
        assert info.extra["pdb_guid"] == str(GUID).replace("-", "").upper()


def test_dtb_override_and_missing_stub(tmp_path):
    phys, pt = _world(stub=False)
    path = _write(tmp_path, phys, name="nostub.mem")
    with open_raw_image(path, dtb=pt.dtb) as target:
        assert target.info().kernel_base == BASE
    with open_target(path) as target:
        info = target.info()
        assert info.directory_table_base is None and info.kernel_base is None
        assert any("processor start block" in note for note in info.notes)
        assert info.extra["pdb_name"] == "ntkrnlmp.pdb"        # identity still reported
        with pytest.raises(MemoryReadError) as err:
            target.kernel.read(BASE, 2)
        assert err.value.fault.reason == faults.UNAVAILABLE
        assert bytes(target.physical.page(0x500)[:2]) == b"MZ"


def test_invalid_stub_candidates_are_rejected(tmp_path):
    phys, pt = _world(stub=False)
    bad = bytearray(b.low_stub_page(pt.dtb | 0x1, BASE))      # CR3 with low bits: not a start block
    phys.add(0x20, bytes(bad))
    bad2 = bytearray(b.low_stub_page(pt.dtb, 0x00007FF600000000))   # LmTarget not in the kernel
    phys.add(0x21, bytes(bad2))
    with open_target(_write(tmp_path, phys)) as target:
        assert target.info().directory_table_base is None


def test_odd_sizes(tmp_path):
    small = tmp_path / "small.raw"
    small.write_bytes(b"\0" * 100)
    with pytest.raises(TargetError) as err:
        open_target(str(small))
    assert "holds no whole page" in str(err.value)
    odd = tmp_path / "odd.bin"
    odd.write_bytes(b"\0" * 0x2800)
    with open_target(str(odd)) as target:
        assert target.physical.page_count() == 2
        assert any("not a whole number of pages" in n for n in target.info().notes)
