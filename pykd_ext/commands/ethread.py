"""`pykd-ext ethread ADDRESS|TID`: one thread in detail, like `!thread <ethread>` (without the stack).

Known WinDbg lines first (state, wait objects, owning process, tick counts, stack bounds,
priorities), then decoded extras (start address and its module, `RUNNING on processor N` from the
PRCBs, flags, creation time, layout).
"""
import argparse
from typing import Any, Callable, Dict, Iterator, List

from pykd_ext.commands.procview import (
    THREAD_COLUMNS, add_context_notes, kernel_context, require, result_meta)
from pykd_ext.kernel.lookup import Finder
from pykd_ext.kernel.process import Process
from pykd_ext.render.grid import Result, Row
from pykd_ext.render.windbg import thread_full_lines

HELP = "one thread in detail (like !thread)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("thread", metavar="ADDRESS|TID", help="_ETHREAD address or thread id")


def run(session: Any, args: argparse.Namespace) -> Result:
    ctx = kernel_context(session)
    threads = require(Finder(ctx).threads(args.thread), args.thread, "thread")
    notes: List[str] = []

    def rows() -> Iterator[Row]:
        for index, thread in enumerate(threads):
            record = thread.record()
            yield Row(record, _text(ctx, thread, record, separate=index > 0))
        add_context_notes(ctx, notes)

    return Result("ethread", THREAD_COLUMNS, rows=rows(), meta=result_meta(ctx), notes=notes)


def _text(ctx: Any, thread: Any, rec: Dict[str, Any], separate: bool) -> Callable[[], List[str]]:
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
        return ([""] if separate else []) + thread_full_lines(rec, more)
    return text
