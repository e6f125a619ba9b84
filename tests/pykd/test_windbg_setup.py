"""`pykd-ext windbg-setup`: the exact WinDbg commands, and `--write DIR` creates working scripts."""
import json
from pathlib import Path
from typing import Any, Dict

from pykd_harness import SCRIPTS, run_cli, run_like_bootstrapper
from pykd_ext.commands.windbg_setup import SCRIPTS as SETUP_SCRIPTS, cmdtree_text, script_text


def test_repository_scripts_are_the_generated_ones() -> None:
    """One thin script per command, exactly as `--write` creates them (3-6 lines of code)."""
    on_disk = {p.stem: p.read_text(encoding="utf-8") for p in SCRIPTS.glob("*.py")}
    assert set(on_disk) == set(SETUP_SCRIPTS)
    for command, text in on_disk.items():
        assert text == script_text(command), command
        code = [l for l in text.split('"""')[-1].splitlines() if l.strip()]
        assert 2 <= len(code) <= 6 and code[-1] == 'run_script("%s")' % command


def test_setup_prints_the_windbg_commands() -> None:
    code, out, err = run_cli(["windbg-setup"])
    assert code == 0, err
    assert ".load pykd" in out
    assert "set PATH=%%PATH%%;%s" % SCRIPTS in out
    assert "!py eproc lsass.exe" in out and "!py -m pykd_ext eproc lsass.exe" in out
    code, out, _ = run_cli(["windbg-setup", "--format", "json"])
    steps = {r["step"]: r["command"] for r in json.loads(out)["records"]}
    assert steps["load"] == ".load pykd"


def test_write_creates_scripts_that_run(standin: Any, scenarios: Dict[int, Any], tmp_path: Path) -> None:
    folder = tmp_path / "windbg scripts"          # a space, as in "C:\\Program Files"
    code, out, err = run_cli(["windbg-setup", "--write", str(folder)])
    assert code == 0, err
    assert "Wrote %d files to %s" % (len(SETUP_SCRIPTS) + 1, folder) in out     # scripts + .cmdtree
    assert sorted(p.name for p in folder.iterdir()) == sorted(["%s.py" % c for c in SETUP_SCRIPTS] +
                                                              ["pykd-ext.cmdtree"])
    tree = (folder / "pykd-ext.cmdtree").read_text(encoding="utf-8")
    assert tree == cmdtree_text() and tree.startswith("windbg ANSI Command Tree 1.0")
    assert '{"ps"} {"!py ps"}' in tree
    scenario = scenarios[19041]
    standin._standin_configure(dump=scenario.path)
    written, _ = run_like_bootstrapper(folder / "ps.py", ["lsass.exe"])
    shipped, _ = run_like_bootstrapper(SCRIPTS / "ps.py", ["lsass.exe"])
    assert written == shipped and "Image: lsass.exe" in written


def test_write_to_an_unwritable_place_is_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, out, err = run_cli(["windbg-setup", "--write", str(blocker / "sub")])
    assert code == 2 and err.startswith("pykd-ext: ") and len(err.strip().splitlines()) == 1
