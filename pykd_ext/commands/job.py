"""`pykd-ext job NAME|PID|ADDRESS`: a job object (and silo), like `!job <job> 2`.

The argument names a process (its `EPROCESS.Job`) or a `_EJOB` address. The `!job` lines come
first (windbg-output.md: counters with values at column 27, then the member processes); decoded
extras follow: LimitFlags and UI restrictions by name, the `ParentJob` nesting chain (Windows 8+),
child jobs, and for silos whether it is a server silo, its container id and which processes run
in it (`EPROCESS.ServerSilo`).
"""
import argparse
from typing import Any, Callable, Dict, Iterator, List

from pykd_ext.commands.procview import add_context_notes, kernel_context, result_meta
from pykd_ext.errors import PykdExtError
from pykd_ext.kernel.job import Job, process_silo
from pykd_ext.kernel.lookup import Finder, parse_spec
from pykd_ext.kernel.processes import all_processes
from pykd_ext.memory.faults import Fault
from pykd_ext.render.grid import Column, Result, Row

HELP = "a job object: counters, limits, members, nesting, silos (like !job)"

COLUMNS = [Column("address", "Job", "addr"), Column("name", "Name"),
           Column("active_processes", "Active", "int"), Column("total_processes", "Total", "int"),
           Column("limit_flags", "LimitFlags", "hex"), Column("limit_names", "Limits"),
           Column("parent_job", "Parent", "addr"), Column("is_silo", "Silo", "bool"),
           Column("is_server_silo", "ServerSilo", "bool"), Column("container_id", "ContainerId")]
VALUE_COLUMN = 27
#: `!job` counter lines (windbg-output.md), by record key.
WINDBG_COUNTERS = (("TotalPageFaultCount", "total_page_fault_count"), ("TotalProcesses", "total_processes"),
                   ("ActiveProcesses", "active_processes"),
                   ("TotalTerminatedProcesses", "total_terminated_processes"), ("LimitFlags", "limit_flags"),
                   ("MinimumWorkingSetSize", "minimum_working_set"),
                   ("MaximumWorkingSetSize", "maximum_working_set"),
                   ("ActiveProcessLimit", "active_process_limit"), ("PriorityClass", "priority_class"),
                   ("UIRestrictionsClass", "ui_restrictions"))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("what", metavar="NAME|PID|ADDRESS", help="process name/PID/_EPROCESS, or an _EJOB address")


def _val(value: Any) -> str:
    if isinstance(value, Fault):
        return value.marker
    if isinstance(value, int):
        return "0x%x" % value
    return "" if value is None else str(value)


def _addr(value: Any) -> str:
    if isinstance(value, Fault):
        return value.marker
    return "%016x" % value if isinstance(value, int) else str(value)


def job_lines(rec: Dict[str, Any], silo_members: List[Dict[str, Any]]) -> List[str]:
    out = ["Job at %s" % _addr(rec["address"])]
    for label, key in WINDBG_COUNTERS:
        out.append(("  %s" % label).ljust(VALUE_COLUMN) + _val(rec.get(key)))
    out.append("  Processes assigned to this job:")
    for member in rec.get("members") or []:
        pid = member["pid"]
        out.append("    PROCESS %s  Cid: %s  Image: %s"
                   % (_addr(member["address"]), "%04x" % pid if isinstance(pid, int) else _val(pid), _val(member["name"])))
    # decoded extras
    if rec.get("name"):
        out.append("  Name:".ljust(VALUE_COLUMN) + _val(rec["name"]))
    out.append("  Limits:".ljust(VALUE_COLUMN) + (" ".join(rec["limit_names"]) or "none"))
    if rec.get("ui_restriction_names"):
        out.append("  UI restrictions:".ljust(VALUE_COLUMN) + " ".join(rec["ui_restriction_names"]))
    chain = rec.get("chain") or []
    if rec.get("parent_job") is not None:
        out.append("  Parent job:".ljust(VALUE_COLUMN) + (_addr(rec["parent_job"]) if rec["parent_job"] else "none"))
        out.append("  Nesting chain:".ljust(VALUE_COLUMN) + " -> ".join(_addr(j) for j in chain))
    children = rec.get("children") or []
    if children:
        out.append("  Child jobs:".ljust(VALUE_COLUMN) + " ".join(_addr(c) for c in children))
    if rec.get("is_silo") is None:
        out.append("  Silo:".ljust(VALUE_COLUMN) + "n/a (this build has no silos)")
    else:
        kind = "server silo" if rec.get("is_server_silo") else ("silo" if rec.get("is_silo") else "no")
        out.append("  Silo:".ljust(VALUE_COLUMN) + kind)
        if rec.get("is_silo"):
            out.append("  Container id:".ljust(VALUE_COLUMN) + _val(rec.get("container_id")))
            out.append("  ServerSiloGlobals:".ljust(VALUE_COLUMN) + _addr(rec.get("server_silo_globals")))
            out.append("  Processes in this silo:".ljust(VALUE_COLUMN) + (", ".join(
                "%s(%s)" % (_val(m["name"]), m["pid"]) for m in silo_members) or "none"))
    out.append("  Layout:".ljust(VALUE_COLUMN) + _val(rec.get("layout")))
    return out


def run(session: Any, args: argparse.Namespace) -> Result:
    ctx = kernel_context(session)
    finder = Finder(ctx)
    jobs: List[int] = []
    notes: List[str] = []
    processes = finder.processes(args.what)
    if processes:
        for process in processes:
            job = process.job
            if isinstance(job, int) and job:
                if job not in jobs:
                    jobs.append(job)
            else:
                notes.append("process %s (%s) is not in a job" % (_val(process.pid), _val(process.name)))
    else:
        kind, value = parse_spec(args.what)
        if kind != "address" or not Job(ctx, int(value)).readable:
            raise PykdExtError("no process or job matches %r" % args.what)
        jobs.append(int(value))
    if not jobs:
        raise PykdExtError("%s: not in a job" % args.what)

    def rows() -> Iterator[Row]:
        everyone = None
        for index, address in enumerate(jobs):
            job = Job(ctx, address)
            rec = job.record()
            notes.extend(job.notes)
            silo_members: List[Dict[str, Any]] = []
            if rec.get("is_silo"):
                if everyone is None:
                    everyone = all_processes(ctx).ordered()
                silo_members = [{"address": p.address, "pid": p.pid, "name": p.name}
                                for p in everyone if process_silo(p) == address]
            rec["silo_processes"] = silo_members
            yield Row(rec, _row_text(rec, silo_members, separate=index > 0))
        add_context_notes(ctx, notes)

    return Result("job", COLUMNS, rows=rows(), meta=result_meta(ctx), notes=notes)


def _row_text(rec: Dict[str, Any], silo_members: List[Dict[str, Any]], separate: bool) -> Callable[[], List[str]]:
    return lambda: ([""] if separate else []) + job_lines(rec, silo_members)
