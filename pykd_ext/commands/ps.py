"""`pykd-ext ps [NAME|PID|ADDRESS ...]`: the active process list, like WinDbg's `!process 0 0`.

Walks `PsActiveProcessHead` (bounded, cycle-safe); on a triage dump the dump's own process is added
(`found_by: TriageBlock`) and a note says plainly that the rest of the list is not in the dump.
JSON records carry the layout used and how each process was found.
"""
import argparse
from typing import Any, Callable, Dict, Iterator, List

from pykd_ext.commands.procview import (
    PROCESS_COLUMNS, add_context_notes, dump_notes, kernel_context, result_meta)
from pykd_ext.kernel.lookup import name_matches, parse_spec
from pykd_ext.kernel.process import Process
from pykd_ext.kernel.processes import all_processes
from pykd_ext.render.grid import Result, Row
from pykd_ext.render.windbg import ACTIVE_PROCESS_BANNER, process_lines

HELP = "list processes on the active process list (like !process 0 0)"


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
    everything = census.ordered()
    filters = list(getattr(args, "filters", None) or [])
    processes = select(everything, filters)
    notes = list(census.notes)
    if filters and not processes:
        notes.append("no process on the list matches %s (psxview also searches the other sources)"
                     % ", ".join(filters))

    def rows() -> Iterator[Row]:
        """Streamed: each process is decoded (handle count, thread lists) and printed in turn."""
        yield Row(None, [ACTIVE_PROCESS_BANNER])
        for process in processes:
            record = process.record()
            notes.extend(process.thread_listing().notes)
            yield Row(record, _process_text(process, record))
        notes.extend(dump_notes(ctx, everything))
        add_context_notes(ctx, notes)

    return Result("ps", PROCESS_COLUMNS, rows=rows(), meta=result_meta(ctx), notes=notes)


def _process_text(process: Process, record: Dict[str, Any]) -> Callable[[], List[str]]:
    return lambda: process_lines(record, process.display_more()) + [""]
