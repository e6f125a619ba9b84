"""Legacy full user dump (USERDU64) of a native x64 process: regions, threads, TEBs, PEB."""
import json
import lzma
import struct
from pathlib import Path
from typing import Any, Dict

import pytest

from isf_facts import field_offset
from pykd_ext.targets.opener import open_target
from pykd_ext.targets.userdump import UserDumpTarget

DUMP = "user-dumps/win10-17134-x64-userdu64.dmp"


@pytest.fixture(scope="module")
def layout(shared_dir: Path) -> Dict[str, int]:
    with lzma.open(shared_dir / "isf-derived" / "10.0.17134.1-x64.json.xz", "rt") as handle:
        isf = json.load(handle)
    return {
        "NtTib.Self": field_offset(isf, "_TEB", "NtTib.Self"),
        "ClientId.UniqueProcess": field_offset(isf, "_TEB", "ClientId.UniqueProcess"),
        "ClientId.UniqueThread": field_offset(isf, "_TEB", "ClientId.UniqueThread"),
        "ProcessEnvironmentBlock": field_offset(isf, "_TEB", "ProcessEnvironmentBlock"),
        "ImageBaseAddress": field_offset(isf, "_PEB", "ImageBaseAddress"),
        "OSBuildNumber": field_offset(isf, "_PEB", "OSBuildNumber"),
    }


@pytest.fixture(scope="module")
def dump(real_dir: Path) -> Any:
    target = open_target(str(real_dir / DUMP))
    yield target
    target.close()


def test_opens_with_header_facts(dump: UserDumpTarget, real_dir: Path) -> None:
    info = dump.info()
    assert isinstance(dump, UserDumpTarget)
    assert info.container == "USERDU64" and info.arch == "x64" and info.notes == []
    json.dumps(info.to_dict())                  # the `info --format json` payload
    raw = (real_dir / DUMP).read_bytes()
    threads, modules, regions = struct.unpack_from("<III", raw, 0x14)
    assert len(info.extra["threads"]) == threads == 3
    assert len(info.extra["modules"]) == modules
    assert len(info.extra["regions"]) == regions


def test_every_region_is_readable(dump: UserDumpTarget) -> None:
    space = dump.kernel
    for region in dump.info().extra["regions"]:
        assert space.is_readable(region["base"], 1)
        assert space.is_readable(region["base"] + region["size"] - 8, 8)
    assert sum(r["size"] for r in dump.info().extra["regions"]) == dump.info().extra["bytes_mapped"]


def test_tebs_and_peb_are_self_consistent(dump: UserDumpTarget, layout: Dict[str, int]) -> None:
    info, space = dump.info(), dump.kernel
    pid = info.extra["debug_event"]["process_id"]
    pebs = set()
    for thread in info.extra["threads"]:
        teb = thread["teb"]
        assert space.read_pointer(teb + layout["NtTib.Self"]) == teb
        assert space.read_pointer(teb + layout["ClientId.UniqueThread"]) == thread["id"]
        assert space.read_pointer(teb + layout["ClientId.UniqueProcess"]) == pid
        pebs.add(space.read_pointer(teb + layout["ProcessEnvironmentBlock"]))
    assert len(pebs) == 1
    peb = pebs.pop()
    image = space.read_pointer(peb + layout["ImageBaseAddress"])
    assert space.read(image, 2) == b"MZ"
    program = [m for m in info.extra["modules"] if m["name"].lower() == "targetapp.exe"]
    assert program and program[0]["base"] == image
    # The header's MinorVersion high word is the build: the PEB says the same.
    assert int.from_bytes(space.read(peb + layout["OSBuildNumber"], 2), "little") == info.build
    # The debug event's thread is one of the dumped threads.
    assert info.extra["debug_event"]["thread_id"] in {t["id"] for t in info.extra["threads"]}


def test_modules_start_with_mz(dump: UserDumpTarget) -> None:
    for module in dump.info().extra["modules"]:
        assert dump.kernel.read(module["base"], 2) == b"MZ"
