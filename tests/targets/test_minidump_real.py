"""User-mode minidump (MDMP) of a WoW64 process, full memory: threads, TEBs, modules."""
import lzma
import json
import struct
from pathlib import Path
from typing import Any, Dict

import pytest

from isf_facts import field_offset, type_size
from pykd_ext.errors import MemoryReadError
from pykd_ext.targets.minidump import MinidumpTarget
from pykd_ext.targets.opener import open_target

DUMP = "user-dumps/win10-17134-wow64-fullmem.dmp"


@pytest.fixture(scope="module")
def teb_layout(shared_dir: Path) -> Dict[str, int]:
    with lzma.open(shared_dir / "isf-derived" / "10.0.17134.1-x64.json.xz", "rt") as handle:
        isf = json.load(handle)
    return {
        "NtTib.Self": field_offset(isf, "_TEB", "NtTib.Self"),
        "ClientId.UniqueProcess": field_offset(isf, "_TEB", "ClientId.UniqueProcess"),
        "ClientId.UniqueThread": field_offset(isf, "_TEB", "ClientId.UniqueThread"),
        "ProcessEnvironmentBlock": field_offset(isf, "_TEB", "ProcessEnvironmentBlock"),
        "ImageBaseAddress": field_offset(isf, "_PEB", "ImageBaseAddress"),
        "OSBuildNumber": field_offset(isf, "_PEB", "OSBuildNumber"),
        "teb_size": type_size(isf, "_TEB"),
    }


@pytest.fixture(scope="module")
def dump(real_dir: Path) -> Any:
    target = open_target(str(real_dir / DUMP))
    yield target
    target.close()


def test_header_facts(dump: MinidumpTarget, real_dir: Path) -> None:
    info = dump.info()
    assert isinstance(dump, MinidumpTarget)
    assert info.container == "MDMP" and info.dump_type == "user"
    assert info.arch == "x64" and info.build == 17134 and dump.kernel.pointer_size == 8
    assert info.extra["wow64"] is True
    assert "WithFullMemory" in info.extra["flag_names"]
    assert dump.physical is None and dump.process_space(0) is dump.kernel
    json.dumps(info.to_dict())                  # the `info --format json` payload
    raw = (real_dir / DUMP).read_bytes()
    # Independent: the Memory64List descriptors read with plain struct add up to what is mapped.
    streams = {t: (s, r) for t, s, r in struct.iter_unpack(
        "<III", raw[0x20:0x20 + 12 * struct.unpack_from("<I", raw, 8)[0]])}
    size, rva = streams[9]
    count, base_rva = struct.unpack_from("<QQ", raw, rva)
    total = sum(struct.unpack_from("<QQ", raw, rva + 16 + 16 * i)[1] for i in range(count))
    assert info.extra["bytes_mapped"] == total and base_rva + total <= len(raw)
    assert [s["name"] for s in info.extra["streams"]][:2] == ["ThreadList", "ModuleList"]


def test_four_threads_with_self_consistent_tebs(dump: MinidumpTarget,
                                               teb_layout: Dict[str, int]) -> None:
    info, space = dump.info(), dump.kernel
    threads = info.extra["threads"]
    assert len(threads) == 4
    pid = info.extra["process_id"]
    for thread in threads:
        teb = thread["teb"]
        assert space.is_readable(teb, teb_layout["teb_size"])
        assert space.read_pointer(teb + teb_layout["NtTib.Self"]) == teb
        assert space.read_pointer(teb + teb_layout["ClientId.UniqueThread"]) == thread["id"]
        assert space.read_pointer(teb + teb_layout["ClientId.UniqueProcess"]) == pid
        start, size = thread["stack"]
        assert space.is_readable(start, size)
        # The stack descriptor is the 64-bit stack; a thread stopped in 32-bit code (WoW64) has
        # its rsp on the 32-bit stack instead. Either way it is dumped memory.
        rsp = thread["context"]["rsp"]
        assert space.is_readable(rsp, 8)
        if thread["context"]["rip"] >> 32:
            assert start <= rsp < start + size


def test_modules_and_peb(dump: MinidumpTarget, teb_layout: Dict[str, int]) -> None:
    info, space = dump.info(), dump.kernel
    modules = info.extra["modules"]
    names = [m["name"].lower() for m in modules]
    assert "targetapp.exe" in names and "ntdll.dll" in names
    for module in modules:
        assert space.read(module["base"], 2) == b"MZ", module["name"]
    peb = space.read_pointer(info.extra["threads"][0]["teb"] + teb_layout["ProcessEnvironmentBlock"])
    image = space.read_pointer(peb + teb_layout["ImageBaseAddress"])
    program = [m for m in modules if m["name"].lower() == "targetapp.exe"][0]
    assert image == program["base"]
    build = int.from_bytes(space.read(peb + teb_layout["OSBuildNumber"], 2), "little")
    assert build == info.build


def test_unmapped_memory_is_a_typed_fault(dump: MinidumpTarget) -> None:
    with pytest.raises(MemoryReadError) as err:
        dump.kernel.read(0x10, 8)
    assert err.value.fault.reason == "not in dump"
