"""Start-up cost of one command: `eproc lsass.exe` on the sample dump against a bare `python -c pass`.

    python3 benchmarks/bench_startup.py [--repeat 5] [--target samples/win10-19041-standard.dmp]

Why: inside WinDbg every `!py` command starts a fresh interpreter, and CI or a read-only
site-packages may run with PYTHONDONTWRITEBYTECODE=1, so nothing compiled at run time is kept.
Goal (issue 10): `eproc lsass.exe` within 4x the CPU of `python -c pass`, with and without bytecode.

What it does: copies the package as it installs (`pykd_ext/` with `structs/` as `pykd_ext/structs`)
into a temporary folder twice: one copy as plain source (what an editable install gives: nothing
compiled, and PYTHONDONTWRITEBYTECODE=1 keeps it so), one compiled with `compileall` (what
`pip install` does at install time). Each command runs in a fresh interpreter (this one, `-I`-free
so site and the venv load as usual) with that copy first on PYTHONPATH and the temporary folder as
the working directory; the CPU time (user + system) of the child comes from `wait4`.
Printed: the median of `--repeat` rounds for each row (each round runs every row once, the
baseline included, so machine noise hits all alike) and its ratio to `python -c pass`.
Nothing is asserted.
"""
import argparse
import compileall
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from typing import Dict, List, Tuple

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def child_cpu(argv: List[str], env: Dict[str, str], cwd: str) -> float:
    """User + system CPU seconds of one child process (from wait4: exact, not the wall clock)."""
    proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status) if hasattr(os, "waitstatus_to_exitcode") else status
    if proc.returncode != 0:
        raise SystemExit("%s failed (%s): %s" % (" ".join(argv), proc.returncode, err.decode(errors="replace")))
    return usage.ru_utime + usage.ru_stime


def interleaved_medians(runs: List[Tuple[List[str], Dict[str, str]]], cwd: str, repeat: int) -> List[float]:
    """The median CPU of each (argv, env) over `repeat` rounds, one run of each per round.

    Why interleaved: a shared machine's noise drifts over seconds; running the baseline and every
    command in the same round makes it hit them alike, so the ratios stay meaningful."""
    for argv, env in runs:
        child_cpu(argv, env, cwd)                   # warm the OS file cache, not timed
    samples: List[List[float]] = [[] for _ in runs]
    for _ in range(repeat):
        for i, (argv, env) in enumerate(runs):
            samples[i].append(child_cpu(argv, env, cwd))
    return [statistics.median(times) for times in samples]


def install_copy(folder: str, compiled: bool) -> str:
    """The package laid out as installed (pykd_ext/structs inside pykd_ext) under folder/site."""
    site = os.path.join(folder, "site")
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(os.path.join(REPO, "pykd_ext"), os.path.join(site, "pykd_ext"), ignore=ignore)
    shutil.copytree(os.path.join(REPO, "structs"), os.path.join(site, "pykd_ext", "structs"), ignore=ignore)
    if compiled:
        compileall.compile_dir(os.path.join(site, "pykd_ext"), quiet=1)
    return site


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--target", default=os.path.join(REPO, "samples", "win10-19041-standard.dmp"))
    opts = ap.parse_args()
    target = os.path.abspath(opts.target)
    work = tempfile.mkdtemp(prefix="bench-startup-")
    try:
        env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
        env.pop("PYTHONPYCACHEPREFIX", None)
        env.pop("PYTHONPATH", None)
        py = sys.executable
        labels: List[str] = ["python -c pass"]
        runs: List[Tuple[List[str], Dict[str, str]]] = [([py, "-c", "pass"], env)]
        for label, compiled in (("source, no bytecode (editable install)", False),
                                ("bytecode compiled at install (pip install)", True)):
            site = install_copy(os.path.join(work, "compiled" if compiled else "source"), compiled)
            run_env = dict(env, PYTHONPATH=site)
            for what, argv in (("pykd-ext --help", ["--help"]),
                               ("pykd-ext eproc lsass.exe", ["eproc", "lsass.exe", "--target", target])):
                labels.append("%s: %s" % (what, label))
                runs.append(([py, "-m", "pykd_ext"] + argv, run_env))
        medians = interleaved_medians(runs, work, opts.repeat)
        baseline = medians[0]
        rows = list(zip(labels[1:], medians[1:]))
        print("CPU seconds (user+sys), median of %d interleaved rounds, %s, PYTHONDONTWRITEBYTECODE=1"
              % (opts.repeat, sys.version.split()[0]))
        print("%-78s %8.3f s   1.0x" % ("python -c pass", baseline))
        for label, seconds in rows:
            print("%-78s %8.3f s %5.1fx" % (label, seconds, seconds / baseline))
        print("goal: eproc within 4.0x of python -c pass")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
