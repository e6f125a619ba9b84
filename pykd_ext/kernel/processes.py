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
from array import array
from typing import Any, Dict, Iterator, List, Optional, Tuple

from pykd_ext.errors import MemoryReadError
# Handle tables (PspCidTable, handle counts) are walked by `pykd_ext.kernel.handles`: one walker
# for process tables, the kernel table and the CID table.
from pykd_ext.kernel.handles import scan_handle_table
from pykd_ext.kernel.process import Process
from pykd_ext.kernel.thread import Thread
from pykd_ext.kernel.walk import END_HEAD_UNREADABLE, END_OK, END_UNREADABLE, WalkEnd, walk_list
from pykd_ext.memory.faults import Fault

# Method names (the contract's `found_by` values).
BY_ACTIVE_LIST = "ActiveProcessLinks"
BY_CID_TABLE = "PspCidTable"
BY_THREAD_OWNER = "ThreadOwner"
BY_PROCESSOR = "ProcessorCurrentThread"
BY_SESSION = "SessionList"
BY_TRIAGE = "TriageBlock"
SOURCES = (BY_ACTIVE_LIST, BY_CID_TABLE, BY_THREAD_OWNER, BY_PROCESSOR, BY_SESSION, BY_TRIAGE)

# Thread sources.
BY_ETHREAD_LIST = "ThreadListHead"        # _EPROCESS.ThreadListHead
BY_KTHREAD_LIST = "Pcb.ThreadListHead"    # _KPROCESS.ThreadListHead

DEFAULT_PROCESS_LIMIT = 65536
#: Threads walked per list of one process. Each thread owns a kernel stack (12 KiB on x86, 16 KiB
#: on x64, each followed by a guard page: Windows Internals 6th ed., Part 2, "Kernel stacks") and
#: an ETHREAD in nonpaged pool: 131,072 threads in ONE process need 2 GiB of kernel stacks on
#: x64 and, with their guard pages, the whole 2 GiB kernel address space of x86 - orders above
#: real processes (tens to a few thousand threads). A longer list is corrupt or hostile: the walk
#: ends with "limit reached" and a note. (It was 2**20: a hostile million-entry list then cost
#: 97 s and 6 GB in `threads`.)
DEFAULT_THREAD_LIMIT = 1 << 17


# ---- the active process list
def active_processes(ctx: Any, limit: int = DEFAULT_PROCESS_LIMIT) -> Tuple[List[Process], WalkEnd]:
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


def _budget(ctx: Any) -> Any:
    """The context's work budget (None for stand-in contexts of unit tests)."""
    return getattr(ctx, "budget", None)


def no_process_reason(ctx: Any) -> str:
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
class ThreadListing:
    """A process's threads from both lists: `threads` in EPROCESS-list order, then KPROCESS-only
    ones, then threads only other sources place in the process.

    Addresses are kept packed (`array('Q')` per list) and `Thread` objects are made on first use
    of `threads`: `ps` wants only the counts, and a hostile list must not cost an object per entry.
    `counts[list]` is the entry count, a Fault (the walk could not start or went into missing
    memory) or None (the work budget ended the walk: the count is unknown)."""

    def __init__(self, ctx: Any = None) -> None:
        self.ctx = ctx
        self.ends: Dict[str, WalkEnd] = {}
        self.counts: Dict[str, Any] = {}
        self.only_in: Dict[str, List[int]] = {}
        self.notes: List[str] = []
        #: list name -> thread addresses in that list's order
        self.addresses: Dict[str, array] = {}
        #: (address, method): threads other sources (triage block, processors) put here
        self.extra: List[Tuple[int, str]] = []
        #: thread -> further methods that also found it
        self.more_sources: Dict[int, List[str]] = {}
        self._threads: Optional[List[Thread]] = None

    @property
    def threads(self) -> List[Thread]:
        """Every thread, as `Thread` objects kept with the listing (see `iter_threads`)."""
        if self._threads is None:
            self._threads = list(self.iter_threads())
        return self._threads

    def iter_threads(self) -> Iterator[Thread]:
        """The threads in `threads` order, each made when reached and kept by nobody: a command
        that decodes and prints one thread at a time holds one `Thread` (and its 1-2 KiB
        structure read) at a time, however long the list."""
        if self._threads is not None:
            for thread in self._threads:
                yield thread
            return
        lists = list(self.addresses.items())
        members = [set(addresses) for _, addresses in lists]
        done = set()
        for n, (method, addresses) in enumerate(lists):
            for address in addresses:
                if address in done:
                    continue
                done.add(address)
                methods = [method] + [lists[k][0] for k in range(n + 1, len(lists)) if address in members[k]]
                yield self._thread(address, methods)
        for address, method in self.extra:
            yield self._thread(address, [method])

    def _thread(self, address: int, methods: List[str]) -> Thread:
        thread = Thread(self.ctx, address, methods)
        for method in self.more_sources.get(address, ()):
            thread.add_source(method)
        return thread


def _walk_threads(ctx: Any, head: int, link_offset: int, limit: int) -> Tuple[array, WalkEnd]:
    end = WalkEnd()
    found = array("Q", walk_list(ctx.space, head, end, limit, budget=_budget(ctx)))
    if link_offset:
        # a garbage link below the offset wraps to an unreadable address (shown as a Fault)
        mask = int(getattr(ctx, "pointer_mask", 0) or 0xFFFFFFFFFFFFFFFF)
        found = array("Q", [(entry - link_offset) & mask for entry in found])
    return found, end


def process_threads(ctx: Any, process: Process, limit: int = DEFAULT_THREAD_LIMIT) -> ThreadListing:
    """Walk `_EPROCESS.ThreadListHead` and `_KPROCESS.ThreadListHead`; note where they disagree."""
    listing = ThreadListing(ctx)
    if not process.readable:
        # the _EPROCESS itself is not in the dump (said once by the command): no list to walk
        listing.counts = {BY_ETHREAD_LIST: None, BY_KTHREAD_LIST: None}
        return listing
    ethread = ctx.layouts.type("_ETHREAD")
    eprocess = ctx.layouts.type("_EPROCESS")
    lists = []
    if eprocess.has_field("ThreadListHead") and ethread.has_field("ThreadListEntry"):
        lists.append((BY_ETHREAD_LIST, eprocess.offset("ThreadListHead"), ethread.offset("ThreadListEntry")))
    if eprocess.has_field("Pcb.ThreadListHead") and ethread.has_field("Tcb.ThreadListEntry"):
        lists.append((BY_KTHREAD_LIST, eprocess.offset("Pcb.ThreadListHead"), ethread.offset("Tcb.ThreadListEntry")))
    for method, head_offset, link_offset in lists:
        addresses, end = _walk_threads(ctx, process.address + head_offset, link_offset, limit)
        listing.ends[method] = end
        listing.addresses[method] = addresses
        if end.reason in (END_HEAD_UNREADABLE, END_UNREADABLE) and isinstance(end.fault, Fault):
            listing.counts[method] = end.fault     # the true count is unknown: say why
        elif end.cut_by_budget:
            listing.counts[method] = None          # cut by the work budget (its note says so)
        else:
            listing.counts[method] = len(addresses)
        note = end.note("process 0x%x %s" % (process.address, method))
        if note:
            listing.notes.append(note)
    listed = set()
    for addresses in listing.addresses.values():
        listed.update(addresses)
    # threads other sources know belong here but neither list reached (a torn or triage dump)
    for address, method in _other_known_threads(ctx):
        if address in listed or any(address == known for known, _ in listing.extra):
            listing.more_sources.setdefault(address, []).append(method)
            continue
        candidate = Thread(ctx, address, [method])
        if candidate.process == process.address:
            listing.extra.append((address, method))
            listing.notes.append("process 0x%x: thread 0x%x (%s) is not reached by its thread lists"
                                 % (process.address, address, method))
    ends = list(listing.ends.values())
    if len(listing.addresses) == 2 and not any(e.cut_by_budget for e in ends):
        e_list, k_list = listing.addresses[BY_ETHREAD_LIST], listing.addresses[BY_KTHREAD_LIST]
        e_set, k_set = set(e_list), set(k_list)
        if e_set != k_set:
            for method, mine, other in ((BY_ETHREAD_LIST, e_list, k_set), (BY_KTHREAD_LIST, k_list, e_set)):
                extra = [a for a in mine if a not in other]
                if extra:
                    listing.only_in[method] = extra
            listing.notes.append(
                "process 0x%x: thread lists disagree: %d only on _EPROCESS.ThreadListHead, %d only on "
                "_KPROCESS.ThreadListHead" % (process.address, len(listing.only_in.get(BY_ETHREAD_LIST, [])),
                                              len(listing.only_in.get(BY_KTHREAD_LIST, []))))
    return listing


def _other_known_threads(ctx: Any) -> List[Tuple[int, str]]:
    """The triage dump's thread and each processor's current thread."""
    known: List[Tuple[int, str]] = []
    t = triage_thread(ctx)
    if t:
        known.append((t, BY_TRIAGE))
    for proc in ctx.processors():
        if isinstance(proc.current_thread, int) and proc.current_thread:
            known.append((proc.current_thread, BY_PROCESSOR))
    return known


# ---- the CID table (walked by pykd_ext.kernel.handles.scan_handle_table)
class CidScan:
    """What `PspCidTable` holds: processes by PID and threads by TID (addresses of the bodies)."""

    def __init__(self) -> None:
        self.processes: Dict[int, int] = {}
        self.threads: Dict[int, int] = {}
        self.unknown: List[Tuple[int, int]] = []
        self.notes: List[str] = []
        self.table: Optional[int] = None


def _read_field(ctx: Any, type_name: str, path: str, body: int) -> Any:
    layout = ctx.layouts.type(type_name)
    f = layout.field(path)
    try:
        data = ctx.space.read(body + f.offset, f.size)
    except MemoryReadError:
        return None
    return layout.reader(path)(data, -f.offset)


def _thread_owner(ctx: Any, thread: int) -> Optional[int]:
    """`Tcb.Process` of an `_ETHREAD` (one pointer read, not the whole structure)."""
    path = "Tcb.Process" if ctx.has("_ETHREAD", "Tcb.Process") else "Tcb.ApcState.Process"
    owner = _read_field(ctx, "_ETHREAD", path, thread)
    return owner if isinstance(owner, int) and owner else None


def cid_table(ctx: Any) -> CidScan:
    """Walk `PspCidTable`. Each entry is a process or a thread body; it is classified by its own
    consistency (an `_EPROCESS` whose `UniqueProcessId` is the handle value, an `_ETHREAD` whose
    `Cid.UniqueThread` is) and, failing that, by its object header's type (`ObTypeIndexTable`)."""
    result = CidScan()
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
def session_processes(ctx: Any, sessions: List[int], limit: int = DEFAULT_PROCESS_LIMIT
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

    def add(self, ctx: Any, address: int, method: str) -> Process:
        process = self.processes.get(address)
        if process is None:
            process = self.processes[address] = Process(ctx, address)
            self.order.append(address)
        process.add_source(method)
        return process

    def ordered(self) -> List[Process]:
        return [self.processes[a] for a in self.order]


def triage_process(ctx: Any) -> Optional[int]:
    """The `_EPROCESS` a triage dump carries (its crashing thread's process), when it is one."""
    value = (ctx.info.extra or {}).get("process")
    return value if isinstance(value, int) and value else None


def triage_thread(ctx: Any) -> Optional[int]:
    value = (ctx.info.extra or {}).get("thread")
    return value if isinstance(value, int) and value else None


def all_processes(ctx: Any, cross_view: bool = False) -> ProcessCensus:
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
