"""Every `scripts/*.py`, run as WinDbg's bootstrapper runs it over the stand-in pykd, prints
exactly what the CLI prints for the same target (forged dumps of four builds, the real triage
dumps). Default arguments follow WinDbg: the current process / implicit thread, taken here from
what the forge planted (processor 0's current thread) or from the triage block (our file reader).
"""
import json
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import pytest

from pykd_harness import SCRIPTS, Scenario, run_cli, run_like_bootstrapper, script_path
from pykd_ext.commands import COMMANDS
from pykd_ext.render.renderers import addresses_as_ints  # our JSON writes addresses as "0x..."

BUILDS = (7601, 9600, 19041, 22000)


def _without_elapsed(text: str) -> str:
    return "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("ElapsedTime"))


def _script_vs_cli(standin: Any, dump: str, command: str, script_args: List[str], cli_args: List[str],
                   isf: Optional[str] = None, whole_second_clock: bool = False) -> Tuple[str, str]:
    """Run both; outputs must be equal. `whole_second_clock`: the dump lacks KUSER_SHARED_DATA,
    so DbgEng (pykd `currentTime()`) knows the dump's time only to the second while the file
    reader has the header's 100 ns FILETIME: the derived ElapsedTime line may differ."""
    standin._standin_configure(dump=dump, isf=isf)
    script_out, script_err = run_like_bootstrapper(script_path(command), script_args)
    code, cli_out, cli_err = run_cli([command, "--target", dump] + cli_args)
    assert code in (0, 1), cli_err          # 1: no record to show (README "Exit codes")
    assert "Traceback" not in script_err, script_err
    if whole_second_clock:
        assert _without_elapsed(script_out) == _without_elapsed(cli_out), "script stderr: %s" % script_err
    else:
        assert script_out == cli_out, "script stderr: %s" % script_err
    assert script_out.strip(), "no output"
    return script_out, script_err


def _cases(scenario: Scenario) -> List[Tuple[str, List[str], List[str]]]:
    lsass = scenario.process("lsass.exe")
    system = scenario.process("System")
    thread = lsass["threads"][0]
    current_p, current_t = scenario.current_process, scenario.current_thread
    return [
        ("ps", [], []),
        ("ps", ["lsass.exe", "4"], ["lsass.exe", "4"]),
        ("pstree", [], []),
        ("psxview", [], []),
        ("eproc", ["lsass.exe", "-v"], ["lsass.exe", "-v"]),
        ("eproc", ["0x%x" % system["address"]], ["0x%x" % system["address"]]),
        ("eproc", [], ["0x%x" % current_p["address"]]),                 # WinDbg default
        ("threads", ["lsass.exe"], ["lsass.exe"]),
        ("threads", [], ["0x%x" % current_p["address"]]),               # WinDbg default
        ("ethread", ["0x%x" % thread["address"]], ["0x%x" % thread["address"]]),
        ("ethread", [], ["0x%x" % current_t["address"]]),               # WinDbg default
        ("dt", ["_EPROCESS", "0x%x" % lsass["address"], "UniqueProcessId", "ImageFileName"],
         ["_EPROCESS", "0x%x" % lsass["address"], "UniqueProcessId", "ImageFileName"]),
        ("eproc", ["lsass.exe", "--format", "json"], ["lsass.exe", "--format", "json"]),
        ("threads", ["lsass.exe", "-f", "csv"], ["lsass.exe", "-f", "csv"]),
    ]


@pytest.mark.parametrize("build", BUILDS)
def test_scripts_print_what_the_cli_prints(standin: Any, scenarios: Dict[int, Scenario], build: int) -> None:
    scenario = scenarios[build]
    for command, script_args, cli_args in _cases(scenario):
        out, _ = _script_vs_cli(standin, scenario.path, command, script_args, cli_args)
        if "json" in script_args:
            record = addresses_as_ints(json.loads(out))["records"][0]
            assert record["pid"] == scenario.process("lsass.exe")["pid"]


#: per script: (script arguments, CLI arguments) on the forged 19041 scenario; "{p}"/"{t}" are
#: the current process / implicit thread, the WinDbg defaults a script without arguments uses
EVERY_SCRIPT = {
    "eproc": ([], ["{p}"]), "ps": ([], []), "pstree": ([], []), "threads": ([], ["{p}"]),
    "ethread": ([], ["{t}"]), "psxview": ([], []), "dt": (["_KTHREAD"], ["_KTHREAD"]),
    "token": ([], ["{p}"]), "handles": ([], ["{p}"]), "job": (["{j}"], ["{j}"]), "peb": ([], ["{p}"]),
    "teb": ([], ["{t}"]), "modules": ([], ["{p}"]), "lm": ([], []), "ready": ([], []), "running": ([], []),
    "vad": ([], ["{p}"]),
}


@pytest.mark.parametrize("script", sorted(p.stem for p in SCRIPTS.glob("*.py")))
def test_every_script_runs_like_the_cli(standin: Any, scenarios: Dict[int, Scenario], script: str) -> None:
    assert script in COMMANDS, "scripts/%s.py names no registered command" % script
    scenario = scenarios[19041]
    if script == "layouts":             # how the layout was chosen differs by design: own test
        standin._standin_configure(dump=scenario.path)
        out, err = run_like_bootstrapper(script_path("layouts"), [])
        assert "Chosen by: pdb-guid" in out and scenario.planted.guid in out, out + err
        return
    script_args, cli_args = EVERY_SCRIPT[script]
    in_job = next(p for p in scenario.planted.processes if p.get("job"))
    fill = {"{p}": "0x%x" % scenario.current_process["address"],
            "{t}": "0x%x" % scenario.current_thread["address"], "{j}": "0x%x" % in_job["address"]}
    _script_vs_cli(standin, scenario.path, script, [fill.get(a, a) for a in script_args],
                   [fill.get(a, a) for a in cli_args])


def _triage_isf(path: str, isf_dir: Path) -> Tuple[str, Dict[str, Any]]:
    """The ISF of the layout the offline reader chooses for a triage dump (no GUID in it), and
    the triage block's facts."""
    from pykd_ext.layouts.select import choose_for_target
    from pykd_ext.targets.opener import open_target
    target = open_target(path)
    try:
        chosen = choose_for_target(target)
        extra = dict(target.info().extra)
    finally:
        target.close()
    isf = isf_dir / "windows" / "ntkrnlmp.pdb" / ("%s-%d.json.xz" % (chosen.guid, chosen.age))
    assert isf.exists()
    return str(isf), extra


@pytest.mark.parametrize("name", ["win10-19041-x64-triage.dmp", "win10-17763-x64-triage.dmp"])
def test_real_triage_dumps(standin: Any, real_dir: Path, isf_dir: Path, name: str) -> None:
    """The dump holds System (PID 4) and its crashing thread: the scripts default to them, as
    WinDbg does, and print what the CLI prints for them; `ps` says the rest is not in the dump."""
    path = str(real_dir / "kernel-triage" / name)
    isf, extra = _triage_isf(path, isf_dir)
    process, thread = "0x%x" % extra["process"], "0x%x" % extra["thread"]
    out, _ = _script_vs_cli(standin, path, "eproc", [], [process], isf=isf, whole_second_clock=True)
    assert "Cid: 0004" in out and "Image: System" in out
    out, _ = _script_vs_cli(standin, path, "ethread", [], [thread], isf=isf, whole_second_clock=True)
    assert out.startswith("THREAD %016x" % extra["thread"])
    assert "RUNNING on processor" in out
    _script_vs_cli(standin, path, "threads", [], [process], isf=isf, whole_second_clock=True)
    _script_vs_cli(standin, path, "ps", [], [], isf=isf, whole_second_clock=True)
    standin._standin_configure(dump=path, isf=isf)
    _out, err = run_like_bootstrapper(script_path("ps"), [])
    assert "the rest of the process list is not in it" in err


def test_module_entry_matches_scripts(standin: Any, scenarios: Dict[int, Scenario]) -> None:
    """`!py -m pykd_ext eproc lsass.exe` (runpy of the package's __main__ with pykd preloaded)."""
    import runpy
    import sys
    scenario = scenarios[22000]
    standin._standin_configure(dump=scenario.path)
    script_out, _ = run_like_bootstrapper(script_path("eproc"), ["lsass.exe"])
    saved_argv, saved_stdout = list(sys.argv), sys.stdout
    import io
    buffer = io.StringIO()
    try:
        sys.argv = ["-m", "eproc", "lsass.exe"]
        sys.stdout = buffer
        runpy.run_module("pykd_ext", run_name="__main__", alter_sys=True)
    finally:
        sys.argv, sys.stdout = saved_argv, saved_stdout
    assert buffer.getvalue() == script_out


def test_usage_errors_do_not_raise(standin: Any, scenarios: Dict[int, Scenario]) -> None:
    standin._standin_configure(dump=scenarios[19041].path)
    out, err = run_like_bootstrapper(script_path("eproc"), ["--no-such-option"])
    assert "usage: !py eproc" in err and out == ""
    out, err = run_like_bootstrapper(script_path("ethread"), ["-h"])
    assert "usage: !py ethread" in out
    out, err = run_like_bootstrapper(script_path("eproc"), ["no-such-process.exe"])
    assert err.startswith("pykd-ext: ") and "Traceback" not in err


def test_engine_pykd_batch(standin: Any, scenarios: Dict[int, Scenario]) -> None:
    """`pykd-ext --engine pykd ps --target DUMP`: loadDump, the same output, closeDump."""
    scenario = scenarios[9600]
    standin._standin_reset()
    code, via_pykd, err = run_cli(["ps", "--engine", "pykd", "--target", scenario.path])
    assert code == 0, err
    code, direct, _ = run_cli(["ps", "--target", scenario.path])
    assert via_pykd == direct
    calls = standin._standin_calls()
    assert calls.get("loadDump") == 1 and calls.get("closeDump") == 1
