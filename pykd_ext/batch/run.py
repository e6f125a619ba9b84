"""One batch run: inputs -> hashes -> tasks -> a runner -> the database, with progress.

Why a module apart from the command: the command parses arguments and renders a summary; this is
the loop both the CLI and the benchmarks drive. It hashes every input (sha256), gives every path
of already-known content its row without analysing it again (within the run, and with
`resume=True` across runs), sends one task per distinct content to the runner (local processes
or Dask), and writes results as they stream back, in small transactions, so an interrupted run
keeps everything finished before the interruption and `--resume` carries on from there.
"""
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence

from pykd_ext.batch.inputs import InputFile, discover, group_by_content, hash_file
from pykd_ext.batch.store import Store
from pykd_ext.batch.worker import DEFAULT_ANALYZE

#: results written per transaction (and at least every FLUSH_SECONDS)
FLUSH_RESULTS = 64
FLUSH_SECONDS = 2.0


@dataclass
class BatchOptions:
    """How a batch run works: where results go, how many workers (or which Dask cluster), limits, what
    to analyse."""

    db: str
    jobs: int = 1
    dask: Optional[str] = None
    resume: bool = False
    timeout: Optional[float] = 300.0
    memory_limit_mb: Optional[int] = None
    with_tables: Sequence[str] = ()
    analyze: str = DEFAULT_ANALYZE
    progress: Optional[bool] = None          # None: on a TTY
    on_result: Optional[Callable[[Dict[str, Any]], None]] = None   # tests, benchmarks


@dataclass
class BatchStats:
    """What a batch run did: inputs seen, analysed, reused, skipped, failed, and how long it took."""

    inputs: int = 0
    distinct: int = 0
    analysed: int = 0
    reused: int = 0                          # paths whose content was already analysed
    skipped: int = 0                         # --resume: path already held with the same content
    errors: int = 0
    seconds: float = 0.0
    interrupted: bool = False
    notes: List[str] = field(default_factory=list)


def _progress(total: int, enabled: Optional[bool]) -> Any:
    """A tqdm bar with ETA on stderr when it is a TTY (or when asked), else a no-op."""
    if enabled is None:
        enabled = sys.stderr.isatty()
    if not enabled or total == 0:
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, unit="dump", file=sys.stderr, dynamic_ncols=True, leave=False,
                desc="batch")


def _runner(options: BatchOptions, tasks: List[Dict[str, Any]]) -> Iterator[Dict[str, Any]]:
    if options.dask:
        from pykd_ext.batch.dask_runner import run_on_dask
        return run_on_dask(options.dask, tasks, timeout=options.timeout)
    from pykd_ext.batch.local import LocalPool
    pool = LocalPool(jobs=options.jobs, timeout=options.timeout,
                     memory_limit_mb=options.memory_limit_mb)
    return pool.run(tasks)


def run_batch(paths: Sequence[str], options: BatchOptions) -> BatchStats:
    """Analyse `paths` into `options.db`; KeyboardInterrupt stops cleanly (stats.interrupted)."""
    stats = BatchStats()
    started = time.monotonic()
    store = Store(options.db)
    try:
        items = [hash_file(item) for item in discover(paths)]
        stats.inputs = len(items)
        groups, problems = group_by_content(items)
        stats.distinct = len(groups)
        pending: List[Dict[str, Any]] = []
        held = store.held() if options.resume else {}
        analysed = store.analysed() if options.resume else {}
        tasks: List[Dict[str, Any]] = []
        for item in problems:
            pending.append({"sha256": None, "paths": [(item.path, item.size)], "status": "error",
                            "error": item.error, "record": None, "elapsed_ms": None})
        for sha, group in groups.items():
            fresh = [g for g in group if held.get(g.path) != sha]
            stats.skipped += len(group) - len(fresh)
            if not fresh:
                continue
            if sha in analysed:
                stats.reused += len(fresh)
                pending.append({"sha256": sha, "paths": [(g.path, g.size) for g in fresh],
                                "copy_from": analysed[sha]})
                continue
            stats.reused += len(fresh) - 1
            tasks.append({"sha256": sha, "paths": [(g.path, g.size) for g in fresh],
                          "with": list(options.with_tables), "analyze": options.analyze})
        stats.errors += len(problems)
        store.write(pending)
        pending = []
        bar = _progress(len(tasks), options.progress)
        last_flush = time.monotonic()
        try:
            for result in _runner(options, tasks):
                pending.append(result)
                stats.analysed += 1
                if result.get("status") != "ok":
                    stats.errors += len(result.get("paths") or [])
                if options.on_result is not None:
                    options.on_result(result)
                if bar is not None:
                    bar.update(1)
                now = time.monotonic()
                if len(pending) >= FLUSH_RESULTS or now - last_flush >= FLUSH_SECONDS:
                    store.write(pending)
                    pending = []
                    last_flush = now
        except KeyboardInterrupt:
            stats.interrupted = True
        finally:
            if bar is not None:
                bar.close()
            store.write(pending)
    finally:
        store.close()
        stats.seconds = time.monotonic() - started
    return stats


def summary(db: str, limit: int = 10) -> Dict[str, Any]:
    """Top buckets and status counts of a database (what the command prints at the end)."""
    store = Store(db, read_only=True)
    try:
        return {"buckets": store.top_buckets(limit), "counts": store.counts()}
    finally:
        store.close()


__all__ = ["BatchOptions", "BatchStats", "InputFile", "run_batch", "summary"]
