"""Triage dumps of ARM64, 32-bit ARM and x86 (TRIAGE_DUMP32), and a header-only full dump.

Oracles: the real dumps' redundancy (the CONTEXT's stack pointer equals the TRIAGE_DUMP's
TopOfStack; the driver table fills the bytes up to the string pool at the 32-bit entry size;
the first driver's DllBase is the KDBG's KernBase; the thread's block points at its process
twice (Tcb.Process and ApcState.Process); the EPROCESS holds its image name), the README's
statement of the 22000 dump (System at 0xffffbb8eb1690080, 245 drivers), and for the forged x86
dumps the values the forge planted.
"""
import os
import struct
import subprocess
import sys

import pytest

from pykd_ext.errors import TruncatedDumpError
from pykd_ext.forge.triage_dump import DriverSpec, TriageCrash32, write_triage_dump32
from pykd_ext.targets.crashdump import header_only_info
from pykd_ext.targets.opener import open_target

REAL = os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared", "real")
ARM64 = os.path.join(REAL, "kernel-triage", "win11-22000-arm64-triage.dmp")
ARM32 = os.path.join(REAL, "kernel-triage", "win10-17134-arm32-triage.dmp")
PARTIAL = os.path.join(REAL, "partial", "win10-19045-x64-full-header-only.dmp")


def _u32(data: bytes, at: int) -> int:
    return struct.unpack_from("<I", data, at)[0]


def test_arm64_triage():
    with open(ARM64, "rb") as handle:
        raw = handle.read(0x2100)
    top_of_stack = struct.unpack_from("<Q", raw, 0x2000 + 0x48)[0]
    with open_target(ARM64) as target:
        info = target.info()
        extra = info.extra
        assert info.arch == "arm64" and extra["context_layout"] == "ARM64"
        assert extra["context"]["sp"] == top_of_stack
        assert extra["context"]["contextflags"] & 0x400000          # CONTEXT_ARM64
        assert extra["process"] == 0xFFFFBB8EB1690080               # README: System
        assert len(extra["drivers"]) == 245
        assert extra["drivers"][0]["base"] == info.kdbg["KernBase"] == info.kernel_base
        process = target.kernel.read(extra["process"], extra["process_size"])
        assert b"System\0" in process
        thread = target.kernel.read(extra["thread"], extra["thread_size"])
        assert thread.count(struct.pack("<Q", extra["process"])) >= 2
        pc = extra["context"]["pc"]
        kernel = extra["drivers"][0]
        assert kernel["base"] <= pc < kernel["base"] + kernel["size"]


def test_arm32_triage():
    with open(ARM32, "rb") as handle:
        raw = handle.read()
    triage = 0x1000
    driver_list, count, pool = _u32(raw, triage + 0x30), _u32(raw, triage + 0x34), \
        _u32(raw, triage + 0x38)
    assert driver_list + count * 0x4C == pool                      # DUMP_DRIVER_ENTRY32 size
    with open_target(ARM32) as target:
        info = target.info()
        extra = info.extra
        assert (info.container, info.dump_type, info.arch, info.build) == \
            ("PAGEDUMP", "triage", "arm", 17134)
        assert extra["context_layout"] == "ARM"
        assert extra["context"]["sp"] == _u32(raw, triage + 0x48)  # TopOfStack
        assert len(extra["drivers"]) == count == 136
        assert extra["drivers"][0]["name"] == "ntoskrnl.exe"
        assert extra["drivers"][0]["base"] == info.kdbg["KernBase"] == 0x80C06000
        assert all(d["name"].lower().endswith((".sys", ".dll", ".exe")) for d in extra["drivers"])
        assert [u["name"] for u in extra["unloaded_drivers"]] == ["ft5406_touch", "WudfRd.sys",
                                                                  "sacdrv.sys"]
        assert all(u["start"] < u["end"] for u in extra["unloaded_drivers"])
        process = target.kernel.read(extra["process"], extra["process_size"])
        thread = target.kernel.read(extra["thread"], extra["thread_size"])
        assert thread.count(struct.pack("<I", extra["process"])) >= 2
        assert b"svchost.exe\0" in process
        assert 0x80000000 <= extra["thread"] and 0x80000000 <= extra["process"]


def test_arm32_info_cli():
    out = subprocess.run([sys.executable, "-m", "pykd_ext", "info", "--target", ARM32],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "PAGEDUMP, triage (DumpType 4)" in out.stdout and "arm" in out.stdout
    with open(ARM32, "rb") as handle:
        raw = handle.read(0x1100)
    assert "Context record:            ARM" in out.stdout
    assert "sp     %08x" % _u32(raw, 0x1000 + 0x48) in out.stdout          # TopOfStack


@pytest.fixture
def x86_dump(tmp_path):
    crash = TriageCrash32(
        kernel_base=0x81000000,
        drivers=[DriverSpec("ntoskrnl.exe", 0x81000000, 0x800000, 0x5A5A5A5A, 0x1234),
                 DriverSpec("hal.dll", 0x81800000, 0x40000),
                 DriverSpec("bad.sys", 0x8C000000, 0x10000)],
        bugcheck_code=0x1000008E, bugcheck_parameters=[0xC0000005, 0x8C001234, 0x8A3FCF00, 0],
        top_of_stack=0x8A3FCE00, stack_size=0x1000, context_eip=0x8C001234,
        context_esp=0x8A3FCE00, stack_words={0x10: 0x8C002345, 0x20: 0x81012345},
        fault_code=bytes.fromhex("8b4104c20800"), unloaded=[("old.sys", 0x8D000000, 0x8D010000)])
    return write_triage_dump32(crash, str(tmp_path / "x86-triage.dmp")), crash


def test_forged_x86_triage(x86_dump):
    facts, crash = x86_dump
    with open_target(facts["path"]) as target:
        info = target.info()
        extra = info.extra
        assert (info.container, info.arch, info.dump_type) == ("PAGEDUMP", "x86", "triage")
        assert info.kernel_base == crash.kernel_base                # KDBG pointer narrowed
        assert (extra["thread"], extra["process"], extra["prcb"]) == \
            (crash.thread_address, crash.process_address, crash.prcb_address)
        assert extra["prcb_source"] == "KiProcessorBlock[PRCB.Number]"
        assert (extra["context"]["eip"], extra["context"]["esp"]) == (crash.context_eip,
                                                                      crash.context_esp)
        assert [(d["name"], d["base"], d["size"]) for d in extra["drivers"]] == facts["drivers"]
        assert extra["drivers"][0]["timestamp"] == 0x5A5A5A5A
        assert extra["drivers"][0]["checksum"] == 0x1234
        assert extra["unloaded_drivers"][0]["name"] == "old.sys"
        assert extra["stack"] == (crash.top_of_stack, crash.stack_size)
        assert (extra["prcb_size"], extra["process_size"], extra["thread_size"]) == facts["sizes"]
        assert target.kernel.read(crash.top_of_stack + 0x10, 4) == struct.pack("<I", 0x8C002345)
        assert target.kernel.pointer_size == 4
        assert not info.notes


def test_forged_x86_triage_u(x86_dump):
    facts, _crash = x86_dump
    out = subprocess.run([sys.executable, "-m", "pykd_ext", "u", "8c001234", "L2", "--target",
                          facts["path"]], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "bad+0x1234:"
    assert lines[1].split(None, 2) == ["8c001234", "8b4104", "mov     eax, dword ptr [ecx + 4]"]
    assert lines[2].split(None, 2) == ["8c001237", "c20800", "ret     8"]


def test_header_only_full_dump():
    with pytest.raises(TruncatedDumpError) as err:
        open_target(PARTIAL)
    info = header_only_info(PARTIAL, err.value)
    with open(PARTIAL, "rb") as handle:
        raw = handle.read(0x2000)
    assert info.build == struct.unpack_from("<I", raw, 0x0C)[0] == 19045
    assert info.directory_table_base == struct.unpack_from("<Q", raw, 0x10)[0]
    assert info.extra["memory"] == "missing" and info.extra["file_size"] == os.path.getsize(PARTIAL)
    assert any("holds 2" in note for note in info.notes)
    out = subprocess.run([sys.executable, "-m", "pykd_ext", "info", "--target", PARTIAL],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "NT build:                  19045" in out.stdout and "memory:" in out.stdout
    assert "missing" in out.stdout
    out = subprocess.run([sys.executable, "-m", "pykd_ext", "ps", "--target", PARTIAL],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "file holds 2" in out.stderr     # other commands still refuse
