"""PE header / CodeView / export parsing against pefile and planted values."""
import csv
import sys
import uuid
from pathlib import Path

import pefile
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "memory"))
from dumpbuild import DictPhysical, PageTables, minimal_pe64  # noqa: E402

from pykd_ext.errors import DumpFormatError, MemoryReadError  # noqa: E402
from pykd_ext.memory.paged import X64AddressSpace  # noqa: E402
from pykd_ext.targets.pe import parse_codeview, parse_pe_headers, read_pe_info  # noqa: E402

EXPORTS = ((b"KeBugCheckEx", 0x1200), (b"NtBuildNumber", 0x1100), (b"PsLoadedModuleList", 0x1300),
           (b"ZwClose", 0x1400), (b"ExAllocatePool2", 0x1500))


@pytest.fixture(scope="module")
def index_row(isf_dir):
    with open(isf_dir / "INDEX.tsv") as handle:
        return next(r for r in csv.DictReader(handle, delimiter="\t")
                    if r["ntoskrnl_version"].startswith("10.0.19041."))


def test_guid_format_matches_isf_index(index_row):
    """The RSDS GUID (fields 1-3 little-endian, as uuid.bytes_le) reads as the ISF's pdb_guid."""
    guid = uuid.UUID(index_row["pdb_guid"])
    record = b"RSDS" + guid.bytes_le + int(index_row["pdb_age"]).to_bytes(4, "little") + \
        b"ntkrnlmp.pdb\0"
    cv = parse_codeview(record)
    assert cv.guid == index_row["pdb_guid"] and cv.age == int(index_row["pdb_age"])
    assert cv.isf_name == index_row["file"]
    assert cv.pdb_name == "ntkrnlmp.pdb"


def test_minimal_image_against_pefile(index_row):
    guid = uuid.UUID(index_row["pdb_guid"])
    image = minimal_pe64(guid.bytes_le, 2, timestamp=0x5E5E5E5E, size_of_image=0x4000,
                         exports=EXPORTS, file_version=(10, 0, 19041, 1288))
    ref = pefile.PE(data=image)
    info = parse_pe_headers(image)
    assert info.machine == ref.FILE_HEADER.Machine == 0x8664
    assert info.timestamp == ref.FILE_HEADER.TimeDateStamp == 0x5E5E5E5E
    assert info.size_of_image == ref.OPTIONAL_HEADER.SizeOfImage == 0x4000
    assert info.image_base == ref.OPTIONAL_HEADER.ImageBase
    assert info.checksum == ref.OPTIONAL_HEADER.CheckSum and info.is_64
    ours = [(s.name, s.virtual_address, s.virtual_size) for s in info.sections]
    theirs = [(s.Name.rstrip(b"\0").decode(), s.VirtualAddress, s.Misc_VirtualSize)
              for s in ref.sections]
    assert ours == theirs
    entry = next(d.entry for d in ref.DIRECTORY_ENTRY_DEBUG if d.struct.Type == 2)
    assert info.debug_codeview.guid + "%X" % info.debug_codeview.age == \
        entry.Signature_String.upper()
    assert info.debug_codeview.pdb_name == entry.PdbFileName.rstrip(b"\0").decode()
    for sym in ref.DIRECTORY_ENTRY_EXPORT.symbols:
        assert info.export_rva(sym.name.decode()) == sym.address
    assert info.export_rva("NotExported") is None
    assert info.section(".rdata") is not None and info.section(".text") is None
    ffi = ref.VS_FIXEDFILEINFO[0]
    assert info.file_version == "%d.%d.%d.%d" % (
        ffi.FileVersionMS >> 16, ffi.FileVersionMS & 0xFFFF,
        ffi.FileVersionLS >> 16, ffi.FileVersionLS & 0xFFFF)
    assert info.file_version == "10.0.19041.1288"
    assert (info.pdb_guid, info.pdb_age) == (index_row["pdb_guid"], 2)
    assert info.pdb_name == "ntkrnlmp.pdb"
    assert parse_pe_headers(minimal_pe64(guid.bytes_le, 2)).file_version is None


def test_read_pe_info_through_paging(index_row):
    guid = uuid.UUID(index_row["pdb_guid"])
    image = minimal_pe64(guid.bytes_le, 1, exports=EXPORTS)
    phys = DictPhysical()
    pt = PageTables(phys)
    base = 0xFFFFF80512340000
    for i in range(len(image) // 4096):
        phys.add(0x800 + i, image[i * 4096:(i + 1) * 4096])
        pt.map_4k(base + i * 4096, (0x800 + i) << 12)
    space = X64AddressSpace(phys, pt.dtb)
    info = read_pe_info(space, base)
    assert info.debug_codeview.guid == index_row["pdb_guid"]
    assert info.export_rva("ZwClose") == 0x1400
    # the debug data page is paged out: still a PeInfo, with a note and no CodeView
    del phys.pages[0x801]
    info = read_pe_info(X64AddressSpace(phys, pt.dtb), base)
    assert info.debug_codeview is None and info.notes and "debug directory" in info.notes[0]
    with pytest.raises(MemoryReadError):
        read_pe_info(space, base + 0x100000)            # nothing mapped there


def test_file_layout_image(index_row):
    """A PE *file* (raw offsets differ from RVAs) parsed with mapped=False."""
    image = bytearray(minimal_pe64(uuid.UUID(index_row["pdb_guid"]).bytes_le, 3))
    # Build a file whose .rdata raw data sits at 0x400 instead of 0x1000.
    sec = 0x98 + 0xF0
    import struct
    struct.pack_into("<I", image, sec + 20, 0x400)                       # PointerToRawData
    struct.pack_into("<I", image, 0x1000 + 24, 0x440)                    # debug PointerToRawData
    data = bytes(image[:0x400]) + bytes(image[0x1000:])
    info = parse_pe_headers(data, mapped=False)
    ref = pefile.PE(data=data)
    entry = next(d.entry for d in ref.DIRECTORY_ENTRY_DEBUG if d.struct.Type == 2)
    assert info.debug_codeview.guid + "3" == entry.Signature_String.upper()


@pytest.mark.parametrize("mutate,text", [
    (lambda b: b"ZZ" + b[2:], "no MZ signature"),
    (lambda b: b[:0x3C] + (0x2000).to_bytes(4, "little") + b[0x40:], "e_lfanew"),
    (lambda b: b[:0x80] + b"NE\0\0" + b[0x84:], "no PE signature"),
    (lambda b: b[:0x98] + b"\x0b\x02"[::-1] + b[0x9A:], "neither PE32 nor PE32+"),
    (lambda b: b[:0x86] + (500).to_bytes(2, "little") + b[0x88:], "500 sections"),
    (lambda b: b[:0x20], "too short for a DOS header"),
])
def test_not_a_pe(index_row, mutate, text):
    image = minimal_pe64(uuid.UUID(index_row["pdb_guid"]).bytes_le, 1)
    bad = mutate(image)
    with pytest.raises(DumpFormatError) as err:
        parse_pe_headers(bad)
    assert text in str(err.value)
