"""Kernel crash-dump reader: real headers, dumps built in the test, independent readers.

Independent sources of the expected values:
- /work/shared/real/README.md facts and Volatility 3's `crash64.json` field offsets for the real
  triage headers; kdmp-parser's header parser on a copy whose DumpType is patched to 1;
- kdmp-parser (64-bit full, bitmap, RDMP types) and Volatility 3 (32-bit full and bitmap) on dumps
  built here;
- the bytes and addresses planted by the test itself.
"""
import json
import struct
import sys
import types
from pathlib import Path

import kdmp_parser
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "memory"))
import dumpbuild as b  # noqa: E402

from pykd_ext.errors import (DumpFormatError, MemoryReadError, TargetError,  # noqa: E402
                             TruncatedDumpError, UnsupportedDumpError)
from pykd_ext.targets import dumpheader as dh  # noqa: E402
from pykd_ext.targets.opener import open_target  # noqa: E402

KVA = 0xFFFFF80000000000
TRIAGE_19041 = "kernel-triage/win10-19041-x64-triage.dmp"
TRIAGE_17763 = "kernel-triage/win10-17763-x64-triage.dmp"


# --- real headers -------------------------------------------------------------------------------

def _vol_offsets():
    """Field offsets of _DUMP_HEADER64 from Volatility 3's own crash64.json."""
    import volatility3.framework.symbols.windows as win
    with open(Path(win.__file__).parent / "crash64.json") as handle:
        fields = json.load(handle)["user_types"]["_DUMP_HEADER64"]["fields"]
    return {name: spec["offset"] for name, spec in fields.items()}


@pytest.mark.parametrize("name,build,processors", [(TRIAGE_19041, 19041, 16),
                                                   (TRIAGE_17763, 17763, 8)])
def test_real_triage_headers(real_dir, name, build, processors):
    data = (real_dir / name).read_bytes()
    h = dh.parse_header64(data, name)
    assert (h.build, h.processors, h.dump_type) == (build, processors, dh.DUMP_TYPE_TRIAGE)
    assert h.bugcheck_code == 0x1000007E and h.dump_type_name == "triage"
    assert h.arch == "x64" and h.container == "PAGEDU64"
    off = _vol_offsets()

    def q(field, index=0):
        return struct.unpack_from("<Q", data, off[field] + 8 * index)[0]

    def d(field):
        return struct.unpack_from("<I", data, off[field])[0]
    assert h.directory_table_base == q("DirectoryTableBase")
    assert h.pfn_database == q("PfnDataBase")
    assert h.ps_loaded_module_list == q("PsLoadedModuleList")
    assert h.ps_active_process_head == q("PsActiveProcessHead")
    assert h.kd_debugger_data_block == q("KdDebuggerDataBlock")
    assert h.bugcheck_parameters == [q("BugCheckCodeParameter", i) for i in range(4)]
    assert h.machine_type == d("MachineImageType") and h.dump_type == d("DumpType")
    assert h.system_time == q("SystemTime") and h.system_uptime == q("SystemUpTime")
    assert h.required_dump_space == q("RequiredDumpSpace")
    assert h.context_offset == off["ContextRecord"]
    # unset fields hold the "PAGE" fill and come back as None, not as 0x45474150
    assert h.comment is None


def test_real_header_against_kdmp_parser(real_dir, tmp_path):
    """kdmp-parser refuses triage dumps; a copy patched to DumpType 1 lets it parse the header."""
    data = bytearray((real_dir / TRIAGE_17763).read_bytes()[:dh.HEADER64_SIZE])
    with pytest.raises(RuntimeError):
        kdmp_parser.KernelDumpParser(str(real_dir / TRIAGE_17763))
    struct.pack_into("<I", data, dh.DUMP_TYPE_OFFSET64, dh.DUMP_TYPE_FULL)
    patched = tmp_path / "patched.dmp"
    patched.write_bytes(bytes(data))
    parser = kdmp_parser.KernelDumpParser(str(patched))   # keep alive: header points into it
    k = parser.header
    h = dh.parse_header64(bytes(data))
    assert (h.major_version, h.build) == (k.MajorVersion, k.MinorVersion)
    assert h.directory_table_base == k.DirectoryTableBase
    assert h.pfn_database == k.PfnDatabase
    assert h.ps_loaded_module_list == k.PsLoadedModuleList
    assert h.ps_active_process_head == k.PsActiveProcessHead
    assert (h.machine_type, h.processors, h.bugcheck_code) == (k.MachineImageType,
                                                               k.NumberProcessors, k.BugCheckCode)
    assert h.bugcheck_parameters == list(k.BugCheckCodeParameter)
    assert h.kd_debugger_data_block == k.KdDebuggerDataBlock
    assert (h.system_time, h.system_uptime) == (k.SystemTime, k.SystemUpTime)
    assert h.required_dump_space == k.RequiredDumpSpace
    assert (h.mini_dump_fields, h.suite_mask, h.product_type) == (k.MiniDumpFields, k.SuiteMask,
                                                                  k.ProductType)
    assert (h.kd_secondary_version, h.boot_id) == (k.KdSecondaryVersion, k.BootId)
    assert h.physical_runs_declared == k.PhysicalMemoryBlock.NumberOfRuns == 7
    assert h.physical_pages_declared == k.PhysicalMemoryBlock.NumberOfPages
    assert h.physical_runs[0] == (k.PhysicalMemoryBlock.Run.BasePage,
                                  k.PhysicalMemoryBlock.Run.PageCount)
    assert h.attribute_names == ["KernelGeneratedTriageDump"]


def test_triage_is_delegated(real_dir, monkeypatch):
    seen = {}

    def fake_open_triage(path, mm, header):
        seen.update(path=path, head=mm[:8], build=header.build, closed=mm.closed)
        mm.close()
        return "triage target"
    monkeypatch.setitem(sys.modules, "pykd_ext.targets.triage",
                        types.SimpleNamespace(open_triage=fake_open_triage))
    path = str(real_dir / TRIAGE_19041)
    assert open_target(path) == "triage target"
    assert seen == {"path": path, "head": b"PAGEDU64", "build": 19041, "closed": False}


# --- dumps built here ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def planted():
    """Physical pages with distinct contents and page tables with 4K/2M/1G mappings."""
    phys = b.DictPhysical()
    pt = b.PageTables(phys)
    for i, pfn in enumerate([0x1, 0x2, 0x3, 0x50, 0x51, 0x900, 0x1FFF]):
        phys.add(pfn, bytes([i + 1]) * 8 + pfn.to_bytes(8, "little") * 511)
    pt.map_4k(KVA + 0x1000, 0x50 << 12)
    pt.map_4k(KVA + 0x2000, 0x51 << 12)
    pt.map_2m(KVA + 0x400000, 0x0)           # frames 0..0x1FF (1, 2, 3 present)
    pt.map_1g(0xFFFF808000000000, 0x0)       # frames 0..0x3FFFF (0x900, 0x1FFF present)
    vas = [KVA + 0x1008, KVA + 0x2FF8, KVA + 0x401000, KVA + 0x403010,
           0xFFFF808000900000, 0xFFFF808001FFF800]
    return phys, pt, vas


def _write(tmp_path, name, data):
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


def _agree_with_kdmp(path, phys, pt, vas):
    k = kdmp_parser.KernelDumpParser(path)
    target = open_target(path)
    try:
        for pfn in range(0x2100):
            ours = target.physical.page(pfn)
            theirs = k.read_physical_page(pfn << 12)
            assert (ours is None) == (theirs is None), hex(pfn)
            if ours is not None:
                assert bytes(ours) == bytes(theirs) == bytes(phys.pages[pfn])
        for va in vas:
            pa = target.kernel.translate(va)
            assert pa == k.translate_virtual(va, pt.dtb)
            assert target.kernel.read(va, 8) == bytes(phys.pages[pa >> 12])[pa & 0xFFF:][:8]
        info = target.info()
        assert info.directory_table_base == k.directory_table_base == pt.dtb
        assert info.build == k.header.MinorVersion == 19041
        assert info.bugcheck_code == k.header.BugCheckCode
        assert info.processors == k.header.NumberProcessors
        assert info.pages_present == len(phys.pages)
        assert info.physical_runs == b.group_runs(phys.pages)
        return target, info
    finally:
        target.close()


def test_full_dump_agrees_with_kdmp_parser(tmp_path, planted):
    phys, pt, vas = planted
    path = _write(tmp_path, "full.dmp", b.full_dump_bytes(phys, pt.dtb))
    target, info = _agree_with_kdmp(path, phys, pt, vas)
    assert info.dump_type == "full" and info.dump_type_code == 1
    assert info.extra["body"] == "runs" and info.container == "PAGEDU64"
    assert target.describe().kind == "file" and target.describe().locator == path


@pytest.mark.parametrize("signature,dump_type", [(b"FDMP", 5), (b"SDMP", 5), (b"SDMP", 6)])
def test_bitmap_dumps_agree_with_kdmp_parser(tmp_path, planted, signature, dump_type):
    phys, pt, vas = planted
    path = _write(tmp_path, "bmp.dmp", b.bitmap_dump_bytes(phys, pt.dtb, 0x4000, signature,
                                                           dump_type))
    _, info = _agree_with_kdmp(path, phys, pt, vas)
    assert info.extra["bitmap_signature"] == signature.decode()
    assert info.extra["bitmap_pages"] == 0x4000 and not any("bitmap" in n for n in info.notes)


@pytest.mark.parametrize("dump_type", [8, 9, 0xA])
def test_rdmp_dumps_agree_with_kdmp_parser(tmp_path, planted, dump_type):
    phys, pt, vas = planted
    path = _write(tmp_path, "rdmp.dmp", b.rdmp_dump_bytes(phys, pt.dtb, dump_type))
    _, info = _agree_with_kdmp(path, phys, pt, vas)
    assert info.dump_type_code == dump_type and info.extra["body"] == "rdmp"


def test_kernel_summary_type2_reads_like_bitmap(tmp_path, planted):
    phys, pt, vas = planted
    path = _write(tmp_path, "summary.dmp", b.bitmap_dump_bytes(phys, pt.dtb, 0x4000, b"SDMP", 2))
    with open_target(path) as target:
        assert target.info().dump_type == "kernel summary"
        for pfn, data in phys.pages.items():
            assert bytes(target.physical.page(pfn)) == bytes(data)
        assert target.kernel.read(KVA + 0x1008, 8) == bytes(phys.pages[0x50][8:16])


def test_process_space_and_pcid(tmp_path, planted):
    phys, pt, _ = planted
    path = _write(tmp_path, "full.dmp", b.full_dump_bytes(phys, pt.dtb))
    with open_target(path) as target:
        space = target.process_space(pt.dtb | 0x2)      # PCID in the low bits
        assert space.read(KVA + 0x1008, 8) == target.kernel.read(KVA + 0x1008, 8)
        assert target.process_space(pt.dtb) is space
        with pytest.raises(MemoryReadError):
            target.kernel.read(KVA + 0x5000, 1)


def test_32bit_full_dump_physical_agrees_with_volatility(tmp_path, planted):
    from volatility3.framework import contexts
    from volatility3.framework.layers import crash, physical
    phys, _, _ = planted
    runs = b.group_runs(phys.pages)
    body = b"".join(bytes(phys.pages[p]) for p in sorted(phys.pages))
    path = _write(tmp_path, "x86.dmp", b.header32(1, 0x185000, runs) + body)
    ctx = contexts.Context()
    ctx.config["file.location"] = Path(path).as_uri()
    ctx.add_layer(physical.FileLayer(ctx, "file", "file"))
    ctx.config["crash.base_layer"] = "file"
    layer = crash.WindowsCrashDump32Layer(ctx, "crash", "crash")
    with open_target(path) as target:
        info = target.info()
        assert (info.container, info.arch, info.build) == ("PAGEDUMP", "x86", 7601)
        assert info.directory_table_base == layer.dtb == 0x185000
        for pfn in sorted(phys.pages):
            assert bytes(target.physical.page(pfn)) == layer.read(pfn << 12, 4096)
        assert target.physical.page(0x4) is None and not layer.is_valid(0x4000)
        # H10: x86 paging now exists; this dump plants no page tables, so a typed fault
        with pytest.raises(MemoryReadError):
            target.kernel.read(0x80000000, 4)


def test_32bit_bitmap_dump_physical_agrees_with_volatility(tmp_path, planted):
    from volatility3.framework import contexts
    from volatility3.framework.layers import crash, physical
    phys, _, _ = planted
    pfns = sorted(phys.pages)
    span = 0x2000
    bitmap = bytearray(span // 8)
    for pfn in pfns:
        bitmap[pfn >> 3] |= 1 << (pfn & 7)
    first = 0x3000
    summary = dh.SUMMARY_DUMP.build(dict(Signature=b"SDMP", DumpOptions=0, FirstPage=first,
                                         TotalPresentPages=len(pfns), Pages=span))
    data = bytearray(b.header32(5, 0x185000) + summary + bitmap)
    data += bytes(first - len(data))
    data += b"".join(bytes(phys.pages[p]) for p in pfns)
    path = _write(tmp_path, "x86bmp.dmp", bytes(data))
    ctx = contexts.Context()
    ctx.config["file.location"] = Path(path).as_uri()
    ctx.add_layer(physical.FileLayer(ctx, "file", "file"))
    ctx.config["crash.base_layer"] = "file"
    layer = crash.WindowsCrashDump32Layer(ctx, "crash", "crash")
    with open_target(path) as target:
        assert target.info().dump_type == "bitmap"
        for pfn in pfns:
            assert bytes(target.physical.page(pfn)) == layer.read(pfn << 12, 4096)
        present = [pfn for pfn in range(span) if layer.is_valid(pfn << 12)]
        assert present == pfns == [p for p in range(span) if target.physical.page(p) is not None]


# --- bad input ----------------------------------------------------------------------------------

def _expect(tmp_path, data, error, text, name="bad.dmp"):
    path = _write(tmp_path, name, data)
    with pytest.raises(error) as err:
        open_target(path)
    assert text in str(err.value), str(err.value)
    assert err.value.path == path
    return err.value


def test_truncated_header(tmp_path, planted):
    full = b.full_dump_bytes(planted[0], planted[1].dtb)
    _expect(tmp_path, full[:0x1800], TruncatedDumpError, "dump header is 0x2000 bytes")
    _expect(tmp_path, b"PAGEDU64", TruncatedDumpError, "holds 8 bytes")
    _expect(tmp_path, b"PAGEDUMP" + bytes(100), TruncatedDumpError, "0x1000 bytes")


def test_runs_beyond_end_of_file(tmp_path, planted):
    full = b.full_dump_bytes(planted[0], planted[1].dtb)
    n = len(planted[0].pages)
    _expect(tmp_path, full[:-0x1000], TruncatedDumpError,
            "runs claim %d pages (file offsets 0x2000..0x%x) but the file holds %d"
            % (n, 0x2000 + n * 0x1000, n - 1))


def test_absurd_or_contradictory_runs(tmp_path):
    base = b.header64(1, 0x1000, [(0x10, 1)])
    data = bytearray(base + bytes(0x1000))
    struct.pack_into("<I", data, 0x88, 1000)
    _expect(tmp_path, bytes(data), DumpFormatError, "declares 1000 runs")
    huge = b.header64(1, 0x1000, [(1 << 45, 1)]) + bytes(0x1000)
    _expect(tmp_path, huge, DumpFormatError, "beyond any physical address")
    overlap = b.header64(1, 0x1000, [(0x10, 2), (0x11, 1)]) + bytes(0x3000)
    _expect(tmp_path, overlap, DumpFormatError, "overlap")
    filled = b.header64(1, 0x1000, None) + bytes(0x1000)       # runs left as "PAGE" fill
    _expect(tmp_path, filled, DumpFormatError, "declares no runs")


def test_bitmap_errors(tmp_path, planted):
    phys, pt, _ = planted
    good = b.bitmap_dump_bytes(phys, pt.dtb, 0x4000)
    _expect(tmp_path, good[:0x2010], TruncatedDumpError, "before the bitmap dump header")
    bad_sig = bytearray(good)
    bad_sig[0x2000:0x2004] = b"XDMP"
    _expect(tmp_path, bytes(bad_sig), DumpFormatError, "expected SDMPDUMP or FDMPDUMP")
    big = bytearray(good)
    struct.pack_into("<Q", big, 0x2030, 0x400000)           # 4M pages -> 512 KiB bitmap
    _expect(tmp_path, bytes(big), TruncatedDumpError, "bitmap claims 4194304 pages")
    absurd = bytearray(good)
    struct.pack_into("<Q", absurd, 0x2030, 1 << 50)
    _expect(tmp_path, bytes(absurd), DumpFormatError, "beyond any physical address")
    inside = bytearray(good)
    struct.pack_into("<Q", inside, 0x2020, 0x2040)
    _expect(tmp_path, bytes(inside), DumpFormatError, "inside its own bitmap")
    n = len(phys.pages)
    _expect(tmp_path, good[:-0x2000], TruncatedDumpError,
            "bitmap marks %d pages present but the file holds %d" % (n, n - 2))


def test_bitmap_present_count_mismatch_is_a_note(tmp_path, planted):
    phys, pt, _ = planted
    data = bytearray(b.bitmap_dump_bytes(phys, pt.dtb, 0x4000))
    struct.pack_into("<Q", data, 0x2028, 99)
    with open_target(_write(tmp_path, "note.dmp", bytes(data))) as target:
        assert ("bitmap header says 99 pages present, the bitmap marks %d" % len(phys.pages)
                in target.info().notes)


def test_rdmp_errors(tmp_path, planted):
    phys, pt, _ = planted
    good = b.rdmp_dump_bytes(phys, pt.dtb)
    bad = bytearray(good)
    struct.pack_into("<I", bad, 0x2000, 0x41)
    _expect(tmp_path, bytes(bad), DumpFormatError, "marker is 0x41")
    bad = bytearray(good)
    struct.pack_into("<Q", bad, 0x2018, 0x9999)
    _expect(tmp_path, bytes(bad), DumpFormatError, "does not follow")
    _expect(tmp_path, good[:-0x1000], TruncatedDumpError,
            "RDMP ranges claim %d pages" % len(phys.pages))


def test_unsupported_types_and_machines(tmp_path):
    _expect(tmp_path, b.header64(0x77, 0x1000, []) + bytes(0x1000), UnsupportedDumpError,
            "0x77 (unknown)")
    _expect(tmp_path, b.header64(3, 0x1000, []), UnsupportedDumpError, "header only")
    # IA64 is named but not read (ARM64 full dumps are read since issue 15: test_arm64_pagetables)
    _expect(tmp_path, b.header64(1, 0x1000, [], MachineImageType=0x200) + bytes(0x1000),
            UnsupportedDumpError, "ia64")


def test_not_a_dump(tmp_path):
    _expect(tmp_path, b"", DumpFormatError, "empty file")
    _expect(tmp_path, b"PAGEDU65" + bytes(0x3000), DumpFormatError, "not a Windows dump")
    with pytest.raises(TargetError) as err:
        open_target(str(tmp_path))
    assert "directory" in str(err.value)
    with pytest.raises(TargetError):
        open_target(str(tmp_path / "missing.dmp"))


def test_files_are_opened_read_only(tmp_path, planted):
    phys, pt, _ = planted
    path = _write(tmp_path, "ro.dmp", b.full_dump_bytes(phys, pt.dtb))
    Path(path).chmod(0o444)
    with open_target(path) as target:
        page = target.physical.page(0x50)
        with pytest.raises(TypeError):
            page[0] = 0                              # the mapping is read-only
        assert target.kernel.read(KVA + 0x1000, 1) == b"\x04"


# --- KDBG, kernel base and kernel PE identity ---------------------------------------------------

def _kernel_world(with_kdbg):
    """A kernel image (PE with a planted GUID) at KBASE, a module list whose first entry points
    at it, and optionally a KDBG block (built by the KDBG helper's writer) naming KernBase."""
    import uuid
    from pykd_ext.targets.kdbg import build_kdbg
    kbase = 0xFFFFF80512400000
    guid = uuid.UUID("A1B2C3D4-0102-0304-0506-0708090A0B0C")
    phys = b.DictPhysical()
    pt = b.PageTables(phys)
    image = b.minimal_pe64(guid.bytes_le, 7, timestamp=0x12345678, size_of_image=0x4000,
                           file_version=(10, 0, 19041, 3636))
    for i in range(4):
        phys.add(0x800 + i, image[i * 4096:(i + 1) * 4096])
        pt.map_4k(kbase + i * 4096, (0x800 + i) << 12)
    data_va = KVA + 0x7000000
    pt.map_4k(data_va, 0x900000)
    page = phys.add(0x900)
    head, entry, kdbg_va = data_va, data_va + 0x100, data_va + 0x400
    struct.pack_into("<QQ", page, 0, entry, entry)                   # list head
    # first module entry: links, then arbitrary pointers, one of them the image base
    struct.pack_into("<QQQQQQ", page, 0x100, head, head, 0, 0xFFFFF80512400123, kbase, 0x4000)
    if with_kdbg:
        block = build_kdbg({"KernBase": kbase, "PsLoadedModuleList": head})
        page[0x400:0x400 + len(block)] = block
    return phys, pt, kbase, guid, head, kdbg_va


@pytest.mark.parametrize("with_kdbg", [True, False])
def test_kernel_base_and_pdb_identity(tmp_path, with_kdbg):
    phys, pt, kbase, guid, head, kdbg_va = _kernel_world(with_kdbg)
    data = b.full_dump_bytes(phys, pt.dtb, PsLoadedModuleList=head, KdDebuggerDataBlock=kdbg_va)
    with open_target(_write(tmp_path, "k.dmp", data)) as target:
        info = target.info()
        assert info.kernel_base == kbase
        assert info.extra["pdb_guid"] == str(guid).replace("-", "").upper()
        assert (info.extra["pdb_age"], info.extra["pdb_name"]) == (7, "ntkrnlmp.pdb")
        assert info.extra["kernel_timestamp"] == 0x12345678
        assert info.extra["kernel_size_of_image"] == 0x4000
        assert info.extra["kernel_file_version"] == "10.0.19041.3636"
        if with_kdbg:
            assert info.kdbg["KernBase"] == kbase and info.kdbg["PsLoadedModuleList"] == head
        else:
            assert info.kdbg is None
            assert any("KDBG" in n for n in info.notes)
            assert any("PsLoadedModuleList" in n for n in info.notes)


def test_software_pte_layout_reaches_every_space(tmp_path, isf_dir):
    """A transition PTE is read once the target gets the kernel's PTE layout (from the ISF)."""
    import json
    import lzma
    from pykd_ext.layouts.isf import load_isf
    from pykd_ext.memory.pte import SoftwarePteLayout
    isf = next((isf_dir / "windows" / "ntkrnlmp.pdb").glob("*.json.xz"))
    with lzma.open(isf, "rt") as handle:
        types = json.load(handle)["user_types"]

    def put(type_name, field, value):
        spec = types[type_name]["fields"][field]["type"]
        return value << spec["bit_position"]
    phys = b.DictPhysical()
    pt = b.PageTables(phys)
    phys.add(0x777, b"standby page")
    pt.set_entry(KVA + 0x9000, 3, put("_MMPTE_SOFTWARE", "Transition", 1)
                 | put("_MMPTE_TRANSITION", "PageFrameNumber", 0x777))
    path = _write(tmp_path, "transition.dmp", b.full_dump_bytes(phys, pt.dtb))
    with open_target(path) as target:
        other = target.process_space(pt.dtb | 0x1)
        for space in (target.kernel, other):
            with pytest.raises(MemoryReadError):
                space.read(KVA + 0x9000, 12)
        target.set_software_pte(SoftwarePteLayout.from_user_types(load_isf(str(isf))["user_types"]))
        for space in (target.kernel, other, target.process_space(pt.dtb)):
            assert space.read(KVA + 0x9000, 12) == b"standby page"
