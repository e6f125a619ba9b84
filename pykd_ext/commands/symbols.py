"""`pykd-ext symbols fetch|path`: symbol files from symbol servers, into a WinDbg-shaped cache.

- `fetch NAME GUID AGE`: a PDB by what an RSDS record names (`ntkrnlmp.pdb
  1D4090613BF97F9B9529992E20E93897 1`; the GUID may carry braces and dashes);
- `fetch --target DUMP`: the dump's kernel PDB (from its CodeView record or, for triage dumps,
  through the kernel image found by TimeDateStamp and SizeOfImage);
- `path`: how the symbol path is read, entry by entry.

The symbol path is `--symbol-path`, else `_NT_SYMBOL_PATH`, else `srv*<cache>*<Microsoft's
server>` (see `pykd_ext.symbols.path`). `--offline` searches only local directories and stores.
"""
import argparse
from typing import Any, Dict, Iterable, List

from pykd_ext.errors import PykdExtError
from pykd_ext.render.grid import Column, Result
from pykd_ext.session import Session

HELP = "fetch PDBs from symbol servers into a WinDbg-shaped cache (by GUID/age or for a dump)"
#: `--help` ends with these (issue 12); crash.dmp stands for any dump
EXAMPLES = [
    'symbols fetch -t crash.dmp',
    'symbols fetch ntkrnlmp.pdb CA8E2F01B822EDE6357898BFBF862997 1',
    'symbols path',
]

_COLUMNS = [Column("file"), Column("index"), Column("path"), Column("source"),
            Column("downloaded", fmt="bool")]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=("fetch", "path"), metavar="ACTION",
                        help="fetch NAME GUID AGE | fetch --target DUMP | path")
    parser.add_argument("ident", nargs="*", metavar="NAME GUID AGE",
                        help="the PDB file name, its GUID and its age (decimal or 0x hex)")
    # --symbol-path is a global option (pykd_ext/cli.py): every command reads the same symbol path
    parser.add_argument("--offline", action="store_true", help="ask no server; local files only")
    parser.add_argument("--timeout", type=float, default=30.0, metavar="SECONDS",
                        help="network timeout per attempt (default 30)")
    parser.add_argument("--retries", type=int, default=2, metavar="N",
                        help="attempts after the first on network or server errors (default 2)")
    parser.add_argument("--max-size", dest="max_size", type=int, default=1 << 30, metavar="BYTES",
                        help="largest file accepted (default 1 GiB)")
    # Why: argparse's plain parse_args cannot take options between ACTION and NAME GUID AGE
    # (`symbols fetch --offline NAME GUID AGE`); the intermixed parse can (Python 3.7+)
    parser.parse_args = parser.parse_intermixed_args  # type: ignore[method-assign]


def _age(text: str) -> int:
    try:
        value = int(text, 16) if text.lower().startswith("0x") else int(text, 10)
    except ValueError:
        raise PykdExtError("AGE must be a number, not %r" % text) from None
    if not 0 <= value <= 0xFFFFFFFF:
        raise PykdExtError("AGE %d is out of range" % value)
    return value


def run(session: Session, args: argparse.Namespace) -> Result:
    from pykd_ext.symbols.fetch import FetchOptions, fetch_pdb
    from pykd_ext.symbols.path import symbol_path_from_env
    spath = symbol_path_from_env(args.symbol_path)
    if args.action == "path":
        return _path_result(spath)
    options = FetchOptions(offline=args.offline, timeout=max(0.1, args.timeout),
                           retries=max(0, min(args.retries, 10)), max_size=max(1, args.max_size),
                           progress=False if args.quiet else None)
    if args.ident:
        if len(args.ident) != 3:
            raise PykdExtError("symbols fetch needs NAME GUID AGE (or --target DUMP)")
        name, guid, age = args.ident[0], args.ident[1], _age(args.ident[2])
        found = [fetch_pdb(spath, name, guid, age, options)]
    elif session.has_target:
        from pykd_ext.symbols.for_target import fetch_kernel_pdb
        found = fetch_kernel_pdb(session.target.info().extra, spath, options)
    else:
        raise PykdExtError("symbols fetch needs NAME GUID AGE or --target DUMP")
    records: List[Dict[str, Any]] = []
    notes: List[str] = []
    for item in found:
        parts = item.path.replace("\\", "/").split("/")
        records.append({"file": parts[-1], "index": parts[-2] if len(parts) > 2 else "",
                        "path": item.path, "source": item.source, "downloaded": item.downloaded})
        notes.extend(item.notes)
    pdb = records[-1]["path"]
    if pdb.lower().endswith(".pdb"):
        notes.append("use it: pykd-ext structs import %s (or --symbols %s)" % (pdb, pdb))
    return Result(command="symbols", columns=_COLUMNS, records=records, text=_text, notes=notes,
                  meta={"symbol_path": spath.text})


def _text(result: Result) -> Iterable[str]:
    for r in result.records:
        how = "downloaded from" if r["downloaded"] else "found in"
        yield "%s %s: %s (%s %s)" % (r["file"], r["index"], r["path"], how, r["source"])


def _path_result(spath: Any) -> Result:
    records = [{"entry": i + 1, "kind": e.kind, "location": e.location,
                "caches": list(e.caches), "text": e.describe()} for i, e in enumerate(spath.entries)]

    def text(result: Result) -> Iterable[str]:
        yield "Symbol path: %s" % spath.text
        for r in result.records:
            yield "  %d. %s" % (r["entry"], r["text"])

    return Result(command="symbols", columns=[Column("entry", fmt="int"), Column("kind"),
                                              Column("location"), Column("caches")],
                  records=records, text=text, meta={"symbol_path": spath.text})
