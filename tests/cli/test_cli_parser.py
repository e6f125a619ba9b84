"""The command line as people type it (issue 12 item 3): `--version`, global options before or after
the command (Volatility's order `pykd-ext --target X ps` and ours `pykd-ext ps --target X`).

Expected values come from sources independent of the parser: the installed distribution's
metadata (version), the sample dump's scenario (`forge.scenario.standard_scenario`, the processes
the forge planted), and argparse's documented exit statuses (0 help/version, 2 usage error).
"""
import importlib
import io
import json
import re
from importlib import metadata
from pathlib import Path
from typing import Any, List, Tuple

import pytest

from pykd_ext.cli import run_command
from pykd_ext.commands import COMMANDS, SUMMARIES
from pykd_ext.forge.scenario import standard_scenario

REPO = Path(__file__).resolve().parent.parent.parent
SAMPLE = str(REPO / "samples" / "win10-19041-standard.dmp")


def run(argv: List[str], capsys: Any) -> Tuple[int, str, str]:
    """(exit status, stdout, stderr) of one command line, argparse's own exits included."""
    out = io.StringIO()
    try:
        code = run_command(argv, out=out)
    except SystemExit as stop:
        code = int(stop.code or 0) if not isinstance(stop.code, str) else 2
    captured = capsys.readouterr()
    return code, out.getvalue() + captured.out, captured.err


def linked_processes() -> List[Tuple[int, str]]:
    """(pid, name) of every process the forge linked on the active list, in list order."""
    return [(p.pid, p.name[:15]) for p in standard_scenario().processes if not p.unlinked]


def ps_records(text: str) -> List[Tuple[int, str]]:
    return [(rec["pid"], rec["name"]) for rec in map(json.loads, text.splitlines())]


def test_version_prints_the_installed_version(capsys: Any) -> None:
    for flag in ("--version", "-V"):
        code, out, err = run([flag], capsys)
        assert code == 0, err
        assert out.strip() == "pykd-ext %s" % metadata.version("pykd-ext")


@pytest.mark.parametrize("argv", [
    ["--target", SAMPLE, "--format", "jsonl", "ps"],            # Volatility's order
    ["-t", SAMPLE, "-f", "jsonl", "ps"],
    ["--target=%s" % SAMPLE, "--format=jsonl", "--quiet", "ps"],
    ["-qt" + SAMPLE, "-fjsonl", "ps"],                          # clustered short options
    ["--targ", SAMPLE, "--form", "jsonl", "ps"],                # argparse's unambiguous prefixes
    ["--target", SAMPLE, "ps", "--format", "jsonl"],            # split around the command
    ["ps", "--target", SAMPLE, "--format", "jsonl"],            # the order that always worked
], ids=["long", "short", "equals", "clustered", "prefix", "split", "after"])
def test_global_options_before_or_after_the_command(argv: List[str], capsys: Any) -> None:
    code, out, err = run(argv, capsys)
    assert code == 0, err
    assert ps_records(out) == linked_processes()


def test_options_before_the_command_keep_the_command_arguments(capsys: Any) -> None:
    """`pykd-ext -t X -f jsonl ps lsass.exe`: the positional after the command is still a filter."""
    code, out, err = run(["-t", SAMPLE, "-f", "jsonl", "ps", "lsass.exe"], capsys)
    assert code == 0, err
    assert ps_records(out) == [pair for pair in linked_processes() if pair[1] == "lsass.exe"]


def test_an_option_value_that_names_a_command_is_a_value(capsys: Any, tmp_path: Path) -> None:
    """`--target ps ps`: the first `ps` is the target path, the second the command."""
    missing = str(tmp_path / "ps")
    code, out, err = run(["--target", missing, "ps"], capsys)
    assert code == 2 and out == ""
    assert err.startswith("pykd-ext: %s: " % missing) and len(err.strip().splitlines()) == 1


def test_a_later_option_overrides_an_earlier_one(capsys: Any) -> None:
    code, out, err = run(["--format", "text", "ps", "--target", SAMPLE, "--format", "jsonl"], capsys)
    assert code == 0, err
    assert ps_records(out) == linked_processes()


@pytest.mark.parametrize("argv,message", [
    ([], "required: COMMAND"),
    (["--target", SAMPLE], "required: COMMAND"),
    (["bogus"], "invalid choice: 'bogus'"),
    (["--target", SAMPLE, "bogus", "ps"], "invalid choice: 'bogus'"),
    (["--format", "bogus", "ps"], "argument --format/-f: invalid choice: 'bogus'"),
    (["--bogus", "ps"], "unrecognized arguments: --bogus"),
])
def test_usage_errors_exit_2(argv: List[str], message: str, capsys: Any) -> None:
    code, out, err = run(argv, capsys)
    assert code == 2 and out == ""
    assert message in err and err.startswith("usage: pykd-ext")


def test_top_level_help_lists_every_command(capsys: Any) -> None:
    code, out, err = run(["--help"], capsys)
    assert code == 0, err
    assert out.startswith("usage: pykd-ext")
    listed = re.findall(r"^    (\S+)\s", out, flags=re.M)
    assert listed == list(COMMANDS)
    flat = " ".join(out.split())
    for name in COMMANDS:
        assert " ".join(SUMMARIES[name].split()) in flat, name
    assert "--version" in out and "before or after COMMAND" in flat


def test_command_help_shows_its_own_and_the_global_options(capsys: Any) -> None:
    for argv in (["eproc", "--help"], ["--target", SAMPLE, "eproc", "-h"]):
        code, out, err = run(argv, capsys)
        assert code == 0, err
        assert out.startswith("usage: pykd-ext eproc")
        assert "--verbose" in out and "--target" in out and "--format" in out


def test_summaries_are_the_modules_help_lines() -> None:
    """The registry's one-liners (shown without importing) say what each module's HELP says."""
    assert set(SUMMARIES) == set(COMMANDS)
    for name, module_name in COMMANDS.items():
        assert SUMMARIES[name] == importlib.import_module(module_name).HELP, name
