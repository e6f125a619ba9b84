"""Benchmark `ps` and `threads` (JSON, all processes) against Volatility 3's `windows.pslist` and
`windows.threads` on the same forged dump, in the same run. Prints medians, the ratio and the
peak RSS of each side; asserts nothing.

The dump: H7's forge scenario builder (`benchmarks/bench_processes_dump.bench_dump`:
`pykd_ext.forge.scenario.bulk_scenario` written by `pykd_ext.forge.kernel_objects`): System plus
N-1 processes sharing T threads (default 400 processes, 8,000 threads, Windows 10 19041).

Both sides run as the user would run them, each command in a fresh interpreter
(`python -m pykd_ext.cli ...` and `vol -r json ...`), so both pay their start-up, imports, dump
open and symbol loading; their stdout (the JSON) is read and discarded. Our commands are also
timed in-process (warm: layouts imported, file mapped) to show the decode cost alone.

Run: python3 benchmarks/bench_processes.py [--processes 400] [--threads 8000] [--build 19041]
     [--repeat 5] [--vol-repeat 3] [--keep DIR]
"""
import argparse
import io
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Tuple

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

# DEFAULT_ISF and median_runs stay importable from here (scripts written before bench_common)
from bench_common import (DEFAULT_ISF, REPO, add_common_arguments, median_runs,  # noqa: E402,F401
                          volatility_command)


def forge(path: str, processes: int, threads: int, build: str) -> Tuple[int, int]:
    """The issue's benchmark dump, written by H7's builder (`bench_processes_dump.bench_dump`)
    in a child process: this process must stay small, because children forked from it start with
    its resident pages counted in their peak RSS."""
    code = ("import sys; sys.path.insert(0, %r); from bench_processes_dump import bench_dump; "
            "p = bench_dump(%r, %d, %d, %r); print(len(p.processes), len(p.threads()))"
            % (os.path.join(REPO, "benchmarks"), path, processes, threads, str(build)))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    n_proc, n_thr = out.stdout.split()[-2:]
    return int(n_proc), int(n_thr)


def in_process(path: str, repeat: int) -> Tuple[float, float]:
    """Median warm in-process seconds of ps and of threads (JSON, all processes)."""
    from pykd_ext.cli import run_command
    run_command(["ps", "--target", path, "--format", "json", "-q"], out=io.StringIO())   # warm up
    results = []
    for command in ("ps", "threads"):
        times = []
        for _ in range(repeat):
            start = time.perf_counter()
            code = run_command([command, "--target", path, "--format", "json", "-q"], out=io.StringIO())
            times.append(time.perf_counter() - start)
            assert code == 0
        results.append(statistics.median(times))
    return results[0], results[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=400)
    parser.add_argument("--threads", type=int, default=8000)
    add_common_arguments(parser)
    args = parser.parse_args()

    folder = args.keep or tempfile.mkdtemp(prefix="bench-processes-")
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, "bulk-%s-%d-%d.dmp" % (args.build, args.processes, args.threads))
    try:
        start = time.perf_counter()
        if not os.path.exists(path):
            n_proc, n_thr = forge(path, args.processes, args.threads, args.build)
        else:
            n_proc, n_thr = args.processes, args.threads
        print("dump: %s (%.1f MiB, %d processes, %d threads, build %s), forged in %.1f s"
              % (path, os.path.getsize(path) / 2 ** 20, n_proc, n_thr, args.build, time.perf_counter() - start))

        py = sys.executable
        ours = [[py, "-m", "pykd_ext.cli", cmd, "--target", path, "--format", "json", "-q"]
                for cmd in ("ps", "threads")]
        vol_exe = volatility_command()
        theirs = [[vol_exe, "-q", "-f", path, "-s", args.isf, "-r", "json", plugin]
                  for plugin in ("windows.pslist", "windows.threads")]
        ours_s, ours_cpu, ours_rss = median_runs(ours, args.repeat)
        print("pykd-ext ps + threads (JSON), fresh processes, median of %d: wall %.2f s, CPU %.2f s, "
              "peak RSS %.0f MiB" % (args.repeat, ours_s, ours_cpu, ours_rss / 1024))
        vol_s, vol_cpu, vol_rss = median_runs(theirs, args.vol_repeat)
        print("Volatility 3 windows.pslist + windows.threads (JSON), median of %d: wall %.2f s, CPU %.2f s, "
              "peak RSS %.0f MiB" % (args.vol_repeat, vol_s, vol_cpu, vol_rss / 1024))
        print("ratio (Volatility / pykd-ext): wall %.1fx, CPU %.1fx (goal: >= 10x)"
              % (vol_s / ours_s, vol_cpu / ours_cpu))
        # last: this loads the dump into this process (children forked after it would inherit it)
        ps_warm, threads_warm = in_process(path, args.repeat)
        print("pykd-ext in-process (warm), median of %d: ps %.3f s, threads %.3f s"
              % (args.repeat, ps_warm, threads_warm))
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
