"""`pykd-ext ethread [ADDRESS|TID]`: one thread in detail, like `!thread <ethread>`.

Known WinDbg lines first (state, wait objects, owning process, tick counts, stack bounds,
priorities), then decoded extras (start address and its module, `RUNNING on processor N` from the
PRCBs, flags, creation time, layout), then the kernel stack table (`kernel.stack.stack_for`: the
crash context's frame 0 and a stack scan; JSON: the record's `stack`). Without an argument: the
dump's crash context thread (`!thread` after opening a dump).
"""
import argparse
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterator, List

from pykd_ext.commands.procview import (
    THREAD_COLUMNS, add_context_notes, clock_notes, kernel_context, require, result_meta)
from pykd_ext.commands.owner import require_crash_context
from pykd_ext.commands.stacktext import stack_lines
from pykd_ext.kernel.lookup import Finder
from pykd_ext.kernel.process import Process
from pykd_ext.kernel.scheduling import scheduling_lines, thread_scheduling, ticks_text
from pykd_ext.kernel.stack import stack_for
from pykd_ext.kernel.thread import Thread
from pykd_ext.render.grid import Result, Row
from pykd_ext.render.windbg import thread_full_lines

if TYPE_CHECKING:
    from pykd_ext.kernel.context import KernelContext

HELP = "one thread in detail (like !thread)"
#: `--help` ends with these (issue 12); crash.dmp stands for any dump
EXAMPLES = [
    'ethread 60 -t crash.dmp',
    'ethread 0n96 -t crash.dmp',
    'ethread ffffb30c8a029040 -f json -t crash.dmp',
]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("thread", nargs="?", metavar="ADDRESS|TID",
                        help="_ETHREAD address or thread id (default: the dump's crash context, the "
                             "bugcheck processor's current thread)")
    parser.add_argument("--no-stack", action="store_true", help="leave out the kernel stack")


def run(session: Any, args: argparse.Namespace) -> Result:
    ctx = kernel_context(session)
    notes: List[str] = []
    if args.thread is None:
        crash = require_crash_context(ctx, "ethread")
        threads = [Thread(ctx, crash.thread, [crash.found_by])]
        notes.append(crash.note)
    else:
        threads = require(Finder(ctx).threads(args.thread), args.thread, "thread")
    with_stack = not getattr(args, "no_stack", False)

    def rows() -> Iterator[Row]:
        for index, thread in enumerate(threads):
            record = thread.record()
            record["scheduling"] = thread_scheduling(ctx, thread)    # H10 (issue 17)
            stack = stack_for(ctx, thread) if with_stack else None
            if stack is not None:
                record["stack"] = stack.to_dict()
            yield Row(record, _text(ctx, thread, record, separate=index > 0, stack=stack))
        clock_notes(ctx, notes)            # H11: why UserTime/KernelTime would be in ticks
        add_context_notes(ctx, notes)

    return Result("ethread", THREAD_COLUMNS, rows=rows(), meta=result_meta(ctx), notes=notes)


def _text(ctx: "KernelContext", thread: Any, rec: Dict[str, Any], separate: bool, stack: Any = None
          ) -> Callable[[], List[str]]:
    def text() -> List[str]:
        owner = rec.get("process")
        owner_name: Any = None
        more_process = {}
        if isinstance(owner, int) and owner:
            process = Process(ctx, owner)
            owner_name = process.name
            device_map = process.pointer_field("DeviceMap")
            if device_map is not None:
                more_process["device_map"] = device_map
        more = thread.display_more(owner_name)
        more.update(more_process)
        attached = more.get("attached_process")
        if isinstance(attached, int) and attached:
            more["attached_name"] = Process(ctx, attached).name
        # --- H8 hook: the impersonation token (pykd_ext.kernel.security), on the line where
        # `!thread` says "Not impersonating" / "Impersonation token: ..." ---
        from pykd_ext.kernel.security import impersonation_line
        more["impersonation_line"] = impersonation_line(ctx, thread)
        sched = rec.get("scheduling") or {}                       # H10 (issue 17): Ticks, scheduling
        more["ticks_text"] = ticks_text(sched)
        lines = ([""] if separate else []) + thread_full_lines(rec, more) + scheduling_lines(sched)
        if stack is not None:
            # where `!thread` prints its stack table: right after the Priority line (the decoded
            # extras follow it, after a blank line)
            at = next((i + 1 for i, line in enumerate(lines) if line.startswith("Priority ")), len(lines))
            block = stack_lines(stack, ctx.pointer_size)
            lines = lines[:at] + block + ([""] if at < len(lines) else []) + lines[at:]
        return lines
    return text
