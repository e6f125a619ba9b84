"""Thread environment blocks: `_TEB` (and a WoW64 thread's 32-bit `_TEB`), like WinDbg's `!teb`.

Why: the TEB is where a thread's user-mode state lives (stack bounds, last error, TLS, fibers,
its PEB). On kernel targets it is found from `KTHREAD.Teb` and read through the owning process's
page tables; on user-mode dumps from the dump's thread list. Each decoded TEB is checked against
what found it: `NtTib.Self` must be the TEB's own address and `ClientId.UniqueThread` the thread's
id — disagreement is reported, never silently accepted. All offsets and bits come from the
build's `_TEB` layout (`HasFiberData` is a bit of `SameTebFlags` whose position the layout gives).
"""
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple, Union

from pykd_ext.kernel.fibers import fiber_facts
from pykd_ext.kernel.userspace import UserProcess, absent_note
from pykd_ext.kernel.view import StructView
from pykd_ext.kernel.wow64 import find_teb32
from pykd_ext.memory.faults import Fault

if TYPE_CHECKING:
    from pykd_ext.kernel.context import KernelContext

#: (record key, `_TEB` member path)
TEB_FIELDS: Tuple[Tuple[str, str], ...] = (
    ("exception_list", "NtTib.ExceptionList"), ("stack_base", "NtTib.StackBase"),
    ("stack_limit", "NtTib.StackLimit"), ("sub_system_tib", "NtTib.SubSystemTib"),
    ("fiber_data", "NtTib.FiberData"), ("arbitrary_user_pointer", "NtTib.ArbitraryUserPointer"),
    ("self", "NtTib.Self"), ("environment_pointer", "EnvironmentPointer"),
    ("client_id_pid", "ClientId.UniqueProcess"), ("client_id_tid", "ClientId.UniqueThread"),
    ("rpc_handle", "ActiveRpcHandle"), ("tls_pointer", "ThreadLocalStoragePointer"),
    ("peb", "ProcessEnvironmentBlock"), ("last_error", "LastErrorValue"),
    ("last_status", "LastStatusValue"), ("count_owned_locks", "CountOfOwnedCriticalSections"),
    ("hard_error_mode", "HardErrorMode"), ("win32_thread_info", "Win32ThreadInfo"),
    ("current_locale", "CurrentLocale"), ("deallocation_stack", "DeallocationStack"),
    ("has_fiber_data", "HasFiberData"), ("wow_teb_offset", "WowTebOffset"),
    ("fls_data", "FlsData"),                       # H10 (issue 17): fiber-local storage
)
#: record keys of a TEB, in output order (`teb32` holds a nested record with the same keys)
TEB_KEYS = (("tid", "pid", "thread", "process", "process_name", "bitness", "address")
            + tuple(k for k, _ in TEB_FIELDS) + ("fiber", "teb32", "layout"))

Value = Union[int, bool, None, Fault]


class TebDecoding:
    """One decoded TEB: the record, plus notes (consistency checks, unreadable memory)."""

    def __init__(self, record: Dict[str, Any], notes: List[str],
                 view: Optional[StructView] = None) -> None:
        self.record = record
        self.notes = notes
        self.view = view


def decode_teb(space: Any, teb_type: Any, address: Any, bitness: int, layout_id: str,
               tid: Any = None, who: str = "TEB") -> TebDecoding:
    """Decode the TEB at `address`; `tid` (when known) is checked against `ClientId`."""
    record: Dict[str, Any] = {key: None for key in TEB_KEYS}
    record.update(tid=tid, bitness=bitness, address=address, layout=layout_id)
    notes: List[str] = []
    if isinstance(address, Fault):
        notes.append(absent_note(who, address))
        return TebDecoding(record, notes)
    if not isinstance(address, int) or not address:
        notes.append("%s: the thread has no TEB (a kernel or minimal thread)" % who)
        return TebDecoding(record, notes)
    view = StructView(space, teb_type, address)
    if view.fault is not None and not view.data:
        notes.append(absent_note("%s at %#x" % (who, address), view.fault))
    for key, path in TEB_FIELDS:
        value = view.get(path)
        if key == "has_fiber_data" and isinstance(value, int):
            value = bool(value)
        if key == "wow_teb_offset" and isinstance(value, int) and value >= 0x80000000:
            value -= 0x100000000                   # LONG
        record[key] = value
    record["fiber"] = fiber_facts(record)          # H10 (issue 17): what the TEB proves
    self_value = record["self"]
    if isinstance(self_value, int) and self_value != address:
        notes.append("%s at %#x: NtTib.Self is %#x, not the TEB's own address" % (who, address, self_value))
    cid = record["client_id_tid"]
    if isinstance(cid, int) and isinstance(tid, int) and cid != tid:
        notes.append("%s at %#x: ClientId.UniqueThread is %d, but the thread id is %d"
                     % (who, address, cid, tid))
    if record["tid"] is None and isinstance(cid, int):
        record["tid"] = cid
    record["pid"] = record["client_id_pid"] if isinstance(record["client_id_pid"], int) else None
    return TebDecoding(record, notes, view)


def decode_thread_teb(user: UserProcess, teb: Any, tid: Any, thread: Optional[int] = None
                      ) -> TebDecoding:
    """The TEB of one thread of `user` and, for WoW64 threads, its 32-bit TEB as `teb32`."""
    layouts = user.layouts
    who = "TEB of thread %s" % tid
    if user.space is None:
        record = {key: None for key in TEB_KEYS}
        record.update(tid=tid, address=teb, bitness=8 * layouts.pointer_size, layout=layouts.build_id)
        return TebDecoding(record, list(user.notes))
    main = decode_teb(user.space, layouts.type("_TEB"), teb, 8 * layouts.pointer_size,
                      layouts.build_id, tid, who)
    view = main.view
    rec = main.record
    rec.update(thread=thread, process=user.address, process_name=user.name)
    if rec["pid"] is None:
        rec["pid"] = user.pid
    if user.wow64 and user.layouts32 is not None and view is not None:
        teb_type = user.layouts32.teb_type()
        teb32 = find_teb32(user.space, view, user.layouts32) if teb_type is not None else None
        if teb32 is not None:
            sub = decode_teb(user.space, teb_type, teb32, 32, user.layouts32.build_id, tid,
                             "32-bit TEB of thread %s" % tid)
            sub.record.update(thread=thread, process=user.address, process_name=user.name)
            rec["teb32"] = sub.record
            main.notes.extend(sub.notes)
        elif teb_type is None:
            main.notes.append(user.layouts32.missing("the 32-bit TEB"))
    return main


def kernel_thread_tebs(ctx: "KernelContext", threads: List[Any], symbols32: Optional[str] = None
                       ) -> List[Tuple[Any, UserProcess, TebDecoding]]:
    """(thread, user process, decoded TEB) for kernel `Thread`s (one page-table lookup per process)."""
    from pykd_ext.kernel.process import Process
    from pykd_ext.kernel.userspace import from_kernel_process
    users: Dict[int, UserProcess] = {}
    out = []
    for thread in threads:
        owner = thread.process
        if not isinstance(owner, int) or not owner:
            continue
        user = users.get(owner)
        if user is None:
            user = users[owner] = from_kernel_process(ctx, Process(ctx, owner), symbols32)
        teb = thread.field("Tcb.Teb")
        out.append((thread, user, decode_thread_teb(user, teb, thread.tid, thread.address)))
    return out


__all__ = ["TEB_FIELDS", "TEB_KEYS", "TebDecoding", "decode_teb", "decode_thread_teb",
           "kernel_thread_tebs"]
