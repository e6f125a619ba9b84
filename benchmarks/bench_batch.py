"""`pykd-ext batch` throughput (issue 13): forged triage dumps plus the real ones.

    python3 benchmarks/bench_batch.py [--dumps 1000] [--repeat 3] [--shell-sample 40]
        [--seed 13] [--real ../shared/real/kernel-triage] [--no-dask] [--keep DIR]

Forges `--dumps` varied triage dumps (`pykd_ext.forge.triage_dump.write_corpus`, six kernel
builds) and adds the real triage dumps, then measures, median of `--repeat` runs, each into a
fresh database:
- dumps/s with `--jobs 1` and `--jobs 2` (local worker processes; goal: >= 1.7x from 1 to 2);
- dumps/s on a Dask `LocalCluster` of 2 worker processes (the first run includes the workers'
  warm-up; later runs find them warm, so first and median are both printed);
- dumps/s of the obvious alternative, a shell loop of `pykd-ext info --format json FILE` (one
  interpreter per file), timed on the first `--shell-sample` files (goal: batch >= 5x faster);
- peak memory: the parent's and the workers' peak RSS for a quarter of the dumps and for all of
  them (goal: the same: memory does not grow with the number of dumps).
It prints medians and ratios and asserts nothing.
"""
import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any, Callable, Dict, List, Optional

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

from pykd_ext.batch.run import BatchOptions, BatchStats, run_batch  # noqa: E402
from pykd_ext.forge.triage_dump import write_corpus  # noqa: E402


def _timed_runs(label: str, repeat: int, run: Callable[[str], BatchStats], folder: str,
                count: int) -> Dict[str, Any]:
    times: List[float] = []
    stats: Optional[BatchStats] = None
    for index in range(repeat):
        db = os.path.join(folder, "%s-%d.duckdb" % (label.replace(" ", "-"), index))
        start = time.perf_counter()
        stats = run(db)
        times.append(time.perf_counter() - start)
        os.remove(db)
    assert stats is not None
    median = statistics.median(times)
    print("%-28s median %6.2f s  (first %6.2f s)  %7.1f dumps/s  [%d analysed, %d error rows]"
          % (label, median, times[0], count / median, stats.analysed, stats.errors))
    return {"median": median, "first": times[0], "rate": count / median}


def _peak_rss_mib(kind: int) -> float:
    return resource.getrusage(kind).ru_maxrss / 1024.0


_PROBE = """
import sys, threading, time
sys.path.insert(0, %(repo)r)
import psutil
from pykd_ext.batch.run import BatchOptions, run_batch
peak = {"workers": 0}
done = []
def watch():
    me = psutil.Process()
    while not done:
        for child in me.children(recursive=True):
            try:
                peak["workers"] = max(peak["workers"], child.memory_info().rss)
            except psutil.Error:
                pass
        time.sleep(0.05)
watcher = threading.Thread(target=watch, daemon=True)
watcher.start()
run_batch(%(paths)r, BatchOptions(db=%(db)r, jobs=2, progress=False))
done.append(1)
watcher.join()
hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM")][0].split()[1]
print(int(hwm) * 1024, peak["workers"])
"""


def _memory_probe(paths: List[str], folder: str) -> Dict[str, float]:
    """Peak RSS of a fresh interpreter running the batch (its own VmHWM: ru_maxrss would carry
    the benchmark's own peak across fork+exec) and the largest RSS any worker reached (polled)."""
    code = _PROBE % {"repo": REPO, "paths": paths,
                     "db": os.path.join(folder, "memory-%d.duckdb" % len(paths))}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    parent, workers = (int(v) / 2.0 ** 20 for v in out.stdout.split()[-2:])
    return {"parent": parent, "workers": workers}


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--dumps", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--shell-sample", type=int, default=40)
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--real", default=os.path.join(os.path.dirname(REPO), "shared", "real",
                                                       "kernel-triage"))
    parser.add_argument("--no-dask", action="store_true")
    parser.add_argument("--keep", metavar="DIR", help="forge into DIR and keep it")
    args = parser.parse_args(argv)

    folder = args.keep or tempfile.mkdtemp(prefix="bench-batch-")
    corpus = os.path.join(folder, "forged")
    start = time.perf_counter()
    if not (args.keep and os.path.isdir(corpus) and len(os.listdir(corpus)) == args.dumps):
        shutil.rmtree(corpus, ignore_errors=True)
        write_corpus(corpus, args.dumps, seed=args.seed)
    forged_seconds = time.perf_counter() - start
    real = sorted(os.path.join(args.real, n) for n in os.listdir(args.real)) \
        if os.path.isdir(args.real) else []
    files = sorted(os.path.join(corpus, n) for n in os.listdir(corpus)) + real
    count = len(files)
    size = sum(os.path.getsize(f) for f in files)
    print("inputs: %d forged triage dumps (forged in %.1f s) + %d real dumps = %d files, %.1f MiB"
          % (args.dumps, forged_seconds, len(real), count, size / 2 ** 20))
    print("machine: %d CPU(s) usable, Python %s" % (len(os.sched_getaffinity(0))
                                                    if hasattr(os, "sched_getaffinity") else
                                                    os.cpu_count() or 1, sys.version.split()[0]))
    paths = [corpus] + ([args.real] if real else [])

    results: Dict[str, Dict[str, Any]] = {}
    for jobs in (1, 2):
        results["jobs%d" % jobs] = _timed_runs(
            "batch --jobs %d" % jobs, args.repeat,
            lambda db, jobs=jobs: run_batch(paths, BatchOptions(db=db, jobs=jobs, progress=False)),
            folder, count)
    if not args.no_dask:
        from distributed import LocalCluster
        cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                               host="127.0.0.1", dashboard_address=None, silence_logs=40)
        try:
            results["dask"] = _timed_runs(
                "batch --dask (2 workers)", args.repeat,
                lambda db: run_batch(paths, BatchOptions(db=db, dask=cluster.scheduler_address,
                                                         progress=False)),
                folder, count)
        finally:
            cluster.close()

    sample = files[:args.shell_sample]
    exe = shutil.which("pykd-ext") or ""
    command = [exe] if exe else [sys.executable, "-m", "pykd_ext"]
    start = time.perf_counter()
    for path in sample:
        subprocess.run(command + ["info", "--format", "json", "--target", path],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    shell = time.perf_counter() - start
    shell_rate = len(sample) / shell
    print("%-28s %6.2f s for %d files      %7.1f dumps/s  (one `info --format json` per file)"
          % ("shell loop of pykd-ext info", shell, len(sample), shell_rate))

    print("ratios: jobs 2 / jobs 1 = %.2fx (goal >= 1.7); batch jobs 2 / shell loop = %.1fx "
          "(goal >= 5)" % (results["jobs2"]["rate"] / results["jobs1"]["rate"],
                           results["jobs2"]["rate"] / shell_rate))
    if "dask" in results:
        print("        dask (2 workers) / jobs 2 = %.2fx" % (results["dask"]["rate"]
                                                            / results["jobs2"]["rate"]))

    quarter = files[:max(1, count // 4)]
    small = _memory_probe(quarter, folder)
    full = _memory_probe(files, folder)
    print("peak RSS, %d dumps: parent %.0f MiB, largest worker %.0f MiB; %d dumps: parent %.0f "
          "MiB, largest worker %.0f MiB (ratio %.2f / %.2f)"
          % (len(quarter), small["parent"], small["workers"], count, full["parent"],
             full["workers"], full["parent"] / small["parent"], full["workers"] / small["workers"]))
    print("this process: peak RSS %.0f MiB" % _peak_rss_mib(resource.RUSAGE_SELF))
    if not args.keep:
        shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
