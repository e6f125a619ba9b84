"""`pykd-ext threads [NAME|PID|ADDRESS ...]`: a process's threads, like `!process <p> 2`.

Without arguments: the threads of every process on the active list. Threads come from both
`_EPROCESS.ThreadListHead` and `_KPROCESS.ThreadListHead`; where the two lists disagree a note
says so (and each thread's `found_by`... is kept in the listing, not in the record).
`-v` adds each thread's kernel stack table (`kernel.stack.stack_for`; JSON: the record's `stack`).
"""
import argparse
from typing import Any, Callable, Dict, Iterator, List

from pykd_ext.commands.procview import (
    THREAD_COLUMNS, add_context_notes, dump_notes, kernel_context, require, result_meta)
from pykd_ext.commands.stacktext import stack_lines
from pykd_ext.kernel.lookup import Finder
from pykd_ext.kernel.scheduling import scheduling_lines, thread_scheduling
from pykd_ext.kernel.stack import stack_for
from pykd_ext.kernel.processes import all_processes, process_threads
from pykd_ext.render.grid import Result, Row
from pykd_ext.render.windbg import ACTIVE_PROCESS_BANNER, process_lines, thread_block_lines

HELP = "threads of processes (like !process <p> 2); all processes when none is named"
#: `--help` ends with these (issue 12); crash.dmp stands for any dump
EXAMPLES = [
    'threads lsass.exe -t crash.dmp',
    'threads 0n636 -f jsonl -t crash.dmp',
    'threads -t crash.dmp',
]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("processes", nargs="*", metavar="NAME|PID|ADDRESS",
                        help="image name, PID or _EPROCESS address (default: every listed process)")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="also each thread's kernel stack (crash context and stack scan, like !thread)")


def run(session: Any, args: argparse.Namespace) -> Result:
    # --- H9 hook: a user-mode dump has no _ETHREADs; its thread list and TEBs answer (commands.teb)
    from pykd_ext.kernel.userspace import is_user_dump
    if is_user_dump(session.target):
        from pykd_ext.commands.teb import user_dump_threads
        return user_dump_threads(session, args)
    ctx = kernel_context(session)
    specs = list(getattr(args, "processes", None) or [])
    verbose = bool(getattr(args, "verbose", False))
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

    def rows() -> Iterator[Row]:
        """Streamed: one process's threads are walked, decoded and printed before the next
        process's; the listing is not cached on the process, so memory stays flat in threads."""
        if not specs:
            yield Row(None, [ACTIVE_PROCESS_BANNER])
        for process in processes:
            listing = process_threads(ctx, process)
            notes.extend(listing.notes)
            yield Row(None, _process_text(process), links={"process": process.address})
            for thread in listing.threads:
                record = thread.record()
                if verbose:                                 # H10 (issue 17): scheduling facts
                    record["scheduling"] = thread_scheduling(ctx, thread)
                stack = stack_for(ctx, thread) if verbose else None
                if stack is not None:
                    record["stack"] = stack.to_dict()
                yield Row(record, _thread_text(process, thread, record, stack, ctx.pointer_size))
            yield Row(None, [""])
        notes.extend(dump_notes(ctx, processes))
        add_context_notes(ctx, notes)

    return Result("threads", THREAD_COLUMNS, rows=rows(), meta=result_meta(ctx), notes=notes)


def _process_text(process: Any) -> Callable[[], List[str]]:
    # the `!process 0 0` lines need no thread count: the record without a second thread walk
    return lambda: process_lines(process.record(with_threads=False), process.display_more())


def _thread_text(process: Any, thread: Any, record: Dict[str, Any], stack: Any = None,
                 pointer_size: int = 8) -> Callable[[], List[str]]:
    def text() -> List[str]:
        # built only when text is asked for: JSON output never pays for the WinDbg lines
        lines = [""] + thread_block_lines(record, thread.display_more(process.name))
        if "scheduling" in record:                          # H10 (issue 17)
            lines += ["            " + line for line in scheduling_lines(record["scheduling"])]
        if stack is not None:
            lines += ["            " + line for line in stack_lines(stack, pointer_size)]
        return lines
    return text
