"""A process's user memory, on any target: which address space, which layouts, which PEB(s).

Why: the PEB, TEBs, loader lists and process parameters live in user space, and every target
reaches it differently:
- kernel targets (crash dumps, raw images, pykd): through the owning process's page tables,
  `target.process_space(EPROCESS.Pcb.DirectoryTableBase)`. Kernel memory dumps hold no user
  pages and triage dumps almost nothing, so each field that cannot be read comes back as the
  `Fault` ("user memory not in dump" in notes) and the command still runs;
- user-mode dumps (`MDMP` with memory, `USERDU64`): the dump *is* one process's address space;
  the PEB is found from the threads' TEBs (the dump's thread list names them), and the layouts
  are the dump build's, or the nearest shipped build's when none match (said in the output).
`UserProcess` carries the result so `peb`, `teb` and `modules` decode the same way everywhere.
"""
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Union, cast

from pykd_ext.errors import NotFoundError, PykdExtError, UnknownBuildError
from pykd_ext.kernel.view import StructView
from pykd_ext.kernel.wow64 import Layouts32, peb32_from_wow64_pointer, x86_layouts_for
from pykd_ext.memory.faults import NOT_IN_DUMP, Fault
from pykd_ext.memory.space import AddressSpace

if TYPE_CHECKING:
    from pykd_ext.kernel.context import KernelContext

#: `TargetInfo.container` values of user-mode dumps (the readers in targets/minidump.py, userdump.py)
USER_DUMP_CONTAINERS = ("MDMP", "USERDU64")
#: what notes say when a process's user pages are absent
NOT_IN_DUMP_TEXT = "user memory not in dump"


def is_user_dump(target: Any) -> bool:
    """True for a user-mode dump (one process's memory), False for kernel targets."""
    info = target.info()
    return info.container in USER_DUMP_CONTAINERS and (info.dump_type or "").startswith("user")


def nearest_layouts(build: int, arch: str) -> Any:
    """Layouts of the shipped/imported build nearest to `build` (same arch), or None."""
    from pykd_ext.layouts.registry import layouts_for_entry, list_builds
    entries = [e for e in list_builds() if e.arch == arch and e.build]
    if not entries:
        return None
    entry = min(entries, key=lambda e: (abs(e.build - build), -e.build, -(e.revision or 0)))
    return layouts_for_entry(entry)


def user_layouts(session: Any) -> Any:
    """The native layouts a session decodes user structures with.

    Kernel targets: `session.layouts` (chosen from the kernel). User dumps: the layouts of the
    dump's build; when no layout of that build exists, the nearest build's, with the choice
    recorded in `layouts.choice` (method "nearest-build") so the output names it.
    """
    cached = getattr(session, "_user_layouts", None)
    if cached is not None:
        return cached
    try:
        layouts = session.layouts
    except UnknownBuildError:
        target = session.target
        if not is_user_dump(target):
            raise
        info = target.info()
        build = int(info.build or 0)
        layouts = nearest_layouts(build, info.arch or "x64") if build else None
        if layouts is None:
            raise
        warning = ("no layouts of Windows build %d; user structures decoded with the nearest "
                   "build's layouts %s" % (build, layouts.build_id))
        layouts.choice = {"method": "nearest-build", "chosen": layouts.build_id,
                          "reason": warning, "warnings": [warning], "candidates": [layouts.build_id]}
    session._user_layouts = layouts
    return layouts


def layout_note(layouts: Any) -> Optional[str]:
    """The user-facing sentence naming a layout chosen by approximation (None when exact)."""
    choice = getattr(layouts, "choice", {}) or {}
    if choice.get("method") in ("nearest-build", "nearest-revision", "fingerprint"):
        return "decoded with layouts %s: %s" % (getattr(layouts, "label", "?"),
                                                choice.get("reason") or choice.get("method"))
    return None


class UserProcess:
    """One process's user side: space, layouts, PEB addresses, identity, and how each was found."""

    def __init__(self, space: Optional[AddressSpace], layouts: Any, pid: Any, name: Any,
                 peb: Any, source: str, process: Any = None) -> None:
        self.space = space
        self.layouts = layouts
        self.pid = pid
        self.name = name
        self.peb = peb                      # 64-bit (native) PEB address, Fault or None
        self.peb32: Any = None              # WoW64: 32-bit PEB address, Fault or None
        self.wow64 = False
        self.layouts32: Optional[Layouts32] = None
        self.source = source                # "process page tables (DTB 0x...)" / "user-mode dump"
        self.process = process              # the kernel Process, None on user dumps
        self.threads: List[Dict[str, Any]] = []   # user dumps: [{"tid", "teb"}] from the dump
        self.notes: List[str] = []
        #: the command's work budget (kernel/budget.py): the kernel context's, or the session's
        #: on a user-mode dump
        self.budget: Any = None

    @property
    def address(self) -> Optional[int]:
        """The `_EPROCESS` address on kernel targets."""
        return getattr(self.process, "address", None)

    @property
    def layout_id(self) -> str:
        return str(getattr(self.layouts, "build_id", "") or "")

    def identity(self) -> Dict[str, Any]:
        return {"pid": self.pid, "process": self.address, "name": self.name}


def _absent(fault: Any) -> bool:
    return isinstance(fault, Fault) and fault.reason == NOT_IN_DUMP


def absent_note(who: str, fault: Fault) -> str:
    """"PEB of lsass.exe (PID 636): user memory not in dump (not in dump at 0x...)"."""
    if _absent(fault):
        return "%s: %s (%s)" % (who, NOT_IN_DUMP_TEXT, fault)
    return "%s: unreadable (%s)" % (who, fault)


def from_kernel_process(ctx: "KernelContext", process: Any, symbols32: Optional[str] = None) -> UserProcess:
    """The user side of a kernel `Process` (see `pykd_ext.kernel.process`)."""
    dtb = process.dtb
    space: Optional[AddressSpace] = None
    if isinstance(dtb, int) and dtb:
        space = ctx.target.process_space(dtb)
        source = "process page tables (DTB %#x)" % dtb
    else:
        source = "no page tables (DirectoryTableBase %s)" % (dtb.marker if isinstance(dtb, Fault) else dtb)
    user = UserProcess(space, ctx.layouts, process.pid, process.name, process.peb, source, process)
    user.budget = getattr(ctx, "budget", None)
    wow = process.wow64_pointer
    if isinstance(wow, int) and wow:
        user.wow64 = True
        user.peb32 = peb32_from_wow64_pointer(ctx.space, ctx.layouts, wow)
        user.layouts32 = x86_layouts_for(ctx.layouts, symbols32)
    elif isinstance(wow, Fault):
        user.peb32 = wow
    if space is None:
        user.notes.append("PID %s: its page tables are unknown, so its user memory cannot be read"
                          % process.pid)
    return user


def user_dump_threads(target: Any) -> List[Dict[str, Any]]:
    """[{"tid", "teb", "index"}] of a user dump's thread list (MINIDUMP_THREAD / USERDU64)."""
    out: List[Dict[str, Any]] = []
    for index, thread in enumerate((target.info().extra or {}).get("threads") or []):
        if isinstance(thread, dict) and isinstance(thread.get("id"), int):
            out.append({"tid": thread["id"], "teb": thread.get("teb"), "index": index,
                        "suspend_count": thread.get("suspend_count"),
                        "priority": thread.get("priority"),
                        "priority_class": thread.get("priority_class")})
    return out


def from_user_dump(session: Any, symbols32: Optional[str] = None) -> UserProcess:
    """The one process of a user-mode dump; its PEB from its threads' TEBs."""
    target = session.target
    layouts = user_layouts(session)
    info = target.info()
    extra = info.extra or {}
    space = target.kernel
    modules = extra.get("modules") or []
    name: Any = None
    if modules and isinstance(modules[0], dict):
        name = modules[0].get("name")
    user = UserProcess(space, layouts, extra.get("process_id"), name, None, "user-mode dump (%s)"
                       % info.container)
    user.threads = user_dump_threads(target)
    from pykd_ext.kernel.budget import budget_for
    user.budget = budget_for(session)
    if not layouts.has_type("_TEB"):
        raise PykdExtError("layouts %s have no _TEB" % layouts.label)
    teb_type = layouts.type("_TEB")
    pebs: Dict[int, int] = {}
    first_fault: Optional[Fault] = None
    first_fault_tid: Any = None
    teb32_found: Optional[int] = None
    symbols_layouts32 = x86_layouts_for(layouts, symbols32)
    from pykd_ext.kernel.wow64 import find_teb32
    for thread in user.threads:
        teb = thread.get("teb")
        if not isinstance(teb, int) or not teb:
            continue
        view = StructView(space, teb_type, teb)
        value = cast(Union[int, Fault], view["ProcessEnvironmentBlock"])    # a pointer field
        if isinstance(value, Fault):
            if first_fault is None:
                first_fault, first_fault_tid = value, thread.get("tid")
            continue
        pebs[value] = pebs.get(value, 0) + 1
        if teb32_found is None:
            teb32_found = find_teb32(space, view, symbols_layouts32)
    if pebs:
        user.peb = max(pebs, key=lambda k: pebs[k])
        if len(pebs) > 1:
            user.notes.append("the threads' TEBs name %d different PEBs (%s); using the most common"
                              % (len(pebs), ", ".join("%#x" % p for p in sorted(pebs))))
    else:
        # H11 (issue 12): the PEB's address is read from a TEB; with no TEB readable it is unknown.
        # The TEB's fault is the TEB's: reported as the PEB's it named a TEB address "PEB".
        user.peb = None
        user.notes.append("no thread's TEB is in the dump%s: the PEB's address (TEB.ProcessEnvironmentBlock) "
                          "cannot be found" % (" (TEB of thread %s: %s)" % (first_fault_tid, first_fault)
                                               if first_fault is not None else ""))
    if teb32_found is not None or extra.get("wow64"):
        user.wow64 = True
        user.layouts32 = symbols_layouts32
        if teb32_found is not None:
            teb32_type = symbols_layouts32.teb_type()
            value = cast(Union[int, Fault],                                   # a pointer field
                         StructView(space, teb32_type, teb32_found)["ProcessEnvironmentBlock"])
            user.peb32 = value
        else:
            user.peb32 = Fault(NOT_IN_DUMP, 0)
            user.notes.append("the dump lists wow64.dll but no thread has a readable 32-bit TEB")
    note = layout_note(layouts)
    if note:
        user.notes.append(note)
    return user


def user_processes(session: Any, spec: Optional[str], symbols32: Optional[str] = None,
                   all_when_empty: bool = False) -> List[UserProcess]:
    """The processes a `peb`/`modules` argument names, on any target.

    User dumps: the dump's process (a NAME/PID argument must match it). Kernel targets: every
    process `Finder` matches; without an argument, every listed process when `all_when_empty`.
    """
    target = session.target
    if is_user_dump(target):
        user = from_user_dump(session, symbols32)
        if spec:
            text = spec.strip().lower()
            ok = text in (str(user.pid), "%#x" % user.pid if isinstance(user.pid, int) else "",
                          (user.name or "").lower())
            if not ok:
                raise PykdExtError("this user-mode dump holds one process (%s, PID %s); %r does not "
                                   "name it" % (user.name, user.pid, spec))
        return [user]
    from pykd_ext.kernel.context import context_for
    from pykd_ext.kernel.lookup import Finder
    ctx = context_for(session)
    if spec:
        processes = Finder(ctx).processes(spec)
        if not processes:
            raise NotFoundError("no process matches %r" % spec)
    elif all_when_empty:
        from pykd_ext.kernel.processes import all_processes
        processes = all_processes(ctx).ordered()
    else:
        raise PykdExtError("name a process (NAME, PID or _EPROCESS address)")
    return [from_kernel_process(ctx, p, symbols32) for p in processes]


__all__ = ["NOT_IN_DUMP_TEXT", "USER_DUMP_CONTAINERS", "UserProcess", "absent_note",
           "from_kernel_process", "from_user_dump", "is_user_dump", "layout_note",
           "nearest_layouts", "user_dump_threads", "user_layouts", "user_processes"]
