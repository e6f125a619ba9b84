"""`ready`, `running` and the scheduling lines of `ethread`/`threads -v` on forged dumps of the
scheduling scenario, against the planted facts (which thread is on which list, in which order;
each processor's current/next/idle thread; the tick count and clock increment the forge wrote).
"""
import re
from typing import Any, Tuple

import pytest

from pykd_ext.forge.kernel_objects import Planted

from sched_world import SCHED_BUILDS, run_json, run_text, sched_dump


@pytest.fixture(scope="module", params=SCHED_BUILDS)
def world(request: Any, tmp_path_factory: Any, isf_dir: Any) -> Tuple[str, Planted, str]:
    del isf_dir
    path, planted = sched_dump(tmp_path_factory, request.param)
    return path, planted, request.param


def test_ready_json_records(world: Tuple[str, Planted, str]) -> None:
    path, planted, _ = world
    doc = run_json("ready", "-t", path)
    got = [(r["queue"], r["queue_address"], r["priority"], r["thread"], r["tid"]) for r in doc["records"]]
    want = [(q["queue"], q["address"], m["priority"], m["thread"], m["tid"])
            for q in planted.scheduling["queues"] for m in q["threads"]]
    assert got == want
    for rec in doc["records"]:
        facts = planted.thread(rec["tid"])
        assert rec["process"] == facts["process"] and rec["pid"] == facts["pid"]
        assert rec["state"] == "Ready" and rec["thread_priority"] == rec["priority"] == facts["priority"]
        assert rec["process_name"] == planted.process(facts["pid"])["name"]
        if rec["queue"] == "dispatcher":
            assert rec["processor"] == facts["ready_on"] == rec["next_processor"]
    assert [q["queue_address"] for q in doc["meta"]["queues"]] == [q["address"] for q in planted.scheduling["queues"]]
    assert [q["ready_summary"] for q in doc["meta"]["queues"]] == [q["ready_summary"] for q in planted.scheduling["queues"]]
    assert not [n for n in doc["notes"] if "ready" in n or "priority" in n], doc["notes"]


def test_ready_json_writes_addresses_as_hex_strings(world: Tuple[str, Planted, str]) -> None:
    import io
    import json
    from pykd_ext.cli import run_command
    path, _, _ = world
    for command, keys in (("ready", ("thread", "process", "queue_address")),
                          ("running", ("prcb", "current_thread", "idle_thread"))):
        out = io.StringIO()
        assert run_command([command, "-t", path, "--format", "json", "--quiet"], out=out) == 0
        rec = json.loads(out.getvalue())["records"][0]
        for key in keys:
            assert isinstance(rec[key], str) and rec[key].startswith("0x"), (command, key, rec[key])


def test_ready_text_is_windbg_shaped(world: Tuple[str, Planted, str]) -> None:
    path, planted, _ = world
    text = run_text("ready", "-t", path)
    lines = text.splitlines()
    first = lines.index("Processor 0: Ready Threads at priority 12")
    t12, t16 = planted.thread(12), planted.thread(16)
    assert lines[first + 1].startswith("    THREAD %016x  Cid 0004.000c" % t12["address"])
    assert lines[first + 2].startswith("    THREAD %016x  Cid 0004.0010" % t16["address"])
    assert lines[first + 1].endswith("READY on processor 0")
    assert "Processor 3: Ready Threads at priority 10" in lines


def test_running_records(world: Tuple[str, Planted, str]) -> None:
    path, planted, _ = world
    doc = run_json("running", "-t", path)
    got = [(r["processor"], r["prcb"], r["current_thread"], r["next_thread"], r["idle_thread"])
           for r in doc["records"]]
    want = [(p["number"], p["prcb"], p["current_thread"], p["next_thread"], p["idle_thread"])
            for p in planted.processors]
    assert got == want
    recs = doc["records"]
    assert [r["idle"] for r in recs] == [False, False, True, True]
    assert recs[0]["current_tid"] == 8 and recs[0]["current_priority"] == planted.thread(8)["priority"]
    assert recs[1]["current_tid"] == 1004 and recs[1]["current_process_name"] == "app.exe"
    assert recs[1]["next_tid"] == 1008 and recs[1]["next_priority"] == planted.thread(1008)["priority"]
    text = run_text("running", "-t", path)
    assert "System Processors:  (000000000000000f)" in text
    assert "  Idle Processors:  (000000000000000c)" in text


def test_ethread_ticks_and_scheduling(world: Tuple[str, Planted, str]) -> None:
    path, planted, _ = world
    facts = planted.thread(1012)
    ticks = planted.globals["TickCount"] - facts["wait_start_tick"]
    ms = ticks * planted.scheduling["clock_increment"] // 10000
    duration = "0:00:%02d:%02d.%03d" % (ms // 60000, ms // 1000 % 60, ms % 1000)
    text = run_text("ethread", "0n1012", "--no-stack", "-t", path)
    line = [ln for ln in text.splitlines() if ln.startswith("Wait Start TickCount")][0]
    assert re.match(r"Wait Start TickCount +%d +Ticks: %d \(%s\)$" % (facts["wait_start_tick"], ticks,
                                                                   re.escape(duration)), line), line
    assert line.index("Ticks:") == 41                        # WinDbg's second column
    assert "Scheduling Priority       10  BasePriority 8  Boost 2" in text
    (rec,) = run_json("ethread", "0n1012", "--no-stack", "-t", path)["records"]
    sched = rec["scheduling"]
    assert sched["ticks"] == ticks and sched["ticks_duration"] == duration
    assert sched["process_quantum_reset"] == 6 and sched["next_processor"] == 3


def test_threads_verbose_has_scheduling(world: Tuple[str, Planted, str]) -> None:
    path, planted, _ = world
    doc = run_json("threads", "app.exe", "-v", "-t", path)
    by_tid = {r["tid"]: r for r in doc["records"]}
    for tid in (1004, 1020):
        facts = planted.thread(tid)
        sched = by_tid[tid]["scheduling"]
        assert sched["quantum_target"] == facts["quantum_target"]
        assert sched["cycle_time"] == facts["cycle_time"]
    plain = run_json("threads", "app.exe", "-t", path)
    assert all("scheduling" not in r for r in plain["records"])
