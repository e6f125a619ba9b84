"""Forged dumps shared by the PEB/TEB/modules tests: the standard scenario on each tested build.

Forging costs about a second per build; the dumps are cached for the whole test session.
"""
import io
import json
from typing import Any, Dict, List, Tuple

from pykd_ext.cli import run_command
from pykd_ext.forge.kernel_objects import Planted, write_scenario_dump
from pykd_ext.forge.scenario import standard_scenario
from pykd_ext.render.renderers import addresses_as_ints  # our JSON writes addresses as "0x..."

_CACHE: Dict[Tuple[str, str], Tuple[str, Planted]] = {}


def forged(tmp_path_factory: Any, build: str, kind: str = "bitmap") -> Tuple[str, Planted]:
    """(path, planted facts) of the standard scenario on `build`, written as `kind`."""
    key = (build, kind)
    if key not in _CACHE:
        path = str(tmp_path_factory.mktemp("peb") / ("%s-%s.dmp" % (build, kind)))
        _CACHE[key] = (path, write_scenario_dump(path, standard_scenario(), build, kind=kind))
    return _CACHE[key]


def run_json(*argv: str, status: int = 0) -> Dict[str, Any]:
    out = io.StringIO()
    code = run_command(list(argv) + ["--format", "json", "--quiet"], out=out)
    assert code == status, out.getvalue()[-400:]      # 0 records printed, 1 none (README "Exit codes")
    return addresses_as_ints(json.loads(out.getvalue()))


def user_processes(planted: Planted) -> List[Dict[str, Any]]:
    """Planted processes with forged user memory."""
    return [p for p in planted.processes if p.get("user")]
