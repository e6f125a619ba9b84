"""`vad` against Volatility 3's `windows.vadinfo` on forged dumps of Windows 7, 10 and 11 (the
scheduling scenario's app.exe: private, executable-private, mapped-file and image VADs, two of
them above the 32-bit VPN range), and against what the forge planted.

Volatility walks the tree its own way (recursively, choosing `_MMVAD`/`_MMVAD_SHORT` by pool tag)
and reads `MmProtectToValue` from the dump too: start, end, commit charge, protection names,
private flag and file name must agree VAD for VAD.
"""
import io
import json
from pathlib import Path
from typing import Any, Dict, List, Tuple

import pytest

from pykd_ext.cli import run_command
from pykd_ext.forge.kernel_objects import Planted, write_scenario_dump
from pykd_ext.forge.scenario import scheduling_scenario
from pykd_ext.render.renderers import addresses_as_ints  # our JSON writes addresses as "0x..."

from volrun import VolatilityRun

APP_PID = 1000


def _ours(path: str) -> List[Dict[str, Any]]:
    out = io.StringIO()
    assert run_command(["vad", "0n%d" % APP_PID, "--target", path, "--format", "json", "--quiet"], out=out) == 0
    return addresses_as_ints(json.loads(out.getvalue()))["records"]


@pytest.fixture(scope="module", params=["win7", "win10", "win11"])
def vads(request: Any, tmp_path_factory: Any, isf_dir: Path) -> Tuple[Planted, List[Dict[str, Any]], List[Dict[str, Any]]]:
    path = str(tmp_path_factory.mktemp("vad") / ("%s.dmp" % request.param))
    planted = write_scenario_dump(path, scheduling_scenario(), request.param)
    vol = VolatilityRun(path, str(isf_dir)).rows("windows.vadinfo.VadInfo", pid=[APP_PID])
    return planted, _ours(path), vol


@pytest.mark.slow
def test_vad_agrees_with_volatility(vads: Tuple[Planted, List[Dict[str, Any]], List[Dict[str, Any]]]) -> None:
    _, ours, vol = vads
    theirs = sorted(vol, key=lambda r: r["Start VPN"])
    assert len(ours) == len(theirs) == 6
    for mine, row in zip(ours, theirs):
        assert mine["vad"] == row["Offset"]
        assert (mine["start"], mine["end"]) == (row["Start VPN"], row["End VPN"])
        assert mine["commit"] == row["CommitCharge"]
        assert mine["private"] == bool(row["PrivateMemory"])
        assert mine["protection"] == row["Protection"]
        assert (mine["file_name"] or None) == (row["File"] or None)


@pytest.mark.slow
def test_vad_is_what_the_forge_planted(vads: Tuple[Planted, List[Dict[str, Any]], List[Dict[str, Any]]]) -> None:
    planted, ours, _ = vads
    want = planted.by_name("app.exe")["vads"]
    keys = ("vad", "start", "end", "commit", "protection_index", "protection_value", "private",
            "vad_type", "kind", "file_name", "file_object", "control_area")
    assert [{k: r[k] for k in keys} for r in ours] == [{k: v[k] for k in keys} for v in want]
    executable_private = [r["start"] for r in ours if r["private"] and r["executable"]]
    assert executable_private == [0x20000]
