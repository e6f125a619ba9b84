"""`pykd-ext handles [NAME|PID|ADDRESS ...] [--type T] [--all] [--kernel] [--cid]`: handle tables,
like `!handle 0 3 <process> [type]`.

Sources: a process's `EPROCESS.ObjectTable`; `--all` every process on the active list; `--kernel`
the kernel handle table (`ObpKernelHandleTable`, else the System process's table); `--cid` the
`PspCidTable` read as a handle table (entries are process/thread bodies). Each entry is decoded
by `pykd_ext.kernel.handles` (every table level, the build's entry format, type through
`ObTypeIndexTable` with the Windows 10 cookie, names through the optional headers, File/Process/
Thread details). The WinDbg lines come first; decoded extras (process/thread identity, file
device) follow on extra lines.
"""
import argparse
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterator, List, Optional, Tuple, Union, cast

from pykd_ext.commands.procview import add_context_notes, kernel_context, require, result_meta
from pykd_ext.errors import PykdExtError
from pykd_ext.kernel.handles import HandleDecoder, count_handles, iter_handle_entries
from pykd_ext.kernel.lookup import Finder
from pykd_ext.kernel.objects import reader_for
from pykd_ext.kernel.processes import all_processes, no_process_reason
from pykd_ext.memory.faults import Fault
from pykd_ext.render.grid import Column, Result, Row

if TYPE_CHECKING:
    from pykd_ext.kernel.context import KernelContext

HELP = "handle tables of processes, the kernel or PspCidTable (like !handle 0 3)"
#: `--help` ends with these (issue 12); crash.dmp stands for any dump
EXAMPLES = [
    'handles lsass.exe -t crash.dmp',
    'handles 0n636 --type File -t crash.dmp',
    'handles --kernel -f csv -t crash.dmp',
]

COLUMNS = [Column("pid", "PID", "int"), Column("process", "Process"), Column("handle", "Handle", "hex4"),
           Column("object", "Object", "addr"), Column("type", "Type"),
           Column("granted_access", "Access", "hex"), Column("attributes", "Attr"), Column("name", "Name")]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("processes", nargs="*", metavar="NAME|PID|ADDRESS",
                        help="image name, PID or _EPROCESS address")
    parser.add_argument("--type", dest="object_type", metavar="T",
                        help="only objects of this type (File, Process, Key, ...; case-insensitive)")
    parser.add_argument("--all", action="store_true", help="every process on the active list")
    parser.add_argument("--kernel", action="store_true", help="the kernel (System) handle table")
    parser.add_argument("--cid", action="store_true", help="PspCidTable as a handle table")


def _hex(value: Any, width: int = 16) -> str:
    if isinstance(value, Fault):
        return value.marker
    return "%0*x" % (width, value) if isinstance(value, int) else str(value)


def _text(value: Any) -> str:
    if isinstance(value, Fault):
        return value.marker
    return "" if value is None else str(value)


def entry_lines(rec: Dict[str, Any], type_object: Any, directory: Any = None) -> List[str]:
    """One handle as `!handle 0 3` prints it (windbg-output.md), then decoded extras."""
    attrs = "".join(" (%s)" % a for a in rec["attributes"])
    access = rec["granted_access"]
    out = ["%04x: Object: %s  GrantedAccess: %08x%s Entry: %s"
           % (rec["handle"], _hex(rec["object"]), access if isinstance(access, int) else 0, attrs,
              _hex(rec["entry"])),
           "Object: %s  Type: (%s) %s" % (_hex(rec["object"]), _hex(type_object), _text(rec["type"])),
           "    ObjectHeader: %s (new version)" % _hex(rec["object_header"]),
           "        HandleCount: %s  PointerCount: %s" % (_text(rec["handle_count"]), _text(rec["pointer_count"]))]
    details = rec.get("details") or {}
    name = rec.get("name")
    if rec["type"] in ("Process", "Thread"):
        if details:
            out.append("        " + ", ".join("%s: %s" % (k, _text(v)) for k, v in details.items()))
    elif name is not None:
        prefix = "        Directory Object: %s  " % _hex(directory) if isinstance(directory, int) and directory else "        "
        out.append(prefix + "Name: %s" % _text(name))
    if details.get("note"):
        out.append("        (%s)" % details["note"])
    return out


def _sources(ctx: "KernelContext", args: argparse.Namespace) -> List[Tuple[Any, Optional[Any], bool, str]]:
    """(table address, owner process or None, entries point to bodies, label)."""
    out: List[Tuple[Any, Optional[Any], bool, str]] = []
    if args.cid:
        pointer = ctx.read_global_pointer("PspCidTable")
        if not isinstance(pointer, int) or not pointer:
            raise PykdExtError("PspCidTable is not readable in this dump (%s)" % _text(pointer))
        out.append((pointer, None, True, "PspCidTable"))
    if args.kernel:
        pointer = ctx.read_global_pointer("ObpKernelHandleTable")
        label = "kernel handle table (ObpKernelHandleTable)"
        if not isinstance(pointer, int) or not pointer:
            # the kernel table is the System process's ObjectTable (PsInitialSystemProcess, else
            # the process with PID 4 that any source - e.g. a triage dump's block - found)
            from pykd_ext.kernel.process import Process
            system = ctx.system_process()
            if system is None:
                found = [p for p in Finder(ctx).processes("4") if isinstance(p.pid, int) and p.pid == 4]
                system = found[0].address if found else None
            if system is None:
                raise PykdExtError("the kernel handle table is not readable (no ObpKernelHandleTable, "
                                   "no System process in this dump)")
            pointer = cast(Union[int, Fault], Process(ctx, system).field("ObjectTable"))  # a pointer
            label = "kernel handle table (System ObjectTable)"
        out.append((pointer, None, False, label))
    processes: List[Any] = []
    if args.all:
        processes = all_processes(ctx).ordered()
    elif args.processes:
        finder = Finder(ctx)
        seen = set()
        for spec in args.processes:
            for p in require(finder.processes(spec), spec, "process"):
                if p.address not in seen:
                    seen.add(p.address)
                    processes.append(p)
    for process in processes:
        out.append((process.field("ObjectTable"), process, False, "process"))
    if not out and args.all:
        raise PykdExtError("handles --all: no process found: %s" % no_process_reason(ctx))
    if not out:
        raise PykdExtError("handles needs NAME|PID|ADDRESS, --all, --kernel or --cid")
    return out


def run(session: Any, args: argparse.Namespace) -> Result:
    ctx = kernel_context(session)
    decoder = HandleDecoder(ctx)
    objects = reader_for(ctx)
    wanted = args.object_type.lower() if args.object_type else None
    notes: List[str] = []
    # per table: (header lines, table address or None, owner facts, entries point to bodies)
    tables: List[Tuple[List[str], Optional[int], Dict[str, Any], bool]] = []
    meta_tables: List[Dict[str, Any]] = []
    first_listed: Dict[int, str] = {}       # table address -> who listed it first (tables can be shared)
    for table, owner, to_body, label in _sources(ctx, args):
        owner_info: Dict[str, Any] = {"pid": owner.pid if owner is not None else None,
                                      "process": owner.name if owner is not None else None}
        table_meta: Dict[str, Any] = dict(owner_info, table=table, source=label)
        meta_tables.append(table_meta)
        what = "process %s (%s)" % (_text(owner_info["pid"]), _text(owner_info["process"])) if owner else label
        head: List[str] = []
        if owner is not None:
            head.append("PROCESS %s  Cid: %04x  Image: %s" % (_hex(owner.address), owner.pid if isinstance(owner.pid, int) else 0, _text(owner.name)))
        if not isinstance(table, int) or not table:
            msg = "%s: no handle table (%s)" % (what, _text(table) or "ObjectTable is NULL")
            notes.append(msg)
            head.append(msg)
            tables.append((head, None, owner_info, to_body))
            continue
        if table in first_listed:
            msg = "%s: handle table %s is shared with %s: its handles are listed once, there" % (
                what, _hex(table), first_listed[table])
            notes.append(msg)
            head.append(msg)
            tables.append((head, None, owner_info, to_body))
            continue
        first_listed[table] = what
        # a first pass counts the entries a page at a time (no entry or object decoded): the
        # per-table facts belong in `meta`, which JSON writes before the first record
        scan = count_handles(ctx, table)
        table_meta.update(levels=scan.levels, table_code=scan.table_code, pages=scan.pages,
                          in_use=scan.counted, pages_missing=scan.fault_count)
        notes.extend(scan.notes(what))
        head.append("Handle table at %s %s" % (_hex(table), scan.summary()))
        tables.append((head, table, owner_info, to_body))

    def rows() -> Iterator[Row]:
        """Streamed: one table's entries decoded and printed at a time."""
        for index, (head, table, owner_info, to_body) in enumerate(tables):
            yield Row(None, ([""] if index else []) + head)
            if table is None:
                continue
            for entry in iter_handle_entries(ctx, table):     # streamed: no per-table list
                rec = decoder.record(entry, points_to_body=to_body, owner=owner_info)
                if wanted and not (isinstance(rec["type"], str) and rec["type"].lower() == wanted):
                    continue
                yield Row(rec, _row_text(ctx, objects, rec))
        add_context_notes(ctx, notes)

    meta = result_meta(ctx)
    meta["tables"] = meta_tables
    return Result("handles", COLUMNS, rows=rows(), meta=meta, notes=notes)


def _row_text(ctx: "KernelContext", objects: Any, rec: Dict[str, Any]) -> Callable[[], List[str]]:
    def text() -> List[str]:
        header = objects.header(rec["object"])
        directory = objects.directory_of(rec["object"]) if rec["name"] is not None else None
        return [""] + entry_lines(rec, _type_object(ctx, header.type_index), directory)
    return text


def _type_object(ctx: "KernelContext", index: Any) -> Any:
    """`ObTypeIndexTable[index]`: the `_OBJECT_TYPE` `!handle` prints in parentheses."""
    if not isinstance(index, int):
        return index
    cache = getattr(ctx, "_type_objects", None)
    if cache is None:
        cache = ctx._type_objects = {}
    if index not in cache:
        table = ctx.global_address("ObTypeIndexTable")
        value: Any = None
        if table is not None:
            try:
                value = ctx.space.read_pointer(table + index * ctx.pointer_size)
            except Exception as err:  # MemoryReadError
                value = getattr(err, "fault", None)
        cache[index] = value
    return cache[index]
