"""Benchmark: `ps` on a live QEMU guest, refreshed, against re-opening a raw image each time.

Why: `watch ps` and a class of students re-run commands on a running VM. A live target is opened
once (QMP questions, memory map, DTB and kernel found once) and then only `refresh()`ed (one QMP
connection for the memory map, caches dropped); a raw image re-opened each time pays the scans and
the layout choice again. This starts `pykd-ext lab vm` (QEMU paused, TCG) with a 4 GiB guest
(a sparse RAM file: 2 GiB below the PCI hole, 2 GiB at 4 GiB, q35), writes the same forged machine
as a sparse 4 GiB raw image, and measures the wall time of one `ps` (all records rendered as JSONL):
- qemu, refresh: `target.refresh()` then `ps` with the layouts already chosen (what `watch` does);
- qemu, reopen: `pykd-ext ps --target qemu:SOCKET` in this process (open, scans, layouts, ps);
- raw, reopen: `pykd-ext ps --target image.raw` in this process;
and, to split the first line, `refresh()` alone and `ps` on warm caches (no refresh).
It prints medians and ratios and asserts nothing; QEMU is stopped by its PID at the end.
Run: `python3 benchmarks/bench_live.py [--repeat N] [--scenario standard]`.
"""
import argparse
import io
import os
import statistics
import sys
import tempfile
import time
from typing import Callable, List

GIB = 1 << 30


def timed(step: Callable[[], None], repeat: int) -> List[float]:
    out = []
    for _ in range(repeat):
        start = time.perf_counter()
        step()
        out.append(time.perf_counter() - start)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--scenario", default="standard")
    args = parser.parse_args()

    from pykd_ext.cli import parse_args, run_command
    from pykd_ext.forge.dumpfile import write_raw_image
    from pykd_ext.forge.kernel_objects import build_scenario
    from pykd_ext.forge.make_dump import scenario_named
    from pykd_ext.live.labvm import start_lab_vm, stop_lab_vm
    from pykd_ext.render.output import write_result
    from pykd_ext.session import Session
    from pykd_ext.targets.opener import open_target
    import pykd_ext.commands.ps as ps

    folder = tempfile.mkdtemp(prefix="bench-live-")
    vm = start_lab_vm(args.scenario, memory=4 * GIB, folder=os.path.join(folder, "vm"))
    try:
        machine, _ = build_scenario(scenario_named(args.scenario), "win10")
        raw = write_raw_image(os.path.join(folder, "image.raw"), machine.phys, size=4 * GIB)
        target = open_target(vm.target)
        first = Session(target_factory=lambda: target, quiet=True)
        layouts = first.layouts
        ps_args = parse_args(["ps", "--target", vm.target, "-f", "jsonl", "-q"])

        def run_ps() -> None:
            session = Session(target_factory=lambda: target, quiet=True)
            session._layouts = layouts            # chosen once, as `watch` keeps its session's
            out = io.StringIO()
            write_result(ps.run(session, ps_args), "jsonl", out, io.StringIO(), quiet=True)
            assert out.getvalue().count("\n") >= 2

        def refresh_ps() -> None:
            target.refresh()
            run_ps()

        def reopen(where: str) -> Callable[[], None]:
            def step() -> None:
                out = io.StringIO()
                assert run_command(["ps", "--target", where, "-f", "jsonl", "-q"], out) == 0
            return step

        rows = []
        for name, step in (("qemu, refresh + ps", refresh_ps),
                           ("qemu, refresh() alone", target.refresh),
                           ("qemu, ps, caches warm", run_ps),
                           ("qemu, reopen + ps", reopen(vm.target)),
                           ("raw image, reopen + ps", reopen(raw))):
            step()                                 # warm-up: imports, page cache
            rows.append((name, statistics.median(timed(step, args.repeat))))
        target.close()
    finally:
        stop_lab_vm(vm=vm)
        for name in ("image.raw",):
            path = os.path.join(folder, name)
            if os.path.exists(path):
                os.unlink(path)
        os.rmdir(folder)
    base = rows[0][1]
    print("ps on a 4 GiB guest (%s scenario), median of %d runs, Python %s"
          % (args.scenario, args.repeat, sys.version.split()[0]))
    for name, seconds in rows:
        print("  %-24s %8.1f ms  x%.1f" % (name, seconds * 1000, seconds / base))
    return 0


if __name__ == "__main__":
    sys.exit(main())
