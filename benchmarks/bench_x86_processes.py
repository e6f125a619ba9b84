"""32-bit Windows: `ps` + `threads` (JSON) vs Volatility 3 `windows.pslist` + `windows.threads`.

    python3 benchmarks/bench_x86_processes.py [--processes 200] [--threads 20] [--repeat 3]
                                              [--build 10.0.19041.1288-x86]

Forges (pykd_ext.forge.x86_kernel) a PAE (or non-PAE, by build) PAGEDUMP with the given process
and thread counts, gives Volatility a copy of the derived ISF with the forge's symbol RVAs (offline,
private cache), and prints the medians of: our `ps` + `threads` for all processes in a fresh
process each (`pykd-ext ... --format json`), Volatility's two plugins in one in-process run
(kernel search included, as `vol` does), their ratio, and our peak RSS. Prints; never asserts.
"""
import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tests", "agreement"))

from pykd_ext.forge.x86_kernel import (ProcessSpec32, ThreadSpec32, X86Scenario,  # noqa: E402
                                       build_x86, volatility_isf)

SHARED = os.environ.get("PYKD_EXT_SHARED", os.path.join(os.path.dirname(REPO), "shared"))


def _ours(path: str) -> float:
    code = ("import io,sys,resource; from pykd_ext.cli import run_command; "
            "o=io.StringIO(); a=run_command(['ps','--target',%r,'--format','json','-q'],out=o); "
            "b=run_command(['threads','--target',%r,'--format','json','-q'],out=o); "
            "sys.stderr.write('%%d' %% resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)") % (path, path)
    t = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    elapsed = time.perf_counter() - t
    _ours.rss = int(done.stderr.strip().splitlines()[-1])        # type: ignore[attr-defined]
    return elapsed


def _volatility(path: str, isf: str, cache: str) -> float:
    code = ("import sys; sys.path.insert(0,%r); from volatility3.framework import constants; "
            "constants.OFFLINE=True; constants.CACHE_PATH=%r; from volrun import VolatilityRun; "
            "r=VolatilityRun(%r,%r); r.rows('windows.pslist.PsList'); r.rows('windows.threads.Threads')"
            % (os.path.join(REPO, "tests", "agreement"), cache, path, isf))
    t = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], capture_output=True, check=True)
    return time.perf_counter() - t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--processes", type=int, default=200)
    parser.add_argument("--threads", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--build", default="10.0.19041.1288-x86")
    args = parser.parse_args()
    procs = []
    tid = 8
    for n in range(args.processes):
        threads = [ThreadSpec32(tid + 4 * i) for i in range(args.threads)]
        tid += 4 * args.threads
        procs.append(ProcessSpec32(4 if n == 0 else 400 + 4 * n, 0 if n == 0 else 4,
                                   "System" if n == 0 else "proc%03d.exe" % n, threads))
    with tempfile.TemporaryDirectory() as folder:
        t = time.perf_counter()
        forged = build_x86(X86Scenario(args.build, procs))
        path = forged.write(os.path.join(folder, "x86.dmp"), "bitmap")
        isf = volatility_isf(forged, os.path.join(SHARED, "isf-derived", args.build + ".json.xz"),
                             os.path.join(folder, "isf"))
        print("forged %s (%s): %d processes, %d threads, %.1f MB, %.1f s"
              % (args.build, "PAE" if forged.pae else "non-PAE", args.processes,
                 args.processes * args.threads, os.path.getsize(path) / 1e6, time.perf_counter() - t))
        ours = [_ours(path) for _ in range(args.repeat)]
        cache = os.path.join(folder, "volcache")
        os.makedirs(cache)
        vol = [_volatility(path, isf, cache) for _ in range(args.repeat)]
        print("ours (ps + threads, JSON, fresh process): median %.2f s; peak RSS %.0f MB"
              % (statistics.median(ours), _ours.rss / 1024))             # type: ignore[attr-defined]
        print("Volatility 3 (pslist + threads):          median %.2f s" % statistics.median(vol))
        print("ratio Volatility / ours: %.1fx" % (statistics.median(vol) / statistics.median(ours)))


if __name__ == "__main__":
    main()
