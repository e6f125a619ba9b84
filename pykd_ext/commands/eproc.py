"""`pykd-ext eproc [NAME|PID|ADDRESS] [-v]`: one process in detail, like `!process <p> 1`.

Without an argument: the crash context's process (`!process -1 1` after opening a dump); a name
shared by several processes shows every one of them.

The known WinDbg lines first, then decoded extras (kind, protection, image path, thread counts,
times, how it was found, layout). `-v` adds its threads (`!process <p> 2` blocks).
"""
import argparse
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterator, List

from pykd_ext.commands.procview import (
    PROCESS_COLUMNS, add_context_notes, clock_notes, dump_notes, kernel_context, process_memory_more,
    require, result_meta)
from pykd_ext.commands.owner import crash_context_process
from pykd_ext.kernel.lookup import Finder
from pykd_ext.kernel.process import Process
from pykd_ext.render.grid import Result, Row
from pykd_ext.render.windbg import (process_detail_lines, process_extra_lines, process_lines,
                                    thread_block_lines)

if TYPE_CHECKING:
    from pykd_ext.kernel.context import KernelContext

HELP = "one process in detail (like !process <p> 1, plus kind/protection/job/token)"
#: `--help` ends with these (issue 12); crash.dmp stands for any dump
EXAMPLES = [
    'eproc lsass.exe -t crash.dmp',
    'eproc 0n636 -v -t crash.dmp',
    'eproc ffffb30c8a00d050 -f json -t crash.dmp',
]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("process", nargs="?", metavar="NAME|PID|ADDRESS",
                        help="image name, PID or _EPROCESS address (default: the dump's crash context, "
                             "the bugcheck processor's current process)")
    parser.add_argument("-v", "--verbose", action="store_true", help="also list the process's threads")


def run(session: Any, args: argparse.Namespace) -> Result:
    ctx = kernel_context(session)
    notes: List[str] = []
    if args.process is None:
        # like WinDbg after opening a dump: the crash context's process (commands/owner.py)
        address, found_by, note = crash_context_process(ctx, "eproc")
        processes = [Process(ctx, address, [found_by])]
        notes.append(note)
    else:
        processes = require(Finder(ctx).processes(args.process), args.process, "process")

    def rows() -> Iterator[Row]:
        for index, process in enumerate(processes):
            record = process.record()
            notes.extend(process.thread_listing().notes)
            yield Row(record, _text(ctx, process, record, args.verbose, separate=index > 0))
        notes.extend(dump_notes(ctx, processes))
        clock_notes(ctx, notes)            # H11: why UserTime/KernelTime would be in ticks
        add_context_notes(ctx, notes)

    return Result("eproc", PROCESS_COLUMNS, rows=rows(), meta=result_meta(ctx), notes=notes)


def _text(ctx: "KernelContext", process: Any, rec: Dict[str, Any], verbose: bool, separate: bool
          ) -> Callable[[], List[str]]:
    def text() -> List[str]:
        more = process.display_more()
        more.update(process_memory_more(process))     # H11: VadRoot/Vads, working set
        lines = [""] if separate else []
        block = process_lines(rec, more)
        if len(block) > 2:
            block += process_detail_lines(rec, more) + process_extra_lines(rec, more)
        else:
            block += process_extra_lines(rec, more)
        lines += block
        if verbose:
            # --- H8 hook: token / handles / job one-line summaries (pykd_ext.kernel.security) ---
            from pykd_ext.kernel.security import summary_lines
            lines += summary_lines(ctx, process)
            # --- H9 hook: PEB / image / command line / modules / environment one-liners (kernel.peb) ---
            from pykd_ext.kernel.peb import summary_lines as peb_summary_lines
            lines += peb_summary_lines(ctx, process)
            for thread in process.threads():
                lines.append("")
                lines += thread_block_lines(thread.record(), thread.display_more(process.name))
        return lines
    return text
