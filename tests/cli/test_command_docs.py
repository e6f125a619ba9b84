"""docs/commands/ (issue 12): one page per command, current with its parser, examples and records.

The pages are generated (`python -m pykd_ext.commands.reference`); this fails when a command,
option, example or JSON record field changed without regenerating them, and checks each page
against what it documents: every registered command has a page naming its WinDbg counterpart,
and the listed record fields are the keys the command really emits on the sample.
"""
import io
import json
import subprocess
import sys
from pathlib import Path

from pykd_ext.cli import run_command
from pykd_ext.commands import COMMANDS
from pykd_ext.commands.reference import MIRRORS

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs" / "commands"


def test_pages_are_current() -> None:
    proc = subprocess.run([sys.executable, "-m", "pykd_ext.commands.reference", "--check"], cwd=str(REPO),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_every_command_has_a_page_with_its_counterpart() -> None:
    assert set(MIRRORS) == set(COMMANDS)
    for name in COMMANDS:
        text = (DOCS / ("%s.md" % name)).read_text()
        assert "**Mirrors:** %s" % MIRRORS[name] in text
        assert "usage: pykd-ext %s" % name in text


def test_listed_fields_are_what_ps_emits() -> None:
    out = io.StringIO()
    assert run_command(["ps", "--target", str(REPO / "samples" / "win10-19041-standard.dmp"), "-f", "json",
                        "-q"], out=out) == 0
    keys = set(json.loads(out.getvalue())["records"][0])
    listed = {line[3:-1] for line in (DOCS / "ps.md").read_text().splitlines() if line.startswith("- `")}
    assert keys <= listed and listed
