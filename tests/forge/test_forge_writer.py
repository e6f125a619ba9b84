"""The writers: what they refuse, what they leave untouched, and Windows' header conventions."""
import hashlib
import os
from dataclasses import asdict
from pathlib import Path
from typing import Tuple

import pefile
import pytest

from forge_planted import Forged
from pykd_ext.forge import (DumpSpec, PhysicalImage, write_bitmap_dump, write_full_dump,
                            write_raw_image)
from pykd_ext.targets.dumpheader import parse_header64

WRITERS = {
    "full": lambda path, phys, spec, **kw: write_full_dump(path, phys, spec, **kw),
    "bitmap": lambda path, phys, spec, **kw: write_bitmap_dump(path, phys, spec, **kw),
    "raw": lambda path, phys, spec, **kw: write_raw_image(path, phys, **kw),
}


def _small() -> Tuple[PhysicalImage, DumpSpec]:
    phys = PhysicalImage([(0x10, 4), (0x40, 2)])
    phys.write(0x10000, b"first")
    phys.write(0x41000, b"second")
    return phys, DumpSpec(build=19041, dtb=0x10000)


def _digest(phys: PhysicalImage) -> str:
    h = hashlib.sha256()
    for pfn in phys.present_pfns():
        h.update(pfn.to_bytes(8, "little") + phys.page_bytes(pfn))
    return h.hexdigest()


@pytest.mark.parametrize("kind", sorted(WRITERS))
def test_refuses_to_overwrite(tmp_path: Path, kind: str) -> None:
    phys, spec = _small()
    target = tmp_path / "existing.bin"
    target.write_bytes(b"precious")
    with pytest.raises(FileExistsError):
        WRITERS[kind](str(target), phys, spec)
    assert target.read_bytes() == b"precious"
    WRITERS[kind](str(target), phys, spec, overwrite=True)
    assert target.read_bytes() != b"precious"


@pytest.mark.parametrize("kind", sorted(WRITERS))
def test_inputs_unchanged(tmp_path: Path, kind: str) -> None:
    phys, spec = _small()
    before = (_digest(phys), phys.present_pfns(), asdict(spec))
    WRITERS[kind](str(tmp_path / "out.bin"), phys, spec)
    assert (_digest(phys), phys.present_pfns(), asdict(spec)) == before


def test_machine_unchanged_by_writing(forged: Forged, tmp_path: Path) -> None:
    machine = forged.machine
    before = (_digest(machine.phys), asdict(machine.spec))
    write_full_dump(str(tmp_path / "again.dmp"), machine.phys, machine.spec)
    write_bitmap_dump(str(tmp_path / "again-k.dmp"), machine.phys, machine.spec, kernel_only=True)
    assert (_digest(machine.phys), asdict(machine.spec)) == before


def test_header_fill_matches_real_windows(forged: Forged, real_dir: Path) -> None:
    """Wherever both real Windows headers keep the "PAGE" fill, ours does too; and the fill
    after the last physical run is there (construct alone would leave zeros)."""
    reals = [(real_dir / "kernel-triage" / name).read_bytes()[:0x2000]
             for name in ("win10-17763-x64-triage.dmp", "win10-19041-x64-triage.dmp")]
    fill_in_both = [o for o in range(0, 0x2000, 4)
                    if all(real[o:o + 4] == b"PAGE" for real in reals)]
    assert len(fill_in_both) > 1000
    for kind in ("full", "fdmp", "sdmp"):
        ours = Path(forged.paths[kind]).read_bytes()[:0x2000]
        missing = [hex(o) for o in fill_in_both if ours[o:o + 4] != b"PAGE"]
        assert not missing, (kind, missing[:8])
        header = parse_header64(ours)
        end_of_runs = 0x88 + 0x10 + 0x10 * len(header.physical_runs)
        assert ours[end_of_runs:end_of_runs + 8] == b"PAGEPAGE"
        assert header.comment is None and header.writer_status is None


def test_kernel_image_identity_by_pefile(forged: Forged) -> None:
    """pefile (independent) reads the forged kernel's headers from the dump's own bytes."""
    from pykd_ext.targets.opener import open_target
    machine = forged.machine
    with open_target(forged.paths["full"]) as target:
        image = target.kernel.read(machine.kernel.base, 0x1000)
        debug_rva = machine.image.debug_rva
        debug = target.kernel.read(machine.kernel.base + debug_rva, 0x100)
    flat = bytearray(machine.image.size_of_image)
    flat[:0x1000] = image
    flat[debug_rva:debug_rva + 0x100] = debug
    pe = pefile.PE(data=bytes(flat), fast_load=True)
    pe.parse_data_directories(directories=[pefile.DIRECTORY_ENTRY["IMAGE_DIRECTORY_ENTRY_DEBUG"]])
    assert pe.FILE_HEADER.Machine == 0x8664
    assert pe.OPTIONAL_HEADER.ImageBase == machine.kernel.base
    assert pe.OPTIONAL_HEADER.SizeOfImage == machine.image.size_of_image
    assert pe.FILE_HEADER.TimeDateStamp == machine.image.timestamp
    (entry,) = pe.DIRECTORY_ENTRY_DEBUG
    cv = entry.entry
    guid = "%08X%04X%04X%02X%02X%s" % (cv.Signature_Data1, cv.Signature_Data2,
                                       cv.Signature_Data3, cv.Signature_Data4,
                                       cv.Signature_Data5, cv.Signature_Data6.hex().upper())
    assert guid == machine.table.guid
    assert cv.Age == machine.table.age
    assert cv.PdbFileName.rstrip(b"\0") == b"ntkrnlmp.pdb"


def test_low_stub_as_volatility_scans_it(forged: Forged) -> None:
    """The start block satisfies Volatility 3's low-stub test (its constants, its mask)."""
    from volatility3.framework.constants import windows as vw
    machine = forged.machine
    stub = machine.phys.read(machine.low_stub, 0x100)
    head = int.from_bytes(stub[:8], "little")
    assert head & 0xFFFFFFFFFFFF00FF == vw.JMP_AND_COMPLETION_SIGNATURE
    cr3 = int.from_bytes(stub[vw.PROCESSOR_START_BLOCK_CR3_OFFSET:][:8], "little")
    assert cr3 == machine.pt.dtb
    target = int.from_bytes(stub[vw.PROCESSOR_START_BLOCK_LM_TARGET_OFFSET:][:8], "little")
    assert target & 3 == 0
    assert machine.kernel.base <= target < machine.kernel.base + machine.image.size_of_image


def test_ptes_use_isf_bit_positions(forged: Forged) -> None:
    """Planted entries decode with the ISF's own bitfields (read here straight from the JSON)."""
    import json
    import lzma
    with lzma.open(forged.machine.table.path) as handle:
        types = json.load(handle)["user_types"]

    def field(value: int, type_name: str, member: str) -> int:
        bits = types[type_name]["fields"][member]["type"]
        return value >> bits["bit_position"] & ((1 << bits["bit_length"]) - 1)

    pt = forged.machine.pt
    transition = pt.get_pte_raw(forged.special["transition"])
    assert field(transition, "_MMPTE_TRANSITION", "Transition") == 1
    assert field(transition, "_MMPTE_TRANSITION", "Valid") == 0
    assert field(transition, "_MMPTE_TRANSITION", "PageFrameNumber") == forged.transition_pfn
    paged = pt.get_pte_raw(forged.special["paged_out"])
    assert field(paged, "_MMPTE_SOFTWARE", "PageFileHigh") == 0x1234
    assert field(paged, "_MMPTE_SOFTWARE", "PageFileLow") == 1
    proto = pt.get_pte_raw(forged.special["prototype"])
    assert field(proto, "_MMPTE_PROTOTYPE", "Prototype") == 1
    assert field(proto, "_MMPTE_PROTOTYPE", "ProtoAddress") == 0xA00000001230
    valid = pt.get_pte_raw(0xFFFFF78000100000)
    assert field(valid, "_MMPTE_HARDWARE", "Valid") == 1
    assert field(valid, "_MMPTE_HARDWARE", "Owner") == 0
    large = pt.get_pte_raw(forged.machine.kernel.base, level="PDE")
    assert field(large, "_MMPTE_HARDWARE", "LargePage") == 1
    self_map = pt.get_pte_raw(pt.self_map_index << 39, level="PML4E")
    assert field(self_map, "_MMPTE_HARDWARE", "PageFrameNumber") == pt.dtb >> 12


def test_raw_image_is_sparse_and_exact(forged: Forged) -> None:
    path = forged.paths["raw"]
    phys = forged.machine.phys
    assert os.path.getsize(path) == phys.span_pages() * 0x1000
    with open(path, "rb") as handle:
        for pfn in phys.present_pfns():
            handle.seek(pfn * 0x1000)
            assert handle.read(0x1000) == phys.page_bytes(pfn)
    if hasattr(os.stat(path), "st_blocks"):
        assert os.stat(path).st_blocks * 512 < 4 * 1024 * 1024


@pytest.mark.slow
def test_sixteen_gib_span_bitmap_dump(tmp_path: Path, isf_dir: Path) -> None:
    """A bitmap dump of a 16 GiB span with a few hundred pages is small, and kdmp-parser and
    Volatility 3 see exactly the planted pages (bitmap bits up to the last frame)."""
    import random

    import kdmp_parser
    from pykd_ext.forge import forge_machine, pc_memory_map
    from pykd_ext.forge.isf import table_for_build
    machine = forge_machine(memory_map=pc_memory_map(16 << 30), table=table_for_build(19041,
                                                                                      isf_dir))
    rng = random.Random(16)
    top = (16 << 30) // 0x1000
    chosen = {top - 1, 0x100000, 0xBFFFF} | {rng.randrange(0x100000, top) for _ in range(300)}
    for pfn in chosen:
        machine.phys.write(pfn * 0x1000, pfn.to_bytes(8, "little") * 512)
    path = write_bitmap_dump(str(tmp_path / "span.dmp"), machine.phys, machine.spec)
    present = machine.phys.present_pfns()
    assert os.path.getsize(path) <= 0x2000 + (top // 8) + 0x1000 * (len(present) + 1)
    dump = kdmp_parser.KernelDumpParser(path)
    assert sorted(address // 0x1000 for address in dump.pages.keys()) == present
    for pfn in chosen:
        assert bytes(dump.read_physical_page(pfn * 0x1000)) == pfn.to_bytes(8, "little") * 512
    from volatility3.framework import contexts
    from volatility3.framework.layers import crash, physical
    context = contexts.Context()
    context.config["base.location"] = "file://" + path
    context.layers.add_layer(physical.FileLayer(context, "base", "base"))
    context.config["crash.base_layer"] = "base"
    layer = crash.WindowsCrashDump64Layer(context, "crash", "crash")
    assert sum(length for _, _, length, _ in layer._segments) // 0x1000 == len(present)
    assert layer.read((top - 1) * 0x1000, 8) == (top - 1).to_bytes(8, "little")


@pytest.mark.parametrize("machine,container", [(0x8664, b"PAGEDU64"), (0x14C, b"PAGEDUMP")],
                         ids=["x64", "x86"])
def test_one_writer_for_both_header_widths(tmp_path: Path, machine: int, container: bytes) -> None:
    """The spec's machine type chooses the header; field offsets come from Volatility 3's own
    crash64.json / crash.json, the unset pointers keep Windows' "PAGE" fill of their width."""
    import json

    import volatility3.framework.symbols.windows as win
    name, type_name = (("crash64.json", "_DUMP_HEADER64") if container == b"PAGEDU64"
                       else ("crash.json", "_DUMP_HEADER"))
    with open(Path(win.__file__).parent / name) as handle:
        vol = json.load(handle)["user_types"][type_name]
    fields = {key: spec["offset"] for key, spec in vol["fields"].items()}
    pointer = 8 if container == b"PAGEDU64" else 4
    phys, _ = _small()
    spec = DumpSpec(build=7601, dtb=0x10000, machine_type=machine, pae=True)
    raw = Path(write_full_dump(str(tmp_path / "dump.dmp"), phys, spec)).read_bytes()
    assert raw[:8] == container and len(raw) == vol["size"] + 6 * 0x1000
    for key in ("PfnDataBase", "PsLoadedModuleList", "PsActiveProcessHead", "KdDebuggerDataBlock"):
        assert raw[fields[key]:fields[key] + pointer] == b"PAGE" * (pointer // 4), key
    assert int.from_bytes(raw[fields["MachineImageType"]:fields["MachineImageType"] + 4],
                          "little") == machine
    first = fields["BugCheckCodeParameter"]
    assert int.from_bytes(raw[first:first + pointer], "little") == \
        (0xC0000005 | ((1 << (8 * pointer)) - (1 << 32)))    # STATUS_ACCESS_VIOLATION, sign-extended
    if "PaeEnabled" in fields:
        assert raw[fields["PaeEnabled"]] == 1
    assert raw[vol["size"]:vol["size"] + 5] == b"first"                # frame 0x10 right after
