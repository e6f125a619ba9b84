"""Scale benchmark (issue 10): pykd-ext against Volatility 3 at 100, 400, 1,600 and 6,400 processes.

    python3 benchmarks/bench_scale.py [--sizes 100,400,1600,6400] [--threads 20] [--handles 30]
        [--repeat 3] [--vol-repeat N] [--commands ps,threads,handles,peb] [--no-volatility]
        [--vol-max handles=1600] [--build 19041] [--isf ../shared/isf] [--out benchmarks/out]

The dumps: the forge's bulk scenario (`pykd_ext.forge.scenario.bulk_scenario`): System plus
N-1 worker processes, each with `--threads` threads (TEBs), `--handles` handles, a PEB with
process parameters, environment and loader lists, on Windows 10 19041, written as complete
bitmap dumps. They are forged once, in a child process (its CPU time and peak RSS are printed:
the forge's own cost), and cached in `--out` under a name that carries the parameters and a
fingerprint of the forge's sources, so a changed forge never reuses a stale dump.

Each command runs as a user runs it, one fresh process per run, both sides alike:
    ps       python -m pykd_ext ps          -f json   |  vol windows.pslist
    threads  python -m pykd_ext threads     -f json   |  vol windows.threads
    handles  python -m pykd_ext handles --all -f json |  vol windows.handles
    peb      python -m pykd_ext peb --all   -f json   |  vol windows.cmdline + windows.envars
(`vol -q -r json -s ISF -f DUMP`: offline, the project's ISF folder). Runs of the two sides are
interleaved, so machine noise hits both. For each run: CPU seconds (user + system) and peak RSS
of that child from `os.wait4`, wall time around it; printed are medians over `--repeat` runs,
the ratio of CPU medians (Volatility / pykd-ext), CPU milliseconds per process, and the growth
factor of CPU time from one size to the next (sizes 4x apart: 4.0 is linear). The rows each side
printed (from the last run's JSON) are counted, to show both did the whole job.
Volatility's `windows.handles` is slow: by default it runs up to 1,600 processes (`--vol-max`);
the table says where a side was not run. Nothing is asserted.
"""
import argparse
import hashlib
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_common import (DEFAULT_ISF, DEFAULT_OUT, REPO, ChildRun, run_child,  # noqa: E402
                          volatility_command)

#: command -> (our argv after `python -m pykd_ext`, Volatility plugins run for the same facts)
COMMANDS: Dict[str, Tuple[List[str], List[str]]] = {
    "ps": (["ps"], ["windows.pslist"]),
    "threads": (["threads"], ["windows.threads"]),
    "handles": (["handles", "--all"], ["windows.handles"]),
    "peb": (["peb", "--all"], ["windows.cmdline", "windows.envars"]),
}
DEFAULT_SIZES = (100, 400, 1600, 6400)
#: Largest dump (processes) Volatility runs each command on by default.
DEFAULT_VOL_MAX = {"handles": 1600}

#: Counts the rows of a JSON document a side printed: our {"records": [...]} or Volatility's
#: list of rows with "__children" (run in a child, so this process stays small).
_COUNT_ROWS = """
import json, sys
doc = json.load(open(sys.argv[1], encoding="utf-8"))
def rows(items):
    n = 0
    stack = list(items)
    while stack:
        item = stack.pop()
        n += 1
        if isinstance(item, dict):
            stack.extend(item.get("__children") or [])
    return n
print(len(doc["records"]) if isinstance(doc, dict) else rows(doc))
"""


# ---- the dumps ----------------------------------------------------------------------------------

def forge_fingerprint() -> str:
    """A short hash of the forge's sources: part of a cached dump's name."""
    folder = os.path.join(REPO, "pykd_ext", "forge")
    digest = hashlib.sha1()
    for name in sorted(os.listdir(folder)):
        if name.endswith(".py"):
            with open(os.path.join(folder, name), "rb") as handle:
                digest.update(name.encode() + b"\0" + handle.read())
    return digest.hexdigest()[:10]


def dump_name(build: str, processes: int, threads: int, handles: int) -> str:
    return "scale-%s-%dp-%dt-%dh-%s.dmp" % (build, processes, threads, handles, forge_fingerprint())


#: Forges one dump (run by `python -c` in a child); prints the planted counts as JSON.
_FORGE = """
import json, os, sys
from pykd_ext.forge.kernel_objects import write_scenario_dump
from pykd_ext.forge.scenario import bulk_scenario
path, build, processes, threads, handles = sys.argv[1], sys.argv[2], *map(int, sys.argv[3:6])
spec = bulk_scenario(processes - 1, threads, name="scale", handles_per_process=handles)
planted = write_scenario_dump(path + ".part", spec, build, overwrite=True)
os.replace(path + ".part", path)
print(json.dumps({"processes": len(planted.processes), "threads": len(planted.threads()),
                  "handles": sum(p["handle_count"] or 0 for p in planted.processes)}))
"""


def forged_dump(out: str, build: str, processes: int, threads: int, handles: int,
                any_forge: bool = False) -> Dict[str, Any]:
    """The cached dump of one size (forged now when missing) and its facts; with `any_forge`,
    a cached dump of the same parameters made by another version of the forge is used as is."""
    path = os.path.join(out, dump_name(build, processes, threads, handles))
    facts_path = path + ".json"
    stale = dump_name(build, processes, threads, handles).rsplit("-", 1)[0] + "-"
    if any_forge and not os.path.exists(facts_path):
        older = sorted((os.path.getmtime(os.path.join(out, n)), n) for n in os.listdir(out)
                       if n.startswith(stale) and n.endswith(".dmp")
                       and os.path.exists(os.path.join(out, n + ".json")))
        if older:
            path = os.path.join(out, older[-1][1])
            facts_path = path + ".json"
    if os.path.exists(path) and os.path.exists(facts_path):
        with open(facts_path, encoding="utf-8") as handle:
            facts = json.load(handle)
        facts["cached"] = True
        facts["path"] = path
        return facts
    for name in os.listdir(out):                  # dumps of an older forge: gigabytes each
        if name.startswith(stale):
            os.remove(os.path.join(out, name))
    facts_file = path + ".facts"
    run = run_child([sys.executable, "-c", _FORGE, path, build, str(processes), str(threads),
                     str(handles)], stdout_path=facts_file)
    if run.returncode != 0:
        raise SystemExit("forging %d processes failed: %s" % (processes, run.stderr_tail))
    with open(facts_file, encoding="utf-8") as handle:
        facts = json.loads(handle.read().strip().splitlines()[-1])
    os.remove(facts_file)
    facts.update(path=path, forge_cpu=run.cpu, forge_wall=run.wall, forge_rss_kib=run.rss_kib,
                 size_mib=os.path.getsize(path) / 2 ** 20)
    with open(facts_path, "w", encoding="utf-8") as handle:
        json.dump(facts, handle)
    facts["cached"] = False
    return facts


# ---- the runs -----------------------------------------------------------------------------------

class Side:
    """One side of one command at one size: its runs and the rows it printed."""

    def __init__(self) -> None:
        self.runs: List[ChildRun] = []
        self.rows: Optional[int] = None
        self.error: Optional[str] = None

    def add(self, runs: Sequence[ChildRun]) -> None:
        """One repeat: the runs of its commands summed (Volatility's peb is two plugins)."""
        failed = [r for r in runs if r.returncode != 0]
        if failed:
            self.error = "rc %d: %s" % (failed[0].returncode, failed[0].stderr_tail[-160:])
            return
        self.runs.append(ChildRun(sum(r.wall for r in runs), sum(r.cpu for r in runs),
                                  max(r.rss_kib for r in runs), 0, ""))

    def median(self, what: str) -> Optional[float]:
        values = [getattr(r, what) for r in self.runs]
        return statistics.median(values) if values else None


def count_rows(paths: Sequence[str]) -> Optional[int]:
    total = 0
    for path in paths:
        out = subprocess.run([sys.executable, "-c", _COUNT_ROWS, path], capture_output=True,
                             text=True, cwd=REPO)
        if out.returncode != 0:
            return None
        total += int(out.stdout.strip())
    return total


def measure(command: str, dump: str, out: str, repeat: int, vol_repeat: int, isf: str,
            with_volatility: bool) -> Tuple[Side, Side]:
    ours_argv, plugins = COMMANDS[command]
    ours = [sys.executable, "-m", "pykd_ext"] + ours_argv + ["--target", dump, "-f", "json", "-q"]
    vol = volatility_command()
    theirs = [[vol, "-q", "-r", "json", "-s", isf, "-f", dump, plugin] for plugin in plugins]
    ours_out = os.path.join(out, "last-ours.json")
    vol_out = [os.path.join(out, "last-vol-%d.json" % n) for n in range(len(plugins))]
    our_side, vol_side = Side(), Side()
    for round_ in range(max(repeat, vol_repeat if with_volatility else 0)):
        if round_ < repeat and our_side.error is None:
            our_side.add([run_child(ours, stdout_path=ours_out)])
        if with_volatility and round_ < vol_repeat and vol_side.error is None:
            vol_side.add([run_child(argv, stdout_path=path) for argv, path in zip(theirs, vol_out)])
    if our_side.runs:
        our_side.rows = count_rows([ours_out])
    if vol_side.runs:
        vol_side.rows = count_rows(vol_out)
    for path in [ours_out] + vol_out:
        if os.path.exists(path):
            os.remove(path)
    return our_side, vol_side


# ---- the table ----------------------------------------------------------------------------------

def _num(value: Optional[float], fmt: str = "%.2f") -> str:
    return "-" if value is None else fmt % value


def print_table(results: List[Dict[str, Any]], with_volatility: bool) -> None:
    head = ["command", "processes / threads / handles", "ours CPU s", "ours wall s",
            "ours RSS MiB", "ours ms/proc", "ours growth"]
    if with_volatility:
        head += ["vol CPU s", "vol wall s", "vol RSS MiB", "vol ms/proc", "vol growth",
                 "ratio CPU", "rows ours / vol"]
    else:
        head += ["rows"]
    lines = [head]
    previous: Dict[Tuple[str, str], float] = {}
    for res in results:
        command, facts = res["command"], res["facts"]
        procs = facts["processes"]
        row = [command, "{:,} / {:,} / {:,}".format(procs, facts["threads"], facts["handles"])]
        cells: Dict[str, Optional[float]] = {}
        for side_name in ("ours", "vol") if with_volatility else ("ours",):
            side: Side = res[side_name]
            cpu, wall, rss = side.median("cpu"), side.median("wall"), side.median("rss_kib")
            cells[side_name] = cpu
            prev = previous.get((command, side_name))
            growth = "x%.1f" % (cpu / prev) if cpu is not None and prev else "-"
            previous[(command, side_name)] = cpu or 0.0
            if side.error is not None:
                row += ["error", side.error[:40], "-", "-", "-"]
                continue
            if cpu is None:
                row += ["not run", "-", "-", "-", "-"]
                continue
            row += [_num(cpu), _num(wall), _num(rss / 1024 if rss else None, "%.0f"),
                    _num(1000 * cpu / procs, "%.3f"), growth]
        if with_volatility:
            ours_cpu, vol_cpu = cells["ours"], cells["vol"]
            row.append("%.1fx" % (vol_cpu / ours_cpu) if ours_cpu and vol_cpu else "-")
            row.append("%s / %s" % (_num(res["ours"].rows, "%d"), _num(res["vol"].rows, "%d")))
        else:
            row.append(_num(res["ours"].rows, "%d"))
        lines.append(row)
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(head))]
    print("| " + " | ".join(str(c).ljust(w) for c, w in zip(head, widths)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for line in lines[1:]:
        print("| " + " | ".join(str(c).rjust(w) if i > 1 else str(c).ljust(w)
                                for i, (c, w) in enumerate(zip(line, widths))) + " |")


def state_of_the_tree() -> str:
    """The commit measured and how far the working tree differs from it."""
    def git(*argv: str) -> str:
        done = subprocess.run(["git"] + list(argv), capture_output=True, text=True, cwd=REPO)
        return done.stdout.strip() if done.returncode == 0 else "?"
    stat = git("diff", "--stat").splitlines()
    return "%s%s" % (git("rev-parse", "--short", "HEAD"),
                     " + uncommitted changes (%s)" % stat[-1].strip() if stat else " (clean)")


def parse_caps(text: str) -> Dict[str, int]:
    caps = dict(DEFAULT_VOL_MAX)
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, _, value = item.partition("=")
        if name not in COMMANDS or not value.isdigit():
            raise SystemExit("--vol-max wants COMMAND=PROCESSES[,...], not %r" % item)
        caps[name] = int(value)
    return caps


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default=",".join(map(str, DEFAULT_SIZES)),
                        help="process counts, comma-separated (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=20, help="threads per worker process")
    parser.add_argument("--handles", type=int, default=30, help="handles per worker process")
    parser.add_argument("--repeat", type=int, default=3, help="runs per command and size")
    parser.add_argument("--vol-repeat", type=int, default=None,
                        help="runs per Volatility plugin and size (default: --repeat)")
    parser.add_argument("--commands", default=",".join(COMMANDS),
                        help="subset of %s" % ",".join(COMMANDS))
    parser.add_argument("--no-volatility", action="store_true", help="time pykd-ext only")
    parser.add_argument("--vol-max", default="",
                        help="COMMAND=PROCESSES: largest size Volatility runs COMMAND on "
                             "(default: handles=1600)")
    parser.add_argument("--build", default="19041", help="forged build (default: %(default)s)")
    parser.add_argument("--isf", default=DEFAULT_ISF, help="ISF folder for Volatility (-s)")
    parser.add_argument("--out", default=DEFAULT_OUT, help="dump cache folder (%(default)s)")
    parser.add_argument("--any-forge", action="store_true",
                        help="use a cached dump of the same size even if the forge changed since "
                             "(no re-forging; the dump's name says which forge made it)")
    args = parser.parse_args(argv)
    sizes = sorted(int(s) for s in args.sizes.split(",") if s.strip())
    commands = [c.strip() for c in args.commands.split(",") if c.strip()]
    unknown = [c for c in commands if c not in COMMANDS]
    if unknown or not sizes or min(sizes) < 2:
        parser.error("commands are %s; sizes are process counts >= 2" % ", ".join(COMMANDS))
    caps = parse_caps(args.vol_max)
    vol_repeat = args.repeat if args.vol_repeat is None else args.vol_repeat
    with_volatility = not args.no_volatility
    os.makedirs(args.out, exist_ok=True)

    print("pykd-ext %s, Python %s, %s, %d CPUs, load %.1f"
          % (state_of_the_tree(), platform.python_version(), platform.machine(),
             os.cpu_count() or 0, os.getloadavg()[0]))
    if with_volatility:
        version = subprocess.run([volatility_command(), "--version"], capture_output=True,
                                 text=True).stdout.strip()
        print("%s, symbols %s (offline)" % (version or "vol", args.isf))
    print("dumps: bulk scenario, build %s, %d threads and %d handles per worker process"
          % (args.build, args.threads, args.handles))
    results: List[Dict[str, Any]] = []
    started = time.perf_counter()
    for size in sizes:
        facts = forged_dump(args.out, args.build, size, args.threads, args.handles, args.any_forge)
        how = ("cached" if facts["cached"] else "forged now") + \
            ("; forge: %.1f s CPU, %.1f s wall, peak RSS %.0f MiB"
             % (facts["forge_cpu"], facts["forge_wall"], facts["forge_rss_kib"] / 1024))
        print("  {:,} processes / {:,} threads / {:,} handles: {:.0f} MiB ({})".format(
            facts["processes"], facts["threads"], facts["handles"], facts["size_mib"], how),
            flush=True)
        for command in commands:
            vol_here = with_volatility and size <= caps.get(command, size)
            ours, vol = measure(command, str(facts["path"]), args.out, args.repeat,
                                vol_repeat if vol_here else 0, args.isf, vol_here)
            results.append({"command": command, "facts": facts, "ours": ours, "vol": vol})
            print("    %-8s ours CPU %s s%s" % (command, _num(ours.median("cpu")),
                                                  ", vol CPU %s s" % _num(vol.median("cpu"))
                                                  if vol_here else ""), flush=True)
    results.sort(key=lambda r: (commands.index(str(r["command"])), r["facts"]["processes"]))
    print()
    print("medians of %d run(s) per side (Volatility: %d), each a fresh process; CPU = user + "
          "system of the child; growth = CPU / CPU at the previous size" % (args.repeat, vol_repeat))
    print_table(results, with_volatility)
    skipped = ["%s above %s processes" % (c, "{:,}".format(n)) for c, n in sorted(caps.items())
               if c in commands and any(s > n for s in sizes)]
    if with_volatility and skipped:
        print("Volatility not run (slow): %s" % "; ".join(skipped))
    print("total %.0f s, load %.1f at the end" % (time.perf_counter() - started,
                                                 os.getloadavg()[0]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
