"""`pykd-ext peb [NAME|PID|ADDRESS]`: a process environment block, like WinDbg's `!peb`.

Kernel targets: the named process's PEB read through its own page tables (`--all`: every listed
process; no argument: the crash context's process, as `!peb` after opening a dump; a name shared by
several processes: each, under its `PROCESS` title line). User-mode dumps: the dump's process (no argument needed). WoW64 processes show the
32-bit PEB too. Fields whose user pages are not in the dump show `<not in dump>`, with a note;
the command never fails because user memory is missing.
"""
import argparse
import time
from collections import deque
from typing import Any, Callable, Dict, Iterator, List, Optional

from pykd_ext.commands.owner import crash_context_process
from pykd_ext.commands.procview import add_session_notes, kernel_context
from pykd_ext.kernel.peb import decode_user_process
from pykd_ext.kernel.userspace import UserProcess, is_user_dump, user_layouts, user_processes
from pykd_ext.memory.faults import Fault
from pykd_ext.render.grid import Column, Result, Row

HELP = "process environment block: image, loader lists, parameters, environment (like !peb)"
#: `--help` ends with these (issue 12); crash.dmp stands for any dump
EXAMPLES = [
    'peb lsass.exe -t crash.dmp',
    'peb --all -f jsonl -t crash.dmp',
]

COLUMNS = [
    Column("pid", "PID", "int"), Column("name", "Name"), Column("address", "PEB", "addr"),
    Column("bitness", "Bits", "int"), Column("image_base", "ImageBase", "addr"),
    Column("being_debugged", "Dbg", "bool"), Column("module_count", "Mods", "int"),
    Column("command_line", "CommandLine"),
]


def add_symbols32(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--symbols32", metavar="ISF",
                        help="x86 ISF symbol table for the 32-bit PEB/TEB/loader structures of "
                             "WoW64 processes (default: installed x86 layouts)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("process", nargs="?", metavar="NAME|PID|ADDRESS",
                        help="image name, PID or _EPROCESS address (default: the dump's crash context "
                             "process; user dumps: the dump's process)")
    parser.add_argument("--all", action="store_true", help="every listed process (kernel targets)")
    add_symbols32(parser)


# --------------------------------------------------------------------------- shared helpers

def user_meta(session: Any, users: List[UserProcess]) -> Dict[str, Any]:
    """Result metadata: which layouts decoded the rows and how they were chosen."""
    layouts = users[0].layouts if users else user_layouts(session)
    info = session.target.info()
    meta: Dict[str, Any] = {
        "layout": layouts.ident() if hasattr(layouts, "ident") else {"build_id": layouts.build_id},
        "layout_label": getattr(layouts, "label", layouts.build_id),
        "layout_choice": {k: v for k, v in (getattr(layouts, "choice", {}) or {}).items()
                          if k in ("method", "reason", "warnings", "chosen")},
        "target": info.path, "dump_type": info.dump_type, "user_dump": is_user_dump(session.target),
    }
    l32 = next((u.layouts32 for u in users if u.layouts32 is not None), None)
    if l32 is not None:
        meta["layout32"] = {"label": l32.label, "build_id": l32.build_id, "note": l32.note}
    return meta


def hx(value: Any, width: int = 0) -> str:
    """Hex without 0x (WinDbg), the fault marker, or `?` for unknown."""
    if isinstance(value, Fault):
        return value.marker
    if isinstance(value, bool):
        return "Yes" if value else "No"
    if not isinstance(value, int):
        return "?" if value is None else str(value)
    return "%0*x" % (width, value) if width else "%x" % value


def yes_no(value: Any) -> str:
    if isinstance(value, Fault):
        return value.marker
    if value is None:
        return "?"
    return "Yes" if value else "No"


def quoted(value: Any) -> str:
    if isinstance(value, Fault):
        return "< Name not readable: %s >" % value.reason
    if value is None:
        return "< Name not readable >"
    return "'%s'" % value


def stamp_text(stamp: Any) -> str:
    """A PE TimeDateStamp as WinDbg's module list prints it: `5b9d5f7a Sep 15 21:34:18 2018`."""
    if not isinstance(stamp, int):
        return "%-8s %-20s" % ("?", "")
    try:
        when = time.strftime("%b %d %H:%M:%S %Y", time.gmtime(stamp))
    except (OverflowError, ValueError, OSError):
        when = "?"
    return "%08x %-20s" % (stamp, when)


def peb_lines(rec: Dict[str, Any], display: Dict[str, Any], title: str = "PEB") -> List[str]:
    """WinDbg `!peb` text for one decoded PEB record."""
    width = 16 if rec.get("bitness") == 64 else 8
    lines = ["%s at %s" % (title, hx(rec.get("address"), width if isinstance(rec.get("address"), int) else 0))]
    if not isinstance(rec.get("address"), int) or not rec.get("address"):
        if rec.get("address") == 0:
            lines.append("    (no PEB: the process has no user-mode address space, as System, minimal, "
                         "pico and exited processes)")
        return lines
    put = lines.append
    put("    InheritedAddressSpace:    %s" % yes_no(rec.get("inherited_address_space")))
    put("    ReadImageFileExecOptions: %s" % yes_no(rec.get("read_image_file_exec_options")))
    put("    BeingDebugged:            %s" % yes_no(rec.get("being_debugged")))
    put("    ImageBaseAddress:         %s" % hx(rec.get("image_base"), width))
    put("    NtGlobalFlag:             %s" % hx(rec.get("nt_global_flag")))
    put("    Ldr                       %s" % hx(rec.get("ldr"), width))
    put("    Ldr.Initialized:          %s" % yes_no(rec.get("ldr_initialized")))
    heads = display.get("list_heads") or {}
    for member in ("InInitializationOrderModuleList", "InLoadOrderModuleList", "InMemoryOrderModuleList"):
        if member in heads:
            flink, blink = heads[member]
            put("    Ldr.%-32s %s . %s" % (member + ":", hx(flink, width), hx(blink, width)))
    mods = rec.get("modules")
    if isinstance(mods, list) and mods:
        put("            Base TimeStamp                     Module")
        for m in mods:
            path = m.get("path")
            put("    %12s %s %s" % (hx(m.get("base")), stamp_text(m.get("time_date_stamp")),
                                    path if isinstance(path, str) else hx(path)))
    elif isinstance(mods, Fault):
        put("    Ldr lists:                %s" % mods.marker)
    put("    SubSystemData:     %s" % hx(rec.get("sub_system_data"), width))
    put("    ProcessHeap:       %s" % hx(rec.get("process_heap"), width))
    put("    ProcessParameters: %s" % hx(rec.get("process_parameters"), width))
    put("    CurrentDirectory:  %s" % quoted(rec.get("current_directory")))
    put("    WindowTitle:  %s" % quoted(rec.get("window_title")))
    put("    ImageFile:    %s" % quoted(rec.get("image_path")))
    put("    CommandLine:  %s" % quoted(rec.get("command_line")))
    put("    DllPath:      %s" % quoted(rec.get("dll_path")))
    put("    Environment:  %s" % hx(rec.get("environment_address"), width))
    env = rec.get("environment")
    if isinstance(env, list):
        for item in env:
            put("        %s" % item)
    elif isinstance(env, Fault):
        put("        %s" % env.marker)
    # decoded extras beyond WinDbg's lines
    put("    NumberOfHeaps:     %s" % _dec(rec.get("number_of_heaps")))
    put("    OSVersion:         %s.%s.%s  PlatformId %s" % (_dec(rec.get("os_major")), _dec(rec.get("os_minor")),
                                                          _dec(rec.get("os_build")), _dec(rec.get("os_platform_id"))))
    put("    SessionId:         %s" % _dec(rec.get("session_id")))
    put("    Layout:            %s" % rec.get("layout"))
    return lines


def _dec(value: Any) -> str:
    if isinstance(value, Fault):
        return value.marker
    return "?" if value is None else str(value)


def process_title(rec: Dict[str, Any]) -> str:
    proc = rec.get("process")
    where = " EPROCESS %x" % proc if isinstance(proc, int) else ""
    return "PROCESS %s  PID %s%s  (%s)" % (rec.get("name"), _dec(rec.get("pid")), where, rec.get("space"))


def run(session: Any, args: argparse.Namespace) -> Result:
    spec: Optional[str] = getattr(args, "process", None)
    notes: List[str] = []
    if not spec and not getattr(args, "all", False) and not is_user_dump(session.target):
        # like `!peb` after opening a dump: the crash context's process (commands/owner.py)
        address, _found_by, note = crash_context_process(kernel_context(session), "peb")
        spec = "0x%x" % address
        notes.append(note)
    users = user_processes(session, spec, getattr(args, "symbols32", None),
                           all_when_empty=bool(getattr(args, "all", False)))
    titled = len(users) > 1 or not is_user_dump(session.target)
    meta = user_meta(session, users)
    # handed out and forgotten one by one: a decoded process's page-table reader, caches and
    # kernel structure are freed after its row (memory stays flat with `--all`)
    pending = deque(users)
    del users

    def rows() -> Iterator[Row]:
        """Streamed: one process's PEB decoded (its own page tables) and printed at a time."""
        index = 0
        while pending:
            decoded = decode_user_process(pending.popleft())
            for note in decoded.notes:
                if note not in notes:
                    notes.append(note)
            yield Row(decoded.record, _row_text(decoded, separate=index > 0, titled=titled))
            index += 1
        add_session_notes(session, notes)

    return Result("peb", COLUMNS, rows=rows(), meta=meta, notes=notes)


def _row_text(decoded: Any, separate: bool, titled: bool) -> Callable[[], List[str]]:
    def text() -> List[str]:
        lines = [""] if separate else []
        if titled:
            lines.append(process_title(decoded.record))
        lines += peb_lines(decoded.record, decoded.display)
        sub = decoded.display.get("peb32")
        if sub is not None:
            lines.append("")
            lines += peb_lines(sub.record, sub.display, "Wow64 PEB32")
        return lines
    return text
