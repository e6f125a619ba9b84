"""Physical memory that is not a file, and the scan API every source offers.

Independent sources of the expected values: what the forge planted (its `PhysicalImage`, the DTB,
the kernel base, the KDBG address, the PDB identity) and a brute-force `bytes.find` over the
forged memory laid out flat.
"""
import random
from pathlib import Path
from typing import Dict, List

import pytest

from pykd_ext.forge import forge_machine, write_bitmap_dump, write_full_dump, write_raw_image
from pykd_ext.forge.isf import table_for_build
from pykd_ext.forge.x86_kernel import ProcessSpec32, ThreadSpec32, X86Scenario, build_x86
from pykd_ext.memory.filemap import FileMap
from pykd_ext.memory.filephysical import FlatPhysicalMemory, RunPhysicalMemory
from pykd_ext.memory.paging_modes import X64_4LEVEL
from pykd_ext.memory.space import PhysicalSource
from pykd_ext.targets.arch import X64, X86
from pykd_ext.targets.base import TargetDescription
from pykd_ext.targets.opener import open_target
from pykd_ext.targets.paged import PagedTarget
from pykd_ext.targets.pe import read_pe_info
from pykd_ext.targets.rawimage import RawImageTarget


@pytest.fixture(scope="module")
def machine(isf_dir: Path):
    return forge_machine(build=19041, table=table_for_build(19041, isf_dir),
                         memory_map=((0x1, 0x9E), (0x100, 0x1700), (0x2000, 0x40)))


def _flat(source: PhysicalSource) -> Dict[int, bytes]:
    """Present memory as {run start address: bytes} (one entry per run of present pages)."""
    out = {}
    for first, count in source.runs():
        out[first << 12] = source.read(first << 12, count << 12)
    return out


def _all_matches(source: PhysicalSource, needle: bytes, start: int = 0) -> List[int]:
    found = []
    pos = source.find(needle, start)
    while pos >= 0 and len(found) < 40:
        found.append(pos)
        pos = source.find(needle, pos + 1)
    return found


def _brute_force(runs: Dict[int, bytes], needle: bytes, start: int = 0, limit: int = 40) -> List[int]:
    found: List[int] = []
    for base, data in sorted(runs.items()):
        at = data.find(needle)
        while at >= 0 and len(found) < limit:
            if base + at >= start:
                found.append(base + at)
            at = data.find(needle, at + 1)
    return found


def test_every_file_source_scans_like_brute_force(machine, tmp_path: Path) -> None:
    """Flat, run and bitmap sources, with their file's C-speed scan and without it (the generic
    page reader), find exactly what a brute-force search of the forged memory finds."""
    expected_runs = _flat(machine.phys)
    paths = {
        "raw": write_raw_image(str(tmp_path / "m.raw"), machine.phys),
        "full": write_full_dump(str(tmp_path / "full.dmp"), machine.phys, machine.spec),
        "bitmap": write_bitmap_dump(str(tmp_path / "bitmap.dmp"), machine.phys, machine.spec),
    }
    rng = random.Random(4)
    pfn = rng.choice(machine.phys.present_pfns())
    page = machine.phys.page_bytes(pfn)
    needles = [b"RSDS", b"KDBG", b"ntkrnlmp.pdb\0", b"MZ", page[100:107], b"\0\0\0\0\0\0\0\1"]
    for kind, path in paths.items():
        with open_target(path) as target:
            source = target.physical
            assert source is not None
            flat = _flat(source)
            for needle in needles:
                want = _brute_force(flat, needle)
                assert _all_matches(source, needle) == want, (kind, needle)
                assert source.find(needle, 0, 0x1000) == (want[0] if want and want[0] + len(needle) <= 0x1000 else -1)
            # the generic scan (no store): same answers
            generic = PhysicalSource.find
            for needle in needles[:3]:
                assert generic(source, needle) == (_brute_force(flat, needle) or [-1])[0]
    # the forge's own memory (a source that is not a file): same answers as brute force
    for needle in needles:
        assert _all_matches(machine.phys, needle) == _brute_force(expected_runs, needle)


def test_matches_across_runs_stored_apart(tmp_path: Path) -> None:
    """Runs stored out of order: a pattern across two physically touching runs is found, one
    across a hole is not, even where the file holds those bytes side by side."""
    data = bytearray(0x3000)       # file: [pfn 5][pfn 1][pfn 0]
    data[0x2FFC:0x3000] = b"ABCD"  # end of pfn 0: physical 0xFFC
    data[0x1000:0x1002] = b"EF"    # start of pfn 1: physical 0x1000
    data[0x1FFE:0x2000] = b"XY"    # end of pfn 1: physical 0x1FFE (pfn 2-4 are a hole)
    data[0x0000:0x0004] = b"GHIJ"  # start of pfn 5: physical 0x5000
    path = tmp_path / "runs.bin"
    path.write_bytes(bytes(data))
    with FileMap(str(path)) as fmap:
        source = RunPhysicalMemory(fmap.view, [(1, 1, 0x1000), (0, 1, 0x2000), (5, 1, 0)],
                                   store=fmap)
        for find in (source.find, lambda *a: PhysicalSource.find(source, *a)):
            assert find(b"CDEF") == 0xFFE
            assert find(b"XYGH") == -1
            assert find(b"YA") == -1                 # side by side in the file only
            assert find(b"GHIJ") == 0x5000
            assert find(b"ABCD", 0xFFD) == -1
            assert find(b"ABCD", 0, 0xFFF) == -1     # does not fit before `end`


def test_a_paged_target_over_memory_that_is_not_a_file(machine) -> None:
    """The forge's `PhysicalImage` (what a VM's shared RAM or a debugger looks like to us: pages
    by frame number) opened as a target: the DTB, kernel and KDBG are found by the same scans."""
    target = RawImageTarget(machine.phys, TargetDescription("live", "forged machine"))
    info = target.info()
    assert (info.arch, info.directory_table_base) == ("x64", machine.pt.dtb)
    assert info.extra["paging"] == X64_4LEVEL.name and info.extra["low_stub"] == machine.low_stub
    assert info.kernel_base == machine.kernel.base
    assert info.kd_debugger_data_block == machine.kdbg_address
    assert str(info.extra["pdb_guid"]).replace("-", "").upper() == machine.table.guid
    assert target.kernel.read(machine.kernel.base, 2) == b"MZ"
    assert target.describe() == TargetDescription("live", "forged machine")
    assert target.kernel_image() is target.pe_image(machine.kernel.base)
    target.close()
    # the plain target: given a DTB, no scan at all
    plain = PagedTarget(machine.phys, X64, X64_4LEVEL, machine.pt.dtb,
                        TargetDescription("live", "forged"))
    assert plain.kernel.read(machine.kernel.base, 2) == b"MZ"
    assert plain.info().directory_table_base == machine.pt.dtb
    # the kernel's PE headers are parsed once per space (every layer asks for them) ...
    first = plain.pe_image(machine.kernel.base)
    assert read_pe_info(plain.kernel, machine.kernel.base) is first
    assert first.is_kernel and plain.kernel_image() is None     # its info() names no kernel
    # ... until the caches are dropped (a live target between commands)
    plain.drop_caches()
    assert plain.pe_image(machine.kernel.base) is not first


@pytest.mark.parametrize("build_id", ["6.1.7601.17514-x86", "10.0.19041.1288-x86"])
def test_x86_memory_that_is_not_a_file(build_id: str) -> None:
    procs = [ProcessSpec32(4, 0, "System", [ThreadSpec32(8)])]
    forged = build_x86(X86Scenario(build_id, procs))
    target = RawImageTarget(forged.phys, TargetDescription("live", build_id))
    info = target.info()
    assert target.arch is X86 and info.arch == "x86"
    assert info.directory_table_base == forged.kernel.dtb
    assert info.kernel_base == forged.kernel_base
    assert info.kd_debugger_data_block == forged.globals["KdDebuggerDataBlock"]
    assert info.ps_active_process_head == forged.globals["PsActiveProcessHead"]


def test_a_buffer_is_a_source(machine) -> None:
    """A plain buffer (no file, no store) serves pages and scans."""
    runs = _flat(machine.phys)
    top = max(base + len(data) for base, data in runs.items())
    buffer = bytearray(top)
    for base, data in runs.items():
        buffer[base:base + len(data)] = data
    source = FlatPhysicalMemory(memoryview(buffer))
    assert source.find(b"ntkrnlmp.pdb\0") == bytes(buffer).find(b"ntkrnlmp.pdb\0")
    assert source.ranges() == [(0, top)]
    target = RawImageTarget(source, TargetDescription("live", "buffer"))
    assert target.info().kernel_base == machine.kernel.base
