"""`pykd-ext vad PROCESS`: a process's Virtual Address Descriptors, like WinDbg's `!vad`.

Walks `_EPROCESS.VadRoot` in address order (`kernel/vad.py`: AVL table on Windows 7, RTL
balanced nodes later; bounded, cycle-safe, charged to the work budget): each range's start and
end, commit charge, protection (the MM index decoded through the dump's own `MmProtectToValue`),
private / mapped / image, and the file of a mapped or image view (subsection -> control area ->
file object). `--cross` compares them with the PEB's loader lists (image views no loader entry
names, loader entries without an image view, executable private memory: `kernel.vad.cross_view`;
JSON: each record's `loader_module` and `meta.cross_view`). JSON: one record per VAD
(docs/scheduling.md).
"""
import argparse
from typing import Any, Dict, List

from pykd_ext.commands.owner import crash_context_process
from pykd_ext.commands.procview import add_context_notes, kernel_context, require, result_meta
from pykd_ext.kernel.lookup import Finder
from pykd_ext.kernel.process import Process
from pykd_ext.kernel.vad import cross_view, walk_vads
from pykd_ext.memory.faults import Fault
from pykd_ext.render.grid import Column, Result

HELP = "a process's virtual address descriptors: ranges, commit, protection, mapped files (like !vad)"
#: `--help` ends with these (issue 12); crash.dmp stands for any dump
EXAMPLES = [
    'vad explorer.exe -t crash.dmp',
    'vad 0n3340 -f json -t crash.dmp',
    'vad -t crash.dmp',
]

COLUMNS = [
    Column("vad", "VAD", "addr"), Column("level", "Level", "int"), Column("start", "Start", "addr"),
    Column("end", "End", "addr"), Column("commit", "Commit", "int"), Column("kind", "Kind"),
    Column("protection", "Protection"), Column("file_name", "File"), Column("pid", "PID", "int"),
    Column("process", "Process", "addr"), Column("control_area", "ControlArea", "addr"),
    Column("file_object", "FileObject", "addr"),
]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("process", nargs="?", metavar="NAME|PID|ADDRESS",
                        help="image name, PID or _EPROCESS address (default: the dump's crash context, "
                             "the bugcheck processor's current process)")
    parser.add_argument("--cross", action="store_true",
                        help="compare with the PEB's loader lists: image views no loader entry names, "
                             "loader entries without an image view, executable private memory")


def _modules(ctx: Any, process: Any, notes: List[str]) -> List[Dict[str, Any]]:
    """The process's loader-list modules (64-bit and WoW64), read through its page tables."""
    from pykd_ext.kernel.peb import decode_user_process
    from pykd_ext.kernel.userspace import from_kernel_process
    decoding = decode_user_process(from_kernel_process(ctx, process), with_modules=True)
    notes.extend(getattr(decoding, "notes", []) or [])
    return [dict(m) for listing in decoding.listings() for m in listing.modules]


def run(session: Any, args: argparse.Namespace) -> Result:
    ctx = kernel_context(session)
    notes: List[str] = []
    if args.process is None:
        # like WinDbg's `!vad` after opening a dump: the crash context's process (commands/owner.py)
        address, found_by, note = crash_context_process(ctx, "vad")
        processes = [Process(ctx, address, [found_by])]
        notes.append(note)
    else:
        processes = require(Finder(ctx).processes(args.process), args.process, "process")
    records: List[Dict[str, Any]] = []
    blocks: List[List[str]] = []
    crosses: List[Dict[str, Any]] = []
    for process in processes:
        walk = walk_vads(ctx, process.address, process.name)
        notes.extend(walk.notes)
        cross = cross_view(walk.vads, _modules(ctx, process, notes)) if getattr(args, "cross", False) else None
        if cross is not None:
            crosses.append(dict(cross, pid=process.pid, process=process.address))
        lines = ["VADs of process %x (%s)" % (process.address, _plain(process.name)),
                 "%-16s %5s %12s %12s %6s %-7s %-4s %-24s %s" % ("VAD", "Level", "Start", "End", "Commit",
                                                              "Kind", "", "Protection", "File")]
        for vad in walk.vads:
            vad.update(pid=process.pid, process=process.address, process_name=process.name)
            records.append(vad)
            lines.append("%016x %5s %12s %12s %6s %-7s %-4s %-24s %s" % (
                vad["vad"], vad["level"], _vpn(vad["start_vpn"]), _vpn(vad["end_vpn"]), _plain(vad["commit"]),
                {"private": "Private", "mapped": "Mapped", "image": "Mapped"}.get(vad["kind"] or "", "?"),
                "Exe" if vad["kind"] == "image" else "", _protection(vad), _plain(vad["file_name"]) if vad["file_name"] else ""))
        lines.append("Total VADs: %d" % len(walk.vads))
        if cross is not None:
            lines += _cross_lines(cross)
        blocks.append(lines)
    add_context_notes(ctx, notes)
    meta = result_meta(ctx)
    if getattr(args, "cross", False):
        meta["cross_view"] = crosses

    def text(result: Result) -> List[str]:
        del result
        out: List[str] = []
        for block in blocks:
            out.extend(block + [""])
        return out[:-1]

    return Result("vad", COLUMNS, records=records, text=text, meta=meta, notes=notes)


def _cross_lines(cross: Dict[str, Any]) -> List[str]:
    out = ["Cross-view with the loader lists (%d modules):" % cross["modules_compared"]]
    if cross["image_vads_not_on_loader_lists"] is None:
        out.append("  loader lists not readable (see the notes): image views not compared")
    for item in cross["image_vads_not_on_loader_lists"] or []:
        out.append("  image view on no loader list: %x-%x %s" % (item["start"], item["end"], _plain(item["file_name"])))
    for item in cross["loader_modules_without_image_vad"] or []:
        out.append("  loader entry without an image view: %x %s" % (item["base"], _plain(item["name"])))
    for item in cross["executable_private"]:
        out.append("  executable private memory: %x-%x %s commit %s" % (item["start"], item["end"],
                                                                      _plain(item["protection"]), _plain(item["commit"])))
    if len(out) == 1:
        out.append("  nothing to report")
    return out


def _plain(value: Any) -> str:
    if isinstance(value, Fault):
        return value.marker
    return "?" if value is None else str(value)


def _vpn(value: Any) -> str:
    return "%x" % value if isinstance(value, int) else _plain(value)


def _protection(vad: Dict[str, Any]) -> str:
    if vad.get("protection"):
        return str(vad["protection"]).replace("PAGE_", "")
    return "index %s" % _plain(vad.get("protection_index"))
