"""`pykd-ext running`: each processor's current, next and idle thread, like WinDbg's
`!running -i -t` (without the stacks: `ethread ADDRESS` shows one).

From each processor's `_KPRCB` (`KiProcessorBlock`): `CurrentThread`, `NextThread` (the Standby
thread chosen to run next, 0 when none) and `IdleThread`, with each thread's Priority; a
processor is idle when its current thread is its idle thread. The header lines give the mask of
processors found and of idle ones, as `!running` does. One JSON record per processor
(docs/scheduling.md).
"""
import argparse
from typing import Any, Dict, List, Optional

from pykd_ext.commands.procview import add_context_notes, kernel_context, result_meta
from pykd_ext.kernel.scheduling import image_name
from pykd_ext.kernel.thread import Thread
from pykd_ext.memory.faults import Fault
from pykd_ext.render.grid import Column, Result
from pykd_ext.render.windbg import dec, hx

HELP = "current, next (standby) and idle thread of each processor (like !running -i -t)"
#: `--help` ends with these (issue 12); crash.dmp stands for any dump
EXAMPLES = [
    'running -t crash.dmp',
    'running -f json -t crash.dmp',
]

COLUMNS = [
    Column("processor", "CPU", "int"), Column("prcb", "Prcb", "addr"),
    Column("current_thread", "Current", "addr"), Column("current_priority", "Pri", "int"),
    Column("current_tid", "TID", "int"), Column("current_process_name", "Image"),
    Column("next_thread", "Next", "addr"), Column("next_priority", "NextPri", "int"),
    Column("idle_thread", "Idle", "addr"), Column("idle", "IsIdle", "bool"),
]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    del parser                                   # no options: every processor


def _thread_facts(ctx: Any, value: Any, prefix: str, names: Dict[int, Any]) -> Dict[str, Any]:
    out: Dict[str, Any] = {prefix + "_priority": None, prefix + "_tid": None, prefix + "_pid": None,
                           prefix + "_process_name": None}
    if isinstance(value, int) and value:
        thread = Thread(ctx, value, ["Prcb"])
        owner = thread.process
        if isinstance(owner, int) and owner and owner not in names:
            names[owner] = image_name(ctx, owner)
        out.update({prefix + "_priority": thread.priority, prefix + "_tid": thread.field("Cid.UniqueThread"),
                    prefix + "_pid": thread.field("Cid.UniqueProcess"),
                    prefix + "_process_name": names.get(owner) if isinstance(owner, int) else None})
    return out


def _mask(numbers: List[int]) -> int:
    mask = 0
    for n in numbers:
        mask |= 1 << n
    return mask


def run(session: Any, args: argparse.Namespace) -> Result:
    ctx = kernel_context(session)
    notes: List[str] = []
    names: Dict[int, Any] = {}
    records: List[Dict[str, Any]] = []
    for proc in ctx.processors():
        rec: Dict[str, Any] = {"processor": proc.number, "prcb": proc.prcb,
                               "current_thread": proc.current_thread}
        rec.update(_thread_facts(ctx, proc.current_thread, "current", names))
        rec["next_thread"] = proc.next_thread
        rec.update(_thread_facts(ctx, proc.next_thread, "next", names))
        rec["idle_thread"] = proc.idle_thread
        current, idle = proc.current_thread, proc.idle_thread
        rec["idle"] = (current == idle) if isinstance(current, int) and isinstance(idle, int) else None
        if proc.fault is not None:
            notes.append("processor %d: PRCB at 0x%x is not in the dump (%s)" % (proc.number, proc.prcb, proc.fault))
        records.append(rec)
    if not records:
        notes.append("no processor blocks found (KiProcessorBlock unknown or not in the dump)")
    add_context_notes(ctx, notes)
    width = 2 * ctx.pointer_size

    def text(result: Result) -> List[str]:
        recs = result.records
        found = [r["processor"] for r in recs]
        idle = [r["processor"] for r in recs if r.get("idle") is True]
        lines = ["System Processors:  (%0*x)" % (width, _mask(found)),
                 "  Idle Processors:  (%0*x)" % (width, _mask(idle)), "",
                 "       %-*s  %-*s (pri) %-*s (pri) %s" % (width, "Prcbs", width, "Current", width, "Next",
                                                          "Idle")]
        for r in recs:
            lines.append("  %-3d  %s  %s (%2s) %s (%2s) %s  %s" % (
                r["processor"], hx(r["prcb"], width), hx(r["current_thread"], width),
                _pri(r["current_priority"]), _opt(r["next_thread"], width), _pri(r["next_priority"]),
                hx(r["idle_thread"], width), _who(r)))
        return lines

    return Result("running", COLUMNS, records=records, text=text, meta=result_meta(ctx), notes=notes)


def _pri(value: Any) -> str:
    if isinstance(value, Fault):
        return "??"                              # the thread is not in the dump (notes say so)
    return "" if value is None else dec(value)


def _opt(value: Any, width: int) -> str:
    if isinstance(value, Fault):
        return value.marker
    return hx(value, width) if value else " " * width


def _who(rec: Dict[str, Any]) -> str:
    name: Optional[Any] = rec.get("current_process_name")
    if rec.get("idle") is True:
        return "(idle)"
    return "%s" % (getattr(name, "marker", name) or "")
