"""Inference from a triage dump's own process and thread, whatever the process (issue 15).

Oracles: the ISF JSON (the rule run alone on the real x64 triage dumps, and on a forged triage
dump whose process is svchost.exe), the values the forge planted (name, PID, TID), and the
issue's statement of the real ARM32 dump (svchost.exe at 0x8969b800; its thread's Cid is read by
the same rule, so only the name and address are independent there).
"""
import io
import json
import random
from pathlib import Path

import pytest

from isf_offsets import isf_json, isf_value, revisions_of
from pykd_ext.cli import run_command
from pykd_ext.layouts.inferred.consistency import TRIAGE_PROCESS, TRIAGE_THREAD, _Mem, add_triage_evidence
from pykd_ext.layouts.inferred.evidence import Inference
from pykd_ext.layouts.inferred.from_kdbg import add_kdbg_evidence
from pykd_ext.targets.opener import open_target

#: every field the triage rule can prove
FIELDS = {("_EPROCESS", "UniqueProcessId"), ("_EPROCESS", "ActiveProcessLinks"), ("_EPROCESS", "ImageFileName"),
          ("_ETHREAD", "Cid.UniqueProcess"), ("_ETHREAD", "Cid.UniqueThread"), ("_ETHREAD", "Tcb.Process"),
          ("_ETHREAD", "Tcb.ApcState.Process")}


def _triage_only(path: str) -> Inference:
    """The rule alone (KDBG sizes and ApcState.Process offset first, as inference runs it)."""
    target = open_target(path)
    try:
        info = target.info()
        inference = Inference(info.arch, target.kernel.pointer_size)
        add_kdbg_evidence(inference, info.kdbg)
        add_triage_evidence(inference, _Mem(target.kernel, inference.pointer_size), info)
        return inference
    finally:
        target.close()


def _proven(inference: Inference) -> dict:
    return {(e.type_name, e.path): e.value for e in inference.evidence
            if e.source in (TRIAGE_PROCESS, TRIAGE_THREAD)}


@pytest.mark.parametrize("name,build", [("win10-19041-x64-triage.dmp", 19041),
                                        ("win10-17763-x64-triage.dmp", 17763)])
def test_triage_rule_on_real_x64_dumps_equals_the_isf(real_dir: Path, name: str, build: int) -> None:
    proven = _proven(_triage_only(str(real_dir / "kernel-triage" / name)))
    assert set(proven) == FIELDS
    revisions = revisions_of(build)
    for (type_name, path), value in proven.items():
        expected = {isf_value(isf_json(v), type_name, path) for v in (revisions[0], revisions[-1])}
        assert expected == {value}, (type_name, path, value, expected)


def test_forged_svchost_triage_decodes_with_inferred_layouts(tmp_path: Path) -> None:
    from pykd_ext.forge.triage_dump import random_crash, write_triage_dump
    plan = random_crash(random.Random(5), versions=("10.0.19041.1288",))
    crash = plan.crash
    crash.process_name, crash.pid, crash.tid = "svchost.exe", 0x5E0, 0xA54
    crash.process_dtb = 0x2345000
    path = str(tmp_path / "svchost.dmp")
    write_triage_dump(crash, path)
    isf = isf_json("10.0.19041.1288")
    proven = _proven(_triage_only(path))
    assert set(proven) == FIELDS
    for (type_name, path_), value in proven.items():
        assert value == isf_value(isf, type_name, path_), (type_name, path_)
    out = io.StringIO()
    assert run_command(["eproc", "--target", path, "--layout", "inferred", "--format", "json"], out) == 0
    record = json.loads(out.getvalue())["records"][0]
    assert (record["name"], record["pid"], int(record["address"], 16)) == ("svchost.exe", 0x5E0, crash.process_address)
    out = io.StringIO()
    assert run_command(["ethread", "--target", path, "--layout", "inferred", "--format", "json"], out) == 0
    thread = json.loads(out.getvalue())["records"][0]
    assert (thread["tid"], thread["pid"], int(thread["address"], 16)) == (0xA54, 0x5E0, crash.thread_address)


def test_real_arm32_triage_eproc_and_ethread_decode_its_svchost(real_dir: Path) -> None:
    path = str(real_dir / "kernel-triage" / "win10-17134-arm32-triage.dmp")
    out = io.StringIO()
    assert run_command(["eproc", "--target", path, "--format", "json"], out) == 0
    doc = json.loads(out.getvalue())
    process = doc["records"][0]
    assert (int(process["address"], 16), process["name"]) == (0x8969B800, "svchost.exe")
    # unproven fields are named, not guessed
    assert any("the inferred layout lacks" in n and "_EPROCESS.ObjectTable" in n for n in doc["notes"])
    out = io.StringIO()
    assert run_command(["ethread", "--target", path, "--format", "json"], out) == 0
    thread = json.loads(out.getvalue())["records"][0]
    assert int(thread["address"], 16) == 0x8C1E6400
    assert thread["pid"] == process["pid"] and thread["tid"] and thread["tid"] != thread["pid"]
    # the ARM32 kernel's own KDBG block states ApcState.Process: the thread points back there
    target = open_target(path)
    try:
        apc = target.info().kdbg["OffsetKThreadApcProcess"]
        assert target.kernel.read_pointer(0x8C1E6400 + apc) == 0x8969B800
    finally:
        target.close()


class _Space:
    """Planted kernel memory: {address: bytes}; reads outside it return nothing."""

    def __init__(self, blocks: dict) -> None:
        self.blocks = blocks

    def read_partial(self, address: int, size: int):
        for start, data in self.blocks.items():
            if start <= address < start + len(data):
                return data[address - start:address - start + size], None
        return b"", None


class _Info:
    def __init__(self, process: int, thread: int) -> None:
        self.extra = {"process": process, "thread": thread}


def test_an_ambiguous_or_hostile_triage_pair_proves_nothing() -> None:
    import struct
    process, thread = 0xFFFF900000001000, 0xFFFF900000005000
    link = 0xFFFF900000009000
    words = [0] * 0x200
    for at in (0x20, 0x60):                       # the PID, then a LIST_ENTRY, twice
        words[at // 8:at // 8 + 3] = [0x5E0, link, link]
    tdata = [0] * 0x100
    tdata[0x40:0x42] = [0x5E0, 0xA54]
    space = _Space({process: struct.pack("<512Q", *words), thread: struct.pack("<256Q", *tdata)})
    inference = Inference("x64", 8)
    inference.add("_EPROCESS", "", 0x1000, "kdbg:SizeEProcess", "size")
    inference.add("_ETHREAD", "", 0x800, "kdbg:SizeEThread", "size")
    add_triage_evidence(inference, _Mem(space, 8), _Info(process, thread))
    assert not _proven(inference)
    assert any("matches 2 places" in n for n in inference.notes)
    # a hostile object full of PID-like values and list-like pointers: bounded, still nothing
    words = [0x5E0, link, link] * 170 + [0, 0]
    tdata = [0x5E0, 0xA54] * 128
    space = _Space({process: struct.pack("<512Q", *words), thread: struct.pack("<256Q", *tdata)})
    inference = Inference("x64", 8)
    add_triage_evidence(inference, _Mem(space, 8), _Info(process, thread))
    assert not _proven(inference)


def test_real_arm64_triage_ethread_decodes_its_thread(real_dir: Path) -> None:
    path = str(real_dir / "kernel-triage" / "win11-22000-arm64-triage.dmp")
    out = io.StringIO()
    assert run_command(["ethread", "--target", path, "--format", "json"], out) == 0
    doc = json.loads(out.getvalue())
    thread = doc["records"][0]
    assert int(thread["address"], 16) == 0xFFFFBB8EB1719180
    target = open_target(path)
    try:
        apc = target.info().kdbg["OffsetKThreadApcProcess"]
        # the owning process is the one the thread's ApcState.Process names (the KDBG's offset)
        assert target.kernel.read_pointer(0xFFFFBB8EB1719180 + apc) == 0xFFFFBB8EB1690080
    finally:
        target.close()
    assert int(thread["process"], 16) == 0xFFFFBB8EB1690080
    # its Cid has two candidate places in this thread: not guessed, and said
    assert any("the inferred layout lacks" in n and "_ETHREAD.Cid.UniqueThread" in n for n in doc["notes"])
