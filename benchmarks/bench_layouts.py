"""Layout costs that matter to `!py` (a fresh interpreter per command) and to walkers.

    python benchmarks/bench_layouts.py [--repeat N]

Prints medians of:
- import + compile of one build's layouts in a fresh interpreter (registry import, the build
  module, `_EPROCESS` compiled, one dotted field resolved), with and without cached bytecode;
- one field read through a precompiled reader on a cached buffer, vs a full construct parse of
  the same structure, vs a bare `struct.unpack_from` (the floor);
- layout choice by fingerprint on the real triage dumps (when ../shared is present).
Nothing here is asserted; the numbers go in the report.
"""
import argparse
import os
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import timeit
from pathlib import Path

BUILD = "10.0.19041.1288"
REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("PYKD_EXT_SHARED", str(REPO.parent / "shared")))

SNIPPET = """
import time
t0 = time.perf_counter()
from pykd_ext.layouts.registry import load_layouts
lay = load_layouts(%r)
t1 = time.perf_counter()
ep = lay.type("_EPROCESS")
ep.field("Pcb.DirectoryTableBase"); ep.reader("UniqueProcessId")
t2 = time.perf_counter()
print("%%.6f %%.6f" %% (t1 - t0, t2 - t1))
""" % BUILD


def fresh_import(repeat: int) -> None:
    for label, cached in (("no bytecode cache (first run / PYTHONDONTWRITEBYTECODE)", False),
                          ("bytecode cached (.pyc)", True)):
        with tempfile.TemporaryDirectory() as cache:
            env = dict(os.environ)
            if cached:
                env.pop("PYTHONDONTWRITEBYTECODE", None)
                env["PYTHONPYCACHEPREFIX"] = cache
                subprocess.run([sys.executable, "-c", SNIPPET], env=env, check=True, capture_output=True)
            else:
                env["PYTHONDONTWRITEBYTECODE"] = "1"
            loads, compiles, totals = [], [], []
            for _ in range(repeat):
                t0 = time.perf_counter()
                out = subprocess.run([sys.executable, "-c", SNIPPET], env=env, check=True,
                                     capture_output=True, text=True).stdout.split()
                totals.append(time.perf_counter() - t0)
                loads.append(float(out[0]))
                compiles.append(float(out[1]))
        print("import one build (%s), %s:" % (BUILD, label))
        print("  load_layouts (registry + module)  median %7.1f ms  (min %.1f)"
              % (1e3 * statistics.median(loads), 1e3 * min(loads)))
        print("  compile _EPROCESS + 1 dotted path  median %7.2f ms  (min %.2f)"
              % (1e3 * statistics.median(compiles), 1e3 * min(compiles)))
        print("  whole interpreter run              median %7.1f ms  (min %.1f)"
              % (1e3 * statistics.median(totals), 1e3 * min(totals)))


def field_access(repeat: int) -> None:
    from pykd_ext.layouts.registry import load_layouts
    lay = load_layouts(BUILD)
    ep = lay.type("_EPROCESS")
    data = bytes(range(256)) * (ep.size // 256 + 1)
    data = data[:ep.size]
    reader = ep.reader("Pcb.DirectoryTableBase")
    bits = ep.reader("PrimaryTokenFrozen")
    offset = ep.offset("Pcb.DirectoryTableBase")
    unpack = struct.Struct("<Q").unpack_from
    n = 200000

    def per_call(stmt, number: int) -> float:
        return statistics.median(timeit.repeat(stmt, number=number, repeat=repeat)) / number

    r = per_call(lambda: reader(data), n)
    b = per_call(lambda: bits(data), n)
    u = per_call(lambda: unpack(data, offset), n)
    p = per_call(lambda: ep.parse(data), 20)
    print("field access on a cached _EPROCESS (0x%x bytes):" % ep.size)
    print("  reader('Pcb.DirectoryTableBase')   median %7.3f us" % (1e6 * r))
    print("  reader(bitfield PrimaryTokenFrozen) median %7.3f us" % (1e6 * b))
    print("  bare struct.unpack_from (floor)    median %7.3f us" % (1e6 * u))
    print("  construct parse of whole struct    median %7.3f ms  (%.0fx a reader call)" % (1e3 * p, p / r))


def choice(repeat: int) -> None:
    triage = SHARED / "real" / "kernel-triage"
    if not triage.is_dir():
        print("layout choice: skipped (no %s)" % triage)
        return
    from pykd_ext.layouts.select import choose_for_target
    from pykd_ext.targets.opener import open_target
    for dump in sorted(triage.glob("*.dmp")):
        times = []
        for _ in range(repeat):
            target = open_target(str(dump))
            t0 = time.perf_counter()
            lay = choose_for_target(target)
            times.append(time.perf_counter() - t0)
            target.close()
        print("layout choice by fingerprint, %s: median %.1f ms -> %s (%d candidates, %d fit)"
              % (dump.name, 1e3 * statistics.median(times), lay.build_id,
                 len(lay.choice["candidates"]), len(lay.choice["fits"])))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    fresh_import(args.repeat)
    field_access(args.repeat)
    choice(max(3, args.repeat // 2))


if __name__ == "__main__":
    main()
