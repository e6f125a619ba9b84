"""`pykd-ext batch PATH...`: many dumps in, one DuckDB database out, buckets that blame a driver.

Reads every file, folder (recursive) and glob given (or listed in `--from-list`), analyses each
distinct content once (sha256) in worker processes (`--jobs`) or on a Dask cluster (`--dask`),
and stores one crash record per input path in `--db` (tables `dumps`, `drivers`, `processes`,
`threads`, `stack_frames`; see docs/batch.md). A file that cannot be read, or whose analysis
crashes or exceeds `--timeout`, becomes an error row and the batch goes on (exit status 0).
Prints the top buckets; `--report` writes the HTML report, `--export` writes the tables out.
With no PATH, `--report`/`--export` work on the database as it is.

duckdb, dask and the charting library are imported only here (the `batch` extra).
"""
import argparse
import os
import sys
from typing import Any, Dict, List

from pykd_ext.errors import PykdExtError
from pykd_ext.render.grid import Column, Result
from pykd_ext.session import Session

HELP = "analyse many dumps into one DuckDB database: crash records, blamed drivers, buckets, HTML report"
#: `--help` ends with these (issue 12); crash.dmp stands for any dump
EXAMPLES = [
    'batch dumps/*.dmp --db crashes.duckdb --report crashes.html',
    'batch --db crashes.duckdb --top 20',
    'batch --from-list dumps.txt -j 4 --resume',
]

DEFAULT_DB = "pykd-batch.duckdb"
_COLUMNS = [Column("bucket"), Column("dumps", fmt="int"), Column("distinct", fmt="int"),
            Column("example")]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="*", metavar="PATH",
                        help="dump files, folders (searched recursively) or glob patterns")
    parser.add_argument("--from-list", metavar="FILE", help="read more paths from FILE, one a line")
    parser.add_argument("--db", default=DEFAULT_DB, metavar="FILE.duckdb",
                        help="the DuckDB database to write (default: %s)" % DEFAULT_DB)
    parser.add_argument("--jobs", "-j", type=int, default=None, metavar="N",
                        help="worker processes (default: one per CPU)")
    parser.add_argument("--dask", metavar="ADDRESS",
                        help="run on an existing dask.distributed scheduler, e.g. tcp://host:8786")
    parser.add_argument("--resume", action="store_true",
                        help="skip paths the database already holds (same content)")
    parser.add_argument("--timeout", type=float, default=300.0, metavar="SECONDS",
                        help="give up on one dump after this long (an error row; default 300)")
    parser.add_argument("--memory-limit", type=int, default=None, metavar="MB",
                        help="address-space cap of each local worker process (POSIX)")
    parser.add_argument("--with", dest="with_tables", default="", metavar="TABLES",
                        help="optional tables to fill as well: handles")
    parser.add_argument("--report", metavar="FILE.html",
                        help="write the self-contained HTML report of the database")
    parser.add_argument("--export", metavar="DIR",
                        help="write every table to DIR (format: --format parquet|jsonl|csv)")
    parser.add_argument("--top", type=int, default=10, metavar="N",
                        help="buckets in the summary (default 10)")
    # `--format` is the common output option; for --export it also takes parquet (the default
    # export format when --format is left at its text default).
    for action in parser._actions:                   # noqa: SLF001 - argparse has no public list
        if "--format" in action.option_strings and action.choices is not None:
            action.choices = list(action.choices) + ["parquet"]
            action.help = (action.help or "") + "; with --export: parquet (default), jsonl, csv"


def _paths(args: argparse.Namespace) -> List[str]:
    paths = list(args.paths)
    if args.from_list:
        from pykd_ext.batch.inputs import read_list
        try:
            paths.extend(read_list(args.from_list))
        except OSError as err:
            raise PykdExtError("cannot read the list: %s" % (err.strerror or err), args.from_list)
    return paths


def _with_tables(text: str) -> List[str]:
    from pykd_ext.batch.analyze import OPTIONAL_TABLES
    asked = [t.strip() for t in text.split(",") if t.strip()]
    unknown = [t for t in asked if t not in OPTIONAL_TABLES + ("processes", "threads", "drivers",
                                                                "stack_frames")]
    if unknown:
        raise PykdExtError("--with: unknown table(s) %s; optional tables: %s"
                           % (", ".join(unknown), ", ".join(OPTIONAL_TABLES)))
    return [t for t in asked if t in OPTIONAL_TABLES]


def _require_batch_extra() -> None:
    missing = []
    for module in ("duckdb", "numpy"):
        try:
            __import__(module)
        except ImportError:
            missing.append(module)
    if missing:
        raise PykdExtError("the batch command needs %s: pip install 'pykd-ext[batch]'"
                           % " and ".join(missing))


def run(session: Session, args: argparse.Namespace) -> Result:
    _require_batch_extra()
    from pykd_ext.batch.local import default_jobs
    from pykd_ext.batch.run import BatchOptions, run_batch, summary
    paths = _paths(args)
    export_format = args.format if args.format in ("parquet", "jsonl", "csv") else "parquet"
    if args.format == "parquet":
        args.format = "text"                         # the summary itself prints as text
    if not paths and not args.report and not args.export:
        raise PykdExtError("nothing to do: give dump files or folders (or --report/--export "
                           "for an existing database)")
    if not paths and not os.path.exists(args.db):
        raise PykdExtError("no such database (give dump paths to create it)", args.db)
    notes: List[str] = []
    meta: Dict[str, Any] = {"db": args.db}
    if paths:
        options = BatchOptions(db=args.db, jobs=args.jobs or default_jobs(), dask=args.dask,
                               resume=args.resume, timeout=args.timeout,
                               memory_limit_mb=args.memory_limit,
                               with_tables=_with_tables(args.with_tables),
                               progress=None if not args.quiet else False)
        stats = run_batch(paths, options)
        meta.update(inputs=stats.inputs, distinct=stats.distinct, analysed=stats.analysed,
                    reused=stats.reused, skipped=stats.skipped, errors=stats.errors,
                    seconds=round(stats.seconds, 3))
        notes.append("%d input file(s), %d distinct; analysed %d, reused %d, skipped %d (resume); "
                     "%d error row(s); %.1f s -> %s" % (stats.inputs, stats.distinct,
                                                        stats.analysed, stats.reused,
                                                        stats.skipped, stats.errors,
                                                        stats.seconds, args.db))
        if stats.interrupted:
            sys.stderr.write("pykd-ext: batch interrupted: %d of %d analysed and stored; run the "
                             "same command with --resume to continue\n"
                             % (stats.analysed, stats.distinct))
            raise KeyboardInterrupt
    if args.export:
        from pykd_ext.batch.store import Store
        store = Store(args.db, read_only=True)
        try:
            written = store.export(args.export, export_format)
        finally:
            store.close()
        notes.append("exported %d table(s) as %s to %s" % (len(written), export_format, args.export))
    if args.report:
        from pykd_ext.batch.report import write_report
        write_report(args.db, args.report)
        notes.append("report: %s" % args.report)
    found = summary(args.db, args.top)
    meta["counts"] = found["counts"]
    return Result(command="batch", columns=_COLUMNS, records=found["buckets"], meta=meta,
                  notes=notes)
