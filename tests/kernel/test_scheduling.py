"""Ready queues, processors and per-thread scheduling facts (kernel/scheduling.py) on forged dumps
of the scheduling scenario (Windows 7, 10, 11), against what the forge planted and the raw ISF.

Independent sources: the planted facts (which thread the forge linked on which list, in which
order, with which ReadySummary; quantum/cycle/priority values; KeMaximumIncrement and the tick
count the forge put in KUSER_SHARED_DATA) and the build's ISF JSON read directly (the link
field's offset, the list count). Tampered variants check the notes: a set bit over an empty
list, a non-empty list under a clear bit, a cyclic list (the walk ends, no hang).
"""
from typing import Any, Tuple

import pytest

from pykd_ext.forge.kernel_objects import Planted
from pykd_ext.kernel.context import KernelContext
from pykd_ext.kernel.process import Process
from pykd_ext.kernel.scheduling import duration_text, ready_queues, thread_scheduling
from pykd_ext.kernel.thread import Thread
from pykd_ext.layouts.registry import load_layouts
from pykd_ext.targets.opener import open_target

from sched_world import SCHED_BUILDS, isf, isf_field, poke, sched_dump


@pytest.fixture(scope="module", params=SCHED_BUILDS)
def world(request: Any, tmp_path_factory: Any, isf_dir: Any) -> Tuple[str, Planted, str]:
    del isf_dir
    path, planted = sched_dump(tmp_path_factory, request.param)
    return path, planted, request.param


def _context(path: str, planted: Planted) -> KernelContext:
    return KernelContext(open_target(path), load_layouts(planted.layout))


def test_link_field_and_list_count_are_the_isfs(world: Tuple[str, Planted, str]) -> None:
    """The decoder's link offset and list count are the ISF's (_KTHREAD.WaitListEntry,
    _KPRCB.DispatcherReadyListHead[32]), read from the raw JSON."""
    _, planted, build = world
    doc = isf(build)
    layouts = load_layouts(planted.layout)
    assert layouts.type("_KTHREAD").offset("WaitListEntry") == isf_field(doc, "_KTHREAD", "WaitListEntry")["offset"]
    heads = isf_field(doc, "_KPRCB", "DispatcherReadyListHead")
    assert layouts.type("_KPRCB").offset("DispatcherReadyListHead") == heads["offset"]
    assert heads["type"]["count"] == 32
    assert layouts.type("_KPRCB").offset("ReadySummary") == isf_field(doc, "_KPRCB", "ReadySummary")["offset"]


def test_ready_queues_are_the_planted_ones(world: Tuple[str, Planted, str]) -> None:
    path, planted, build = world
    ctx = _context(path, planted)
    queues = ready_queues(ctx)
    expected = planted.scheduling["queues"]
    got = [(q.kind, q.address, q.summary, [(p, t) for p, t in q.threads]) for q in queues]
    want = [(q["queue"], q["address"], q["ready_summary"], [(m["priority"], m["thread"]) for m in q["threads"]])
            for q in expected]
    assert got == want
    assert all(not q.notes for q in queues), [q.notes for q in queues]
    # the facts the scenario promises: two at 12 on processor 0 in insertion order (tid 12 then 16),
    # 8 on 1, 15 on 2, the boosted one on 3; the shared queue only where the build has one
    by_tid = {t["tid"]: t["address"] for t in planted.threads()}
    cpu0 = queues[0]
    assert cpu0.processors == [0] and cpu0.threads == [(12, by_tid[12]), (12, by_tid[16])]
    assert cpu0.summary == 1 << 12
    assert [q.threads[0][0] for q in queues[1:4]] == [8, 15, 10]
    shared = [q for q in queues if q.kind == "shared"]
    if build == "win7":
        assert not shared
    else:
        assert len(shared) == 1 and shared[0].processors == [0, 1, 2, 3]
        assert shared[0].threads == [(9, by_tid[1016])] and shared[0].summary == 1 << 9


def test_processors_current_next_idle(world: Tuple[str, Planted, str]) -> None:
    path, planted, _ = world
    ctx = _context(path, planted)
    got = [(p.number, p.prcb, p.current_thread, p.next_thread, p.idle_thread) for p in ctx.processors()]
    want = [(p["number"], p["prcb"], p["current_thread"], p["next_thread"], p["idle_thread"])
            for p in planted.processors]
    assert got == want
    by_tid = {t["tid"]: t["address"] for t in planted.threads()}
    assert got[1][3] == by_tid[1008]                         # the Standby thread is processor 1's next
    assert got[2][2] == got[2][4] and got[3][2] == got[3][4]  # 2 and 3 run their idle threads


def test_thread_scheduling_facts(world: Tuple[str, Planted, str]) -> None:
    path, planted, _ = world
    ctx = _context(path, planted)
    increment = planted.scheduling["clock_increment"]
    now = planted.globals["TickCount"]            # what the forge put in KUSER_SHARED_DATA
    assert increment == 156250
    for tid in (8, 12, 1004, 1012, 1020):
        facts = planted.thread(tid)
        sched = thread_scheduling(ctx, Thread(ctx, facts["address"]))
        assert sched["priority"] == facts["priority"] and sched["base_priority"] == facts["base_priority"]
        assert sched["boost"] == facts["priority"] - facts["base_priority"]
        assert sched["quantum_target"] == facts["quantum_target"]
        assert sched["cycle_time"] == facts["cycle_time"]
        assert sched["ideal_processor"] == facts["ideal_processor"]
        assert [g["mask"] for g in sched["affinity"]["groups"]] == [facts["affinity"]]
        assert sched["affinity"]["groups"][0]["group"] == 0
        assert sched["wait_start_tick"] == facts["wait_start_tick"]
        assert sched["current_tick"] == now
        assert sched["ticks"] == now - facts["wait_start_tick"]
        ms = (now - facts["wait_start_tick"]) * increment // 10000
        assert sched["ticks_duration"].endswith(".%03d" % (ms % 1000))
        assert sched["time_increment"] == increment
        owner = planted.process(facts["pid"])
        assert sched["process_quantum_reset"] == owner.get("quantum_reset", 0)
    boosted = thread_scheduling(ctx, Thread(ctx, planted.thread(1012)["address"]))
    assert boosted["boost"] == 2 and boosted["next_processor"] == 3
    assert boosted["affinity"]["groups"][0]["mask"] == 0b1010


def test_affinity_form_follows_the_layout(world: Tuple[str, Planted, str]) -> None:
    """Windows 11's _KTHREAD.Affinity is a pointer to a _KAFFINITY_EX; earlier builds embed a
    _GROUP_AFFINITY (the ISF's own type for the member says which)."""
    path, planted, build = world
    ctx = _context(path, planted)
    sched = thread_scheduling(ctx, Thread(ctx, planted.thread(1012)["address"]))
    member = isf_field(isf(build), "_KTHREAD", "Affinity")["type"]
    if member["kind"] == "pointer":
        assert member["subtype"]["name"] == "_KAFFINITY_EX"
        assert sched["affinity"]["form"] == "_KAFFINITY_EX" and sched["affinity"]["count"] == 1
    else:
        assert member["name"] == "_GROUP_AFFINITY" and sched["affinity"]["form"] == "_GROUP_AFFINITY"


def test_duration_text_is_windbgs() -> None:
    """`!thread`'s documented example: Ticks: 22974 (0:00:05:58.968) at a 15.625 ms tick."""
    assert duration_text(22974, 156250) == "0:00:05:58.968"
    assert duration_text(24 * 3600 * 64 + 1, 156250) == "1:00:00:00.015"


# ---- tampered queues --------------------------------------------------------------------------

def _summary_bit_without_list(machine: Any, planted: Planted) -> str:
    cpu2 = planted.processors[2]["prcb"]
    queue = [q for q in planted.scheduling["queues"] if q["queue"] == "dispatcher" and q["processor"] == 2][0]
    offset = load_layouts(planted.layout).type("_KPRCB").offset("ReadySummary")
    poke(machine, cpu2 + offset, queue["ready_summary"] | (1 << 4), 4)
    return "bit-without-list"


def _list_without_bit(machine: Any, planted: Planted) -> str:
    cpu0 = planted.processors[0]["prcb"]
    offset = load_layouts(planted.layout).type("_KPRCB").offset("ReadySummary")
    poke(machine, cpu0 + offset, 0, 4)
    return "list-without-bit"


def _cycle(machine: Any, planted: Planted) -> str:
    """Thread 16's link points back to thread 12's (a loop that never reaches the head)."""
    link = load_layouts(planted.layout).type("_ETHREAD").offset("Tcb.WaitListEntry")
    first = planted.thread(12)["address"] + link
    second = planted.thread(16)["address"] + link
    poke(machine, second, first, 8)
    return "cycle"


@pytest.mark.parametrize("tamper", [_summary_bit_without_list, _list_without_bit, _cycle])
def test_torn_queues_are_notes(tamper: Any, tmp_path_factory: Any, isf_dir: Any) -> None:
    del isf_dir
    path, planted = sched_dump(tmp_path_factory, "win10", tamper)
    ctx = _context(path, planted)
    queues = ready_queues(ctx)
    notes = [n for q in queues for n in q.notes]
    if tamper is _summary_bit_without_list:
        assert any("bit 4 is set but list 4 is empty" in n for n in notes), notes
        assert queues[2].threads == [(15, planted.thread(24)["address"])]
    elif tamper is _list_without_bit:
        assert any("list 12 is not empty" in n and "bit is clear" in n for n in notes), notes
        assert queues[0].threads == []
    else:
        assert any("cycle" in n for n in notes), notes
        assert [t for _, t in queues[0].threads] == [planted.thread(12)["address"], planted.thread(16)["address"]]


def test_process_base_priority(world: Tuple[str, Planted, str]) -> None:
    path, planted, _ = world
    ctx = _context(path, planted)
    app = planted.by_name("app.exe")
    sched = thread_scheduling(ctx, Thread(ctx, app["threads"][0]["address"]))
    assert sched["process_base_priority"] == 8 == Process(ctx, app["address"]).field("Pcb.BasePriority")


def test_ready_walks_charge_the_work_budget(world: Tuple[str, Planted, str]) -> None:
    """One entry of budget: the first ready thread is decoded, every later walk stops, and the
    context carries the budget's one note (kernel/budget.py)."""
    from pykd_ext.kernel.budget import Budget
    path, planted, _ = world
    ctx = KernelContext(open_target(path), load_layouts(planted.layout), Budget(max_entries=1))
    queues = ready_queues(ctx)
    assert [t for q in queues for _, t in q.threads] == [planted.thread(12)["address"]]
    assert any("work budget" in n for n in ctx.notes), ctx.notes
