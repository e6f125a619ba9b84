"""`pykd-ext lm [m PATTERN]` (alias `drivers`): loaded kernel modules, like WinDbg's `lm`.

Sources (`kernel/drivers.py`): `PsLoadedModuleList` on kernel and complete dumps, the triage
dump's own driver list on triage dumps; unloaded drivers from `MmUnloadedDrivers` or the triage
dump's unloaded-driver block, under WinDbg's `Unloaded modules:` heading. WinDbg's columns come
first (`start`, `end` with the backtick, `module name`; sorted by start address as `lm` sorts,
the list position kept as `load_order`), then what `lm` shows only with options
(`lmt`/`lmv`): file name, TimeDateStamp with its date, CheckSum, size. `lm m amd*` filters by
module name with WinDbg's wildcards.
"""
import argparse
import time
from typing import Any, Callable, Dict, Iterator, List, Optional

from pykd_ext.commands.procview import add_context_notes, kernel_context, result_meta
from pykd_ext.commands.stacktext import tick
from pykd_ext.errors import PykdExtError
from pykd_ext.kernel.drivers import kernel_modules, matches, module_name
from pykd_ext.memory.faults import Fault
from pykd_ext.render.grid import Column, Result, Row

HELP = "loaded kernel modules (PsLoadedModuleList or the triage driver list) and unloaded drivers (like lm)"

EXAMPLES = [
    'lm -t crash.dmp',
    "lm m 'amd*' -t crash.dmp",
    'drivers -f jsonl -t crash.dmp',
]

COLUMNS = [Column("base", "Start", "addr"), Column("end", "End", "addr"), Column("module", "Module"),
           Column("name", "File"), Column("timestamp", "TimeDateStamp", "hex"),
           Column("checksum", "CheckSum", "hex"), Column("size", "Size", "hex"), Column("state", "State"),
           Column("path", "Path")]

#: `lm`'s heading per pointer size (64-bit: backticked 17-character values; 32-bit: 8 digits)
HEADERS = {8: "start             end                 module name", 4: "start    end        module name"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("words", nargs="*", metavar="m PATTERN",
                        help="`m PATTERN`: only modules whose name matches (wildcards * and ?)")
    parser.add_argument("--no-unloaded", action="store_true", help="leave out the unloaded drivers")


def _pattern(words: List[str]) -> Optional[str]:
    if not words:
        return None
    if len(words) == 2 and words[0].lower() == "m":
        return words[1]
    if len(words) == 1 and words[0].lower() != "m":
        return words[0]
    raise PykdExtError("lm takes `m PATTERN` (e.g. `lm m amd*`), got %r" % " ".join(words))


def _text(value: Any) -> str:
    if isinstance(value, Fault):
        return value.marker
    return "?" if value is None else str(value)


def _stamp(value: Any) -> str:
    if not isinstance(value, int):
        return _text(value).ljust(8)
    try:
        when = time.strftime("%a %b %d %H:%M:%S %Y", time.gmtime(value))
    except (OverflowError, ValueError, OSError):
        when = "?"
    return "%08x %s" % (value, when)


def _hex(value: Any, width: int = 8) -> str:
    return "%0*x" % (width, value) if isinstance(value, int) else _text(value)


def module_line(rec: Dict[str, Any], pointer_size: int) -> str:
    """`fffff804`7ba00000 fffff804`7ca46000   nt         ntoskrnl.exe  ...` (WinDbg's three
    columns, then file, TimeDateStamp, CheckSum and size)."""
    base = rec.get("base")
    end = rec.get("end")
    return "%s %s   %-10s %-14s %s  CheckSum: %s  Size: %s" % (
        tick(base if isinstance(base, int) else None, pointer_size),
        tick(end if isinstance(end, int) else None, pointer_size), rec["module"], _text(rec.get("name")),
        _stamp(rec.get("timestamp")), _hex(rec.get("checksum")),
        ("%x" % rec["size"]) if isinstance(rec.get("size"), int) else _text(rec.get("size")))


def unloaded_line(rec: Dict[str, Any], pointer_size: int) -> str:
    start, end = rec.get("base"), rec.get("end")
    line = "%s %s   %s" % (tick(start if isinstance(start, int) else None, pointer_size),
                           tick(end if isinstance(end, int) else None, pointer_size), _text(rec.get("name")))
    if rec.get("unload_time"):
        line += "  (unloaded %s)" % rec["unload_time"]
    return line


def run(session: Any, args: argparse.Namespace) -> Result:
    from pykd_ext.kernel.userspace import is_user_dump
    if is_user_dump(session.target):
        raise PykdExtError("this is a user-mode dump of one process: it holds no kernel modules; "
                           "`modules` lists the process's loaded modules")
    ctx = kernel_context(session)
    pattern = _pattern(list(getattr(args, "words", None) or []))
    listing = kernel_modules(ctx)
    notes: List[str] = list(listing.notes)
    pointer_size = ctx.pointer_size
    # WinDbg's `lm` lists by start address; the record keeps the list position (`load_order`)
    loaded = sorted((dict(r, load_order=n) for n, r in enumerate(listing.loaded)
                     if pattern is None or matches(r, pattern)),
                    key=lambda r: r["base"] if isinstance(r.get("base"), int) else -1)
    unloaded = [] if getattr(args, "no_unloaded", False) else [
        u for u in listing.unloaded if pattern is None or matches({"name": u.get("name")}, pattern)]
    if not listing.loaded:
        notes.append("no loaded-module list in this dump (%s)" % (listing.source or "PsLoadedModuleList unknown"))
    elif not loaded and not unloaded:
        notes.append("no module matches %r" % pattern)

    def rows() -> Iterator[Row]:
        yield Row(None, [HEADERS.get(pointer_size, HEADERS[8])])
        for rec in loaded:
            out = dict(rec, module=module_name(rec), state="loaded")
            out.pop("is_kernel", None)
            yield Row(out, _line(module_line, out, pointer_size))
        if unloaded:
            yield Row(None, ["", "Unloaded modules:"])
            for u in unloaded:
                out = {"base": u.get("start"), "end": u.get("end"), "module": module_name({"name": u.get("name")}),
                       "name": u.get("name"), "timestamp": None, "checksum": None,
                       "size": (u["end"] - u["start"]) if isinstance(u.get("start"), int)
                       and isinstance(u.get("end"), int) else None,
                       "state": "unloaded", "path": None, "unload_time": u.get("unload_time"),
                       "source": u.get("source")}
                yield Row(out, _line(unloaded_line, out, pointer_size))
        add_context_notes(ctx, notes)

    meta = result_meta(ctx)
    meta["modules_source"] = listing.source
    meta["unloaded_source"] = listing.unloaded_source
    return Result("lm", COLUMNS, rows=rows(), meta=meta, notes=notes)


def _line(fn: Callable[[Dict[str, Any], int], str], rec: Dict[str, Any], pointer_size: int
          ) -> Callable[[], List[str]]:
    return lambda: [fn(rec, pointer_size)]
