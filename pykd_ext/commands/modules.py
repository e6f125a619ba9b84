"""`pykd-ext modules [NAME|PID|ADDRESS] [--order load|memory|init]`: a process's loaded modules.

The loader's lists (`PEB.Ldr`): base, size, entry point, name, full path, PE timestamp, load time,
and which of the three lists hold each module (a DLL unlinked from one list shows up). WoW64
processes list their 32-bit modules too (`bitness` 32). Without an argument on a kernel target:
every listed process (like Volatility's `windows.dlllist`). On user-mode dumps the dump's own
module list (MINIDUMP_MODULE / USERDU64 module table) is compared with the loader's, and
differences are noted.
"""
import argparse
from typing import Any, Callable, Dict, Iterator, List, Optional

from pykd_ext.commands.procview import add_session_notes
from pykd_ext.commands.peb import add_symbols32, hx, process_title, stamp_text, user_meta
from pykd_ext.kernel.modules import LIST_NAMES, MODULE_KEYS
from pykd_ext.kernel.peb import PebDecoding, decode_user_process
from pykd_ext.kernel.userspace import UserProcess, is_user_dump, user_processes
from pykd_ext.memory.faults import Fault
from pykd_ext.render.grid import Column, Result, Row

HELP = "loaded modules from the PEB loader lists (InLoad/InMemory/InInit order), 64- and 32-bit"
#: `--help` ends with these (issue 12); crash.dmp stands for any dump
EXAMPLES = [
    'modules lsass.exe -t crash.dmp',
    'modules 0n636 --order memory -t crash.dmp',
]

COLUMNS = [
    Column("pid", "PID", "int"), Column("process_name", "Process"), Column("bitness", "Bits", "int"),
    Column("base", "Base", "addr"), Column("size", "Size", "hex"), Column("name", "Name"),
    Column("path", "Path"), Column("load_time", "LoadTime"), Column("lists", "Lists"),
]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("process", nargs="?", metavar="NAME|PID|ADDRESS",
                        help="image name, PID or _EPROCESS address (default: every process; "
                             "user dumps: the dump's process)")
    parser.add_argument("--order", choices=LIST_NAMES, default="load",
                        help="which loader list orders the output (default: load)")
    add_symbols32(parser)


def _records(user: UserProcess, decoding: PebDecoding, order: str) -> List[Dict[str, Any]]:
    out: List[Dict[str, Any]] = []
    sub = decoding.display.get("peb32")
    for listing in decoding.listings():
        chosen = listing.in_order(order)
        rest = [m for m in listing.modules if order not in m["lists"]]
        for module in chosen + rest:
            rec = {key: module.get(key) for key in MODULE_KEYS}
            rec.update(pid=user.pid, process_name=user.name,
                       layout=decoding.record.get("layout") if listing.bitness != 32 or sub is None
                       else sub.record.get("layout"))
            out.append(rec)
    return out


def compare_with_dump(session: Any, records: List[Dict[str, Any]]) -> List[str]:
    """Notes where the user dump's own module list and the loader lists disagree."""
    listed = [m for m in (session.target.info().extra or {}).get("modules") or [] if isinstance(m, dict)]
    if not listed:
        return []
    ours = {r["base"]: r for r in records if isinstance(r.get("base"), int)}
    notes: List[str] = []
    missing = [m for m in listed if m.get("base") not in ours]
    if missing:
        notes.append("%d module(s) of the dump's module list are not on the loader lists: %s"
                     % (len(missing), ", ".join(str(m.get("name")) for m in missing[:8])))
    theirs = {m.get("base") for m in listed}
    extra = [r for r in records if r.get("base") not in theirs]
    if extra:
        notes.append("%d loader-list module(s) are not in the dump's module list: %s"
                     % (len(extra), ", ".join(str(r.get("name")) for r in extra[:8])))
    sized = [m for m in listed if m.get("base") in ours and isinstance(m.get("size"), int)
             and ours[m["base"]].get("size") != m["size"]]
    if sized:
        notes.append("%d module(s) have a different size in the dump's module list: %s"
                     % (len(sized), ", ".join(str(m.get("name")) for m in sized[:8])))
    if not notes:
        notes.append("the dump's module list (%d modules) agrees with the loader lists" % len(listed))
    return notes


def run(session: Any, args: argparse.Namespace) -> Result:
    spec: Optional[str] = getattr(args, "process", None)
    order = getattr(args, "order", "load") or "load"
    users = user_processes(session, spec, getattr(args, "symbols32", None), all_when_empty=True)
    user_dump = is_user_dump(session.target)
    notes: List[str] = []

    def rows() -> Iterator[Row]:
        """Streamed: one process's loader lists decoded and printed at a time."""
        kept: List[Dict[str, Any]] = []        # a user dump's one process: compared at the end
        for index, user in enumerate(users):
            decoding = decode_user_process(user)
            records = _records(user, decoding, order)
            for note in decoding.notes:
                if note not in notes:
                    notes.append(note)
            yield Row(None, _title_text(decoding, separate=index > 0), links=_links(decoding))
            if _has_modules(decoding):
                for rec in records:
                    yield Row(rec, _module_text(rec))
            else:
                for rec in records:
                    yield Row(rec)
            if user_dump:
                kept.extend(records)
        if user_dump:
            notes.extend(compare_with_dump(session, kept))
        add_session_notes(session, notes)

    return Result("modules", COLUMNS, rows=rows(), meta=user_meta(session, users), notes=notes)


def _has_modules(decoding: PebDecoding) -> bool:
    peb = decoding.record.get("address")
    mods = decoding.record.get("modules")
    return not isinstance(peb, Fault) and not isinstance(mods, Fault) and isinstance(peb, int) and bool(peb)


def _links(decoding: PebDecoding) -> Dict[str, Any]:
    process = decoding.record.get("process")
    return {"process": process} if isinstance(process, int) else {}


def _title_text(decoding: PebDecoding, separate: bool) -> Callable[[], List[str]]:
    def text() -> List[str]:
        lines = [""] if separate else []
        lines.append(process_title(decoding.record))
        peb = decoding.record.get("address")
        mods = decoding.record.get("modules")
        fault = peb if isinstance(peb, Fault) else mods
        if isinstance(fault, Fault):
            lines.append("    modules: %s" % fault.marker)
        elif not isinstance(peb, int) or not peb:
            lines.append("    no PEB (no user address space)")
        else:
            lines.append("    %4s %16s %8s %-29s %-17s %s" % ("Bits", "Base", "Size", "TimeStamp", "Lists", "Path"))
        return lines
    return text


def _module_text(rec: Dict[str, Any]) -> Callable[[], List[str]]:
    def text() -> List[str]:
        path = rec.get("path")
        return ["    %4s %16s %8s %s %-17s %s" % (
            rec.get("bitness"), hx(rec.get("base")), hx(rec.get("size")),
            stamp_text(rec.get("time_date_stamp")), ",".join(rec.get("lists") or []),
            path if isinstance(path, str) else hx(path))]
    return text
