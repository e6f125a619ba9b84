"""The real triage dumps: the process and thread they hold, decoded; the rest said to be missing.

Independent expectations come from each dump's own redundancy: the triage header says where the
thread and its process are (found by H3's reader from the PRCB, not by our model), the thread's
process pointer must be that block, its Cid must name the process's PID, the PRCB's CurrentThread
must be the thread, the kernel stack bounds must be ordered, PID 4 must be named System, the
System process's DirectoryTableBase must be the header's, and the start address must fall inside
ntoskrnl as the dump's own driver list places it.
"""
from pathlib import Path
from typing import Any, Dict

import pytest

from planted import run_json, run_text
from pykd_ext.targets.opener import open_target

DUMPS = ("win10-19041-x64-triage.dmp", "win10-17763-x64-triage.dmp")


@pytest.fixture(scope="module", params=DUMPS)
def triage(request: Any, real_dir: Path) -> Dict[str, Any]:
    path = str(real_dir / "kernel-triage" / request.param)
    target = open_target(path)
    try:
        info = target.info()
        prcb = info.extra["prcb"]
        # the PRCB's CurrentThread, read at the KDBG's stated offset (independent of our layouts)
        current = target.kernel.read_pointer(prcb + info.kdbg["OffsetPrcbCurrentThread"])
        number = int.from_bytes(target.kernel.read(prcb + info.kdbg["OffsetPrcbNumber"], 4), "little")
        nt = [d for d in info.extra["drivers"] if d["name"].lower() == "ntoskrnl.exe"][0]
        return {"path": path, "process": info.extra["process"], "thread": info.extra["thread"],
                "dtb": info.directory_table_base, "current": current, "number": number, "nt": nt}
    finally:
        target.close()


def test_eproc_decodes_the_dump_process(triage: Dict[str, Any]) -> None:
    recs = run_json(["eproc", "System", "--target", triage["path"]])["records"]
    assert len(recs) == 1
    rec = recs[0]
    assert rec["address"] == triage["process"]
    assert rec["pid"] == 4 and rec["name"] == "System" and rec["ppid"] == 0
    assert "TriageBlock" in rec["found_by"]
    assert rec["dtb"] & ~0xFFF == triage["dtb"] & ~0xFFF
    assert rec["kind"] == "system" and rec["session_id"] is None and rec["peb"] == 0
    assert rec["protection"]["text"] == "PP-WinSystem"
    # the dump does not hold the whole thread list: the count is unknown, and says why
    assert rec["threads_listed"]["unreadable"]["reason"] == "not in dump"
    assert rec["threads_active"] > 1
    by_pid = run_json(["eproc", "4", "--target", triage["path"]])["records"]
    by_address = run_json(["eproc", "%x" % triage["process"], "--target", triage["path"]])["records"]
    assert by_pid[0]["address"] == by_address[0]["address"] == triage["process"]


def test_ethread_decodes_the_dump_thread(triage: Dict[str, Any]) -> None:
    rec = run_json(["ethread", "0x%x" % triage["thread"], "--target", triage["path"]])["records"][0]
    assert rec["address"] == triage["thread"]
    assert rec["process"] == triage["process"]
    assert rec["pid"] == 4
    assert rec["stack_limit"] < rec["stack_current"] < rec["stack_init"] <= rec["stack_base"]
    nt = triage["nt"]
    assert nt["base"] <= rec["start_address"] < nt["base"] + nt["size"]
    assert rec["start_module"] == nt["name"]
    assert "system" in rec["thread_flags"] and rec["teb"] == 0
    if triage["current"] == triage["thread"]:
        assert rec["state"] == "Running" and rec["running_on"] == triage["number"]
    by_tid = run_json(["ethread", "0n%d" % rec["tid"], "--target", triage["path"]])["records"]
    assert by_tid[0]["address"] == triage["thread"]


def test_ethread_text_says_running_on_processor(triage: Dict[str, Any]) -> None:
    code, text = run_text(["ethread", "%x" % triage["thread"], "--target", triage["path"]])
    assert code == 0
    first = text.splitlines()[0]
    assert first.startswith("THREAD %016x  Cid 0004." % triage["thread"])
    assert first.endswith("RUNNING on processor %d" % triage["number"])
    assert "Owning Process            %016x       Image:         System" % triage["process"] in text


def test_ps_shows_what_the_dump_holds_and_says_the_rest_is_missing(triage: Dict[str, Any]) -> None:
    doc = run_json(["ps", "--target", triage["path"]])
    recs = doc["records"]
    system = [r for r in recs if r["address"] == triage["process"]]
    assert len(system) == 1 and system[0]["name"] == "System"
    assert any("the rest of the process list is not in it" in n for n in doc["notes"])
    for rec in recs:
        if rec["address"] != triage["process"]:
            assert rec["name"] == {"unreadable": rec["name"]["unreadable"]}
            assert rec["name"]["unreadable"]["reason"] == "not in dump"
    # the thread the lists do not reach is still shown for its process
    threads = run_json(["threads", "System", "--target", triage["path"]])["records"]
    assert triage["thread"] in [t["address"] for t in threads]


def test_psxview_runs_on_a_triage_dump(triage: Dict[str, Any]) -> None:
    doc = run_json(["psxview", "--target", triage["path"]])
    system = [r for r in doc["records"] if r["address"] == triage["process"]][0]
    assert system["ProcessorCurrentThread"] is True
    assert system["PspCidTable"] is None            # the CID table is not in a triage dump
    assert any("PspCidTable" in n for n in doc["notes"])
