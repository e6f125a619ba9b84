"""`pykd-ext token [NAME|PID|ADDRESS] [--thread TID|ADDRESS]`: an access token, like `!token`.

Without an argument: the primary token of the dump's crash context process. A name shared by
several processes shows each one's token under its owner line (`PROCESS ... Image: NAME`).

The argument names a process (its primary token, `EPROCESS.Token` with the fast-ref count masked)
or, when no process matches an address, a `_TOKEN` itself. `--thread` shows the impersonation
token of a thread instead. The WinDbg lines come first (windbg-output.md `!token`); decoded extras
(SID names, integrity level, elevation type, AppContainer package and capabilities, layout) follow
on extra lines.
"""
import argparse
from typing import Any, Callable, Dict, Iterator, List, Optional

from pykd_ext.commands.procview import add_context_notes, kernel_context, require, result_meta
from pykd_ext.commands.owner import crash_context_process, names_many, owner_fields, owner_line
from pykd_ext.errors import NotFoundError, PykdExtError
from pykd_ext.kernel.lookup import Finder, parse_spec
from pykd_ext.kernel.process import Process
from pykd_ext.kernel.token import Token, thread_impersonation
from pykd_ext.memory.faults import Fault
from pykd_ext.render.grid import Column, Result, Row

HELP = "an access token: user, groups, privileges, integrity (like !token)"
#: `--help` ends with these (issue 12); crash.dmp stands for any dump
EXAMPLES = [
    'token lsass.exe -t crash.dmp',
    'token --thread 0n1234 -t crash.dmp',
]

COLUMNS = [Column("pid", "PID", "int"), Column("process", "Process"), Column("address", "Token", "addr"),
           Column("user_sid", "User"), Column("integrity", "Integrity"),
           Column("token_type", "Type"), Column("authentication_id", "AuthId"),
           Column("session_id", "Sess", "int"), Column("elevation_type", "Elevation")]
#: `!token` trailer columns (windbg-output.md): labels padded to 27, second fields at 27.
TRAILER = 27
PRIV_ATTR_COLUMN = 50


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("what", nargs="?", metavar="NAME|PID|ADDRESS",
                        help="process image name, PID, _EPROCESS or _TOKEN address (default: the "
                             "primary token of the dump's crash context process)")
    parser.add_argument("--thread", metavar="TID|ADDRESS", help="a thread's impersonation token")


def _text(value: Any) -> str:
    if isinstance(value, Fault):
        return value.marker
    return "" if value is None else str(value)


def _short_enum(value: Any, prefix: str) -> str:
    text = _text(value)
    return text[len(prefix):] if text.startswith(prefix) else text


def _luid_spaced(text: Any) -> str:
    return _text(text).replace(",", ", ") if isinstance(text, str) else _text(text)


def token_lines(rec: Dict[str, Any]) -> List[str]:
    out = ["_TOKEN 0x%016x" % rec["address"], "TS Session ID: %s" % _hexnum(rec["session_id"])]
    user = rec["user"]
    out.append("User: %s" % (_text(user.get("sid")) if isinstance(user, dict) else _text(user)))
    out.append("User Groups:")
    groups = rec["groups"]
    if isinstance(groups, Fault):
        out.append(" %s" % groups.marker)
    else:
        for i, group in enumerate(groups):
            out.append(" %02x %s" % (i, _text(group["sid"])))
            out.append("    Attributes - %s" % " ".join(group["attribute_names"]))
    out.append("Primary Group: %s" % _text(rec["primary_group"]))
    out.append("Privs:")
    privs = rec["privileges"]
    if isinstance(privs, Fault):
        out.append(" %s" % privs.marker)
    else:
        for p in privs:
            attrs = [n for n, key in (("Enabled", "enabled"), ("Default", "enabled_by_default")) if p[key]]
            head = " %02d 0x%09x %s" % (p["value"], p["value"], p["name"])
            out.append((head.ljust(PRIV_ATTR_COLUMN - 1) + " Attributes - " + " ".join(attrs)).rstrip())
    out.append("Authentication ID:".ljust(TRAILER) + _text(rec["authentication_id"]))
    out.append("Impersonation Level:".ljust(TRAILER) + _short_enum(rec["impersonation_level"], "Security"))
    out.append("TokenType:".ljust(TRAILER) + _short_enum(rec["token_type"], "Token"))
    source = rec["source"]
    flags = rec["flags"]
    flag_text = "0x%x ( %s )" % (flags, " ".join(rec["flag_names"])) if isinstance(flags, int) else _text(flags)
    out.append(_two("Source: %s" % _text(source.get("name")), "TokenFlags: " + flag_text))
    out.append(_two("Token ID: %s" % _luid_low(rec["token_id"]),
                    "ParentToken ID: %s" % _luid_low(rec["parent_token_id"])))
    out.append("Modified ID:".ljust(TRAILER) + _luid_spaced(rec["modified_id"]))
    pointer = rec["restricted_sids_pointer"]
    out.append(_two("RestrictedSidCount: %s" % _text(rec["restricted_sid_count"]),
                    "RestrictedSids: " + ("0x%016x" % pointer if isinstance(pointer, int) else _text(pointer))))
    return out + extra_lines(rec)


def _two(first: str, second: str) -> str:
    """A trailer line with two fields: the second at column 27, or one space after a first field
    that runs past it (`RestrictedSidCount: <not in dump> RestrictedSids: ...`)."""
    return first + " " * max(1, TRAILER - len(first)) + second


def _hexnum(value: Any) -> str:
    return "%x" % value if isinstance(value, int) else _text(value)


def _luid_low(text: Any) -> str:
    """`Token ID: 3eb` prints the LUID's low part (and the high part only when non-zero)."""
    if not isinstance(text, str):
        return _text(text)
    high, _, low = text.strip("()").partition(",")
    return low if high in ("0", "") else "%s:%s" % (high, low)


def extra_lines(rec: Dict[str, Any]) -> List[str]:
    """Decoded extras, after the known `!token` lines."""
    out = []
    integrity = rec["integrity"]
    out.append("Integrity Level:".ljust(TRAILER) + "%s (%s)" % (_text(integrity), _text(rec["integrity_sid"])))
    out.append("Elevation Type:".ljust(TRAILER) + _text(rec["elevation_type"]))
    user = rec["user"]
    if isinstance(user, dict) and user.get("name"):
        out.append("User Name:".ljust(TRAILER) + user["name"])
    groups = rec["groups"]
    if isinstance(groups, list):
        named = [(i, g) for i, g in enumerate(groups) if g.get("name")]
        if named:
            out.append("Group Names:")
            for i, group in named:
                out.append(" %02x %s" % (i, group["name"]))
    restricted = rec["restricted_sids"]
    if isinstance(restricted, list) and restricted:
        out.append("Restricted SIDs:")
        for i, entry in enumerate(restricted):
            out.append(" %02x %s%s" % (i, _text(entry["sid"]), " (%s)" % entry["name"] if entry.get("name") else ""))
    out.append("AppContainer:".ljust(TRAILER) + ("yes" if rec["appcontainer"] else "no"))
    package = rec["package"]
    if isinstance(package, dict):
        out.append("Package SID:".ljust(TRAILER) + _text(package.get("sid")))
    caps = rec["capabilities"]
    if isinstance(caps, list) and caps:
        out.append("Capabilities:")
        for i, cap in enumerate(caps):
            out.append(" %02x %s%s" % (i, _text(cap["sid"]), "  %s" % cap["name"] if cap.get("name") else ""))
            out.append("    Attributes - %s" % " ".join(cap["attribute_names"]))
    out.append("Layout:".ljust(TRAILER) + _text(rec["layout"]))
    return out


def _flat(rec: Dict[str, Any], owner: Optional[Any]) -> Dict[str, Any]:
    user = rec["user"]
    rec = dict(rec)
    rec["user_sid"] = user.get("sid") if isinstance(user, dict) else user
    rec.update(owner_fields(owner))
    return rec


def run(session: Any, args: argparse.Namespace) -> Result:
    ctx = kernel_context(session)
    finder = Finder(ctx)
    targets: List[Any] = []      # (token address, owner process or None, how)
    notes: List[str] = []
    owners = False               # an owner line above each token (a name matching many processes)
    if args.thread:
        for thread in require(finder.threads(args.thread), args.thread, "thread"):
            info = thread_impersonation(ctx, thread)
            token = info.get("token")
            if not isinstance(token, int) or not token:
                raise PykdExtError("thread %s is not impersonating" % args.thread)
            targets.append((token, None, "impersonation token of thread 0x%x" % thread.address))
    elif args.what is None:
        # like `!token` after opening a dump: the crash context's process (commands/owner.py)
        address, found_by, note = crash_context_process(ctx, "token")
        notes.append(note)
        process = Process(ctx, address, [found_by])
        token = process.token
        if isinstance(token, int) and token:
            targets.append((token, process, "primary token"))
        else:
            notes.append("process %s has no readable token (%s)" % (process.pid, _text(token)))
    else:
        processes = finder.processes(args.what)
        owners = names_many(args.what, processes)
        if processes:
            for process in processes:
                token = process.token
                if not isinstance(token, int) or not token:
                    notes.append("process %s has no readable token (%s)" % (process.pid, _text(token)))
                    continue
                targets.append((token, process, "primary token"))
        else:
            owners = False
            kind, value = parse_spec(args.what)
            if kind != "address" or not Token(ctx, int(value)).readable:
                raise NotFoundError("no process or token matches %r" % args.what)
            targets.append((int(value), None, "token address"))

    def rows() -> Iterator[Row]:
        for index, (address, owner, how) in enumerate(targets):
            token = Token(ctx, address)
            if not token.readable:
                notes.append("the _TOKEN at 0x%x (%s) is not in this dump: its fields show <not in dump>"
                             % (address, how))
            rec = token.record()
            rec["found_as"] = how
            head = owner_line(owner) if owners and owner is not None else None
            yield Row(_flat(rec, owner), _row_text(rec, separate=index > 0, head=head))
        add_context_notes(ctx, notes)

    return Result("token", COLUMNS, rows=rows(), meta=result_meta(ctx), notes=notes)


def _row_text(rec: Dict[str, Any], separate: bool, head: Optional[str] = None) -> Callable[[], List[str]]:
    return lambda: ([""] if separate else []) + ([head] if head else []) + token_lines(rec)
