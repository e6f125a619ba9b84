"""What the benchmark scripts share: where things are, how a child command is timed, common options.

Why one module: every script that compares pykd-ext with Volatility 3 runs both as a user would
(each command a fresh process) and must measure them the same way: CPU seconds (user + system)
and peak RSS of that child alone, from `os.wait4` (`resource.getrusage(RUSAGE_CHILDREN)` would
mix children), wall time around it, medians over repeats. The options every script had
(--build, --repeat, --vol-repeat, --isf, --keep) are declared once here.
"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from typing import List, NamedTuple, Optional, Sequence, Tuple

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
#: The ISF folder the project runs Volatility with (offline: no symbol downloads).
DEFAULT_ISF = os.path.normpath(os.path.join(REPO, "..", "shared", "isf"))
#: Where benchmarks cache what they forge (git-ignored).
DEFAULT_OUT = os.path.join(REPO, "benchmarks", "out")


class ChildRun(NamedTuple):
    """One finished child: wall seconds, CPU seconds (user + system), peak RSS (KiB), status."""

    wall: float
    cpu: float
    rss_kib: int
    returncode: int
    stderr_tail: str


def volatility_command() -> str:
    """The `vol` of this interpreter's environment (a venv need not be on PATH), else PATH's."""
    here = os.path.join(os.path.dirname(sys.executable), "vol")
    if os.access(here, os.X_OK):
        return here
    return shutil.which("vol") or "vol"


def run_child(argv: Sequence[str], stdout_path: Optional[str] = None) -> ChildRun:
    """Run `argv` from the repository root; its stdout goes to `stdout_path` (or is dropped),
    its stderr is kept for the error message. Never raises on a failing child."""
    start = time.perf_counter()
    with open(stdout_path or os.devnull, "wb") as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(list(argv), stdout=out, stderr=err, cwd=REPO)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        err.seek(max(0, err.seek(0, os.SEEK_END) - 400))
        tail = err.read().decode("utf-8", "replace").strip()
    code = os.waitstatus_to_exitcode(status) if hasattr(os, "waitstatus_to_exitcode") else status
    proc.returncode = code                      # reaped by wait4: keep Popen from waiting again
    return ChildRun(wall, usage.ru_utime + usage.ru_stime, int(usage.ru_maxrss), code, tail)


def median_runs(commands: List[List[str]], repeat: int) -> Tuple[float, float, int]:
    """Medians over `repeat` rounds of the summed wall and CPU time of `commands`, and the
    largest peak RSS (KiB). A failing command ends the script (the figures would mean nothing)."""
    walls, cpus, peak = [], [], 0
    for _ in range(repeat):
        wall = cpu = 0.0
        for argv in commands:
            run = run_child(argv)
            if run.returncode != 0:
                raise SystemExit("%s failed with %s: %s" % (" ".join(argv), run.returncode,
                                                           run.stderr_tail))
            wall += run.wall
            cpu += run.cpu
            peak = max(peak, run.rss_kib)
        walls.append(wall)
        cpus.append(cpu)
    return statistics.median(walls), statistics.median(cpus), peak


def add_common_arguments(parser: argparse.ArgumentParser, repeat: int = 5,
                         vol_repeat: Optional[int] = 3, build: str = "19041",
                         keep: bool = True) -> None:
    """--build, --repeat, --vol-repeat, --isf (and --keep) as every comparison script has them."""
    parser.add_argument("--build", default=build, help="forged build (number, version or name)")
    parser.add_argument("--repeat", type=int, default=repeat, help="rounds per command (median)")
    if vol_repeat is not None:
        parser.add_argument("--vol-repeat", type=int, default=vol_repeat,
                            help="rounds per Volatility plugin")
    parser.add_argument("--isf", default=DEFAULT_ISF, help="ISF folder for Volatility (-s)")
    if keep:
        parser.add_argument("--keep", metavar="DIR", help="write the dump here and keep it")


__all__ = ["ChildRun", "DEFAULT_ISF", "DEFAULT_OUT", "REPO", "add_common_arguments", "median_runs",
           "run_child", "volatility_command"]
