"""A process's threads from its two thread lists (and the other sources that place a thread in
it), walked bounded and cycle-safe.

Why its own module: the process decoder (`kernel.process`) answers "which threads does this
process have" and the finders (`kernel.processes`) build censuses of many processes; both need
this walk, and neither may import the other (no import cycles: `.ci/import_cycles.py`).
"""
from array import array
from typing import TYPE_CHECKING, Any, Dict, Iterator, List, Optional, Set, Tuple

from pykd_ext.kernel.thread import Thread
from pykd_ext.kernel.walk import END_HEAD_UNREADABLE, END_UNREADABLE, WalkEnd, walk_list
from pykd_ext.memory.faults import Fault

if TYPE_CHECKING:
    from pykd_ext.kernel.context import KernelContext

# Thread sources (the `found_by` values of threads).
BY_PROCESSOR = "ProcessorCurrentThread"
BY_TRIAGE = "TriageBlock"
BY_ETHREAD_LIST = "ThreadListHead"        # _EPROCESS.ThreadListHead
BY_KTHREAD_LIST = "Pcb.ThreadListHead"    # _KPROCESS.ThreadListHead

#: Threads walked per list of one process. Each thread owns a kernel stack (12 KiB on x86, 16 KiB
#: on x64, each followed by a guard page: Windows Internals 6th ed., Part 2, "Kernel stacks") and
#: an ETHREAD in nonpaged pool: 131,072 threads in ONE process need 2 GiB of kernel stacks on
#: x64 and, with their guard pages, the whole 2 GiB kernel address space of x86 - orders above
#: real processes (tens to a few thousand threads). A longer list is corrupt or hostile: the walk
#: ends with "limit reached" and a note. (It was 2**20: a hostile million-entry list then cost
#: 97 s and 6 GB in `threads`.)
DEFAULT_THREAD_LIMIT = 1 << 17


def _budget(ctx: "KernelContext") -> Any:
    """The context's work budget (None for stand-in contexts of unit tests)."""
    return getattr(ctx, "budget", None)


class ThreadListing:
    """A process's threads from both lists: `threads` in EPROCESS-list order, then KPROCESS-only
    ones, then threads only other sources place in the process.

    Addresses are kept packed (`array('Q')` per list) and `Thread` objects are made on first use
    of `threads`: `ps` wants only the counts, and a hostile list must not cost an object per entry.
    `counts[list]` is the entry count, a Fault (the walk could not start or went into missing
    memory) or None (the work budget ended the walk: the count is unknown)."""

    def __init__(self, ctx: "KernelContext") -> None:
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


def _walk_threads(ctx: "KernelContext", head: int, link_offset: int, limit: int) -> Tuple[array, WalkEnd]:
    end = WalkEnd()
    links = walk_list(ctx.space, head, end, limit, budget=_budget(ctx))
    if not link_offset:
        return array("Q", links), end
    # a garbage link below the offset wraps to an unreadable address (shown as a Fault)
    mask = int(getattr(ctx, "pointer_mask", 0) or 0xFFFFFFFFFFFFFFFF)
    return array("Q", [(entry - link_offset) & mask for entry in links]), end


def process_threads(ctx: "KernelContext", process: Any, limit: int = DEFAULT_THREAD_LIMIT) -> ThreadListing:
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
    members = {method: set(addresses) for method, addresses in listing.addresses.items()}
    listed: Set[int] = set().union(*members.values())
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
        e_set, k_set = members[BY_ETHREAD_LIST], members[BY_KTHREAD_LIST]
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


def _other_known_threads(ctx: "KernelContext") -> List[Tuple[int, str]]:
    """The triage dump's thread and each processor's current thread."""
    known: List[Tuple[int, str]] = []
    t = triage_thread(ctx)
    if t:
        known.append((t, BY_TRIAGE))
    for proc in ctx.processors():
        if isinstance(proc.current_thread, int) and proc.current_thread:
            known.append((proc.current_thread, BY_PROCESSOR))
    return known


def triage_thread(ctx: "KernelContext") -> Optional[int]:
    value = (ctx.info.extra or {}).get("thread")
    return value if isinstance(value, int) and value else None
