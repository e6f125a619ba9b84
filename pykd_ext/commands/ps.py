"""`pykd-ext ps [NAME|PID|ADDRESS ...]`: the active process list, like WinDbg's `!process 0 0`.

Walks `PsActiveProcessHead` (bounded, cycle-safe); on a triage dump the dump's own process is added
(`found_by: TriageBlock`) and a note says plainly that the rest of the list is not in the dump.
JSON records carry the layout used and how each process was found.
"""
import argparse
from typing import Any, Iterable, List

from pykd_ext.commands.procview import (
    PROCESS_COLUMNS, dump_notes, kernel_context, result_meta, with_context_notes)
from pykd_ext.kernel.lookup import name_matches, parse_spec
from pykd_ext.kernel.process import Process
from pykd_ext.kernel.processes import all_processes
from pykd_ext.render.grid import Result
from pykd_ext.render.windbg import ACTIVE_PROCESS_BANNER, join_blocks, process_lines

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
    processes = select(everything, list(getattr(args, "filters", None) or []))
    records = [p.record() for p in processes]
    notes = list(census.notes)
    filters = list(getattr(args, "filters", None) or [])
    if filters and not processes:
        notes.append("no process on the list matches %s (psxview also searches the other sources)"
                     % ", ".join(filters))
    for p in processes:
        notes.extend(p.thread_listing().notes)
    notes.extend(dump_notes(ctx, everything))
    notes.extend(ctx.notes)

    def text(result: Result) -> Iterable[str]:
        yield ACTIVE_PROCESS_BANNER
        for line in join_blocks(process_lines(r, p.display_more()) for r, p in zip(result.records, processes)):
            yield line

    return Result("ps", PROCESS_COLUMNS, records, text=text, meta=result_meta(ctx), notes=with_context_notes(ctx, notes))
