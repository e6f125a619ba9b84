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


KDBG_AT = BASE + 0x3008
LIST_HEAD = 0xFFFFF80312A00010


def _world(stub=True, lm_offset=0x2340, decoy=True, kdbg=False):
    phys = b.DictPhysical()
    pt = b.PageTables(phys, pml4_pfn=0x1AD, next_table_pfn=0x200)
    image = bytearray(b.minimal_pe64(GUID.bytes_le, 3, size_of_image=0x4000,
                                     file_version=(10, 0, 19041, 1288)))
    if kdbg:
        from pykd_ext.targets.kdbg import build_kdbg
        block = build_kdbg({"KernBase": BASE, "PsLoadedModuleList": LIST_HEAD,
                            "PsActiveProcessHead": LIST_HEAD + 0x100})
        image[0x3000:0x3004] = b"KDBG"                     # a stray tag before the block
        image[0x3008:0x3008 + len(block)] = block
    image = bytes(image)
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
        assert info.extra["pdb_guid"] == str(GUID).replace("-", "").upper()
        assert info.extra["pdb_age"] == 3
        assert info.extra["pdb_name"] == "ntkrnlmp.pdb"
        assert info.extra["kernel_file_version"] == "10.0.19041.1288" and info.build == 19041
        assert info.pages_present == 0x800 and info.physical_runs == [(0, 0x800)]
        assert target.kernel.read(BASE, 2) == b"MZ"
        assert target.describe().locator.endswith("mem.raw")


def test_kdbg_found_in_the_kernel_image(tmp_path):
    phys, pt = _world(kdbg=True)
    with open_target(_write(tmp_path, phys)) as target:
        info = target.info()
        assert info.kernel_base == BASE and info.kd_debugger_data_block == KDBG_AT
        assert info.kdbg["KernBase"] == BASE and info.kdbg["_address"] == KDBG_AT
        assert info.ps_loaded_module_list == LIST_HEAD
        assert info.ps_active_process_head == LIST_HEAD + 0x100
    phys, pt = _world(kdbg=False)
    with open_target(_write(tmp_path, phys, name="nokdbg.raw")) as target:
        info = target.info()
        assert info.kdbg is None and any("KDBG" in note for note in info.notes)


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


# --- LiME containers (`.lime`) -------------------------------------------------------------------

def _lime_bytes(phys, version=1):
    """LiME ranges for the planted frames (header layout from the LiME documentation:
    "EMiL", version, start, inclusive end, 8 reserved bytes)."""
    import struct
    out = bytearray()
    for pfn, count in b.group_runs(phys.pages):
        out += struct.pack("<4sIQQQ", b"EMiL", version, pfn << 12, ((pfn + count) << 12) - 1, 0)
        out += b"".join(bytes(phys.pages[pfn + i]) for i in range(count))
    return bytes(out)


def test_lime_file_agrees_with_volatility(tmp_path):
    from volatility3.framework import contexts
    from volatility3.framework.layers import lime, physical
    phys, pt = _world(kdbg=True)
    path = tmp_path / "mem.lime"
    path.write_bytes(_lime_bytes(phys))
    ctx = contexts.Context()
    ctx.config["file.location"] = path.as_uri()
    ctx.add_layer(physical.FileLayer(ctx, "file", "file"))
    ctx.config["lime.base_layer"] = "file"
    layer = lime.LimeLayer(ctx, "lime", "lime")
    with open_target(str(path)) as target:
        info = target.info()
        assert info.container == "lime" and info.directory_table_base == pt.dtb
        assert info.kernel_base == BASE and info.kdbg["KernBase"] == BASE
        assert info.physical_runs == b.group_runs(phys.pages)
        for pfn in range(0x800):
            ours = target.physical.page(pfn)
            assert (ours is not None) == layer.is_valid(pfn << 12), hex(pfn)
            if ours is not None:
                assert bytes(ours) == layer.read(pfn << 12, 4096) == bytes(phys.pages[pfn])
    # the RSDS scan maps file offsets back to physical addresses through the ranges
    phys2, pt2 = _world(stub=False)
    path2 = tmp_path / "nostub.lime"
    path2.write_bytes(_lime_bytes(phys2))
    from pykd_ext.targets.rawimage import open_raw_image
    with open_raw_image(str(path2), dtb=pt2.dtb) as target:
        assert target.info().kernel_base == BASE


@pytest.mark.parametrize("damage,error,text", [
    (lambda d: d[:-0x800], "TruncatedDumpError", "file ends at"),
    (lambda d: d[:0x10], "TruncatedDumpError", "cut off"),
    (lambda d: d + b"junkjunk" * 8, "DumpFormatError", "no LiME header"),
    (lambda d: d[:4] + (2).to_bytes(4, "little") + d[8:], "UnsupportedDumpError", "version 2"),
    (lambda d: d[:16] + (0).to_bytes(8, "little") + d[24:], "DumpFormatError", "impossible"),
    (lambda d: d[:8] + (0x10).to_bytes(8, "little") + d[16:], "TruncatedDumpError", "needs"),
    (lambda d: d[:8] + (0x1AD800).to_bytes(8, "little") + d[16:], "UnsupportedDumpError",
     "not page-aligned"),
])
def test_broken_lime_files(tmp_path, damage, error, text):
    import pykd_ext.errors as errors
    phys, _ = _world(stub=False, decoy=False)
    path = tmp_path / "bad.lime"
    path.write_bytes(damage(_lime_bytes(phys)))
    with pytest.raises(getattr(errors, error)) as err:
        open_target(str(path))
    assert text in str(err.value)
