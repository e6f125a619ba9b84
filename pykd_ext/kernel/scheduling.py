"""Scheduler state: per-processor ready queues (`!ready`), current/next/idle threads (`!running`),
and a thread's scheduling facts (priorities, quantum, cycles, affinity, ticks since its last state
change, as `!thread` prints them).

Why one module: the ready queues and the per-thread facts are read from the same few structures
(`_KPRCB`, `_KSHARED_READY_QUEUE`, `_KTHREAD`, `_KPROCESS`, `_KAFFINITY_EX`), and every difference
between builds is answered by the layout: whether the PRCB has a `SharedReadyQueue` (Windows 10+),
whether `_KTHREAD.Affinity` is an embedded `_GROUP_AFFINITY` (Windows 7-10) or a pointer to a
`_KAFFINITY_EX` (Windows 11), how many priority lists `DispatcherReadyListHead` has.

How the kernel links a ready thread (ReactOS `ntoskrnl/ke/thrdschd.c` `KiInsertIntoThreadList`, the
WRK's `KxQueueReadyThread`): `InsertTailList(&Prcb->DispatcherReadyListHead[Priority],
&Thread->WaitListEntry)` and `Prcb->ReadySummary |= 1 << Priority`: the thread's `WaitListEntry`
(a union with `SwapListEntry`) is the link, the list index is the priority, and bit N of the
summary says list N is non-empty. Only lists whose bit is set are walked (as the dispatcher does);
a set bit over an empty list, or a non-empty list under a clear bit, is reported as a note. The
shared ready queue of newer kernels (`_KPRCB.SharedReadyQueue` -> `_KSHARED_READY_QUEUE`) has its
own `ReadySummary` and `ReadyListHead[]`, linked the same way; several processors point to one
queue, which is walked once.

Every walk is bounded (`MAX_READY_PER_LIST`), cycle-safe and charged to the command's work budget
(`kernel.walk.walk_list`).
"""
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple, Union

from pykd_ext.errors import MemoryReadError
from pykd_ext.kernel.process import Process
from pykd_ext.kernel.view import StructView, read_field
from pykd_ext.kernel.walk import WalkEnd, walk_list
from pykd_ext.memory.faults import Fault

if TYPE_CHECKING:
    from pykd_ext.kernel.context import KernelContext
    from pykd_ext.kernel.thread import Thread

#: A ready list holds at most this many threads before the walk stops (a real machine has a few
#: dozen ready threads per processor; the bound only keeps a corrupt list from running away).
MAX_READY_PER_LIST = 4096

#: where the current tick count came from (`tick_source` in records)
TICKS_FROM_SYMBOL = "KeTickCount"
TICKS_FROM_KUSER = "KUSER_SHARED_DATA.TickCount"
TICKS_FROM_UPTIME = "dump header SystemUpTime / KeMaximumIncrement"


# ---- small readers -------------------------------------------------------------------------------

def _u(value: Any) -> Optional[int]:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _list_count(ctx: "KernelContext", type_name: str, path: str) -> int:
    """How many LIST_ENTRY heads an array member holds (from the layout's field size)."""
    field = ctx.layouts.type(type_name).field(path)
    entry = ctx.layouts.type("_LIST_ENTRY").size
    return field.size // entry if entry else 0


def _link_offset(ctx: "KernelContext") -> int:
    """Offset of `_KTHREAD.WaitListEntry` inside `_ETHREAD` (the ready-list link)."""
    return ctx.layouts.type("_ETHREAD").offset("Tcb.WaitListEntry")


def image_name(ctx: "KernelContext", process: int) -> Any:
    """The image name of the `_EPROCESS` at `process` (None when the layout lacks ImageFileName:
    an inferred layout may)."""
    if not ctx.has("_EPROCESS", "ImageFileName"):
        return None
    return Process(ctx, process).name


# ---- ready queues -----------------------------------------------------------------------------

class ReadyQueue:
    """One ready queue (a processor's dispatcher lists, or a shared queue) as found."""

    def __init__(self, kind: str, address: int, processors: List[int]) -> None:
        self.kind = kind                       # "dispatcher" or "shared"
        self.address = address                 # the PRCB, or the _KSHARED_READY_QUEUE
        self.processors = processors
        self.summary: Union[int, Fault, None] = None
        self.threads: List[Tuple[int, int]] = []     # (priority, _ETHREAD address) in list order
        self.notes: List[str] = []
        #: False when the summary or the list heads are not in the dump
        self.readable = True

    def to_dict(self) -> Dict[str, Any]:
        return {"queue": self.kind, "queue_address": self.address, "processors": list(self.processors),
                "ready_summary": self.summary, "readable": self.readable, "ready_threads": len(self.threads),
                "priorities": sorted({p for p, _ in self.threads}, reverse=True), "notes": list(self.notes)}


def _walk_queue(ctx: "KernelContext", queue: ReadyQueue, type_name: str, address: int,
                summary_path: str, heads_path: str) -> None:
    """Read the summary and the list heads of one queue, walk the lists whose bit is set."""
    layout = ctx.layouts.type(type_name)
    what = "%s ready queue at 0x%x" % (queue.kind, address)
    read = read_field(ctx.space, layout, address, summary_path)
    queue.summary = read if isinstance(read, (int, Fault)) else None
    count = _list_count(ctx, type_name, heads_path)
    heads = address + layout.offset(heads_path)
    ptr = ctx.pointer_size
    entry_size = ctx.layouts.type("_LIST_ENTRY").size
    try:
        raw = ctx.space.read(heads, count * entry_size)
    except MemoryReadError as err:
        queue.notes.append("%s: list heads not in the dump (%s)" % (what, err.fault))
        queue.readable = False
        return
    summary = queue.summary
    if not isinstance(summary, int):
        queue.notes.append("%s: ReadySummary not in the dump (%s)" % (what, summary))
        queue.readable = False
        return
    link = _link_offset(ctx)
    for priority in range(count - 1, -1, -1):
        head = heads + priority * entry_size
        flink = int.from_bytes(raw[priority * entry_size:priority * entry_size + ptr], "little")
        empty = flink == head
        bit = bool(summary >> priority & 1)
        if not bit:
            if flink and not empty:
                queue.notes.append("%s: list %d is not empty (Flink 0x%x) but its ReadySummary bit "
                                   "is clear: not walked" % (what, priority, flink))
            continue
        if empty or not flink:
            queue.notes.append("%s: ReadySummary bit %d is set but list %d is empty"
                               % (what, priority, priority))
            continue
        end = WalkEnd()
        for entry in walk_list(ctx.space, head, end, limit=MAX_READY_PER_LIST, budget=ctx.budget):
            queue.threads.append((priority, entry - link))
        note = end.note("%s, priority %d" % (what, priority))
        if note:
            queue.notes.append(note)


def ready_queues(ctx: "KernelContext") -> List[ReadyQueue]:
    """Every processor's dispatcher ready queue, then each distinct shared ready queue."""
    out: List[ReadyQueue] = []
    shared: Dict[int, ReadyQueue] = {}
    if not ctx.has("_KPRCB", "DispatcherReadyListHead") or not ctx.has("_KTHREAD", "WaitListEntry"):
        return out
    has_shared = ctx.has("_KPRCB", "SharedReadyQueue") and ctx.has("_KSHARED_READY_QUEUE", "ReadyListHead")
    prcb_type = ctx.layouts.type("_KPRCB")
    for proc in ctx.processors():
        queue = ReadyQueue("dispatcher", proc.prcb, [proc.number])
        _walk_queue(ctx, queue, "_KPRCB", proc.prcb, "ReadySummary", "DispatcherReadyListHead")
        out.append(queue)
        if has_shared:
            pointer = read_field(ctx.space, prcb_type, proc.prcb, "SharedReadyQueue")
            if isinstance(pointer, int) and pointer:
                if pointer in shared:
                    shared[pointer].processors.append(proc.number)
                else:
                    shared[pointer] = ReadyQueue("shared", pointer, [proc.number])
    for address, queue in shared.items():
        _walk_queue(ctx, queue, "_KSHARED_READY_QUEUE", address, "ReadySummary", "ReadyListHead")
        out.append(queue)
    return out


# ---- per-thread scheduling facts ------------------------------------------------------------------

def _affinity(ctx: "KernelContext", thread: "Thread", member: str) -> Any:
    """`_KTHREAD.<member>` as {form, groups: [{group, mask}]}: an embedded `_GROUP_AFFINITY`, or a
    pointer to a `_KAFFINITY_EX` (Count groups of Bitmap words), whichever the layout says."""
    view = thread.view
    if view.has("Tcb.%s.Mask" % member):
        mask, group = view["Tcb.%s.Mask" % member], view.get("Tcb.%s.Group" % member)
        return {"form": "_GROUP_AFFINITY", "address": None,
                "groups": [{"group": group, "mask": mask}]}
    if not view.has("Tcb." + member):
        return None
    pointer = view["Tcb." + member]
    if not isinstance(pointer, int) or not pointer or not ctx.has("_KAFFINITY_EX", "Bitmap"):
        return pointer if isinstance(pointer, Fault) else None
    ex = StructView(ctx.space, ctx.layouts.type("_KAFFINITY_EX"), pointer)
    count = ex["Count"]
    field = ctx.layouts.type("_KAFFINITY_EX").field("Bitmap")
    capacity = field.count or 1
    groups: List[Dict[str, Any]] = []
    if isinstance(count, int):
        for index in range(min(max(count, 0), capacity)):
            groups.append({"group": index, "mask": ex["Bitmap[%d]" % index]})
    return {"form": "_KAFFINITY_EX", "address": pointer, "count": count, "size": ex.get("Size"),
            "groups": groups}


def current_tick(ctx: "KernelContext") -> Tuple[Optional[int], Optional[str]]:
    """(the tick count at the time of the dump, where it came from), or (None, why not).

    In order: a `KeTickCount` symbol (x86 kernels export it), `KUSER_SHARED_DATA.TickCount`
    when the layouts carry `_KUSER_SHARED_DATA`, else the dump header's SystemUpTime (interrupt
    time, 100 ns) divided by `KeMaximumIncrement` (the clock tick: the tick count advances once
    per maximum increment of interrupt time)."""
    cached = getattr(ctx, "_current_tick", None)
    if cached is not None:
        return cached
    found: Tuple[Optional[int], Optional[str]] = (None, None)
    if ctx.layouts.has_symbol("KeTickCount"):
        value = ctx.read_global_u32("KeTickCount")
        if isinstance(value, int):
            found = (value, TICKS_FROM_SYMBOL)
    arch = getattr(ctx.target, "arch", None)
    kuser = getattr(arch, "kuser_shared_data", None)
    if found[0] is None and kuser and ctx.layouts.has_type("_KUSER_SHARED_DATA"):
        for path in ("TickCountQuad", "TickCount.LowPart"):
            if ctx.has("_KUSER_SHARED_DATA", path):
                tick = read_field(ctx.space, ctx.layouts.type("_KUSER_SHARED_DATA"), kuser, path)
                if isinstance(tick, int):
                    found = (tick, TICKS_FROM_KUSER)
                break
    if found[0] is None:
        uptime = getattr(ctx.info, "system_uptime", None)
        increment = ctx.time_increment()
        if isinstance(uptime, int) and uptime > 0 and increment:
            found = (uptime // increment, TICKS_FROM_UPTIME)
        else:
            found = (None, "no tick count: the layouts have no KeTickCount or _KUSER_SHARED_DATA, "
                           "and %s" % ("KeMaximumIncrement is not readable" if not increment
                                       else "the dump header states no SystemUpTime"))
    ctx._current_tick = found
    return found


def duration_text(ticks: int, increment: int) -> str:
    """`d:hh:mm:ss.mmm` of `ticks` clock ticks of `increment` 100 ns (as `!thread` prints it)."""
    ms = ticks * increment // 10000
    seconds, ms = divmod(ms, 1000)
    minutes, seconds = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    return "%d:%02d:%02d:%02d.%03d" % (days, hours, minutes, seconds, ms)


#: (record key, `_ETHREAD` path) of the plain scheduling fields
SCHEDULING_FIELDS = (
    ("priority", "Tcb.Priority"), ("base_priority", "Tcb.BasePriority"),
    ("priority_decrement", "Tcb.PriorityDecrement"), ("quantum_target", "Tcb.QuantumTarget"),
    ("cycle_time", "Tcb.CycleTime"), ("ideal_processor", "Tcb.IdealProcessor"),
    ("user_ideal_processor", "Tcb.UserIdealProcessor"), ("wait_start_tick", "Tcb.WaitTime"),
    ("context_switches", "Tcb.ContextSwitches"),
)


def thread_scheduling(ctx: "KernelContext", thread: "Thread") -> Dict[str, Any]:
    """A thread's scheduling facts (the `scheduling` object of `ethread`/`threads -v` records).

    `boost` is Priority - BasePriority (what a wait completion, a foreground or an unusual boost
    added; `priority_decrement` is the part still to decay). `ticks` is the current tick count
    minus `wait_start_tick` (KTHREAD.WaitTime, the tick of the last state change), as `!thread`'s
    `Ticks:`; `ticks_duration` its `d:hh:mm:ss.mmm` with KeMaximumIncrement."""
    view = thread.view
    out: Dict[str, Any] = {}
    for key, path in SCHEDULING_FIELDS:
        out[key] = view.get(path)
    priority, base = _u(out["priority"]), _u(out["base_priority"])
    out["boost"] = priority - base if priority is not None and base is not None else None
    out["next_processor"] = thread.next_processor
    out["affinity"] = _affinity(ctx, thread, "Affinity")
    out["user_affinity"] = _affinity(ctx, thread, "UserAffinity")
    owner = thread.process
    out["process_base_priority"] = out["process_quantum_reset"] = None
    if isinstance(owner, int) and owner:
        ktype = ctx.layouts.type("_KPROCESS")
        for key, path in (("process_base_priority", "BasePriority"), ("process_quantum_reset", "QuantumReset")):
            if ktype.has_field(path):
                out[key] = read_field(ctx.space, ktype, owner, path)
    now, source = current_tick(ctx)
    wait = _u(out["wait_start_tick"])
    increment = ctx.time_increment()
    out["current_tick"] = now
    out["tick_source"] = source
    out["ticks"] = (now - wait) & 0xFFFFFFFF if now is not None and wait is not None else None
    out["ticks_duration"] = (duration_text(out["ticks"], increment)
                             if out["ticks"] is not None and increment else None)
    out["time_increment"] = increment
    return out


def ticks_text(sched: Dict[str, Any]) -> str:
    """`Ticks: 22974 (0:00:05:58.968)` for the `Wait Start TickCount` line ('' when unknown)."""
    ticks = sched.get("ticks")
    if not isinstance(ticks, int):
        return ""
    duration = sched.get("ticks_duration")
    return "Ticks: %d%s" % (ticks, " (%s)" % duration if duration else "")


def _affinity_text(aff: Any) -> str:
    if isinstance(aff, Fault):
        return aff.marker
    if not isinstance(aff, dict):
        return "-"
    parts = []
    for group in aff.get("groups") or []:
        mask = group.get("mask")
        parts.append("group %s: %s" % (group.get("group"), ("0x%x" % mask) if isinstance(mask, int)
                                       else getattr(mask, "marker", mask)))
    return "%s (%s)" % (", ".join(parts) or "no groups", aff.get("form"))


def scheduling_lines(sched: Dict[str, Any]) -> List[str]:
    """Extra `!thread`-style lines (after the known ones) for the scheduling facts."""
    def v(key: str) -> str:
        value = sched.get(key)
        return getattr(value, "marker", None) or ("-" if value is None else str(value))
    lines = ["%-26s%s  BasePriority %s  Boost %s  Decrement %s" % ("Scheduling Priority", v("priority"),
             v("base_priority"), v("boost"), v("priority_decrement")),
             "%-26s%s  ProcessQuantumReset %s  QuantumTarget %s" % ("ProcessBasePriority",
             v("process_base_priority"), v("process_quantum_reset"), v("quantum_target")),
             "%-26s%s" % ("CycleTime", v("cycle_time")),
             "%-26s%s  UserIdealProcessor %s  NextProcessor %s" % ("IdealProcessor",
             v("ideal_processor"), v("user_ideal_processor"), v("next_processor")),
             "%-26s%s" % ("Affinity (groups)", _affinity_text(sched.get("affinity"))),
             "%-26s%s" % ("UserAffinity (groups)", _affinity_text(sched.get("user_affinity")))]
    if sched.get("ticks") is None:
        lines.append("%-26s%s" % ("Ticks", "unknown (%s)" % (sched.get("tick_source") or "no tick count")))
    else:
        lines.append("%-26s%s" % ("Tick source", sched.get("tick_source")))
    return lines


__all__ = ["MAX_READY_PER_LIST", "ReadyQueue", "current_tick", "duration_text", "ready_queues",
           "scheduling_lines", "thread_scheduling", "ticks_text"]
