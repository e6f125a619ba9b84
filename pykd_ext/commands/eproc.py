"""`pykd-ext eproc NAME|PID|ADDRESS [-v]`: one process in detail, like `!process <p> 1`.

The known WinDbg lines first, then decoded extras (kind, protection, image path, thread counts,
times, how it was found, layout). `-v` adds its threads (`!process <p> 2` blocks).
"""
import argparse
from typing import Any, Iterable, List

from pykd_ext.commands.procview import (
    PROCESS_COLUMNS, dump_notes, kernel_context, require, result_meta, with_context_notes)
from pykd_ext.kernel.lookup import Finder
from pykd_ext.render.grid import Result
from pykd_ext.render.windbg import (process_detail_lines, process_extra_lines, process_lines,
                                    thread_block_lines)

HELP = "one process in detail (like !process <p> 1, plus kind/protection/job/token)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("process", metavar="NAME|PID|ADDRESS", help="image name, PID or _EPROCESS address")
    parser.add_argument("-v", "--verbose", action="store_true", help="also list the process's threads")


def run(session: Any, args: argparse.Namespace) -> Result:
    ctx = kernel_context(session)
    finder = Finder(ctx)
    processes = require(finder.processes(args.process), args.process, "process")
    records = [p.record() for p in processes]
    blocks: List[List[str]] = []
    notes: List[str] = []
    for process, rec in zip(processes, records):
        more = process.display_more()
        lines = process_lines(rec, more)
        if len(lines) > 2:
            lines += process_detail_lines(rec, more) + process_extra_lines(rec, more)
        else:
            lines += process_extra_lines(rec, more)
        if args.verbose:
            # --- H8 hook: token / handles / job one-line summaries (pykd_ext.kernel.security) ---
            from pykd_ext.kernel.security import summary_lines
            lines += summary_lines(ctx, process)
            # --- H9 hook: PEB / image / command line / modules / environment one-liners (kernel.peb) ---
            from pykd_ext.kernel.peb import summary_lines as peb_summary_lines
            lines += peb_summary_lines(ctx, process)
            for thread in process.threads():
                lines.append("")
                lines += thread_block_lines(thread.record(), thread.display_more(process.name))
        notes.extend(process.thread_listing().notes)
        blocks.append(lines)
    notes.extend(dump_notes(ctx, processes))

    def text(result: Result) -> Iterable[str]:
        for i, block in enumerate(blocks):
            if i:
                yield ""
            for line in block:
                yield line

    return Result("eproc", PROCESS_COLUMNS, records, text=text, meta=result_meta(ctx), notes=with_context_notes(ctx, notes))
