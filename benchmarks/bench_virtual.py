"""Benchmark the virtual-only readers on the real dumps (prints medians; asserts nothing).

Measures, for each file in ../shared/real: open_target + info() wall time in this process
(median of 7 fresh opens), the same in a fresh interpreter (median of 3; what WinDbg's `!py`
pays per command), and random 8-byte reads per second through the sparse address space.

Run: python benchmarks/bench_virtual.py [--shared PATH]
"""
import argparse
import os
import random
import statistics
import subprocess
import sys
import time
from typing import List, Tuple

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FILES = ["kernel-triage/win10-19041-x64-triage.dmp", "kernel-triage/win10-17763-x64-triage.dmp",
         "user-dumps/win10-17134-wow64-fullmem.dmp", "user-dumps/win10-17134-x64-userdu64.dmp"]


def _open_once(path: str) -> float:
    from pykd_ext.targets.opener import open_target
    start = time.perf_counter()
    target = open_target(path)
    target.info()
    elapsed = time.perf_counter() - start
    target.close()
    return elapsed


def _fresh_process(path: str) -> float:
    code = ("import time; t=time.perf_counter(); from pykd_ext.targets.opener import open_target;"
            "open_target(%r).info(); print(time.perf_counter()-t)" % path)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=REPO)
    return float(out.stdout.strip())


def _reads_per_second(path: str, count: int = 200_000) -> Tuple[float, int]:
    from pykd_ext.targets.opener import open_target
    target = open_target(path)
    space = target.kernel
    regions: List[Tuple[int, int]] = [(s, n) for s, n in space.regions() if n >= 8]
    rng = random.Random(1)
    weights = [n for _, n in regions]
    picks = rng.choices(regions, weights=weights, k=count)
    addresses = [start + rng.randrange(0, size - 7) for start, size in picks]
    read = space.read
    start = time.perf_counter()
    for address in addresses:
        read(address, 8)
    elapsed = time.perf_counter() - start
    target.close()
    return count / elapsed, len(regions)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", default=os.path.join(os.path.dirname(REPO), "shared"))
    args = parser.parse_args()
    print("%-45s %12s %14s %14s %8s" % ("file", "open+info", "fresh process", "8-byte reads/s",
                                         "regions"))
    for name in FILES:
        path = os.path.join(args.shared, "real", name)
        _open_once(path)                                   # warm imports and page cache
        in_process = statistics.median(_open_once(path) for _ in range(7))
        fresh = statistics.median(_fresh_process(path) for _ in range(3))
        rate, regions = _reads_per_second(path)
        print("%-45s %10.1fms %12.1fms %14.0f %8d" % (name, in_process * 1e3, fresh * 1e3, rate,
                                                      regions))
    return 0


if __name__ == "__main__":
    sys.exit(main())
