"""`pykd-ext teb [TID|ADDRESS] [-p NAME|PID]`: thread environment blocks, like WinDbg's `!teb`.

The argument is a thread id, an `_ETHREAD` address or a TEB address; `-p` (or an image name as
the argument) shows every thread of the processes of that name, each process under its owner line;
no argument on a kernel dump: the crash context's thread (as `!teb` after opening a dump). On user-mode dumps no argument means every thread the dump lists (each TEB is checked:
`ClientId.UniqueThread` must be the listed thread id, `NtTib.Self` the TEB address). WoW64
threads show their 32-bit TEB too. `threads` on a user-mode dump is answered here as well
(`user_dump_threads`): a user dump has no `_ETHREAD`s, only the dump's thread list and TEBs.
"""
import argparse
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

from pykd_ext.commands.owner import owner_line, require_crash_context
from pykd_ext.commands.peb import add_symbols32, hx, user_meta, yes_no
from pykd_ext.commands.procview import add_session_notes
from pykd_ext.errors import NotFoundError, PykdExtError
from pykd_ext.kernel.process import Process
from pykd_ext.kernel.teb import TebDecoding, decode_thread_teb, kernel_thread_tebs
from pykd_ext.kernel.userspace import UserProcess, from_user_dump, is_user_dump
from pykd_ext.memory.faults import Fault
from pykd_ext.render.grid import Column, Result, Row
from pykd_ext.targets.arch import arch_for_pointer_size, arch_named

HELP = "thread environment block: stack, ClientId, PEB, last error, TLS, fibers (like !teb)"
#: `--help` ends with these (issue 12); crash.dmp stands for any dump
EXAMPLES = [
    'teb 0n1234 -t crash.dmp',
    'teb -p lsass.exe -t crash.dmp',
]

PAGE = 0x1000

COLUMNS = [
    Column("pid", "PID", "int"), Column("tid", "TID", "int"), Column("address", "TEB", "addr"),
    Column("stack_base", "StackBase", "addr"), Column("stack_limit", "StackLimit", "addr"),
    Column("peb", "PEB", "addr"), Column("last_error", "LastError", "int"),
    Column("last_status", "LastStatus", "hex"), Column("has_fiber_data", "Fiber", "bool"),
]

THREAD_COLUMNS = [
    Column("pid", "PID", "int"), Column("tid", "TID", "int"), Column("teb", "TEB", "addr"),
    Column("suspend_count", "Susp", "int"), Column("priority", "Pri", "int"),
    Column("stack_base", "StackBase", "addr"), Column("stack_limit", "StackLimit", "addr"),
    Column("instruction_pointer", "IP", "addr"), Column("last_error", "LastError", "int"),
    Column("teb32", "TEB32", "addr"),
]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("thread", nargs="?", metavar="TID|ADDRESS|NAME",
                        help="thread id, _ETHREAD address or TEB address, or an image name (every "
                             "thread of those processes) (default: the dump's crash context thread; "
                             "user dumps: every thread)")
    parser.add_argument("-p", "--process", metavar="NAME|PID",
                        help="every thread of this process (kernel targets)")
    add_symbols32(parser)


def teb_lines(rec: Dict[str, Any], title: str = "TEB") -> List[str]:
    """WinDbg `!teb` text for one decoded TEB record."""
    width = 16 if rec.get("bitness") == 64 else 8
    lines = ["%s at %s" % (title, hx(rec.get("address"), width))]
    if not isinstance(rec.get("address"), int) or not rec.get("address"):
        return lines
    put = lines.append
    for label, key in (("ExceptionList", "exception_list"), ("StackBase", "stack_base"),
                       ("StackLimit", "stack_limit"), ("SubSystemTib", "sub_system_tib"),
                       ("FiberData", "fiber_data"), ("ArbitraryUserPointer", "arbitrary_user_pointer"),
                       ("Self", "self"), ("EnvironmentPointer", "environment_pointer")):
        put("    %-21s %s" % (label + ":", hx(rec.get(key), width)))
    put("    %-21s %s . %s" % ("ClientId:", hx(rec.get("client_id_pid"), width), hx(rec.get("client_id_tid"), width)))
    put("    %-21s %s" % ("RpcHandle:", hx(rec.get("rpc_handle"), width)))
    put("    %-21s %s" % ("Tls Storage:", hx(rec.get("tls_pointer"), width)))
    put("    %-21s %s" % ("PEB Address:", hx(rec.get("peb"), width)))
    last_error = rec.get("last_error")
    put("    %-21s %s" % ("LastErrorValue:", last_error.marker if isinstance(last_error, Fault) else last_error))
    put("    %-21s %s" % ("LastStatusValue:", hx(rec.get("last_status"))))
    put("    %-21s %s" % ("Count Owned Locks:", _plain(rec.get("count_owned_locks"))))
    put("    %-21s %s" % ("HardErrorMode:", _plain(rec.get("hard_error_mode"))))
    # decoded extras
    put("    %-21s %s" % ("DeallocationStack:", hx(rec.get("deallocation_stack"), width)))
    put("    %-21s %s" % ("HasFiberData:", yes_no(rec.get("has_fiber_data"))))
    fiber = rec.get("fiber") or {}                 # H10 (issue 17): kernel.fibers
    if fiber.get("runs_fibers") is True:
        put("    %-21s %s" % ("CurrentFiber:", hx(fiber.get("current_fiber"), width)))
    put("    %-21s %s" % ("FlsData:", hx(rec.get("fls_data"), width)))
    if fiber.get("runs_fibers") is True:
        put("    %-21s %s" % ("Fiber block:", "layout not in public kernel symbols (kernelbase)"))
    if rec.get("wow_teb_offset") is not None:
        put("    %-21s %s" % ("WowTebOffset:", _plain(rec.get("wow_teb_offset"))))
    put("    %-21s %s" % ("Layout:", rec.get("layout")))
    return lines


def _plain(value: Any) -> str:
    if isinstance(value, Fault):
        return value.marker
    return "?" if value is None else str(value)


def _user_dump_tebs(session: Any, spec: Optional[str], symbols32: Optional[str]
                    ) -> Tuple[List[UserProcess], List[TebDecoding]]:
    user = from_user_dump(session, symbols32)
    threads = user.threads
    if spec:
        from pykd_ext.kernel.numbers import parse_number
        value = parse_number(spec)           # WinDbg's radix (issue 12): `1a4` and `0n420` alike
        if value is None:
            raise PykdExtError("%r is not a thread id or TEB address" % spec)
        threads = [t for t in user.threads if t["tid"] == value or t.get("teb") == value]
        if not threads and user.wow64:          # a WoW64 thread named by its 32-bit TEB
            for t in user.threads:
                decoded = decode_thread_teb(user, t.get("teb"), t["tid"])
                sub = decoded.record.get("teb32")
                if isinstance(sub, dict) and sub.get("address") == value:
                    return [user], [decoded]
        if not threads:
            raise NotFoundError("the dump lists no thread with id or TEB %r" % spec)
    return [user], [decode_thread_teb(user, t.get("teb"), t["tid"]) for t in threads]


def _kernel_tebs(session: Any, spec: Optional[str], process_spec: Optional[str],
                 symbols32: Optional[str], notes: List[str]) -> Tuple[List[UserProcess], List[TebDecoding]]:
    from pykd_ext.kernel.context import context_for
    from pykd_ext.kernel.lookup import Finder, parse_spec
    from pykd_ext.kernel.thread import Thread
    ctx = context_for(session)
    finder = Finder(ctx)
    threads: List[Any] = []
    if spec and not process_spec and parse_spec(spec)[0] == "name":
        process_spec, spec = spec, None          # `teb svchost.exe`: every thread of those processes
    if process_spec:
        for process in finder.processes(process_spec):
            threads.extend(process.threads())
        if not threads:
            raise NotFoundError("no threads found for process %r" % process_spec)
    elif not spec:
        # like `!teb` after opening a dump: the crash context's thread (commands/owner.py)
        crash = require_crash_context(ctx, "teb")
        threads = [Thread(ctx, crash.thread, [crash.found_by])]
        notes.append(crash.note)
    if spec:
        _kind, value = parse_spec(spec)
        # a page-aligned argument at or below the highest user address may name a TEB
        arch = arch_named(ctx.info.arch) or arch_for_pointer_size(ctx.pointer_size)
        maybe_teb = isinstance(value, int) and 0 < value and arch.is_user_address(value) \
            and not value & (PAGE - 1)
        if threads:
            threads = [t for t in threads if value in (t.tid, t.address)
                       or (maybe_teb and t.field("Tcb.Teb") == value)]
        else:
            found: List[Any] = []
            if maybe_teb:      # TEBs are page-aligned user addresses: find the thread that owns it
                found = [t for p in finder.cross().ordered() for t in p.threads()
                         if t.field("Tcb.Teb") == value]
            threads = found or finder.threads(spec)
        if not threads:
            raise NotFoundError("no thread matches %r" % spec)
    if not threads:
        raise PykdExtError("name a thread (TID, _ETHREAD or TEB address) or a process with -p")
    many = len({t.process for t in threads}) > 1 or bool(process_spec and parse_spec(process_spec)[0] == "name")
    users: List[UserProcess] = []
    decoded: List[TebDecoding] = []
    last_owner = None
    for thread, user, teb in kernel_thread_tebs(ctx, threads, symbols32):
        if user not in users:
            users.append(user)
        owner = thread.process
        if many and isinstance(owner, int) and owner != last_owner:
            # an owner line above the first TEB of each process (a name matching several)
            teb.record["owner_line"] = owner_line(Process(ctx, owner))
            last_owner = owner
        decoded.append(teb)
    return users, decoded


def run(session: Any, args: argparse.Namespace) -> Result:
    spec, symbols32 = getattr(args, "thread", None), getattr(args, "symbols32", None)
    notes: List[str] = []
    if is_user_dump(session.target):
        users, decoded = _user_dump_tebs(session, spec, symbols32)
    else:
        users, decoded = _kernel_tebs(session, spec, getattr(args, "process", None), symbols32, notes)
    for note in [n for u in users for n in u.notes] + [n for d in decoded for n in d.notes]:
        if note not in notes:
            notes.append(note)

    def rows() -> Iterator[Row]:
        for index, d in enumerate(decoded):
            yield Row(d.record, _teb_text(d.record, separate=index > 0))
        add_session_notes(session, notes)

    return Result("teb", COLUMNS, rows=rows(), meta=user_meta(session, users), notes=notes)


def _teb_text(rec: Dict[str, Any], separate: bool) -> Callable[[], List[str]]:
    def text() -> List[str]:
        lines = [""] if separate else []
        if rec.get("owner_line"):
            lines.append(rec["owner_line"])
        lines += teb_lines(rec)
        sub = rec.get("teb32")
        if isinstance(sub, dict):
            lines.append("")
            lines += teb_lines(sub, "Wow64 TEB32")
        return lines
    return text


def user_dump_threads(session: Any, args: argparse.Namespace) -> Result:
    """`threads` on a user-mode dump: the dump's thread list with each thread's TEB decoded."""
    users, decoded = _user_dump_tebs(session, None, getattr(args, "symbols32", None))
    user = users[0]
    wanted = [str(s).lower() for s in (getattr(args, "processes", None) or [])]
    if wanted and not any(w in (str(user.pid), (user.name or "").lower()) for w in wanted):
        raise PykdExtError("this user-mode dump holds one process (%s, PID %s)" % (user.name, user.pid))
    contexts = {t.get("id"): t.get("context") or {} for t in (session.target.info().extra or {}).get("threads") or []
                if isinstance(t, dict)}
    notes: List[str] = list(user.notes)
    for d in decoded:
        notes.extend(n for n in d.notes if n not in notes)

    def rows() -> Iterator[Row]:
        yield Row(None, ["PROCESS %s  PID %s  (%s; threads from the dump's thread list)"
                         % (user.name, user.pid, user.source)])
        for thread, teb in zip(user.threads, decoded):
            rec = teb.record
            ctx = contexts.get(thread["tid"]) or {}
            teb32 = rec.get("teb32")
            record = {
                "tid": thread["tid"], "pid": user.pid, "process_name": user.name, "teb": thread.get("teb"),
                "suspend_count": thread.get("suspend_count"), "priority": thread.get("priority"),
                "priority_class": thread.get("priority_class"), "stack_base": rec.get("stack_base"),
                "stack_limit": rec.get("stack_limit"), "last_error": rec.get("last_error"),
                "last_status": rec.get("last_status"), "client_id_tid": rec.get("client_id_tid"),
                "instruction_pointer": ctx.get("rip", ctx.get("eip")),
                "stack_pointer": ctx.get("rsp", ctx.get("esp")),
                "teb32": teb32.get("address") if isinstance(teb32, dict) else None,
                "layout": rec.get("layout"),
            }
            yield Row(record, _user_thread_text(record))

    return Result("threads", THREAD_COLUMNS, rows=rows(), meta=user_meta(session, users), notes=notes)


def _user_thread_text(rec: Dict[str, Any]) -> Callable[[], List[str]]:
    return lambda: ["    THREAD Cid %s.%s  Teb: %s  Suspend: %s  Priority: %s  IP: %s  Stack %s - %s%s" % (
        hx(rec["pid"], 4), hx(rec["tid"], 4), hx(rec["teb"], 16), _plain(rec["suspend_count"]),
        _plain(rec["priority"]), hx(rec["instruction_pointer"], 16), hx(rec["stack_limit"], 16),
        hx(rec["stack_base"], 16),
        "  Teb32: %s" % hx(rec["teb32"], 8) if rec.get("teb32") else "")]
