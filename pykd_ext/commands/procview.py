"""Shared pieces of the process/thread commands (`ps`, `pstree`, `eproc`, `threads`, `ethread`,
`psxview`): the kernel context of a session, result metadata, columns, and the honest notes a
partial dump needs ("the rest of the process list is not in this dump").

Why a module of its own: six commands must say the same thing the same way (which layout decoded
the rows, how each global was found, what the dump does not hold).
"""
from typing import Any, Dict, List

from pykd_ext.errors import NotFoundError, UnsupportedDumpError
from pykd_ext.kernel.context import KernelContext, context_for
from pykd_ext.kernel.process import Process
from pykd_ext.memory.faults import Fault
from pykd_ext.render.grid import Column

#: containers of user-mode dumps (`targets/minidump.py`, `targets/userdump.py`)
USER_DUMP_CONTAINERS = ("MDMP", "USERDU64")

GLOBALS_REPORTED = ("PsActiveProcessHead", "PspCidTable", "KiProcessorBlock", "PsLoadedModuleList")

PROCESS_COLUMNS = [
    Column("address", "Address", "addr"), Column("pid", "PID", "int"), Column("ppid", "PPID", "int"),
    Column("name", "Name"), Column("session_id", "Sess", "int"),
    Column("threads_active", "Thds", "int"), Column("threads_listed", "Listed", "int"),
    Column("handle_count", "Hnds", "int"), Column("create_time", "Created"),
    Column("exit_time", "Exited"), Column("kind", "Kind"), Column("found_by", "FoundBy"),
]

THREAD_COLUMNS = [
    Column("address", "Address", "addr"), Column("pid", "PID", "int"), Column("tid", "TID", "int"),
    Column("state", "State"), Column("wait_reason", "WaitReason"), Column("priority", "Pri", "int"),
    Column("start_address", "StartAddress", "addr"), Column("start_module", "Module"),
    Column("create_time", "Created"), Column("running_on", "CPU", "int"),
    Column("thread_flags", "Flags"),
]


def kernel_context(session: Any) -> KernelContext:
    """The session's KernelContext; a user-mode dump (one process, no kernel memory) is refused
    with a one-line error instead of an empty, misleading list."""
    target = session.target
    info = target.info()
    if info.container in USER_DUMP_CONTAINERS and (info.dump_type or "").startswith("user"):
        raise UnsupportedDumpError("this is a user-mode dump of one process (%s): it holds no kernel "
                                   "process or thread objects; `threads` lists its threads"
                                   % info.container)
    return context_for(session)


def result_meta(ctx: KernelContext) -> Dict[str, Any]:
    """Whole-result facts: layout used (and how it was chosen), target, how globals were found."""
    layouts = ctx.layouts
    ident = layouts.ident() if hasattr(layouts, "ident") else {"build_id": ctx.layout_id}
    meta: Dict[str, Any] = {"layout": ident, "layout_label": getattr(layouts, "label", ctx.layout_id),
                            "layout_choice": {k: v for k, v in getattr(layouts, "choice", {}).items()
                                              if k in ("method", "reason", "warnings", "chosen",
                                                       # H10: exact kernel version and its match
                                                       "kernel_version", "match", "kphdyn_check")},
                            "target": ctx.info.path, "dump_type": ctx.info.dump_type,
                            "globals": {}}
    for name in GLOBALS_REPORTED:
        address, how = ctx.resolve_global(name)
        meta["globals"][name] = {"address": address, "from": how}
    return meta


def with_context_notes(ctx: KernelContext, notes: List[str]) -> List[str]:
    """The command's notes plus what the kernel context noticed while decoding (borrowed enum
    names, globals the dump states differently), each once, in order. Call after the records
    are built: decoding is what produces the context's notes."""
    out = list(notes)
    add_context_notes(ctx, out)
    return out


def add_context_notes(ctx: KernelContext, notes: List[str]) -> None:
    """`with_context_notes` in place: what a streamed command's rows call after their last row
    (the context's notes - walk and budget notes too - are complete only then)."""
    seen = set(notes)
    for note in ctx.notes:
        if note not in seen:
            seen.add(note)
            notes.append(note)


def add_session_notes(session: Any, notes: List[str]) -> None:
    """`add_context_notes` for commands that also run on user-mode dumps (`peb`, `teb`,
    `modules`): the kernel context's notes when the target is a kernel one."""
    from pykd_ext.kernel.userspace import is_user_dump
    if not is_user_dump(session.target):
        add_context_notes(context_for(session), notes)


def dump_notes(ctx: KernelContext, processes: List[Process]) -> List[str]:
    """Plain statements about what a partial dump does not hold."""
    missing = sum(1 for p in processes if isinstance(p.view["ImageFileName"], Fault))
    return partial_dump_notes(ctx, missing, len(processes))


def partial_dump_notes(ctx: KernelContext, missing: int, total: int) -> List[str]:
    """`dump_notes` from counts: `missing` of `total` listed processes whose `_EPROCESS` is not in
    the dump (for commands that stream processes and keep none of them)."""
    notes: List[str] = []
    if missing:
        notes.append("%d of %d processes on the list are not in this dump (their _EPROCESS memory was "
                     "not captured); they are shown with <not in dump> fields" % (missing, total))
    if (ctx.info.dump_type or "") == "triage":
        notes.append("this is a triage dump: it holds the crashing thread, its process and a few data "
                     "blocks; the rest of the process list is not in it")
    return notes


def require(found: List[Any], spec: str, what: str) -> List[Any]:
    if not found:
        raise NotFoundError("no %s matches %r" % (what, spec))
    return found


# ---- H11 (issue 12 defect 8): values the `!process`/`!thread` text needs beyond the records

#: `!process <p> 1` memory facts: (display key, `_EPROCESS` paths, first the layout has wins).
#: VadRoot is the root node of the VAD tree: `_RTL_AVL_TREE.Root` (Windows 8+) or the
#: `_MM_AVL_TABLE`'s `BalancedRoot.RightChild` (Windows 7, whose BalancedRoot is a sentinel);
#: the count is `VadCount` (8+) or `NumberGenericTableElements` (7).
PROCESS_MEMORY_FIELDS = (
    ("vad_root", ("VadRoot.Root", "VadRoot.BalancedRoot.RightChild")),
    ("vad_count", ("VadCount", "VadRoot.NumberGenericTableElements")),
    ("peak_working_set", ("Vm.Instance.PeakWorkingSetSize", "Vm.PeakWorkingSetSize")),
    ("page_fault_count", ("Vm.Instance.PageFaultCount", "Vm.PageFaultCount")),
)


def process_memory_more(process: Process) -> Dict[str, Any]:
    """The VadRoot/Vads and working-set values of `!process <p> 1` that this build's `_EPROCESS`
    has (keys of `render.windbg.process_detail_lines`'s `more`); a field the layout lacks is left
    out, an unreadable one is its Fault."""
    more: Dict[str, Any] = {}
    for key, paths in PROCESS_MEMORY_FIELDS:
        for path in paths:
            if process.view.has(path):
                more[key] = process.view[path]
                break
    return more


def clock_notes(ctx: KernelContext, notes: List[str]) -> None:
    """Say once why UserTime/KernelTime are in clock ticks: the tick length is not in the dump.

    KTHREAD/KPROCESS UserTime and KernelTime count clock ticks; the time is ticks x
    KeMaximumIncrement (100 ns units), the value `KeQueryTimeIncrement` returns (Microsoft Learn,
    "KeQueryTickCount": "multiply the returned TickCount by the KeQueryTimeIncrement return
    value"; ReactOS `NtQueryInformationThread(ThreadTimes)`: `Tcb.KernelTime * KeMaximumIncrement`).
    The common 15.625 ms tick is never assumed."""
    if ctx.time_increment():
        return
    address = ctx.global_address("KeMaximumIncrement")
    where = ("the layouts give no KeMaximumIncrement RVA" if address is None
             else "KeMaximumIncrement (at 0x%x) is not in this dump" % address)
    note = ("UserTime/KernelTime are shown in clock ticks, not as hh:mm:ss.mmm: %s (the tick length "
            "is not guessed)" % where)
    if note not in notes:
        notes.append(note)
