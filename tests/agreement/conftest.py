"""One forged dump per tested build, read once by Volatility 3 and once by our commands.

Forging and Volatility's kernel search cost seconds, so each build's dump, Volatility's plugin
rows and our commands' JSON are produced once per session and shared by every agreement test.
"""
import io
import json
import sys
from pathlib import Path
from typing import Any, Dict, List

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from volrun import VolatilityRun  # noqa: E402

from pykd_ext.forge.builds import BUILDS, resolve_build  # noqa: E402
from pykd_ext.forge.kernel_objects import Planted, write_scenario_dump  # noqa: E402
from pykd_ext.forge.scenario import ScenarioSpec, standard_scenario  # noqa: E402
from pykd_ext.render.renderers import addresses_as_ints  # our JSON writes addresses as "0x..."

VOLATILITY_PLUGINS = {
    "pslist": "windows.pslist.PsList",
    "pstree": "windows.pstree.PsTree",
    "threads": "windows.threads.Threads",
    "psscan": "windows.psscan.PsScan",
    "psxview": "windows.malware.psxview.PsXView",
}


class Forged:
    """A forged dump of one build with what was planted and what each reader said."""

    def __init__(self, name: str, path: str, spec: ScenarioSpec, planted: Planted) -> None:
        self.name = name
        self.path = path
        self.spec = spec
        self.planted = planted
        self.vol: Dict[str, List[Dict[str, Any]]] = {}
        self._ours: Dict[str, Dict[str, Any]] = {}

    def ours(self, *argv: str) -> Dict[str, Any]:
        """Our command's JSON document (`run_command([...,'--format','json'])`), cached."""
        key = " ".join(argv)
        if key not in self._ours:
            from pykd_ext.cli import run_command
            out = io.StringIO()
            code = run_command(list(argv) + ["--target", self.path, "--format", "json",
                                             "--quiet"], out=out)
            assert code == 0, (argv, out.getvalue()[-500:])
            self._ours[key] = addresses_as_ints(json.loads(out.getvalue()))
        return self._ours[key]


_CACHE: Dict[str, Forged] = {}


@pytest.fixture(scope="session", params=sorted(BUILDS))
def forged(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
           isf_dir: Path) -> Forged:
    name = request.param
    if name not in _CACHE:
        spec = standard_scenario()
        path = str(tmp_path_factory.mktemp("agreement") / ("%s.dmp" % name))
        planted = write_scenario_dump(path, spec, resolve_build(name))
        forged = Forged(name, path, spec, planted)
        run = VolatilityRun(path, str(isf_dir))
        for key, plugin in VOLATILITY_PLUGINS.items():
            forged.vol[key] = run.rows(plugin)
        _CACHE[name] = forged
    return _CACHE[name]


@pytest.fixture(scope="session")
def forged_many(tmp_path_factory: pytest.TempPathFactory, isf_dir: Path) -> Forged:
    """Windows 10 with the standard scenario plus a process of 2,000 threads (two-level
    PspCidTable, long thread lists)."""
    spec = standard_scenario(many_threads=2000)
    path = str(tmp_path_factory.mktemp("agreement-many") / "win10-many.dmp")
    planted = write_scenario_dump(path, spec, resolve_build("win10"))
    forged = Forged("win10-many", path, spec, planted)
    run = VolatilityRun(path, str(isf_dir))
    forged.vol["pslist"] = run.rows(VOLATILITY_PLUGINS["pslist"])
    forged.vol["threads"] = run.rows(VOLATILITY_PLUGINS["threads"])
    return forged
