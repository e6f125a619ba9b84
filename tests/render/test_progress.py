"""Progress on stderr (issue 12 item 9): drawn on a terminal while records stream, wiped before
the notes, never on a non-terminal stderr, never with --quiet.

A real pseudo-terminal (`pty`) is the stderr: `isatty()` is the kernel's answer, not a stub's.
The one-second delay is set to 0 so the first record already draws (a bigger dump is not needed).
"""
import io
import os
import pty
import select
import sys
from pathlib import Path
from typing import Any, List, Tuple

import pytest

from pykd_ext.cli import run_command
from pykd_ext.progress import Progress

SAMPLE = str(Path(__file__).resolve().parents[2] / "samples" / "win10-19041-standard.dmp")


def _drain(fd: int) -> bytes:
    data = b""
    while select.select([fd], [], [], 0.05)[0]:
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        data += chunk
    return data


def _run_with_stderr(stderr: Any, argv: List[str], monkeypatch: pytest.MonkeyPatch) -> Tuple[int, str]:
    out = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stderr)
    code = run_command(argv, out=out)
    stderr.flush()
    monkeypatch.setattr(sys, "stderr", sys.__stderr__)
    return code, out.getvalue()


@pytest.fixture
def no_delay(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Progress, "delay_default", 0.0)
    monkeypatch.setattr(Progress, "enabled_default", None)


def test_progress_on_a_terminal_is_wiped_before_the_notes(no_delay: None, monkeypatch: pytest.MonkeyPatch) -> None:
    master, slave = pty.openpty()
    try:
        with os.fdopen(slave, "w", closefd=False) as tty:
            code, out = _run_with_stderr(tty, ["psxview", "--target", SAMPLE], monkeypatch)
        seen = _drain(master).decode("utf-8")
    finally:
        os.close(master)
        os.close(slave)
    assert code == 0 and out.startswith("Offset")
    drawn = seen.index("\rpsxview: 1 records")            # drawn at the first record
    wiped = seen.index("\r" + " " * len("psxview: 1 records"), drawn)
    first_note = seen.index("note:")                        # (in colour on a terminal)
    assert drawn < wiped < first_note                       # gone before the notes are written
    assert "records" not in seen[first_note:]


def test_nothing_but_notes_on_a_non_terminal_stderr(no_delay: None, monkeypatch: pytest.MonkeyPatch) -> None:
    err = io.StringIO()
    code, _ = _run_with_stderr(err, ["psxview", "--target", SAMPLE], monkeypatch)
    assert code == 0
    lines = err.getvalue().splitlines()
    assert lines and all(line.startswith("note: ") for line in lines)
    assert "\r" not in err.getvalue()


def test_quiet_draws_nothing_on_a_terminal(no_delay: None, monkeypatch: pytest.MonkeyPatch) -> None:
    master, slave = pty.openpty()
    try:
        with os.fdopen(slave, "w", closefd=False) as tty:
            code, _ = _run_with_stderr(tty, ["threads", "--target", SAMPLE, "-q", "-f", "jsonl"], monkeypatch)
        seen = _drain(master)
    finally:
        os.close(master)
        os.close(slave)
    assert code == 0 and seen == b""
    assert Progress.enabled_default is None                 # --quiet did not switch progress off for good


def test_progress_waits_for_its_delay() -> None:
    stream = io.StringIO()
    progress = Progress("x", enabled=True, stream=stream, delay=60.0)
    for _ in range(1000):
        progress.step()
    progress.close()
    assert stream.getvalue() == "" and progress.done == 1000
