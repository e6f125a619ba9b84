"""Finding processes and threads: every list and table the kernel keeps them in, walked safely.

Why several sources: a process unlinked from `ActiveProcessLinks` (DKOM) is still in the CID
table, still owns threads, may still run on a processor and is still on its session's list; a
torn dump may hold one source but not another. Each walker here is bounded and cycle-safe (the
lead's `walk_list`), reports how it ended (`WalkEnd`) instead of raising, and tags what it found
with the method name the JSON `found_by` lists use:

- `active_processes`: `PsActiveProcessHead` -> `_EPROCESS.ActiveProcessLinks` ("ActiveProcessLinks")
- `process_threads`: `_EPROCESS.ThreadListHead` -> `_ETHREAD.ThreadListEntry` and
  `_KPROCESS.ThreadListHead` -> `_KTHREAD.ThreadListEntry`, disagreement noted
- `cid_table`: `PspCidTable`, walked by `kernel.handles.scan_handle_table` (0-2 levels from
  `TableCode`'s low bits; entries decoded per build: the `Object` pointer before Windows 8,
  `ObjectPointerBits` after; CID entries point at object bodies) ("PspCidTable")
- `processors()` on the context: each PRCB's CurrentThread ("ProcessorCurrentThread")
- `session_processes`: each `_MM_SESSION_SPACE.ProcessList` -> `_EPROCESS.SessionProcessLinks`
  ("SessionList")
- `all_processes`: the union, keyed by `_EPROCESS` address, with every source that saw each one.
"""
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple

# Handle tables (PspCidTable, handle counts) are walked by `pykd_ext.kernel.handle_table`: one walker
# for process tables, the kernel table and the CID table.
from pykd_ext.kernel.handle_table import scan_handle_table
from pykd_ext.kernel.kobject import Value
from pykd_ext.kernel.process import Process
from pykd_ext.kernel.thread import Thread
from pykd_ext.kernel.thread_lists import (  # noqa: F401  (re-exported)
    BY_ETHREAD_LIST, BY_KTHREAD_LIST, BY_PROCESSOR, BY_TRIAGE, DEFAULT_THREAD_LIMIT, ThreadListing,
    _budget, process_threads, triage_thread)
from pykd_ext.kernel.view import read_field
from pykd_ext.kernel.walk import END_HEAD_UNREADABLE, END_OK, WalkEnd, walk_list
from pykd_ext.memory.faults import Fault

if TYPE_CHECKING:
    from pykd_ext.kernel.context import KernelContext

# Method names (the contract's `found_by` values).
BY_ACTIVE_LIST = "ActiveProcessLinks"
BY_CID_TABLE = "PspCidTable"
BY_THREAD_OWNER = "ThreadOwner"
BY_SESSION = "SessionList"
SOURCES = (BY_ACTIVE_LIST, BY_CID_TABLE, BY_THREAD_OWNER, BY_PROCESSOR, BY_SESSION, BY_TRIAGE)


DEFAULT_PROCESS_LIMIT = 65536



# ---- the active process list
def active_processes(ctx: "KernelContext", limit: int = DEFAULT_PROCESS_LIMIT) -> Tuple[List[Process], WalkEnd]:
    """Processes on `PsActiveProcessHead` in list order, and how the walk ended."""
    end = WalkEnd()
    head = ctx.global_address("PsActiveProcessHead")
    if head is None:
        end.reason = END_HEAD_UNREADABLE
        return [], end
    link = ctx.layouts.type("_EPROCESS").offset("ActiveProcessLinks")
    found = [Process(ctx, entry - link, [BY_ACTIVE_LIST])
             for entry in walk_list(ctx.space, head, end, limit, budget=_budget(ctx))]
    return found, end


def no_process_reason(ctx: "KernelContext") -> str:
    """Why the active process list gave no process: for "no process found" messages."""
    head = ctx.global_address("PsActiveProcessHead")
    if head is None:
        return "PsActiveProcessHead's address is unknown (no symbols and no KDBG entry)"
    _, end = active_processes(ctx)
    if end.reason == END_OK:
        return "the active process list (PsActiveProcessHead at 0x%x) is empty" % head
    if end.reason == END_HEAD_UNREADABLE:
        return "the active process list head (PsActiveProcessHead at 0x%x) is not readable (%s)" % (
            head, end.fault)
    if end.cut_by_budget:
        return "the work budget ran out before the active process list was walked"
    return "the active process list (PsActiveProcessHead at 0x%x) ends at once (%s)" % (
        head, end.note("PsActiveProcessHead") or end.reason)


# ---- thread lists
# ---- the CID table (walked by pykd_ext.kernel.handles.scan_handle_table)
class CidScan:
    """What `PspCidTable` holds: processes by PID and threads by TID (addresses of the bodies)."""

    def __init__(self) -> None:
        self.processes: Dict[int, int] = {}
        self.threads: Dict[int, int] = {}
        self.unknown: List[Tuple[int, int]] = []
        self.notes: List[str] = []
        self.table: Optional[int] = None


def _read_field(ctx: "KernelContext", type_name: str, path: str, body: int) -> Any:
    """One field of the body (`view.read_field`: only its bytes); None when unreadable."""
    value = read_field(ctx.space, ctx.layouts.type(type_name), body, path)
    return None if isinstance(value, Fault) else value


def _thread_owner(ctx: "KernelContext", thread: int) -> Optional[int]:
    """`Tcb.Process` of an `_ETHREAD` (one pointer read, not the whole structure)."""
    path = "Tcb.Process" if ctx.has("_ETHREAD", "Tcb.Process") else "Tcb.ApcState.Process"
    owner = _read_field(ctx, "_ETHREAD", path, thread)
    return owner if isinstance(owner, int) and owner else None


def cid_table(ctx: "KernelContext") -> CidScan:
    """Walk `PspCidTable`. Each entry is a process or a thread body; it is classified by its own
    consistency (an `_EPROCESS` whose `UniqueProcessId` is the handle value, an `_ETHREAD` whose
    `Cid.UniqueThread` is) and, failing that, by its object header's type (`ObTypeIndexTable`)."""
    result = CidScan()
    if not ctx.layouts.has_type("_HANDLE_TABLE_ENTRY"):     # inferred layouts may not prove it
        result.notes.append("PspCidTable: not walked (the layout has no _HANDLE_TABLE_ENTRY)")
        return result
    pointer = ctx.read_global_pointer("PspCidTable")
    if pointer is None:
        result.notes.append("PspCidTable: address unknown (no symbols and no KDBG entry)")
        return result
    if isinstance(pointer, Fault):
        result.notes.append("PspCidTable: the global is not in the dump (%s)" % pointer)
        return result
    if not pointer:
        result.notes.append("PspCidTable is NULL")
        return result
    result.table = pointer
    scan = scan_handle_table(ctx, pointer)
    result.notes.extend(scan.notes("PspCidTable"))
    for handle, body in scan.entries:
        if _read_field(ctx, "_EPROCESS", "UniqueProcessId", body) == handle:
            result.processes[handle] = body
        elif _read_field(ctx, "_ETHREAD", "Cid.UniqueThread", body) == handle:
            result.threads[handle] = body
        else:
            kind = ctx.object_type_name(body)
            if kind == "Process":
                result.processes[handle] = body
            elif kind == "Thread":
                result.threads[handle] = body
            else:
                result.unknown.append((handle, body))
    if result.unknown:
        result.notes.append("PspCidTable: %d entries are neither a consistent process nor thread"
                            % len(result.unknown))
    return result


# ---- sessions
def session_processes(ctx: "KernelContext", sessions: List[int], limit: int = DEFAULT_PROCESS_LIMIT
                      ) -> Tuple[List[int], List[str]]:
    """`_EPROCESS` addresses on each session's `ProcessList` (sessions given by `_MM_SESSION_SPACE`
    address, as the processes' `Session` pointers name them)."""
    if not (ctx.has("_MM_SESSION_SPACE", "ProcessList") and ctx.has("_EPROCESS", "SessionProcessLinks")):
        return [], ["session lists: this layout has no _MM_SESSION_SPACE.ProcessList"]
    head_offset = ctx.layouts.type("_MM_SESSION_SPACE").offset("ProcessList")
    link = ctx.layouts.type("_EPROCESS").offset("SessionProcessLinks")
    found: List[int] = []
    notes: List[str] = []
    for session in sessions:
        end = WalkEnd()
        for entry in walk_list(ctx.space, session + head_offset, end, limit, budget=_budget(ctx)):
            found.append(entry - link)
        note = end.note("session 0x%x ProcessList" % session)
        if note:
            notes.append(note)
    return found, notes


# ---- all sources together
class ProcessCensus:
    """Every process any source found, by address, plus each source's walk notes."""

    def __init__(self) -> None:
        self.processes: Dict[int, Process] = {}
        self.order: List[int] = []
        self.notes: List[str] = []
        self.active_end: Optional[WalkEnd] = None
        self.sources_run: List[str] = []
        self.cid: Optional[CidScan] = None

    def add(self, ctx: "KernelContext", address: int, method: str) -> Process:
        process = self.processes.get(address)
        if process is None:
            process = self.processes[address] = Process(ctx, address)
            self.order.append(address)
        process.add_source(method)
        return process

    def ordered(self) -> List[Process]:
        return [self.processes[a] for a in self.order]


def triage_process(ctx: "KernelContext") -> Optional[int]:
    """The `_EPROCESS` a triage dump carries (its crashing thread's process), when it is one."""
    value = (ctx.info.extra or {}).get("process")
    return value if isinstance(value, int) and value else None


def all_processes(ctx: "KernelContext", cross_view: bool = False) -> ProcessCensus:
    """The active list (always), the triage block (when the dump has one) and, with `cross_view`,
    the CID table, thread owners, processors' current threads and session lists."""
    census = ProcessCensus()
    active, end = active_processes(ctx)
    census.active_end = end
    census.sources_run.append(BY_ACTIVE_LIST)
    for process in active:
        if process.address not in census.processes:
            census.processes[process.address] = process
            census.order.append(process.address)
    note = end.note("PsActiveProcessHead")
    if note:
        census.notes.append(note)
    triage = triage_process(ctx)
    if triage is not None:
        census.sources_run.append(BY_TRIAGE)
        census.add(ctx, triage, BY_TRIAGE)
    if not cross_view:
        return census
    census.sources_run.extend([BY_CID_TABLE, BY_THREAD_OWNER, BY_PROCESSOR, BY_SESSION])
    cid = cid_table(ctx)
    census.cid = cid
    census.notes.extend(cid.notes)
    for pid in sorted(cid.processes):
        census.add(ctx, cid.processes[pid], BY_CID_TABLE)
    owners: Dict[int, None] = {}
    owner: Value        # an int from the CID table, any decoded field value from a Thread below
    for tid in sorted(cid.threads):
        owner = _thread_owner(ctx, cid.threads[tid])
        if owner:
            owners[owner] = None
    triage_t = triage_thread(ctx)
    if triage_t is not None:
        owner = Thread(ctx, triage_t).process
        if isinstance(owner, int) and owner:
            owners[owner] = None
    for owner in owners:
        census.add(ctx, owner, BY_THREAD_OWNER)
    for proc in ctx.processors():
        current = proc.current_thread
        if isinstance(current, int) and current:
            owner = Thread(ctx, current).process
            if isinstance(owner, int) and owner:
                census.add(ctx, owner, BY_PROCESSOR)
    sessions: Dict[int, None] = {}
    for process in list(census.processes.values()):
        session = process.field("Session")
        if isinstance(session, int) and session:
            sessions[session] = None
    members, notes = session_processes(ctx, list(sessions))
    census.notes.extend(notes)
    for address in members:
        census.add(ctx, address, BY_SESSION)
    return census
