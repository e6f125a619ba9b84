"""The benchmark dump of issue 4 (400 processes, 8,000 threads) and the forge's own cost.

    python3 benchmarks/bench_processes_dump.py [--processes 400] [--threads 8000]
        [--build win10] [--repeat 3] [--keep DIR]

`bench_dump(path, processes, threads, build)` writes the dump `bench_processes.py` measures
`ps`/`threads` against Volatility on (System + processes-1 workers sharing the threads), and
returns the planted facts. Run as a script it prints the median time to forge and write it,
the dump size and the forge's peak RSS; it asserts nothing.
"""
import argparse
import os
import resource
import statistics
import sys
import tempfile
import time
from typing import Optional

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

from pykd_ext.forge.kernel_objects import Planted, write_scenario_dump  # noqa: E402
from pykd_ext.forge.scenario import bulk_scenario  # noqa: E402


def bench_dump(path: str, processes: int = 400, threads: int = 8000, build: str = "win10",
               overwrite: bool = True) -> Planted:
    """Write the benchmark dump: System plus `processes - 1` processes, `threads` in all."""
    workers = max(1, processes - 1)
    spec = bulk_scenario(workers, 0, name="bench", total_threads=threads)
    return write_scenario_dump(path, spec, build, overwrite=overwrite)


def main(argv: Optional[list] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=400)
    parser.add_argument("--threads", type=int, default=8000)
    parser.add_argument("--build", default="win10")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--keep", metavar="DIR", help="leave the dump in DIR")
    args = parser.parse_args(argv)
    folder = args.keep or tempfile.mkdtemp(prefix="bench-dump-")
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, "bench-%s-%d-%d.dmp" % (args.build, args.processes, args.threads))
    times = []
    planted = None
    for _ in range(args.repeat):
        start = time.perf_counter()
        planted = bench_dump(path, args.processes, args.threads, args.build)
        times.append(time.perf_counter() - start)
    assert planted is not None
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print("forged %s: %d processes, %d threads, %.1f MiB"
          % (path, len(planted.processes), len(planted.threads()), os.path.getsize(path) / 2 ** 20))
    print("forge + write, median of %d: %.2f s (min %.2f s); peak RSS %.0f MiB"
          % (args.repeat, statistics.median(times), min(times), rss / 1024))
    if not args.keep:
        os.remove(path)
        os.rmdir(folder)
    return 0


if __name__ == "__main__":
    sys.exit(main())
