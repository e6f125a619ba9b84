"""The owner line put above each match when a name matches several processes, and the
argument-less default of the per-object commands (the dump's crash context).

Why here: `token svchost.exe`, `job svchost.exe`, `teb svchost.exe` print one block per process;
without a line naming the process each block belongs to, three tokens are indistinguishable. The
line is the first line of WinDbg's `!process 0 0` block, on one line
(`PROCESS ffffb30c8a02d040  SessionId: 0  Cid: 0300  Image: svchost.exe`), so a reader who knows
`!process` recognises it. JSON records carry the same owner as `pid`, `process` (image name) and
`process_address`.
"""
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple

from pykd_ext.errors import PykdExtError
from pykd_ext.kernel.lookup import parse_spec
from pykd_ext.memory.faults import Fault

if TYPE_CHECKING:                        # imported when needed: named lookups never pay for it
    from pykd_ext.kernel.crash_context import CrashContext


def _text(value: Any) -> str:
    if isinstance(value, Fault):
        return value.marker
    return "?" if value is None else str(value)


def owner_line(process: Any) -> str:
    """`PROCESS <addr>  SessionId: <n|none>  Cid: <pid %04x>  Image: <name>`."""
    session = process.session_id
    pid = process.pid
    width = 2 * int(getattr(process.ctx, "pointer_size", 8) or 8)     # 8 hex digits on x86
    return "PROCESS %0*x  SessionId: %s  Cid: %s  Image: %s" % (
        width, process.address, session if isinstance(session, int) else ("none" if session is None else _text(session)),
        "%04x" % pid if isinstance(pid, int) else _text(pid), _text(process.name))


def owner_fields(process: Optional[Any]) -> Dict[str, Any]:
    """The owner as JSON record fields (None values when there is no owning process)."""
    if process is None:
        return {"pid": None, "process": None, "process_address": None}
    return {"pid": process.pid, "process": process.name, "process_address": process.address}


def names_many(spec: Optional[str], matches: List[Any]) -> bool:
    """Whether each match gets an owner line: the argument was an image name (which may match
    several processes) or several processes matched."""
    if len(matches) > 1:
        return True
    return bool(spec) and parse_spec(str(spec))[0] == "name"


def require_crash_context(ctx: Any, command: str) -> "CrashContext":
    """The dump's crash context, or a one-line error saying what to name instead."""
    from pykd_ext.kernel.crash_context import crash_context
    found = crash_context(ctx)
    if found is None:
        raise PykdExtError("%s: this target states no crash context (no triage thread, no processor's "
                           "current thread): name one" % command)
    return found


def crash_context_process(ctx: Any, command: str) -> Tuple[int, str, str]:
    """(the crash context process's `_EPROCESS` address, how it was found, the note saying so):
    what `eproc`, `job`, `token`, `peb` and `vad` show when given no process, like WinDbg's
    commands after opening a dump. One-line error when the context names no readable process."""
    crash = require_crash_context(ctx, command)
    if not crash.process:
        raise PykdExtError("%s: the crash context's thread 0x%x names no readable process" % (command, crash.thread))
    return crash.process, crash.found_by, crash.note


__all__ = ["crash_context_process", "names_many", "owner_fields", "owner_line", "require_crash_context"]
