"""Scheduler state in forged dumps: ready queues, quantum/cycle fields, the clock increment.

Why: `ready`, `running` and the per-thread scheduling facts need dumps whose ready threads are
known. A scenario names them in build-independent words (`ThreadSpec.ready_on`, `ready_shared`,
`quantum_target`, `cycle_time`; `ProcessSpec.quantum_reset`; `ScenarioSpec.clock_increment`);
this module links them the way the kernel does (ReactOS `ntoskrnl/ke/thrdschd.c`
`KiInsertIntoThreadList`, the WRK's `KxQueueReadyThread`): the thread's `WaitListEntry` is
inserted at the tail of `DispatcherReadyListHead[Priority]` of its processor's PRCB (or the
`ReadyListHead[Priority]` of the shared ready queue) and bit `Priority` of the queue's
`ReadySummary` is set. Nothing is written for a scenario that asks for none of it (the standard
sample stays byte-identical). Offsets and the list count come from the build's layouts.
"""
from typing import Any, Dict, List, Tuple


def _wants_scheduling(spec: Any) -> bool:
    threads = [t for p in spec.processes for t in p.threads]
    return bool(spec.clock_increment or any(p.quantum_reset for p in spec.processes)
                or any(t.ready_on is not None or t.ready_shared or t.quantum_target or t.cycle_time
                       for t in threads))


def plant_scheduling(builder: Any) -> None:
    """The hook `kernel_objects._Builder.build` calls after the processors are planted."""
    spec = builder.spec
    if not _wants_scheduling(spec):
        return
    facts, mem, planted = builder.facts, builder.mem, builder.planted
    entry_size = facts.size("_LIST_ENTRY")
    heads_count = facts.field("_KPRCB", "DispatcherReadyListHead").size // entry_size
    link = facts.offset("_ETHREAD", "Tcb.WaitListEntry")
    states = builder.states
    info: Dict[str, Any] = {"queues": [], "clock_increment": None}
    planted.scheduling = info
    if spec.clock_increment and facts.has_symbol("KeMaximumIncrement"):
        mem.write(builder.sym("KeMaximumIncrement"), spec.clock_increment.to_bytes(4, "little"))
        info["clock_increment"] = spec.clock_increment
        planted.globals["KeMaximumIncrement"] = builder.sym("KeMaximumIncrement")
    for proc in spec.processes:
        if proc.quantum_reset and proc.pid in builder.eprocess:
            mem.put("_EPROCESS", builder.eprocess[proc.pid], "Pcb.QuantumReset", proc.quantum_reset)
            planted.process(proc.pid)["quantum_reset"] = proc.quantum_reset
    prcbs = {p["number"]: p["prcb"] for p in planted.processors}
    # the lists of every queue: (queue address, summary path, heads path) -> {priority: [entries]}
    dispatcher: Dict[int, Dict[int, List[int]]] = {cpu: {} for cpu in prcbs}
    shared_lists: Dict[int, List[int]] = {}
    shared_members: List[Tuple[int, int]] = []          # (priority, tid) in insertion order
    for proc in spec.processes:
        for thread in proc.threads:
            et = builder.ethread.get(thread.tid)
            if et is None:
                continue
            record = _thread_record(planted, thread.tid)
            if thread.quantum_target:
                mem.put("_ETHREAD", et, "Tcb.QuantumTarget", thread.quantum_target)
            if thread.cycle_time:
                mem.put("_ETHREAD", et, "Tcb.CycleTime", thread.cycle_time)
            if record is not None:
                record.update(quantum_target=thread.quantum_target, cycle_time=thread.cycle_time,
                              ready_on=thread.ready_on, ready_shared=thread.ready_shared)
            if thread.ready_on is None and not thread.ready_shared:
                continue
            if thread.state != "Ready":
                raise ValueError("thread %d: only a Ready thread is on a ready list" % thread.tid)
            if not 0 <= thread.priority < heads_count:
                raise ValueError("thread %d: priority %d has no ready list" % (thread.tid, thread.priority))
            if thread.ready_on is not None:
                if thread.ready_on not in prcbs:
                    raise ValueError("thread %d: no processor %d" % (thread.tid, thread.ready_on))
                dispatcher[thread.ready_on].setdefault(thread.priority, []).append(et + link)
                mem.put_if("_ETHREAD", et, "Tcb.NextProcessor", thread.ready_on)
            else:
                shared_lists.setdefault(thread.priority, []).append(et + link)
                shared_members.append((thread.priority, thread.tid))
            mem.put("_ETHREAD", et, "Tcb.State", states["Ready"])
    for cpu, prcb in sorted(prcbs.items()):
        summary = _link_queue(builder, prcb + facts.offset("_KPRCB", "DispatcherReadyListHead"),
                              heads_count, dispatcher[cpu])
        mem.put("_KPRCB", prcb, "ReadySummary", summary)
        info["queues"].append({"queue": "dispatcher", "processor": cpu, "address": prcb,
                               "ready_summary": summary,
                               "threads": _members(builder, dispatcher[cpu], link)})
    if facts.has("_KPRCB", "SharedReadyQueue") and facts.has_type("_KSHARED_READY_QUEUE"):
        queue = builder.raw_block("_KSHARED_READY_QUEUE")
        count = facts.field("_KSHARED_READY_QUEUE", "ReadyListHead").size // entry_size
        summary = _link_queue(builder, queue + facts.offset("_KSHARED_READY_QUEUE", "ReadyListHead"),
                              count, shared_lists)
        mem.put("_KSHARED_READY_QUEUE", queue, "ReadySummary", summary)
        for prcb in prcbs.values():
            mem.put("_KPRCB", prcb, "SharedReadyQueue", queue)
        info["queues"].append({"queue": "shared", "processor": None, "address": queue,
                               "ready_summary": summary, "processors": sorted(prcbs),
                               "threads": _members(builder, shared_lists, link)})
    elif shared_members:
        planted.notes.append("build %s has no shared ready queue: threads %s not queued"
                             % (builder.choice.version, [tid for _, tid in shared_members]))


def _link_queue(builder: Any, heads: int, count: int, lists: Dict[int, List[int]]) -> int:
    """Initialise `count` list heads at `heads`, link each priority's entries; the summary."""
    entry_size = builder.facts.size("_LIST_ENTRY")
    summary = 0
    for priority in range(count):
        entries = lists.get(priority, [])
        builder.mem.list_link(heads + priority * entry_size, entries)
        if entries:
            summary |= 1 << priority
    return summary


def _members(builder: Any, lists: Dict[int, List[int]], link: int) -> List[Dict[str, Any]]:
    by_address = {a: tid for tid, a in builder.ethread.items()}
    out = []
    for priority in sorted(lists, reverse=True):
        for entry in lists[priority]:
            out.append({"priority": priority, "thread": entry - link, "tid": by_address[entry - link]})
    return out


def _thread_record(planted: Any, tid: int) -> Any:
    try:
        return planted.thread(tid)
    except KeyError:
        return None


__all__ = ["plant_scheduling"]
