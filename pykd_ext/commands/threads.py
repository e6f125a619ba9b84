"""`pykd-ext threads [NAME|PID|ADDRESS ...]`: a process's threads, like `!process <p> 2`.

Without arguments: the threads of every process on the active list. Threads come from both
`_EPROCESS.ThreadListHead` and `_KPROCESS.ThreadListHead`; where the two lists disagree a note
says so (and each thread's `found_by`... is kept in the listing, not in the record).
"""
import argparse
from typing import Any, Dict, Iterable, List

from pykd_ext.commands.procview import (
    THREAD_COLUMNS, dump_notes, kernel_context, require, result_meta, with_context_notes)
from pykd_ext.kernel.lookup import Finder
from pykd_ext.kernel.processes import all_processes
from pykd_ext.render.grid import Result
from pykd_ext.render.windbg import ACTIVE_PROCESS_BANNER, process_lines, thread_block_lines

HELP = "threads of processes (like !process <p> 2); all processes when none is named"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("processes", nargs="*", metavar="NAME|PID|ADDRESS",
                        help="image name, PID or _EPROCESS address (default: every listed process)")


def run(session: Any, args: argparse.Namespace) -> Result:
    # --- H9 hook: a user-mode dump has no _ETHREADs; its thread list and TEBs answer (commands.teb)
    from pykd_ext.kernel.userspace import is_user_dump
    if is_user_dump(session.target):
        from pykd_ext.commands.teb import user_dump_threads
        return user_dump_threads(session, args)
    ctx = kernel_context(session)
    specs = list(getattr(args, "processes", None) or [])
    notes: List[str] = []
    if specs:
        finder = Finder(ctx)
        processes = []
        seen = set()
        for spec in specs:
            for p in require(finder.processes(spec), spec, "process"):
                if p.address not in seen:
                    seen.add(p.address)
                    processes.append(p)
    else:
        census = all_processes(ctx)
        processes = census.ordered()
        notes.extend(census.notes)
    records: List[Dict[str, Any]] = []
    groups: List[Any] = []
    for process in processes:
        listing = process.thread_listing()
        notes.extend(listing.notes)
        first = len(records)
        records.extend(thread.record() for thread in listing.threads)
        groups.append((process, listing.threads, first))
    notes.extend(dump_notes(ctx, processes))

    def text(result: Result) -> Iterable[str]:
        # built only when text is asked for: JSON output never pays for the WinDbg lines
        if not specs:
            yield ACTIVE_PROCESS_BANNER
        for process, threads, first in groups:
            for line in process_lines(process.record(), process.display_more()):
                yield line
            for i, thread in enumerate(threads):
                yield ""
                for line in thread_block_lines(result.records[first + i], thread.display_more(process.name)):
                    yield line
            yield ""

    return Result("threads", THREAD_COLUMNS, records, text=text, meta=result_meta(ctx), notes=with_context_notes(ctx, notes))
