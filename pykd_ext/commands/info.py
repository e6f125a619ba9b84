"""`pykd-ext info --target PATH`: what a dump or image is, as the file itself states it.

Prints the container and dump type, architecture, NT build, processors, bugcheck, the kernel's
DirectoryTableBase and list heads, the decoded KDBG block, physical memory runs and the page count.
Nothing here needs a structure layout: every value is the file's own.
"""
import argparse
from typing import Any, Dict, Iterable

from pykd_ext.errors import TruncatedDumpError
from pykd_ext.render.grid import Column, Result, Row
from pykd_ext.session import Session
from pykd_ext.targets.arch import arch_named

HELP = "describe a dump or memory image: format, build, bugcheck, DTB, KDBG, physical memory"
#: `--help` ends with these (issue 12); crash.dmp stands for any dump
EXAMPLES = [
    'info -t crash.dmp',
    'info --runs -f json -t crash.dmp',
]

# KDBG fields worth a line of their own in text output (all of them are in JSON).
_KDBG_TEXT_FIELDS = (
    "KernBase", "PsLoadedModuleList", "PsActiveProcessHead", "PspCidTable", "MmPfnDatabase",
    "KiProcessorBlock", "MmSystemRangeStart", "MmHighestUserAddress", "NtBuildLab", "KeLoaderBlock",
    "PteBase", "SizeEProcess", "SizeEThread", "SizePrcb",
)

# One record per target (so `--format jsonl` over many dumps gives one line per dump); the
# columns are the scalar facts, lists and dicts are in JSON only.
_COLUMNS = [
    Column("path"), Column("container"), Column("dump_type"), Column("arch"), Column("build", fmt="int"),
    Column("processors", fmt="int"), Column("bugcheck_code", fmt="hex"),
    Column("directory_table_base", fmt="hex"), Column("ps_active_process_head", fmt="hex"),
    Column("ps_loaded_module_list", fmt="hex"), Column("kd_debugger_data_block", fmt="hex"),
    Column("kernel_base", fmt="hex"), Column("pages_present", fmt="int"),
]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--runs", action="store_true",
                        help="list every physical memory run in text output (default: first 8)")


def _hex(value: Any) -> str:
    return "0x%x" % value if isinstance(value, int) else ("-" if value is None else str(value))


def _auto(value: Any) -> str:
    """Extra facts: addresses and sizes in hex, small counts in decimal, tuples element-wise."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return "0x%x" % value if value > 0xffff else "%d" % value
    if isinstance(value, tuple):
        return ", ".join(_auto(v) for v in value)
    return "-" if value is None else str(value)


def _text(info: Dict[str, Any], all_runs: bool) -> Iterable[str]:
    def line(label: str, value: Any) -> str:
        return "%-26s %s" % (label + ":", value)

    yield line("File", info.get("path") or "-")
    kind = info.get("container") or "?"
    if info.get("dump_type"):
        kind += ", %s" % info["dump_type"]
        if info.get("dump_type_code") is not None:
            kind += " (DumpType %d)" % info["dump_type_code"]
    yield line("Format", kind)
    yield line("Architecture", info.get("arch") or "?")
    build = info.get("build")
    version = info.get("extra", {}).get("kernel_version")
    yield line("NT build", ("%d" % build if build is not None else "-")
               + ("  (%s)" % version if version else ""))
    if info.get("processors") is not None:
        yield line("Processors", info["processors"])
    if info.get("bugcheck_code") is not None:
        params = ", ".join("%016x" % p for p in info.get("bugcheck_parameters") or [])
        yield line("Bugcheck", "%08x (%s)" % (info["bugcheck_code"], params))
    yield line("DirectoryTableBase", _hex(info.get("directory_table_base")))
    yield line("PsActiveProcessHead", _hex(info.get("ps_active_process_head")))
    yield line("PsLoadedModuleList", _hex(info.get("ps_loaded_module_list")))
    yield line("KdDebuggerDataBlock", _hex(info.get("kd_debugger_data_block")))
    yield line("Kernel base", _hex(info.get("kernel_base")))
    kdbg = info.get("kdbg")
    if kdbg:
        yield "KDBG (KDDEBUGGER_DATA64, %s bytes):" % kdbg.get("_size", "?")
        for name in _KDBG_TEXT_FIELDS:
            if name in kdbg:
                value = kdbg[name]
                yield "    %-22s %s" % (name, _hex(value) if isinstance(value, int) else value)
    runs = info.get("physical_runs") or []
    if runs:
        yield line("Physical memory runs", len(runs))
        shown = runs if all_runs else runs[:8]
        for base, count in shown:
            yield "    %012x - %012x  (%d pages)" % (base << 12, (base + count) << 12, count)
        if len(shown) < len(runs):
            yield "    ... %d more (--runs lists all)" % (len(runs) - len(shown))
    if info.get("pages_present") is not None:
        yield line("Pages present", "%d (%.1f MiB)" % (info["pages_present"],
                                                     info["pages_present"] * 4096 / 1048576.0))
    if info.get("system_time"):
        yield line("System time", _filetime(info["system_time"]))
    if info.get("comment"):
        yield line("Comment", info["comment"])
    context = (info.get("extra") or {}).get("context")
    if isinstance(context, dict) and context:
        # H8 (issue 15): the dump's context record (x64, x86, ARM64, ARM), four registers a line
        arch = arch_named(str(info.get("arch") or ""))
        width = 2 * (arch.pointer_size if arch is not None else 8)
        yield line("Context record", info["extra"].get("context_layout") or "")
        names = [name for name in context if isinstance(context[name], int)]
        for start in range(0, len(names), 4):
            yield "    " + "  ".join("%-6s %0*x" % (name, width, context[name])
                                     for name in names[start:start + 4])
    for key, value in sorted((info.get("extra") or {}).items()):
        if isinstance(value, (list, dict)) or key in ("kernel_version", "prcb_source"):
            continue
        yield line(key, _auto(value))
    for note in info.get("notes") or []:
        yield "Note: %s" % note


def _filetime(value: int) -> str:
    import datetime
    try:
        stamp = datetime.datetime(1601, 1, 1) + datetime.timedelta(microseconds=value // 10)
        return stamp.strftime("%Y-%m-%d %H:%M:%S UTC")
    except (OverflowError, ValueError):
        return "0x%x" % value


def run(session: Session, args: argparse.Namespace) -> Result:
    # H10 (issue 7): the exact kernel version (kphdyn, from the driver list or the PE header)
    from pykd_ext.layouts.version_choice import annotate_info
    try:
        target_info = session.target.info()
    except TruncatedDumpError as err:
        # H8 (issue 15): a cut-short kernel dump still shows its header and says what is missing
        from pykd_ext.targets.crashdump import header_only_info
        if not session.target_path:
            raise
        target_info = header_only_info(session.target_path, err)
    annotate_info(target_info)
    info = target_info.to_dict()
    return Result(command="info", columns=_COLUMNS, rows=[Row(info, lambda: _text(info, args.runs))],
                  meta={"target": info.get("path")})
