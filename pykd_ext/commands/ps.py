"""`pykd-ext ps [NAME|PID|ADDRESS ...]`: the active process list, like WinDbg's `!process 0 0`.

Walks `PsActiveProcessHead` (bounded, cycle-safe); on a triage dump the dump's own process is added
(`found_by: TriageBlock`) and a note says plainly that the rest of the list is not in the dump.
JSON records carry the layout used and how each process was found.
"""
import argparse
from collections import deque
from typing import Any, Callable, Dict, Iterator, List

from pykd_ext.commands.procview import (
    PROCESS_COLUMNS, add_context_notes, dump_notes, kernel_context, partial_dump_notes, result_meta)
from pykd_ext.kernel.lookup import name_matches, parse_spec
from pykd_ext.kernel.process import Process
from pykd_ext.kernel.processes import all_processes
from pykd_ext.memory.faults import Fault
from pykd_ext.render.grid import Result, Row
from pykd_ext.render.windbg import ACTIVE_PROCESS_BANNER, process_lines

HELP = "list processes on the active process list (like !process 0 0)"
#: `--help` ends with these (issue 12); crash.dmp stands for any dump
EXAMPLES = [
    'ps -t crash.dmp',
    'ps svchost.exe lsass.exe -t crash.dmp',
    'ps -f jsonl -t crash.dmp | jq -r .address',
]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("filters", nargs="*", metavar="NAME|PID|ADDRESS",
                        help="only these processes (image name, PID, or _EPROCESS address)")


def select(processes: List[Process], filters: List[str]) -> List[Process]:
    if not filters:
        return processes
    out: List[Process] = []
    for process in processes:
        for spec in filters:
            kind, value = parse_spec(spec)
            if ((kind == "address" and process.address == value) or (kind == "id" and process.pid == value)
                    or (kind == "name" and name_matches(process, str(value)))):
                out.append(process)
                break
    return out


def run(session: Any, args: argparse.Namespace) -> Result:
    ctx = kernel_context(session)
    census = all_processes(ctx)
    filters = list(getattr(args, "filters", None) or [])
    everything = census.ordered()
    total = len(everything)
    # Without filters nothing but the rows needs a process once it is printed: the queue hands
    # each one out and forgets it, so its structure, thread lists and handle count are freed
    # after its row (memory stays flat in the number of processes). Filters keep the list: the
    # note about processes not in the dump counts them all.
    kept: List[Process] = everything if filters else []
    pending = deque(select(everything, filters))
    del everything
    notes = list(census.notes)
    if filters and not pending:
        notes.append("no process on the list matches %s (psxview also searches the other sources)"
                     % ", ".join(filters))

    def rows() -> Iterator[Row]:
        """Streamed: each process is decoded (handle count, thread lists) and printed in turn."""
        yield Row(None, [ACTIVE_PROCESS_BANNER])
        missing = 0
        while pending:
            process = pending.popleft()
            record = process.record()
            missing += isinstance(process.view["ImageFileName"], Fault)
            notes.extend(process.thread_listing().notes)
            yield Row(record, _process_text(process, record))
        if kept:
            notes.extend(dump_notes(ctx, kept))
        else:
            notes.extend(partial_dump_notes(ctx, missing, total))
        add_context_notes(ctx, notes)

    return Result("ps", PROCESS_COLUMNS, rows=rows(), meta=result_meta(ctx), notes=notes)


def _process_text(process: Process, record: Dict[str, Any]) -> Callable[[], List[str]]:
    return lambda: process_lines(record, process.display_more()) + [""]
