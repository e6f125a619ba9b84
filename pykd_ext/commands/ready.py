"""`pykd-ext ready`: each processor's ready threads by priority, like WinDbg's `!ready`.

For every processor (`KiProcessorBlock` -> `_KPRCB`): the dispatcher ready lists
(`DispatcherReadyListHead[priority]`) whose `ReadySummary` bit is set, highest priority first,
then each shared ready queue of newer kernels (`_KPRCB.SharedReadyQueue` ->
`_KSHARED_READY_QUEUE`, walked once however many processors point to it). A thread is linked
through `_KTHREAD.WaitListEntry` (`kernel/scheduling.py` cites the kernel code that does it).
A set bit over an empty list, a non-empty list under a clear bit, a thread whose own Priority is
not its list's, or a listed thread that is not in the Ready state are notes. One JSON record per
ready thread (docs/scheduling.md).
"""
import argparse
from typing import Any, Dict, List

from pykd_ext.commands.procview import add_context_notes, kernel_context, result_meta
from pykd_ext.kernel.scheduling import image_name, ready_queues
from pykd_ext.kernel.thread import Thread
from pykd_ext.render.grid import Column, Result
from pykd_ext.render.windbg import thread_line

HELP = "ready threads per processor by priority, and the shared ready queues (like !ready)"
#: `--help` ends with these (issue 12); crash.dmp stands for any dump
EXAMPLES = [
    'ready -t crash.dmp',
    'ready -f json -t crash.dmp',
]

COLUMNS = [
    Column("processor", "CPU", "int"), Column("queue", "Queue"),
    Column("queue_address", "QueueAddress", "addr"), Column("priority", "Pri", "int"),
    Column("thread", "Thread", "addr"), Column("tid", "TID", "int"), Column("pid", "PID", "int"),
    Column("process", "Process", "addr"), Column("process_name", "Image"),
    Column("state", "State"), Column("thread_priority", "ThreadPri", "int"),
    Column("base_priority", "BasePri", "int"), Column("next_processor", "NextCPU", "int"),
]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    del parser                                   # no options: every processor, as `!ready`


def _record(ctx: Any, queue: Any, priority: int, address: int, names: Dict[int, Any]) -> Dict[str, Any]:
    thread = Thread(ctx, address, ["ReadyList"])
    owner = thread.process
    if isinstance(owner, int) and owner and owner not in names:
        names[owner] = image_name(ctx, owner)
    state = thread.state
    return {"processor": queue.processors[0] if queue.kind == "dispatcher" else None,
            "queue": queue.kind, "queue_address": queue.address,
            "queue_processors": list(queue.processors), "priority": priority,
            "thread": address, "tid": thread.field("Cid.UniqueThread"), "pid": thread.field("Cid.UniqueProcess"), "process": owner,
            "process_name": names.get(owner) if isinstance(owner, int) else None, "state": state,
            "thread_priority": thread.priority, "base_priority": thread.base_priority,
            "next_processor": thread.next_processor, "_thread": thread}


def run(session: Any, args: argparse.Namespace) -> Result:
    ctx = kernel_context(session)
    notes: List[str] = []
    queues = ready_queues(ctx)
    if not queues:
        notes.append("this build's layouts have no _KPRCB.DispatcherReadyListHead (or no processors "
                     "were found): no ready queues to show")
    records: List[Dict[str, Any]] = []
    names: Dict[int, Any] = {}
    text_blocks: List[List[str]] = []
    width = 2 * ctx.pointer_size
    for queue in queues:
        notes.extend(queue.notes)
        block: List[str] = []
        if queue.kind == "dispatcher":
            title = "Processor %d" % queue.processors[0]
        else:
            title = "Shared ready queue %0*x (processors %s)" % (width, queue.address,
                                                                 ",".join(str(p) for p in queue.processors))
        if not queue.readable:
            block.append("%s: ready lists not in the dump" % title)
        elif not queue.threads:
            block.append("%s: No threads in READY state" % title)
        last = None
        for priority, address in queue.threads:
            rec = _record(ctx, queue, priority, address, names)
            thread = rec.pop("_thread")
            if priority != last:
                block.append("%s: Ready Threads at priority %d" % (title, priority))
                last = priority
            full = thread.record()
            block.append(thread_line(full, thread.display_more(rec["process_name"]), 4))
            if isinstance(rec["thread_priority"], int) and rec["thread_priority"] != priority:
                notes.append("thread 0x%x is on the priority %d list but its Priority is %d"
                             % (address, priority, rec["thread_priority"]))
            if isinstance(rec["state"], str) and rec["state"] != "Ready":
                notes.append("thread 0x%x is on a ready list but its state is %s" % (address, rec["state"]))
            records.append(rec)
        text_blocks.append(block)
    add_context_notes(ctx, notes)
    meta = result_meta(ctx)
    meta["queues"] = [q.to_dict() for q in queues]

    def text(result: Result) -> List[str]:
        del result
        return [line for block in text_blocks for line in block]

    return Result("ready", COLUMNS, records=records, text=text, meta=meta, notes=notes)
