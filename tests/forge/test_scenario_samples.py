"""The shipped sample dumps are what `samples/make_samples.py` writes today."""
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_samples_are_current() -> None:
    result = subprocess.run([sys.executable, str(REPO / "samples" / "make_samples.py"), "--check"],
                            capture_output=True, text=True, cwd=str(REPO))
    assert result.returncode == 0, result.stdout + result.stderr
