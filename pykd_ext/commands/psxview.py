"""`pykd-ext psxview`: every process any kernel source knows, one column per source.

Sources: `ActiveProcessLinks` (the list `ps` walks), `PspCidTable` (the CID handle table),
`ThreadOwner` (processes owning threads in the CID table), `ProcessorCurrentThread` (each PRCB's
current thread's process), `SessionList` (each session's process list), and `TriageBlock` on
triage dumps. A process missing from a source that ran is marked; the usual innocent reasons are
named (`explained`): an exited process has left the CID table, System/Registry/smss have no
session, the Idle process is only on the processors. Anything else is a disagreement worth a look
(an unlinked — DKOM-hidden — process shows up as missing from ActiveProcessLinks only).
"""
import argparse
from typing import Any, Callable, Dict, Iterator, List, Optional

from pykd_ext.commands.procview import add_context_notes, dump_notes, kernel_context, result_meta
from pykd_ext.kernel.processes import (BY_ACTIVE_LIST, BY_CID_TABLE, BY_PROCESSOR, BY_SESSION,
                                       BY_THREAD_OWNER, BY_TRIAGE, all_processes)
from pykd_ext.memory.faults import Fault
from pykd_ext.render.grid import Column, Result, Row
from pykd_ext.render.windbg import dec, hx

HELP = "cross-view of processes: active list, CID table, thread owners, processors, sessions"
#: `--help` ends with these (issue 12); crash.dmp stands for any dump
EXAMPLES = [
    'psxview -t crash.dmp',
    'psxview -f csv -t crash.dmp',
]

SOURCE_COLUMNS = (BY_ACTIVE_LIST, BY_CID_TABLE, BY_THREAD_OWNER, BY_PROCESSOR, BY_SESSION)
SHORT = {BY_ACTIVE_LIST: "pslist", BY_CID_TABLE: "cid", BY_THREAD_OWNER: "thrd", BY_PROCESSOR: "cpu",
         BY_SESSION: "sess", BY_TRIAGE: "triage"}

COLUMNS = ([Column("address", "Address", "addr"), Column("pid", "PID", "int"), Column("name", "Name")]
           + [Column(s, SHORT[s], "bool") for s in SOURCE_COLUMNS]
           + [Column("disagree", "Disagree", "bool"), Column("explained", "Explained"),
              Column("exit_time", "Exited")])


def add_arguments(parser: argparse.ArgumentParser) -> None:
    del parser


def _explain(source: str, rec: Dict[str, Any], cpu_only: bool) -> Optional[str]:
    if isinstance(rec.get("pid"), Fault):
        return "_EPROCESS not in dump"
    exited = "exited" in (rec.get("kind_flags") or [])
    if source in (BY_CID_TABLE, BY_THREAD_OWNER) and exited:
        return "exited"
    if source == BY_SESSION and rec.get("session_id") is None:
        return "no session"
    if source == BY_PROCESSOR:
        return "not running"
    if source == BY_THREAD_OWNER and rec.get("threads_active") == 0:
        return "no threads"
    if cpu_only and rec.get("pid") == 0:
        return "idle process"
    return None


def run(session: Any, args: argparse.Namespace) -> Result:
    ctx = kernel_context(session)
    census = all_processes(ctx, cross_view=True)
    ran = set(census.sources_run)
    available = {BY_ACTIVE_LIST: census.active_end is not None and census.active_end.count > 0,
                 BY_CID_TABLE: census.cid is not None and census.cid.table is not None
                 and bool(census.cid.processes or census.cid.threads),
                 BY_THREAD_OWNER: census.cid is not None and bool(census.cid.threads),
                 BY_PROCESSOR: bool(ctx.processors()),
                 BY_SESSION: BY_SESSION in ran}
    notes = list(census.notes)
    unavailable = [s for s in SOURCE_COLUMNS if not available[s]]
    if unavailable:
        notes.append("sources with nothing readable in this dump (shown empty): %s" % ", ".join(unavailable))
    processes = census.ordered()

    def rows() -> Iterator[Row]:
        head = "%-18s %6s %-15s " % ("Offset", "PID", "Name") + " ".join("%-6s" % SHORT[s] for s in SOURCE_COLUMNS)
        yield Row(None, [head + "  Exited / explained"])
        hidden: List[str] = []
        for process in processes:
            rec = _record(process, available)
            if rec.get(BY_ACTIVE_LIST) is False and BY_ACTIVE_LIST in rec["missing_from"]:
                hidden.append("process %s (PID %s) at 0x%x is not on ActiveProcessLinks but is found by %s"
                              % (rec["name"], rec["pid"], rec["address"], ", ".join(rec["found_by"])))
            yield Row(rec, _text(rec))
        yield Row(None, ["(* = missing from a source that ran: a disagreement)"])
        notes.extend(hidden)
        notes.extend(dump_notes(ctx, processes))
        add_context_notes(ctx, notes)

    return Result("psxview", COLUMNS, rows=rows(), meta=result_meta(ctx), notes=notes)


def _record(process: Any, available: Dict[str, bool]) -> Dict[str, Any]:
    rec = process.record(with_threads=False)
    found = set(rec["found_by"])
    cpu_only = found == {BY_PROCESSOR}
    missing, explained = [], []
    for source in SOURCE_COLUMNS:
        if not available[source]:
            rec[source] = None
            continue
        rec[source] = source in found
        if source not in found:
            why = _explain(source, rec, cpu_only)
            if why:
                explained.append("%s: %s" % (SHORT[source], why))
            else:
                missing.append(source)
    if cpu_only and rec.get("pid") == 0:
        missing = []
        explained.append("idle process (only on the processors)")
    rec["missing_from"] = missing
    rec["disagree"] = bool(missing)
    rec["explained"] = "; ".join(explained)
    return rec


def _text(rec: Dict[str, Any]) -> Callable[[], List[str]]:
    def text() -> List[str]:
        name = rec["name"].marker if isinstance(rec["name"], Fault) else rec["name"]
        cells = []
        for s in SOURCE_COLUMNS:
            v = rec.get(s)
            cell = "-" if v is None else ("True" if v else "False")
            if v is False and s in rec["missing_from"]:
                cell += "*"
            cells.append("%-6s" % cell)
        tail = " ".join(x for x in (rec.get("exit_time") if isinstance(rec.get("exit_time"), str) else "",
                                    rec["explained"]) if x)
        return [("0x%-16s %6s %-15s " % (hx(rec["address"]), dec(rec["pid"]), name) + " ".join(cells)
                 + ("  " + tail if tail else "")).rstrip()]
    return text
