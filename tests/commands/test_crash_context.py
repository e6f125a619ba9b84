"""Issue 12, defect 4: `eproc`, `ethread`, `job`, `token`, `peb`, `teb` without an argument show the
crash context, as WinDbg does after opening a dump.

Independent expectations:
- the forged sample: the forge planted processor 0's `KPRCB.CurrentThread` (a RUNNING System
  thread; `Planted.processors`), and the sample's bytes are that build's (`samples/make_samples.py
  --check` is tested elsewhere); its header CONTEXT names no thread's stack, so processor 0 it is;
- a forged dump whose header CONTEXT stack pointer lies in lsass' thread on processor 2: that thread;
- the real triage dumps: the PRCB's CurrentThread and Number read at the offsets the dump's own
  KDBG block states (`OffsetPrcbCurrentThread`, `OffsetPrcbNumber`), the thread's process at
  `OffsetKThreadApcProcess`; and the dump's CONTEXT record (a separate block of the file) must have
  its stack pointer inside that thread's kernel stack (`OffsetKThreadInitialStack`).
"""
from pathlib import Path
from typing import Any, Dict

import pytest

from planted import run_json, run_text
from pykd_ext.forge.dumpfile import build_context, write_bitmap_dump
from pykd_ext.forge.kernel_objects import build_scenario
from pykd_ext.forge.scenario import standard_scenario
from pykd_ext.targets.opener import open_target

SAMPLE = str(Path(__file__).resolve().parents[2] / "samples" / "win10-19041-standard.dmp")
TRIAGE = ("win10-19041-x64-triage.dmp", "win10-17763-x64-triage.dmp")
#: an x64 kernel stack is 24 KiB (ntddk.h KERNEL_STACK_SIZE); a triage stack pointer sits in it
KERNEL_STACK_SIZE = 0x6000


def addr(value: Any) -> int:
    """A JSON address: an integer, or (issue 12 defect 7) a "0x..." string."""
    return int(value, 16) if isinstance(value, str) else int(value)


@pytest.fixture(scope="module")
def sample_planted() -> Any:
    return build_scenario(standard_scenario(), "win10")[1]


@pytest.fixture(scope="module")
def stack_crash(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, Any]:
    """The standard scenario with the bugcheck CONTEXT on lsass' thread running on processor 2."""
    machine, planted = build_scenario(standard_scenario(), "win10")
    thread = next(t for t in planted.threads() if t["running_on"] == 2)
    rsp = thread["stack_current"] - 0x100
    machine.spec.context = build_context(machine.table, rip=machine.symbol("KeBugCheckEx"), rsp=rsp)
    path = str(tmp_path_factory.mktemp("crash-context") / "crash-on-2.dmp")
    write_bitmap_dump(path, machine.phys, machine.spec, overwrite=True)
    return {"path": path, "thread": thread, "planted": planted}


@pytest.fixture(scope="module", params=TRIAGE)
def triage(request: Any, real_dir: Path) -> Dict[str, Any]:
    path = str(real_dir / "kernel-triage" / request.param)
    target = open_target(path)
    try:
        info = target.info()
        kdbg, space = info.kdbg, target.kernel
        prcb = info.extra["prcb"]
        thread = space.read_pointer(prcb + kdbg["OffsetPrcbCurrentThread"])
        number = int.from_bytes(space.read(prcb + kdbg["OffsetPrcbNumber"], 4), "little")
        process = space.read_pointer(thread + kdbg["OffsetKThreadApcProcess"])
        initial_stack = space.read_pointer(thread + kdbg["OffsetKThreadInitialStack"])
        rsp = info.extra["context"]["rsp"]
        return {"path": path, "thread": thread, "number": number, "process": process,
                "initial_stack": initial_stack, "rsp": rsp}
    finally:
        target.close()


def test_sample_defaults_to_processor_0s_current_thread(sample_planted: Any) -> None:
    current = sample_planted.processors[0]["current_thread"]
    owner = next(p for p in sample_planted.processes if any(t["address"] == current for t in p["threads"]))
    doc = run_json(["ethread", "--target", SAMPLE])
    (rec,) = doc["records"]
    assert addr(rec["address"]) == current
    assert any(n.startswith("crash context: thread 0x%x on processor 0" % current) for n in doc["notes"])
    (proc,) = run_json(["eproc", "--target", SAMPLE])["records"]
    assert addr(proc["address"]) == owner["address"] and proc["pid"] == owner["pid"] == 4
    (token,) = run_json(["token", "--target", SAMPLE])["records"]
    assert addr(token["address"]) == owner["token"]
    assert addr(token["process_address"]) == owner["address"]


def test_system_has_no_job_peb_or_teb_and_that_is_not_an_error(sample_planted: Any) -> None:
    code, text = run_text(["job", "--target", SAMPLE])
    assert code == 0
    assert text.splitlines()[:2] == ["PROCESS %016x  SessionId: none  Cid: 0004  Image: System"
                                     % sample_planted.process(4)["address"], "  (not in a job)"]
    (job,) = run_json(["job", "--target", SAMPLE])["records"]
    assert job["in_job"] is False and job["pid"] == 4
    code, text = run_text(["peb", "--target", SAMPLE])
    assert code == 0 and "PEB at 0000000000000000" in text and "no PEB" in text
    code, text = run_text(["teb", "--target", SAMPLE])
    assert code == 0 and text.startswith("TEB at 0000000000000000")


def test_crash_context_follows_the_header_context_stack(stack_crash: Dict[str, Any]) -> None:
    thread = stack_crash["thread"]
    doc = run_json(["ethread", "--target", stack_crash["path"]])
    (rec,) = doc["records"]
    assert addr(rec["address"]) == thread["address"] and rec["tid"] == thread["tid"]
    note = [n for n in doc["notes"] if n.startswith("crash context:")][0]
    assert "on processor 2" in note and "stack pointer" in note
    (proc,) = run_json(["eproc", "--target", stack_crash["path"]])["records"]
    assert addr(proc["address"]) == thread["process"]
    assert proc["name"] == "lsass.exe"
    (teb,) = run_json(["teb", "--target", stack_crash["path"]])["records"]
    assert addr(teb["address"]) == thread["teb"]


def test_triage_crash_context_is_the_dumps_own_thread(triage: Dict[str, Any]) -> None:
    # the dump's two statements agree: the CONTEXT's rsp is on the PRCB's current thread's stack
    assert triage["initial_stack"] - KERNEL_STACK_SIZE * 2 <= triage["rsp"] < triage["initial_stack"]
    doc = run_json(["ethread", "--no-stack", "--target", triage["path"]])
    (rec,) = doc["records"]
    assert addr(rec["address"]) == triage["thread"]
    assert addr(rec["process"]) == triage["process"]
    assert any(n.startswith("crash context: thread 0x%x on processor %d" % (triage["thread"], triage["number"]))
               for n in doc["notes"])
    (proc,) = run_json(["eproc", "--target", triage["path"]])["records"]
    assert addr(proc["address"]) == triage["process"]
    code, text = run_text(["job", "--target", triage["path"]])
    assert code == 0 and "(not in a job)" in text


def test_named_argument_still_wins(sample_planted: Any) -> None:
    lsass = sample_planted.by_name("lsass.exe")
    (rec,) = run_json(["eproc", "lsass.exe", "--target", SAMPLE])["records"]
    assert addr(rec["address"]) == lsass["address"]


def test_processor_state_names_the_processor_when_no_stack_does(tmp_path: Path) -> None:
    """A CONTEXT whose rsp lies on no thread's stack, but equals processor 3's saved
    `KPRCB.ProcessorState.ContextFrame.Rsp` (offsets from the forge's ISF symbol table)."""
    machine, planted = build_scenario(standard_scenario(), "win10")
    rsp = 0xFFFFF38000001000
    prcb = planted.processors[3]["prcb"]
    machine.pt.write_virtual(prcb + machine.table.offset("_KPRCB", "ProcessorState.ContextFrame.Rsp"),
                             rsp.to_bytes(8, "little"))
    machine.spec.context = build_context(machine.table, rip=machine.symbol("KeBugCheckEx"), rsp=rsp)
    path = str(tmp_path / "state-on-3.dmp")
    write_bitmap_dump(path, machine.phys, machine.spec, overwrite=True)
    doc = run_json(["ethread", "--no-stack", "--target", path])
    (rec,) = doc["records"]
    assert addr(rec["address"]) == planted.processors[3]["current_thread"]
    assert any("on processor 3" in n and "ProcessorState" in n for n in doc["notes"])
