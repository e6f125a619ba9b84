"""Issue 10 defect 3: a FIFO (or socket, device) as --target gives one line and exit 2 at once;
before, opening it to read the header blocked forever."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pykd_ext.errors import TargetError
from pykd_ext.targets.opener import open_target


def test_fifo_target_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "memory.dmp"
    os.mkfifo(str(fifo))
    run = subprocess.run([sys.executable, "-m", "pykd_ext", "ps", "--target", str(fifo)],
                         capture_output=True, text=True, timeout=60)   # a hang would time out
    assert run.returncode == 2
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and "not a regular file" in lines[0] and str(fifo) in lines[0]


def test_character_device_is_refused() -> None:
    with pytest.raises(TargetError, match="not a regular file"):
        open_target("/dev/zero")
