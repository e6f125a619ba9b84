"""Fixtures of the pykd tests: forged dumps of several builds, the stand-in pykd, an empty
per-user layout store (so a test never reads or writes the developer's ~/.pykd-ext)."""
import random
import sys
from pathlib import Path
from typing import Any, Dict, Iterator

import pytest

from pykd_harness import FORGE_TESTS, Scenario, use_standin

#: builds the forged machines run (Windows 7 SP1, 8.1, 10 2004, 11 21H2)
BUILDS = (7601, 9600, 19041, 22000)


@pytest.fixture(autouse=True)
def private_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "pykd-ext-home"
    monkeypatch.setenv("PYKD_EXT_HOME", str(home))
    for name in ("PYKD_STANDIN_DUMP", "PYKD_STANDIN_ISF", "PYKD_STANDIN_WINDBG", "PYKD_STANDIN_VERSION"):
        monkeypatch.delenv(name, raising=False)
    return home


@pytest.fixture
def standin() -> Iterator[Any]:
    """The stand-in pykd module, reset after the test."""
    pykd = use_standin()
    pykd._standin_reset()
    yield pykd
    pykd._standin_reset()


class ForgedDump:
    def __init__(self, build: int, path: str, machine: Any, planted: Any, isf: str) -> None:
        self.build = build
        self.path = path
        self.machine = machine
        self.planted = planted
        self.isf = isf


@pytest.fixture(scope="session")
def machines(tmp_path_factory: pytest.TempPathFactory, isf_dir: Path) -> Dict[int, ForgedDump]:
    """A forged kernel per build (forge_machine + the forge tests' planted pages), full dumps."""
    if str(FORGE_TESTS) not in sys.path:
        sys.path.insert(0, str(FORGE_TESTS))
    from forge_planted import plant
    from pykd_ext.forge import forge_machine, write_full_dump
    from pykd_ext.forge.isf import table_for_build
    out = tmp_path_factory.mktemp("pykd-machines")
    found: Dict[int, ForgedDump] = {}
    for build in BUILDS:
        table = table_for_build(build, isf_dir)
        machine = forge_machine(build=build, table=table, processors=2,
                                bugcheck_code=0x139, bugcheck_parameters=(3, 0xF1, 0xF2, 0))
        planted = plant(machine, random.Random(build))
        path = write_full_dump(str(out / ("machine-%d.dmp" % build)), machine.phys, machine.spec)
        found[build] = ForgedDump(build, path, machine, planted, str(table.path))
    return found


@pytest.fixture(scope="session")
def scenarios(tmp_path_factory: pytest.TempPathFactory) -> Dict[int, Scenario]:
    from pykd_ext.forge.kernel_objects import write_scenario_dump
    from pykd_ext.forge.scenario import standard_scenario
    out = tmp_path_factory.mktemp("pykd-scenarios")
    found = {}
    for build in BUILDS:
        path = str(out / ("standard-%d.dmp" % build))
        found[build] = Scenario(build, path, write_scenario_dump(path, standard_scenario(), build))
    return found
