"""Job objects (`_EJOB`) and silos: counters, decoded limits, members, the nesting chain.

Why: a process in a job is constrained by the job's limits (and by every ancestor job's since
Windows 8 nests jobs); a silo is a job whose `Silo` flag is set, and a *server* silo (a Windows
Server container) carries `ServerSiloGlobals`. Members are on `_EJOB.ProcessListHead` linked
through `_EPROCESS.JobLinks`; children on `ChildJobListHead` through `SiblingJobLinks`; the chain
up through `ParentJob`. Every field comes from the build's layout (absent fields are None: Windows
7 has no `ParentJob`, no silo fields); every walk is bounded and cycle-safe; the limit and UI
restriction names are winnt.h constants (tables below).
"""
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple, Union

from pykd_ext.kernel.objects import reader_for
from pykd_ext.kernel.privileges import bit_names
from pykd_ext.kernel.view import StructView
from pykd_ext.kernel.walk import WalkEnd, walk_list
from pykd_ext.memory.faults import Fault

if TYPE_CHECKING:
    from pykd_ext.kernel.context import KernelContext

#: `JOBOBJECT_BASIC_LIMIT_INFORMATION.LimitFlags` / `_EJOB.LimitFlags` bits.
#: Source: winnt.h `JOB_OBJECT_LIMIT_*` (Microsoft Learn, "JOBOBJECT_BASIC_LIMIT_INFORMATION" and
#: "JOBOBJECT_EXTENDED_LIMIT_INFORMATION").
JOB_LIMIT_FLAGS: Tuple[Tuple[int, str], ...] = (
    (0x00000001, "WORKINGSET"),
    (0x00000002, "PROCESS_TIME"),
    (0x00000004, "JOB_TIME"),
    (0x00000008, "ACTIVE_PROCESS"),
    (0x00000010, "AFFINITY"),
    (0x00000020, "PRIORITY_CLASS"),
    (0x00000040, "PRESERVE_JOB_TIME"),
    (0x00000080, "SCHEDULING_CLASS"),
    (0x00000100, "PROCESS_MEMORY"),
    (0x00000200, "JOB_MEMORY"),
    (0x00000400, "DIE_ON_UNHANDLED_EXCEPTION"),
    (0x00000800, "BREAKAWAY_OK"),
    (0x00001000, "SILENT_BREAKAWAY_OK"),
    (0x00002000, "KILL_ON_JOB_CLOSE"),
    (0x00004000, "SUBSET_AFFINITY"),
    (0x00008000, "JOB_MEMORY_LOW"),
    (0x00010000, "JOB_READ_BYTES"),
    (0x00020000, "JOB_WRITE_BYTES"),
    (0x00040000, "RATE_CONTROL"),
    (0x00080000, "IO_RATE_CONTROL"),
    (0x00100000, "NET_RATE_CONTROL"),
)
#: `_EJOB.UIRestrictionsClass` bits. Source: winnt.h `JOB_OBJECT_UILIMIT_*`
#: (Microsoft Learn, "JOBOBJECT_BASIC_UI_RESTRICTIONS").
JOB_UI_LIMITS: Tuple[Tuple[int, str], ...] = (
    (0x0001, "HANDLES"), (0x0002, "READCLIPBOARD"), (0x0004, "WRITECLIPBOARD"),
    (0x0008, "SYSTEMPARAMETERS"), (0x0010, "DISPLAYSETTINGS"), (0x0020, "GLOBALATOMS"),
    (0x0040, "DESKTOP"), (0x0080, "EXITWINDOWS"),
)
#: Bounds: members of one job, children of one job, depth of the ParentJob chain (Windows allows
#: a handful of nesting levels; the bound only stops corrupt loops).
MAX_JOB_MEMBERS = 65536
MAX_JOB_CHILDREN = 4096
MAX_JOB_DEPTH = 64

#: (record key, `_EJOB` field) of the plain counters and limits, in `!job` order.
JOB_COUNTERS: Tuple[Tuple[str, str], ...] = (
    ("total_page_fault_count", "TotalPageFaultCount"), ("total_processes", "TotalProcesses"),
    ("active_processes", "ActiveProcesses"),
    ("total_terminated_processes", "TotalTerminatedProcesses"), ("limit_flags", "LimitFlags"),
    ("minimum_working_set", "MinimumWorkingSetSize"),
    ("maximum_working_set", "MaximumWorkingSetSize"),
    ("active_process_limit", "ActiveProcessLimit"), ("priority_class", "PriorityClass"),
    ("ui_restrictions", "UIRestrictionsClass"), ("scheduling_class", "SchedulingClass"),
    ("process_memory_limit", "ProcessMemoryLimit"), ("job_memory_limit", "JobMemoryLimit"),
    ("peak_process_memory_used", "PeakProcessMemoryUsed"),
    ("peak_job_memory_used", "PeakJobMemoryUsed"), ("session_id", "SessionId"),
    ("job_id", "JobId"), ("nesting_depth", "NestingDepth"),
    ("total_user_time", "TotalUserTime.QuadPart"), ("total_kernel_time", "TotalKernelTime.QuadPart"),
    ("job_flags", "JobFlags"),
)

Value = Union[int, str, bool, None, Fault]


def guid_text(raw: Any) -> Union[str, Fault, None]:
    """A 16-byte `_GUID` as `{xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx}` (Data1..3 little-endian)."""
    if isinstance(raw, Fault) or raw is None:
        return raw
    b = bytes(raw)
    if len(b) != 16:
        return None
    return "{%08x-%04x-%04x-%s-%s}" % (int.from_bytes(b[0:4], "little"), int.from_bytes(b[4:6], "little"),
                                       int.from_bytes(b[6:8], "little"), b[8:10].hex(), b[10:16].hex())


class Job:
    """The `_EJOB` at `address`."""

    def __init__(self, ctx: "KernelContext", address: int) -> None:
        self.ctx = ctx
        self.address = address
        self.view = StructView(ctx.space, ctx.layouts.type("_EJOB"), address)
        self.notes: List[str] = []

    @property
    def readable(self) -> bool:
        return not isinstance(self.view["ActiveProcesses"], Fault)

    def field(self, path: str) -> Value:
        return self.view.get(path)

    def name(self) -> Any:
        return reader_for(self.ctx).full_name(self.address)

    # ---- silo
    @property
    def is_silo(self) -> Optional[bool]:
        value = self.field("Silo")
        return bool(value) if isinstance(value, int) else None

    @property
    def server_silo_globals(self) -> Value:
        return self.field("ServerSiloGlobals")

    @property
    def is_server_silo(self) -> Optional[bool]:
        if self.is_silo is None:
            return None
        globals_ = self.server_silo_globals
        return bool(self.is_silo and isinstance(globals_, int) and globals_)

    def container_id(self) -> Any:
        if not self.view.has("ContainerId"):
            return None
        raw = self.view.raw("ContainerId")
        if isinstance(raw, bytes) and not any(raw):
            return None                 # not a container: the GUID is all zero
        return guid_text(raw)

    # ---- relations
    def members(self, limit: int = MAX_JOB_MEMBERS) -> List[int]:
        """`_EPROCESS` addresses on `ProcessListHead` (through `EPROCESS.JobLinks`)."""
        end = WalkEnd()
        link = self.ctx.layouts.type("_EPROCESS").offset("JobLinks")
        found = [entry - link for entry in
                 walk_list(self.ctx.space, self.view.address_of("ProcessListHead"), end, limit,
                           budget=getattr(self.ctx, "budget", None))]
        note = end.note("job 0x%x ProcessListHead" % self.address)
        if note:
            self.notes.append(note)
        return found

    def children(self) -> List[int]:
        if not (self.view.has("ChildJobListHead") and self.view.has("SiblingJobLinks")):
            return []
        end = WalkEnd()
        link = self.view.type.offset("SiblingJobLinks")
        found = [entry - link for entry in
                 walk_list(self.ctx.space, self.view.address_of("ChildJobListHead"), end, MAX_JOB_CHILDREN,
                           budget=getattr(self.ctx, "budget", None))]
        note = end.note("job 0x%x ChildJobListHead" % self.address)
        if note:
            self.notes.append(note)
        return found

    @property
    def parent(self) -> Value:
        return self.field("ParentJob")

    def chain(self) -> List[int]:
        """This job, its parent, grandparent... up to the root (bounded, cycle-safe)."""
        out = [self.address]
        current = self.parent
        budget = getattr(self.ctx, "budget", None)
        while isinstance(current, int) and current and current not in out and len(out) < MAX_JOB_DEPTH:
            if budget is not None and not budget.take_entry():
                break
            out.append(current)
            current = Job(self.ctx, current).parent
        if isinstance(current, Fault):
            self.notes.append("job 0x%x: ParentJob chain stops at unreadable memory (%s)"
                              % (self.address, current))
        elif isinstance(current, int) and current in out:
            self.notes.append("job 0x%x: ParentJob chain loops at 0x%x" % (self.address, current))
        return out

    def record(self, with_members: bool = True) -> Dict[str, Any]:
        rec: Dict[str, Any] = {"address": self.address, "name": self.name()}
        for key, path in JOB_COUNTERS:
            rec[key] = self.field(path)
        flags, ui = rec["limit_flags"], rec["ui_restrictions"]
        rec["limit_names"] = bit_names(flags, JOB_LIMIT_FLAGS) if isinstance(flags, int) else []
        rec["ui_restriction_names"] = bit_names(ui, JOB_UI_LIMITS) if isinstance(ui, int) else []
        rec["affinity"] = self.field("Affinity.Bitmap[0]")
        rec["parent_job"] = self.parent
        rec["root_job"] = self.field("RootJob")
        rec["chain"] = self.chain()
        rec["children"] = self.children()
        rec["is_silo"] = self.is_silo
        rec["is_server_silo"] = self.is_server_silo
        rec["container_id"] = self.container_id()
        rec["server_silo_globals"] = self.server_silo_globals
        if with_members:
            rec["members"] = [member_record(self.ctx, address) for address in self.members()]
        rec["layout"] = self.ctx.layout_id
        return rec


def member_record(ctx: "KernelContext", address: int) -> Dict[str, Any]:
    from pykd_ext.kernel.process import Process
    process = Process(ctx, address)
    return {"address": address, "pid": process.pid, "name": process.name,
            "server_silo": process.field("ServerSilo")}


def process_silo(process: Any) -> Value:
    """The server silo a process runs in (`EPROCESS.ServerSilo`, Windows 10 1607+), None when the
    build has no such field or the process is in the host."""
    value = process.field("ServerSilo")
    return value if isinstance(value, Fault) or value else None


__all__ = ["JOB_LIMIT_FLAGS", "JOB_UI_LIMITS", "Job", "guid_text", "member_record", "process_silo"]
