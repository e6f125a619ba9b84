"""One-line summaries of what a process holds (token, handles, job/silo) for `eproc -v`, and the
impersonation line of `ethread`/`threads`.

Why here: `eproc`'s WinDbg-shaped block belongs to the process commands; the summaries are the
decoders of this issue (token, handle table, job) reduced to a line each, so the process commands
call one function and never learn those structures.
"""
from typing import TYPE_CHECKING, Any, Dict, List

from pykd_ext.kernel.handles import scan_handle_table
from pykd_ext.kernel.job import Job, process_silo
from pykd_ext.kernel.objects import reader_for
from pykd_ext.kernel.sids import integrity_level
from pykd_ext.kernel.token import Token, thread_impersonation
from pykd_ext.memory.faults import Fault

if TYPE_CHECKING:
    from pykd_ext.kernel.context import KernelContext

LABEL_WIDTH = 26


def _line(label: str, text: str) -> str:
    return "    " + (label + ":").ljust(LABEL_WIDTH) + text


def _hex(value: Any) -> str:
    if isinstance(value, Fault):
        return value.marker
    return "%016x" % value if isinstance(value, int) else str(value)


def token_summary(ctx: "KernelContext", process: Any) -> str:
    address = process.token
    if not isinstance(address, int) or not address:
        return _hex(address) if isinstance(address, Fault) else "none"
    token = Token(ctx, address)
    if not token.readable:
        return "%s (not in dump)" % _hex(address)
    user = token.user
    user_text = user.get("sid") if isinstance(user, dict) else user
    if isinstance(user_text, Fault):
        user_text = user_text.marker
    elif user_text is None:
        user_text = "(no user SID)"
    name = user.get("name") if isinstance(user, dict) else None
    integrity = token.integrity_sid()
    level = integrity_level(integrity) if isinstance(integrity, str) else None
    privileges = token.privileges()
    enabled = sum(1 for p in privileges if p["enabled"]) if isinstance(privileges, list) else "?"
    present = len(privileges) if isinstance(privileges, list) else "?"
    text = "%s %s%s" % (_hex(address), user_text, " (%s)" % name if name else "")
    text += ", %s integrity" % (level or "unknown")
    text += ", %s/%s privileges enabled" % (enabled, present)
    if token.view.has("Package") and isinstance(token.field("Package"), int) and token.field("Package"):
        text += ", AppContainer"
    return text


def handles_summary(ctx: "KernelContext", process: Any) -> str:
    table = process.field("ObjectTable")
    if not isinstance(table, int) or not table:
        return _hex(table) if isinstance(table, Fault) else "none (no handle table)"
    scan = scan_handle_table(ctx, table)
    if scan.invalid_level is not None:
        return "%s (invalid TableCode level %d)" % (_hex(table), scan.invalid_level)
    if scan.levels is None:
        return "%s (table not in dump: %s)" % (_hex(table), scan.fault)
    objects = reader_for(ctx)
    types: Dict[str, int] = {}
    for _handle, pointer in scan.entries:
        kind = objects.header(objects.body_of(pointer)).type_name
        key = kind if isinstance(kind, str) else "?"
        types[key] = types.get(key, 0) + 1
    top = sorted(types.items(), key=lambda kv: (-kv[1], kv[0]))[:6]
    text = "%s: %d in use, TableCode level %d" % (_hex(table), len(scan.entries), scan.levels)
    if top:
        text += " (" + ", ".join("%s %d" % kv for kv in top) + ")"
    if scan.fault is not None:
        text += "; %d page(s) not in dump" % max(scan.fault_count, 1)
    return text


def job_summary(ctx: "KernelContext", process: Any) -> str:
    address = process.job
    if not isinstance(address, int) or not address:
        return _hex(address) if isinstance(address, Fault) else "none"
    job = Job(ctx, address)
    if not job.readable:
        return "%s (not in dump)" % _hex(address)
    chain = job.chain()
    active = job.field("ActiveProcesses")
    text = "%s: %s active process(es)" % (_hex(address), active if isinstance(active, int) else "?")
    flags = job.field("LimitFlags")
    if isinstance(flags, int):
        text += ", LimitFlags 0x%x" % flags
    if len(chain) > 1:
        text += ", nested %d deep (root %s)" % (len(chain), _hex(chain[-1]))
    if job.is_server_silo:
        text += ", server silo %s" % (job.container_id() or "")
    elif job.is_silo:
        text += ", silo"
    return text


def summary_lines(ctx: "KernelContext", process: Any) -> List[str]:
    """`eproc -v` extra lines: Token / Handles / Job (and the server silo when the process is in one)."""
    lines = [_line("Token summary", token_summary(ctx, process)),
             _line("Handles summary", handles_summary(ctx, process)),
             _line("Job summary", job_summary(ctx, process))]
    silo = process_silo(process)
    if silo is not None:
        lines.append(_line("Server silo", _hex(silo)))
    return lines


def impersonation_line(ctx: "KernelContext", thread: Any) -> str:
    """`!thread`'s line: `Impersonation token:  ffff... (Level Impersonation)` (the
    `_SECURITY_IMPERSONATION_LEVEL` name without its `Security` prefix, windbg-output.md) or
    `Not impersonating`; an EffectiveOnly impersonation says so after the level."""
    info = thread_impersonation(ctx, thread)
    token = info.get("token")
    if isinstance(token, int) and token:
        level = info.get("level")
        if isinstance(level, str) and level.startswith("Security"):
            level = level[len("Security"):]
        extra = ", EffectiveOnly" if info.get("effective_only") else ""
        return "Impersonation token:  %s (Level %s%s)" % (_hex(token), level, extra)
    if info.get("active") is None and token is None:
        return "Impersonation unknown (this layout has no ActiveImpersonationInfo)"
    return "Not impersonating"


__all__ = ["handles_summary", "impersonation_line", "job_summary", "summary_lines", "token_summary"]
