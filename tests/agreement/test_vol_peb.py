"""Our `peb`/`modules` agree with Volatility 3's `windows.cmdline`, `windows.envars` and
`windows.dlllist` on the same forged dumps (Windows 7 SP1, 8.1, 10 19041, 11 22000).

Volatility reads the PEB through its own process layer and its own symbol handling (for WoW64
processes, its built-in 32-bit `wow64` symbol table), so agreement here is an independent check
of our page-table walk, layouts and list walks. Compared field by field: command lines; each
environment variable and value, in order; each module's base, size, name, full path and load
time, 64- and 32-bit.
"""
import datetime
from typing import Any, Dict, List, Tuple

import pytest

from volrun import VolatilityRun

PLUGINS = {"cmdline": "windows.cmdline.CmdLine", "envars": "windows.envars.Envars",
           "dlllist": "windows.dlllist.DllList"}
_ROWS: Dict[str, Dict[str, List[Dict[str, Any]]]] = {}

pytestmark = pytest.mark.slow


def vol_rows(forged: Any, isf_dir: Any) -> Dict[str, List[Dict[str, Any]]]:
    if forged.name not in _ROWS:
        run = VolatilityRun(forged.path, str(isf_dir))
        _ROWS[forged.name] = {key: run.rows(name) for key, name in PLUGINS.items()}
    return _ROWS[forged.name]


def ours_pebs(forged: Any) -> Dict[int, Dict[str, Any]]:
    return {r["pid"]: r for r in forged.ours("peb", "--all")["records"]}


def test_cmdline_agrees(forged: Any, isf_dir: Any) -> None:
    rows = vol_rows(forged, isf_dir)["cmdline"]
    pebs = ours_pebs(forged)
    theirs = {r["PID"]: r["Args"] for r in rows if r["PID"] in pebs and isinstance(pebs[r["PID"]]["command_line"], str)}
    ours = {pid: rec["command_line"] for pid, rec in pebs.items() if isinstance(rec["command_line"], str)}
    assert len(ours) >= 10
    assert theirs == ours
    planted = {p["pid"]: p["user"]["command_line"] for p in forged.planted.processes
               if p.get("user") and p["linked"]}
    assert ours == planted


def _vars(environment: List[str]) -> List[Tuple[str, str]]:
    """Volatility's reading of a block: split at the first '=', both sides non-empty."""
    out = []
    for item in environment:
        index = item.find("=")
        name, value = item[:index], item[index + 1:]
        if name and value:
            out.append((name, value))
    return out


def test_envars_agree(forged: Any, isf_dir: Any) -> None:
    rows = vol_rows(forged, isf_dir)["envars"]
    theirs: Dict[int, List[Tuple[str, str]]] = {}
    blocks: Dict[int, int] = {}
    for r in rows:
        theirs.setdefault(r["PID"], []).append((r["Variable"], r["Value"]))
        blocks[r["PID"]] = int(r["Block"], 16)
    pebs = ours_pebs(forged)
    ours = {pid: _vars(rec["environment"]) for pid, rec in pebs.items()
            if isinstance(rec["environment"], list)}
    assert len(ours) >= 10
    assert theirs == ours
    for pid, block in blocks.items():   # Volatility's "Block" is &ProcessParameters->Environment
        params = pebs[pid]["process_parameters"]
        assert params < block < params + 0x100
    # the long variable crosses a page: both read it whole
    explorer = [v for v in theirs[forged.planted.by_name("explorer.exe")["pid"]] if v[0] == "PYKD_FORGE_LONG"]
    assert len(explorer) == 1 and len(explorer[0][1]) == 3500


def test_dlllist_agrees(forged: Any, isf_dir: Any) -> None:
    rows = vol_rows(forged, isf_dir)["dlllist"]
    theirs = {(r["PID"], r["Base"]): r for r in rows}
    ours = {(r["pid"], r["base"]): r for r in forged.ours("modules")["records"] if "load" in r["lists"]}
    assert len(ours) >= 40
    assert set(theirs) == set(ours)
    for key, mine in ours.items():
        vol = theirs[key]
        assert (vol["Size"], vol["Name"], vol["Path"]) == (mine["size"], mine["name"], mine["path"]), key
        when = vol.get("LoadTime")
        if mine["bitness"] == 64 and isinstance(when, datetime.datetime):
            # Volatility's wintime_to_datetime keeps whole seconds
            ours_when = datetime.datetime.fromisoformat(mine["load_time"])
            assert ours_when.replace(microsecond=0) == when.replace(microsecond=0), key
    wow = [k for k, r in ours.items() if r["bitness"] == 32]
    assert wow, "the WoW64 process's 32-bit modules are compared too"
    # the module unlinked from the load-order list is seen by neither load-order walk
    hidden = [r for r in forged.ours("modules", "rootkit.exe")["records"] if "load" not in r["lists"]]
    assert hidden and all((r["pid"], r["base"]) not in theirs for r in hidden)
