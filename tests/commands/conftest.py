"""The command tests reuse the planted worlds of tests/kernel (see tests/kernel/planted.py)."""
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "kernel"))

from planted import BUILDS, standard_world  # noqa: E402


@pytest.fixture(scope="session")
def commands_planted_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(tmp_path_factory.mktemp("planted-commands"))


@pytest.fixture(scope="session", params=BUILDS, ids=["win7", "win81", "win10-19041", "win11-22000"])
def cworld(request: Any, commands_planted_dir: str, isf_dir: Any) -> Any:
    del isf_dir
    return standard_world(request.param, commands_planted_dir)
