"""`!py eproc lsass.exe` cost from a fresh interpreter, against the stand-in pykd.

    python3 benchmarks/bench_pykd_entry.py [--repeat 7] [--build 19041] [--keep DIR]

Why: WinDbg's bootstrapper runs every `!py` command in a fresh sub-interpreter (local mode), so
import time is paid on every command. This forges the standard scenario dump, then times, each
in a fresh `python` process (median of `--repeat` runs):
- the bare interpreter start-up (baseline);
- `import pykd_ext.windbg.entry` plus the `eproc` command module (what a script imports first);
- `scripts/eproc.py lsass.exe` run as the bootstrapper runs it (runpy as `__main__`, `sys.argv`,
  recursion limit 500) with the stand-in pykd serving the dump: the whole `!py eproc` cost;
- the same with layouts built from typeInfo (no shipped GUID match): cold (building the ISF
  from typeInfo and caching it under $PYKD_EXT_HOME/typeinfo) and warm (cache hit);
- `pykd-ext eproc lsass.exe --target DUMP` (the CLI, for comparison).
It also prints the number of pykd calls one `eproc` makes (the stand-in counts them).
Nothing is asserted: it prints medians and ratios.
"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Dict, List

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STANDIN = os.path.join(REPO, "tests", "standin")

BOOTSTRAP = r'''
import runpy, sys
sys.argv = [{script!r}] + {args!r}
sys.path.insert(0, {folder!r})
sys.setrecursionlimit(500)
runpy.run_path({script!r}, run_name="__main__")
'''

COUNT_CALLS = r'''
import io, runpy, sys
import pykd
out = io.StringIO(); saved = sys.stdout; sys.stdout = out
sys.argv = [{script!r}, "lsass.exe"]
sys.setrecursionlimit(500)
runpy.run_path({script!r}, run_name="__main__")
sys.stdout = saved
calls = pykd._standin_calls()
print(sum(calls.values()), calls.get("loadBytes", 0), calls.get("typeInfo", 0))
import time
pykd._state.isf = None; pykd._ISF_CACHE.clear()
start = time.perf_counter(); pykd._state.load_isf(); print(time.perf_counter() - start)
'''

NO_GUID = r'''
import pykd_ext.layouts.registry as registry
registry.find_by_guid = lambda guid, age: None
'''


def timed(argv: List[str], env: Dict[str, str], repeat: int) -> float:
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        proc = subprocess.run(argv, env=env, cwd=REPO, capture_output=True, text=True)
        samples.append(time.perf_counter() - start)
        if proc.returncode != 0:
            raise SystemExit("failed: %s\n%s" % (" ".join(argv), proc.stderr))
    return statistics.median(samples)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--build", type=int, default=19041)
    parser.add_argument("--keep", metavar="DIR", help="write the dump to DIR (kept)")
    args = parser.parse_args()

    from pykd_ext.forge.kernel_objects import write_scenario_dump
    from pykd_ext.forge.scenario import standard_scenario
    folder = args.keep or tempfile.mkdtemp(prefix="bench-pykd-")
    dump = os.path.join(folder, "standard-%d.dmp" % args.build)
    write_scenario_dump(dump, standard_scenario(), args.build, overwrite=True)
    home = tempfile.mkdtemp(prefix="bench-pykd-home-")
    env = dict(os.environ, PYTHONPATH=STANDIN + os.pathsep + os.environ.get("PYTHONPATH", ""),
               PYKD_STANDIN_DUMP=dump, PYKD_EXT_HOME=home)
    env.pop("PYTHONDONTWRITEBYTECODE", None)      # byte-code caches as on a user's machine
    script = os.path.join(REPO, "scripts", "eproc.py")
    py = sys.executable
    boot = BOOTSTRAP.format(script=script, args=["lsass.exe"], folder=os.path.dirname(script))

    # warm the bytecode caches once so every timed run sees the same state
    subprocess.run([py, "-c", boot], env=env, cwd=REPO, capture_output=True)
    rows = []
    base = timed([py, "-c", "pass"], env, args.repeat)
    rows.append(("interpreter start-up", base))
    imports = timed([py, "-c", "import pykd_ext.windbg.entry, pykd_ext.commands.eproc"], env, args.repeat)
    rows.append(("import entry + eproc command", imports))
    full = timed([py, "-c", boot], env, args.repeat)
    rows.append(("!py eproc lsass.exe (shipped layouts, GUID match)", full))
    cold_samples = []
    for _ in range(args.repeat):
        shutil.rmtree(os.path.join(home, "typeinfo"), ignore_errors=True)
        cold_samples.append(timed([py, "-c", NO_GUID + boot], env, 1))
    rows.append(("!py eproc lsass.exe (typeInfo layouts, cold: build + cache)", statistics.median(cold_samples)))
    warm = timed([py, "-c", NO_GUID + boot], env, args.repeat)
    rows.append(("!py eproc lsass.exe (typeInfo layouts, cache hit)", warm))
    cli = timed([py, "-m", "pykd_ext", "eproc", "lsass.exe", "--target", dump], env, args.repeat)
    rows.append(("pykd-ext eproc lsass.exe --target DUMP (CLI)", cli))

    print("bench_pykd_entry: build %d, median of %d fresh processes each (Python %s)"
          % (args.build, args.repeat, sys.version.split()[0]))
    for label, value in rows:
        extra = "" if label.startswith("interpreter") else "  (+%.0f ms over start-up)" % ((value - base) * 1000)
        print("  %-62s %7.1f ms%s" % (label, value * 1000, extra))
    print("  ratio !py eproc / CLI eproc: %.2f" % (full / cli))
    proc = subprocess.run([py, "-c", COUNT_CALLS.format(script=script)], env=env, cwd=REPO,
                          capture_output=True, text=True)
    total, loads, types, isf_seconds = proc.stdout.split()
    print("  pykd calls per !py eproc: %s (loadBytes %s, typeInfo %s)" % (total, loads, types))
    print("  of which the stand-in's own ISF decoding (not a cost in WinDbg): %.0f ms per run"
          % (float(isf_seconds) * 1000))
    return 0


if __name__ == "__main__":
    sys.exit(main())
