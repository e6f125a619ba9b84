"""Benchmark `handles --all` (JSON) against Volatility 3's `windows.handles` on the same forged dump,
in the same run. Prints medians, the ratio and the peak RSS of each side; asserts nothing.

The dump: the forge's bulk scenario (`pykd_ext.forge.scenario.bulk_scenario`, written with
`pykd_ext.forge.kernel_objects.write_scenario_dump`) with every process given the same number of
handles: default 400 processes and 200,000 handles (500 each: two entry pages, a level-1 table),
Windows 10 19041. The handles refer to each process's own process, token and thread objects (what
the scenario builder plants), so both readers decode types and per-type names for every one.

Both sides run as a user would run them, each in a fresh interpreter
(`python -m pykd_ext.cli handles --all ...` and `vol -r json windows.handles`), so both pay
start-up, imports, dump open and symbol loading; their JSON is read and discarded. Our command
is also timed in-process (warm: layouts imported, file mapped) to show the decode cost alone.

Run: python3 benchmarks/bench_handles.py [--processes 400] [--handles 200000] [--build 19041]
     [--repeat 5] [--vol-repeat 3] [--keep DIR]
"""
import argparse
import io
import os
import shutil
import statistics
import sys
import tempfile
import time
from typing import Tuple

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_common import add_common_arguments, median_runs, volatility_command  # noqa: E402


def forge(path: str, processes: int, handles: int, build: str) -> Tuple[int, int]:
    from pykd_ext.forge.kernel_objects import write_scenario_dump
    from pykd_ext.forge.scenario import bulk_scenario
    spec = bulk_scenario(processes - 1, 1)
    per_process = max(1, handles // processes)
    for proc in spec.processes:
        proc.handles = per_process
    planted = write_scenario_dump(path, spec, build)
    total = sum(p["handle_count"] or 0 for p in planted.processes)
    return len(spec.processes), total


def in_process(path: str, repeat: int) -> Tuple[float, int]:
    """Median warm in-process seconds of `handles --all` (JSON) and the number of records."""
    import json
    from pykd_ext.cli import run_command
    out = io.StringIO()
    run_command(["handles", "--all", "--target", path, "--format", "json", "-q"], out=out)   # warm up
    count = len(json.loads(out.getvalue())["records"])
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        code = run_command(["handles", "--all", "--target", path, "--format", "json", "-q"], out=io.StringIO())
        times.append(time.perf_counter() - start)
        assert code == 0
    return statistics.median(times), count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=400)
    parser.add_argument("--handles", type=int, default=200000)
    add_common_arguments(parser)
    args = parser.parse_args()

    folder = args.keep or tempfile.mkdtemp(prefix="bench-handles-")
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, "handles-%s-%d-%d.dmp" % (args.build, args.processes, args.handles))
    try:
        start = time.perf_counter()
        if not os.path.exists(path):
            n_proc, n_handles = forge(path, args.processes, args.handles, args.build)
        else:
            n_proc, n_handles = args.processes, args.handles
        print("dump: %s (%.1f MiB, %d processes, %d handles, build %s), forged in %.1f s"
              % (path, os.path.getsize(path) / 2 ** 20, n_proc, n_handles, args.build,
                 time.perf_counter() - start))
        py = sys.executable
        ours = [[py, "-m", "pykd_ext.cli", "handles", "--all", "--target", path, "--format", "json", "-q"]]
        vol_exe = volatility_command()
        theirs = [[vol_exe, "-q", "-f", path, "-s", args.isf, "-r", "json", "windows.handles"]]
        # children first: Linux reports a forked child's peak RSS from the parent's size at fork,
        # so the in-process run (which grows this process) comes last
        ours_s, ours_cpu, ours_rss = median_runs(ours, args.repeat)
        print("pykd-ext handles --all (JSON), fresh process, median of %d: wall %.2f s, CPU %.2f s, "
              "peak RSS %.0f MiB" % (args.repeat, ours_s, ours_cpu, ours_rss / 1024))
        vol_s, vol_cpu, vol_rss = median_runs(theirs, args.vol_repeat)
        print("Volatility 3 windows.handles (JSON), median of %d: wall %.2f s, CPU %.2f s, "
              "peak RSS %.0f MiB" % (args.vol_repeat, vol_s, vol_cpu, vol_rss / 1024))
        print("ratio (Volatility / pykd-ext): wall %.1fx, CPU %.1fx" % (vol_s / ours_s, vol_cpu / ours_cpu))
        warm, records = in_process(path, args.repeat)
        print("pykd-ext handles --all in-process (warm), median of %d: %.3f s (%d handle records)"
              % (args.repeat, warm, records))
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
