"""Regenerate the forged sample dumps shipped in this folder (deterministic: same bytes each run).

    python samples/make_samples.py [--check]

`--check` rebuilds into a temporary folder and fails if any shipped sample differs (a test
runs it), so the committed dumps always match the forge that describes them.
"""
import argparse
import filecmp
import os
import sys
import tempfile
from typing import Dict, List, Tuple

from pykd_ext.forge.kernel_objects import write_scenario_dump
from pykd_ext.forge.scenario import standard_scenario

HERE = os.path.dirname(os.path.abspath(__file__))

#: file name -> (build name in pykd_ext.forge.builds.BUILDS, dump kind)
SAMPLES: Dict[str, Tuple[str, str]] = {
    "win10-19041-standard.dmp": ("win10", "bitmap"),
}


def make(folder: str) -> List[str]:
    written = []
    for name, (build, kind) in sorted(SAMPLES.items()):
        path = os.path.join(folder, name)
        write_scenario_dump(path, standard_scenario(), build, kind=kind, overwrite=True)
        written.append(path)
    return written


def main(argv: List[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="verify the shipped samples instead of rewriting them")
    args = parser.parse_args(argv)
    if not args.check:
        for path in make(HERE):
            print("%s  %d bytes" % (os.path.relpath(path), os.path.getsize(path)))
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        stale = [os.path.basename(p) for p in make(tmp)
                 if not filecmp.cmp(p, os.path.join(HERE, os.path.basename(p)), shallow=False)]
    if stale:
        print("stale sample(s): %s (run samples/make_samples.py)" % ", ".join(stale))
        return 1
    print("samples up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
