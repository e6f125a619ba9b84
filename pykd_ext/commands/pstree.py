"""`pykd-ext pstree`: the active process list as a parent/child tree.

A process's parent is the listed process whose PID is its `InheritedFromUniqueProcessId` (the
rule Volatility's `windows.pstree` uses, so the two agree); processes whose parent is not listed
are roots. The walk is iterative and cycle-safe (a PID cycle, e.g. from PID reuse, cannot loop);
a parent created *after* its child (the PID was reused) is noted. Records add `depth`.
"""
import argparse
from typing import Any, Callable, Dict, Iterator, List, Tuple

from pykd_ext.commands.procview import (
    PROCESS_COLUMNS, add_context_notes, dump_notes, kernel_context, result_meta)
from pykd_ext.kernel.process import Process
from pykd_ext.kernel.processes import all_processes
from pykd_ext.memory.faults import Fault
from pykd_ext.render.grid import Column, Result, Row
from pykd_ext.render.windbg import dec, hx

HELP = "the active process list as a parent/child tree"
#: `--help` ends with these (issue 12); crash.dmp stands for any dump
EXAMPLES = [
    'pstree -t crash.dmp',
    'pstree -f json -t crash.dmp',
]

COLUMNS = [Column("depth", "Depth", "int")] + PROCESS_COLUMNS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    del parser


def tree_order(processes: List[Process]) -> Tuple[List[Tuple[Process, int]], List[str]]:
    """(process, depth) in depth-first order, and notes (PID reuse, cycles)."""
    by_pid: Dict[Any, Process] = {}
    for p in processes:
        pid = p.pid
        if isinstance(pid, int) and pid not in by_pid:
            by_pid[pid] = p
    children: Dict[int, List[Process]] = {}
    roots: List[Process] = []
    notes: List[str] = []
    for p in processes:
        parent = by_pid.get(p.ppid) if isinstance(p.ppid, int) else None
        if parent is None or parent is p:
            roots.append(p)
            continue
        children.setdefault(parent.address, []).append(p)
        pc, cc = parent.create_time_raw, p.create_time_raw
        if isinstance(pc, int) and isinstance(cc, int) and pc and cc and pc > cc:
            notes.append("%s (PID %s): parent PID %s belongs to %s, created after it (PID reused?)"
                         % (p.name, p.pid, p.ppid, parent.name))
    order: List[Tuple[Process, int]] = []
    visited = set()
    for root in roots:
        stack = [(root, 0)]
        while stack:
            node, depth = stack.pop()
            if node.address in visited:
                continue
            visited.add(node.address)
            order.append((node, depth))
            for child in reversed(children.get(node.address, [])):
                stack.append((child, depth + 1))
    unreached = [p for p in processes if p.address not in visited]
    if unreached:   # only a parent cycle leaves processes unreached: show them as roots
        notes.append("%d processes form a parent-PID cycle; shown as roots" % len(unreached))
        order.extend((p, 0) for p in unreached)
    return order, notes


TEXT_ROW = "%-48s %6s %6s %6s %6s  %s"


def run(session: Any, args: argparse.Namespace) -> Result:
    ctx = kernel_context(session)
    census = all_processes(ctx)
    processes = census.ordered()
    order, tree_notes = tree_order(processes)       # needs every PID first: cheap fields only
    notes = list(census.notes) + tree_notes

    def rows() -> Iterator[Row]:
        yield Row(None, [TEXT_ROW % ("Name", "Pid", "PPid", "Thds", "Hnds", "Created (UTC)")])
        for process, depth in order:
            record = process.record()
            record["depth"] = depth
            yield Row(record, _text(record))
        notes.extend(dump_notes(ctx, processes))
        add_context_notes(ctx, notes)

    return Result("pstree", COLUMNS, rows=rows(), meta=result_meta(ctx), notes=notes)


def _text(rec: Dict[str, Any]) -> Callable[[], List[str]]:
    def text() -> List[str]:
        name = rec["name"].marker if isinstance(rec["name"], Fault) else rec["name"]
        label = "%s 0x%s:%s" % ("." * rec["depth"], hx(rec["address"]), name)
        hnds = rec.get("handle_count")
        return [TEXT_ROW % (
            label.strip() if rec["depth"] == 0 else label, dec(rec["pid"]), dec(rec["ppid"]),
            dec(rec["threads_active"]), dec(hnds) if isinstance(hnds, int) else "-",
            rec.get("create_time") if isinstance(rec.get("create_time"), str) else "-")]
    return text
