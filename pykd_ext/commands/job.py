"""`pykd-ext job [NAME|PID|ADDRESS]`: a job object (and silo), like `!job <job> 2`.

Without an argument: the job of the dump's crash context process. A process in no job (System)
gets its owner line and "(not in a job)", not an error. A name shared by several processes shows
each under its owner line, in a job or not.

The argument names a process (its `EPROCESS.Job`) or a `_EJOB` address. The `!job` lines come
first (windbg-output.md: counters with values at column 27, then the member processes); decoded
extras follow: LimitFlags and UI restrictions by name, the `ParentJob` nesting chain (Windows 8+),
child jobs, and for silos whether it is a server silo, its container id and which processes run
in it (`EPROCESS.ServerSilo`).
"""
import argparse
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

from pykd_ext.commands.owner import crash_context_process, names_many, owner_fields, owner_line
from pykd_ext.commands.procview import add_context_notes, kernel_context, result_meta
from pykd_ext.errors import NotFoundError
from pykd_ext.kernel.job import Job, process_silo
from pykd_ext.kernel.lookup import Finder, parse_spec
from pykd_ext.kernel.process import Process
from pykd_ext.kernel.processes import all_processes
from pykd_ext.memory.faults import Fault
from pykd_ext.render.grid import Column, Result, Row

HELP = "a job object: counters, limits, members, nesting, silos (like !job)"
#: `--help` ends with these (issue 12); crash.dmp stands for any dump
EXAMPLES = [
    'job -t crash.dmp',
    'job explorer.exe -t crash.dmp',
]

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
    parser.add_argument("what", nargs="?", metavar="NAME|PID|ADDRESS",
                        help="process name/PID/_EPROCESS, or an _EJOB address (default: the job of "
                             "the dump's crash context process)")


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
    # H11: `!job`'s security limits; _EJOB lost SecurityLimitFlags/Token in Windows Vista (Microsoft
    # Learn, "JOBOBJECT_SECURITY_LIMIT_INFORMATION": support removed starting with Vista), so a
    # build without the fields says so instead of printing a made-up 0
    for label, key, shown in (("SecurityLimitFlags", "security_limit_flags", _val),
                              ("Token", "job_token", _addr)):
        value = rec.get(key)
        out.append(("  %s" % label).ljust(VALUE_COLUMN)
                   + ("n/a (no _EJOB.%s in this build)" % label if value is None else shown(value)))
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
    notes: List[str] = []
    # (job address or None, owner process or None): one entry per matched process, so a name
    # shared by several processes shows each under its owner line, jobs or not
    targets: List[Tuple[Optional[int], Any]] = []
    owners = False
    if args.what is None:
        # like `!job` after opening a dump: the crash context process's job (commands/owner.py)
        address, found_by, note = crash_context_process(ctx, "job")
        notes.append(note)
        processes = [Process(ctx, address, [found_by])]
        owners = True
    else:
        processes = finder.processes(args.what)
        owners = names_many(args.what, processes)
    if processes:
        for process in processes:
            job = process.job
            if isinstance(job, int) and job:
                targets.append((job, process))
            else:
                notes.append("process %s (%s) is not in a job" % (_val(process.pid), _val(process.name)))
                targets.append((None, process))      # the usual "none" answer, not an error
    else:
        kind, value = parse_spec(args.what)
        if kind != "address" or not Job(ctx, int(value)).readable:
            raise NotFoundError("no process or job matches %r" % args.what)
        targets.append((int(value), None))

    def rows() -> Iterator[Row]:
        everyone = None
        shown: List[int] = []
        for index, (address, owner) in enumerate(targets):
            head = [owner_line(owner)] if owner is not None and (owners or address is None) else []
            if address is None:
                rec: Dict[str, Any] = dict(owner_fields(owner), address=None, in_job=False)
                yield Row(rec, _row_text(rec, [], separate=index > 0, head=head + ["  (not in a job)"]))
                continue
            if address in shown and not owners:
                continue
            shown.append(address)
            job = Job(ctx, address)
            rec = job.record()
            for key, path in (("security_limit_flags", "SecurityLimitFlags"), ("job_token", "Token")):
                if job.view.has(path):                 # H11: pre-Vista _EJOB fields, when a layout has them
                    rec[key] = job.field(path)
            notes.extend(n for n in job.notes if n not in notes)
            silo_members: List[Dict[str, Any]] = []
            if rec.get("is_silo"):
                if everyone is None:
                    everyone = all_processes(ctx).ordered()
                silo_members = [{"address": p.address, "pid": p.pid, "name": p.name}
                                for p in everyone if process_silo(p) == address]
            rec["silo_processes"] = silo_members
            rec.update(owner_fields(owner))
            rec["in_job"] = True
            yield Row(rec, _row_text(rec, silo_members, separate=index > 0, head=head))
        add_context_notes(ctx, notes)

    return Result("job", COLUMNS, rows=rows(), meta=result_meta(ctx), notes=notes)


def _row_text(rec: Dict[str, Any], silo_members: List[Dict[str, Any]], separate: bool,
              head: Optional[List[str]] = None) -> Callable[[], List[str]]:
    if rec.get("address") is None:
        return lambda: ([""] if separate else []) + list(head or [])
    return lambda: ([""] if separate else []) + list(head or []) + job_lines(rec, silo_members)
