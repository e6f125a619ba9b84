"""Issue 12, `lm` (alias `drivers`): loaded kernel modules and unloaded drivers, like WinDbg's `lm`.

Independent expectations:
- the forged sample: the drivers the forge planted on `PsLoadedModuleList` and in
  `MmUnloadedDrivers` (`forge/kernel_modules.py`), and Volatility 3's `windows.modules` and
  `windows.unloadedmodules` reading the same file with the ISF;
- the real triage dumps: the driver list and unloaded-driver block read straight from the file
  here (TRIAGE_DUMP64 at 0x2000, `DUMP_DRIVER_ENTRY64` stride from the header's own offsets, the
  `KLDR_DATA_TABLE_ENTRY` DllBase/SizeOfImage offsets from the ISF JSON); the KDBG's KernBase must
  be the kernel's base; the kernel's own PE header (one of the dump's data blocks) must carry the
  TimeDateStamp and CheckSum the list states; the 19041 dump's bugcheck address (parameter 2) lies
  in amdppm.sys at +0x334c and the 17763 dump's list holds winhvr.sys (`shared/real/README.md`).
"""
import json
import lzma
import struct
import sys
from pathlib import Path
from typing import Any, Dict, List

import pytest

from planted import run_json, run_text
from pykd_ext.forge.kernel_modules import planted_modules
from pykd_ext.forge.builds import BUILDS
from pykd_ext.forge.kernel_objects import build_scenario, write_scenario_dump
from pykd_ext.forge.scenario import standard_scenario

SAMPLE = str(Path(__file__).resolve().parents[2] / "samples" / "win10-19041-standard.dmp")
#: the sample's kernel symbols (samples/README.md), for the KLDR_DATA_TABLE_ENTRY offsets
SAMPLE_ISF = "windows/ntkrnlmp.pdb/CA8E2F01B822EDE6357898BFBF862997-1.json.xz"
TRIAGE_HEADER = 0x2000          # TRIAGE_DUMP64 follows the 0x2000-byte DUMP_HEADER64
#: Volatility prints kernel addresses without the sign extension (48-bit canonical part)
CANONICAL = (1 << 48) - 1


def addr(value: Any) -> int:
    return int(value, 16) if isinstance(value, str) else int(value)


@pytest.fixture(scope="module")
def planted() -> Any:
    return build_scenario(standard_scenario(), "win10")[1]


@pytest.fixture(scope="module")
def kldr(isf_dir: Path) -> Dict[str, int]:
    with lzma.open(str(isf_dir / SAMPLE_ISF)) as f:
        fields = json.load(f)["user_types"]["_KLDR_DATA_TABLE_ENTRY"]["fields"]
    return {name: fields[name]["offset"] for name in ("DllBase", "SizeOfImage")}


def _lm(argv: List[str]) -> Dict[str, List[Dict[str, Any]]]:
    recs = run_json(["lm"] + argv)["records"]
    loaded = [r for r in recs if r["state"] == "loaded"]
    # WinDbg's order (by start address) in the output; the module list's order by `load_order`
    assert [addr(r["base"]) for r in loaded] == sorted(addr(r["base"]) for r in loaded)
    return {"loaded": sorted(loaded, key=lambda r: r["load_order"]),
            "unloaded": [r for r in recs if r["state"] == "unloaded"]}


def test_forged_modules_are_the_planted_ones(planted: Any) -> None:
    drivers, unloaded = planted_modules(planted)
    assert len(drivers) > 5 and unloaded
    got = _lm(["--target", SAMPLE])
    assert [(addr(r["base"]), r["size"], r["name"], r["path"]) for r in got["loaded"]] == \
        [(d["base"], d["size"], d["name"], d["path"]) for d in drivers]
    assert [(r["timestamp"], r["checksum"]) for r in got["loaded"][1:]] == \
        [(d["timestamp"], d["checksum"]) for d in drivers[1:]]
    assert got["loaded"][0]["module"] == "nt"
    assert [(r["name"], addr(r["base"]), addr(r["end"])) for r in got["unloaded"]] == \
        [(u["name"], u["start"], u["end"]) for u in unloaded]


@pytest.mark.parametrize("build", sorted(BUILDS))
def test_every_forged_build_lists_its_planted_modules(build: str, tmp_path: Path) -> None:
    """Windows 7 to 11: `_KLDR_DATA_TABLE_ENTRY` offsets of each build, and MmUnloadedDrivers."""
    planted_build = write_scenario_dump(str(tmp_path / ("%s.dmp" % build)), standard_scenario(), build)
    drivers, unloaded = planted_modules(planted_build)
    got = _lm(["--target", planted_build.path])
    assert [(addr(r["base"]), r["size"], r["name"]) for r in got["loaded"]] == \
        [(d["base"], d["size"], d["name"]) for d in drivers]
    assert [r["name"] for r in got["unloaded"]] == [u["name"] for u in unloaded]


def test_lm_text_and_pattern(planted: Any) -> None:
    drivers, _ = planted_modules(planted)
    amdppm = next(d for d in drivers if d["name"] == "amdppm.sys")
    code, text = run_text(["lm", "m", "amd*", "--target", SAMPLE])
    lines = text.splitlines()
    assert code == 0
    assert lines[0] == "start             end                 module name"
    start = "%08x`%08x" % (amdppm["base"] >> 32, amdppm["base"] & 0xFFFFFFFF)
    end = amdppm["base"] + amdppm["size"]
    assert lines[1].startswith("%s %08x`%08x   amdppm " % (start, end >> 32, end & 0xFFFFFFFF))
    assert "%08x" % amdppm["timestamp"] in lines[1] and "CheckSum: %08x" % amdppm["checksum"] in lines[1]
    assert len([l for l in lines if l.strip()]) == 2            # the header and amdppm only
    code, text = run_text(["drivers", "m", "WDBOOT.SYS", "--target", SAMPLE])
    lines = text.splitlines()
    assert lines[-2:] == ["Unloaded modules:", lines[-1]] and "WdBoot.sys" in lines[-1]


@pytest.mark.slow
def test_forged_modules_agree_with_volatility(isf_dir: Path) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "agreement"))
    from volrun import VolatilityRun
    run = VolatilityRun(SAMPLE, str(isf_dir))
    vol_loaded = run.rows("windows.modules.Modules")
    vol_unloaded = run.rows("windows.unloadedmodules.UnloadedModules")
    got = _lm(["--target", SAMPLE])
    assert [(addr(r["base"]) & CANONICAL, r["size"], r["name"], r["path"]) for r in got["loaded"]] == \
        [(v["Base"] & CANONICAL, v["Size"], v["Name"], v["Path"]) for v in vol_loaded]
    assert [(r["name"], addr(r["base"]) & CANONICAL, addr(r["end"]) & CANONICAL) for r in got["unloaded"]] == \
        [(v["Name"], v["StartAddress"] & CANONICAL, v["EndAddress"] & CANONICAL) for v in vol_unloaded]


def _raw_triage(path: str, kldr: Dict[str, int]) -> Dict[str, Any]:
    """The driver list and unloaded drivers read straight from the file (see the docstring)."""
    data = Path(path).read_bytes()
    header = struct.unpack_from("<18I", data, TRIAGE_HEADER)
    unloaded_at, driver_list, count, pool = header[6], header[12], header[13], header[14]
    stride, rest = divmod(pool - driver_list, count)
    assert rest == 0
    drivers = []
    for i in range(count):
        entry = driver_list + i * stride
        name_at = struct.unpack_from("<I", data, entry)[0]
        units = struct.unpack_from("<I", data, name_at)[0]
        path_text = data[name_at + 4:name_at + 4 + 2 * units].decode("utf-16-le")
        ldr = entry + 8                               # ULONG DriverNameOffset, alignment
        drivers.append({"path": path_text,
                        "base": struct.unpack_from("<Q", data, ldr + kldr["DllBase"])[0],
                        "size": struct.unpack_from("<I", data, ldr + kldr["SizeOfImage"])[0]})
    unloaded = []
    for i in range(struct.unpack_from("<I", data, unloaded_at)[0]):
        entry = unloaded_at + 8 + i * 0x38            # DUMP_UNLOADED_DRIVERS64
        length = struct.unpack_from("<H", data, entry)[0]
        unloaded.append({"name": data[entry + 16:entry + 16 + min(length, 24)].decode("utf-16-le"),
                         "start": struct.unpack_from("<Q", data, entry + 0x28)[0],
                         "end": struct.unpack_from("<Q", data, entry + 0x30)[0]})
    return {"drivers": drivers, "unloaded": unloaded}


@pytest.mark.parametrize("name", ["win10-19041-x64-triage.dmp", "win10-17763-x64-triage.dmp"])
def test_triage_driver_list(real_dir: Path, kldr: Dict[str, int], name: str) -> None:
    path = str(real_dir / "kernel-triage" / name)
    raw = _raw_triage(path, kldr)
    got = _lm(["--target", path])
    loaded, unloaded = got["loaded"], got["unloaded"]
    assert [(r["path"], addr(r["base"]), r["size"]) for r in loaded] == \
        [(d["path"], d["base"], d["size"]) for d in raw["drivers"]]
    assert [(r["name"], addr(r["base"]), addr(r["end"])) for r in unloaded] == \
        [(u["name"], u["start"], u["end"]) for u in raw["unloaded"]]
    # the kernel: KDBG's KernBase, and its PE header (a data block of the dump)
    from pykd_ext.targets.opener import open_target
    target = open_target(path)
    try:
        kern_base = target.info().kdbg["KernBase"]
        mz = target.kernel.read(kern_base, 0x1000)
    finally:
        target.close()
    nt = loaded[0]
    assert nt["module"] == "nt" and addr(nt["base"]) == kern_base
    pe = struct.unpack_from("<I", mz, 0x3C)[0]                     # e_lfanew (PE format spec)
    assert nt["timestamp"] == struct.unpack_from("<I", mz, pe + 8)[0]           # FileHeader.TimeDateStamp
    assert nt["checksum"] == struct.unpack_from("<I", mz, pe + 24 + 64)[0]      # OptionalHeader.CheckSum


def test_triage_ground_truth(real_dir: Path) -> None:
    path = str(real_dir / "kernel-triage" / "win10-19041-x64-triage.dmp")
    doc = run_json(["lm", "m", "amdppm", "--target", path])
    (amdppm,) = [r for r in doc["records"] if r["state"] == "loaded"]
    from pykd_ext.targets.opener import open_target
    target = open_target(path)
    try:
        exception_address = target.info().bugcheck_parameters[1]     # 0x1000007E: P2 = address
    finally:
        target.close()
    assert exception_address - addr(amdppm["base"]) == 0x334c
    path = str(real_dir / "kernel-triage" / "win10-17763-x64-triage.dmp")
    names = [r["name"] for r in run_json(["lm", "m", "win*", "--target", path])["records"]]
    assert "winhvr.sys" in names


def test_user_dump_is_refused_with_a_pointer_to_modules(real_dir: Path, capsys: Any) -> None:
    code, _text = run_text(["lm", "--target", str(real_dir / "user-dumps" / "win10-17134-wow64-fullmem.dmp")])
    err = capsys.readouterr().err
    assert code == 2 and len(err.splitlines()) == 1 and "`modules`" in err
