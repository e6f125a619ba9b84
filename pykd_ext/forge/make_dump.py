"""Command line: turn a scenario description into a forged kernel dump.

    python -m pykd_ext.forge.make_dump SCENARIO OUT.dmp [--build win10] [--kind bitmap]
        [--facts FACTS.json] [--overwrite]

SCENARIO is a .yaml/.yml/.json file in the `pykd_ext.forge.scenario` format, or `standard`
(the scenario the tests and samples use; `standard:N` adds a process with N threads), or
`bulk:P[:T[:H]]` (the benchmarks' machine: P processes, System included, with T threads and H
handles each; defaults 20 and 30 — `bulk:10000` is 10,000 processes and 200,000 threads).
`--facts` writes what was planted (addresses, PIDs, TIDs, states...) as JSON, the expected
values for whatever reads the dump. Errors in the scenario are one line on stderr, exit 2.
"""
import argparse
import json
import sys
from typing import List, Optional

from pykd_ext.forge.builds import BUILDS
from pykd_ext.forge.kernel_objects import write_scenario_dump
from pykd_ext.forge.scenario import ScenarioSpec, bulk_scenario, load_scenario, standard_scenario


def scenario_named(text: str) -> ScenarioSpec:
    if text == "standard" or text.startswith("standard:"):
        _, _, count = text.partition(":")
        return standard_scenario(many_threads=int(count) if count else 0)
    if text.startswith("bulk:"):
        numbers = [int(part) for part in text.split(":")[1:]]
        if not 1 <= len(numbers) <= 3 or numbers[0] < 2 or min(numbers) < 0:
            raise ValueError("bulk:PROCESSES[:THREADS[:HANDLES]] with PROCESSES >= 2")
        processes, threads, handles = (numbers + [20, 30][len(numbers) - 1:])[:3]
        return bulk_scenario(processes - 1, threads, name="bulk-%d" % processes,
                             handles_per_process=handles)
    return load_scenario(text)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pykd_ext.forge.make_dump",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("scenario",
                        help="scenario file (.yaml/.json), 'standard[:N]' or 'bulk:P[:T[:H]]'")
    parser.add_argument("out", help="dump file to write")
    parser.add_argument("--build", default="win10",
                        help="build name (%s) or full version" % ", ".join(sorted(BUILDS)))
    parser.add_argument("--kind", default="bitmap", choices=("bitmap", "kernel", "full"))
    parser.add_argument("--facts", help="write the planted facts here (JSON)")
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)
    try:
        spec = scenario_named(args.scenario)
        planted = write_scenario_dump(args.out, spec, args.build, kind=args.kind,
                                      overwrite=args.overwrite)
    except (OSError, ValueError, KeyError) as err:
        print("make_dump: %s" % err, file=sys.stderr)
        return 2
    if args.facts:
        with open(args.facts, "w", encoding="utf-8") as handle:
            json.dump(planted.__dict__, handle, indent=1, sort_keys=True, default=str)
    print("%s: %s on %s, %d processes, %d threads" % (args.out, spec.name, planted.build,
                                                     len(planted.processes),
                                                     len(planted.threads())))
    for note in planted.notes:
        print("  note: %s" % note)
    return 0


if __name__ == "__main__":
    sys.exit(main())
