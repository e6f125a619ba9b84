"""Streaming: time to the first record, total CPU and peak RSS of `threads` (JSON, JSONL, text).

    python3 benchmarks/bench_streaming.py [--processes 400] [--threads 8000] [--repeat 3]
        [--commands "threads -f json" "threads -f jsonl"] [--dump PATH] [--keep DIR]
        [--pythonpath DIR]

Each command runs in a fresh interpreter with its stdout on a pipe that this script drains: the
first-record time is when the first line holding a record arrives (a JSON array element, a JSONL
line, a `THREAD`/`PROCESS` text line, a CSV data row), the total is when the pipe closes; CPU
(user + system) and peak RSS come from `wait4`. The child's CPU time at its first record is read
from `/proc/PID/stat` (Linux) when that line arrives: on a busy machine it is the steadier figure. Medians of `--repeat` rounds. `--pythonpath DIR`
runs another checkout of pykd_ext (e.g. an export of the previous commit) for before/after
figures on the same dump. Prints figures; asserts nothing.
"""
import argparse
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from typing import List, Optional, Sequence, Tuple

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "benchmarks"))


def is_record_line(line: bytes, fmt: str, seen: int) -> bool:
    """Whether an output line carries a record (first-record detection per format)."""
    if fmt == "json":
        return line.startswith(b"    {")
    if fmt == "jsonl":
        return line.startswith(b"{")
    if fmt == "csv":
        return seen >= 1                      # the header row comes first
    if fmt == "table":
        return seen >= 2                      # title and rule lines come first
    return b"THREAD " in line or line.startswith(b"PROCESS ")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a running child has used so far (Linux; NaN elsewhere)."""
    try:
        with open("/proc/%d/stat" % pid, "rb") as handle:
            fields = handle.read().rsplit(b")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return float("nan")


def run_once(argv: Sequence[str], fmt: str, env: dict) -> Tuple[float, float, float, float, int]:
    """(first-record wall s, first-record CPU s, total wall s, CPU s, peak RSS KiB) of one child."""
    start = time.perf_counter()
    proc = subprocess.Popen(list(argv), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env,
                            bufsize=0)
    assert proc.stdout is not None
    first: Optional[float] = None
    first_cpu = float("nan")
    seen = 0
    pending = b""
    while True:
        chunk = proc.stdout.read(1 << 16)
        if not chunk:
            break
        if first is None:
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                if is_record_line(line, fmt, seen):
                    first = time.perf_counter() - start
                    first_cpu = cpu_seconds(proc.pid)
                    break
                seen += 1
    total = time.perf_counter() - start
    _, status, usage = os.wait4(proc.pid, 0)
    if status != 0:
        raise SystemExit("%s failed (status %s)" % (" ".join(argv), status))
    cpu = usage.ru_utime + usage.ru_stime
    return (first if first is not None else total), (first_cpu if first is not None else cpu), total, cpu, \
        int(usage.ru_maxrss)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=400)
    parser.add_argument("--threads", type=int, default=8000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--commands", nargs="+",
                        default=["threads -f json", "threads -f jsonl", "threads", "threads -f csv"])
    parser.add_argument("--dump", help="use this dump instead of forging one")
    parser.add_argument("--keep", metavar="DIR", help="write the forged dump here and keep it")
    parser.add_argument("--pythonpath", metavar="DIR", help="import pykd_ext from DIR (before/after)")
    args = parser.parse_args(argv)
    path = args.dump
    if path is None:
        folder = args.keep or tempfile.mkdtemp(prefix="bench-stream-")
        path = os.path.join(folder, "bench-%d-%d.dmp" % (args.processes, args.threads))
        if not os.path.exists(path):
            from bench_processes_dump import bench_dump
            bench_dump(path, args.processes, args.threads)
    env = dict(os.environ)
    if args.pythonpath:
        env["PYTHONPATH"] = args.pythonpath
    print("dump %s (%.0f MiB); code from %s; medians of %d runs"
          % (path, os.path.getsize(path) / 2 ** 20, args.pythonpath or REPO, args.repeat))
    print("%-26s %12s %14s %10s %10s %10s" % ("command", "1st rec wall", "1st rec CPU s", "total s", "CPU s",
                                              "peak MiB"))
    for command in args.commands:
        words = shlex.split(command)
        fmt = "text"
        for flag in ("-f", "--format"):
            if flag in words:
                fmt = words[words.index(flag) + 1]
        child = [sys.executable, "-m", "pykd_ext"] + words + ["--target", path, "-q"]
        runs = [run_once(child, fmt, env) for _ in range(args.repeat)]
        first, first_cpu, total, cpu = (statistics.median(r[i] for r in runs) for i in range(4))
        print("%-26s %12.3f %14.3f %10.3f %10.3f %10.0f" % (command, first, first_cpu, total, cpu,
                                                            max(r[4] for r in runs) / 1024))
    if args.dump is None and not args.keep:
        os.remove(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
