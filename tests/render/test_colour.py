"""Colour on a terminal (issue 12): names, PIDs, addresses and markers; none for pipes, NO_COLOR, JSON."""
import io
import re
from pathlib import Path

import pytest

from pykd_ext.cli import run_command
from pykd_ext.render.colour import STYLES, colour_line
from pykd_ext.render.escape import escape_text

SAMPLE = str(Path(__file__).resolve().parents[2] / "samples" / "win10-19041-standard.dmp")
SGR = re.compile(r"\x1b\[[0-9;]*m")


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _eproc(out: io.StringIO, *extra: str) -> str:
    assert run_command(["eproc", "lsass.exe", "--target", SAMPLE, "--quiet"] + list(extra), out=out) == 0
    return out.getvalue()


def test_terminal_gets_pid_name_and_address_coloured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    text = _eproc(Terminal())
    # the forge planted lsass.exe as PID 636 = 0x27c (samples/README.md)
    assert "Cid: %s027c%s" % (STYLES["pid"], "\x1b[0m") in text
    assert "Image: %slsass.exe\x1b[0m" % STYLES["name"] in text
    assert "%sffffb30c8a027040\x1b[0m" % STYLES["address"] in text
    assert SGR.sub("", text) == _eproc(io.StringIO())        # colour adds nothing but SGR codes


@pytest.mark.parametrize("why", ["pipe", "no_color", "dumb", "json", "never"])
def test_no_colour_where_it_does_not_belong(why: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    out: io.StringIO = Terminal()
    extra = []
    if why == "pipe":
        out = io.StringIO()
    elif why == "no_color":
        monkeypatch.setenv("NO_COLOR", "1")
    elif why == "dumb":
        monkeypatch.setenv("TERM", "dumb")
    elif why == "json":
        extra = ["--format", "json", "--color", "always"]
    else:
        extra = ["--color", "never"]
    assert "\x1b" not in _eproc(out, *extra)


def test_colour_never_unescapes_what_the_dump_holds() -> None:
    hostile = "Image: evil\x1b]0;owned\x07\x1b[2J.exe Cid: 1234 ffffb30c8a027040 <not in dump>"
    line = colour_line(escape_text(hostile))
    assert "\x07" not in line and "\x1b]" not in line
    assert "\x1b" not in SGR.sub("", line)                     # the only escapes are our colours
