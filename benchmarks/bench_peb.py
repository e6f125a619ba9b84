"""Benchmark `peb --all` + `modules` (JSON, every process) against Volatility 3's
`windows.cmdline` + `windows.envars` + `windows.dlllist` on the same forged dump, same run.
Prints medians, the ratio and the peak RSS of each side; asserts nothing.

The dump: `bulk_scenario` (System plus N-1 user processes, each with a PEB, process parameters,
an environment block, loader lists and TEBs from `pykd_ext.forge.user_objects`), Windows 10 19041.
Both sides run in fresh interpreters as a user would run them (`python -m pykd_ext ...` and
`vol -r json ...`); their stdout is drained and discarded. Our commands are also timed warm
in-process (layouts imported, file mapped) to show the decode cost alone.

Run: python3 benchmarks/bench_peb.py [--processes 200] [--build 19041] [--repeat 5] [--vol-repeat 3]
"""
import argparse
import io
import os
import shutil
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_common import add_common_arguments, median_runs, volatility_command  # noqa: E402


def forge(path: str, processes: int, build: str) -> int:
    from pykd_ext.forge.kernel_objects import write_scenario_dump
    from pykd_ext.forge.scenario import bulk_scenario
    spec = bulk_scenario(processes - 1, 2)
    write_scenario_dump(path, spec, build)
    return len(spec.processes)


def warm(path: str, repeat: int) -> float:
    from pykd_ext.cli import run_command
    argvs = (["peb", "--all"], ["modules"])
    for argv in argvs:
        run_command(argv + ["--target", path, "--format", "json", "-q"], out=io.StringIO())
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        for argv in argvs:
            run_command(argv + ["--target", path, "--format", "json", "-q"], out=io.StringIO())
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=200)
    add_common_arguments(parser, keep=False)
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="bench-peb-")
    try:
        path = os.path.join(work, "bulk.dmp")
        count = forge(path, args.processes, args.build)
        print("dump: %s, %d processes, %.1f MiB" % (path, count, os.path.getsize(path) / 2 ** 20))
        ours = [[sys.executable, "-m", "pykd_ext", cmd] + extra + ["--target", path, "-f", "json", "-q"]
                for cmd, extra in (("peb", ["--all"]), ("modules", []))]
        vol = [[volatility_command(), "-q", "-r", "json", "-s", args.isf, "-f", path, plugin]
               for plugin in ("windows.cmdline", "windows.envars", "windows.dlllist")]
        our_wall, our_cpu, our_rss = median_runs(ours, args.repeat)
        vol_wall, vol_cpu, vol_rss = median_runs(vol, args.vol_repeat)
        print("pykd-ext peb --all + modules : median wall %.2f s, cpu %.2f s, peak RSS %.0f MiB"
              % (our_wall, our_cpu, our_rss / 1024))
        print("vol cmdline + envars + dlllist: median wall %.2f s, cpu %.2f s, peak RSS %.0f MiB"
              % (vol_wall, vol_cpu, vol_rss / 1024))
        print("ratio (vol / ours): wall %.1fx, cpu %.1fx" % (vol_wall / our_wall, vol_cpu / our_cpu))
        print("pykd-ext warm in-process (decode only): median %.3f s" % warm(path, args.repeat))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
