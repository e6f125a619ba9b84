"""Planted worlds (tests/kernel/planted.py) shared by the kernel-model tests: one dump per build."""
from typing import Any

import pytest

from planted import BUILDS, standard_world


@pytest.fixture(scope="session")
def planted_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(tmp_path_factory.mktemp("planted"))


@pytest.fixture(scope="session", params=BUILDS, ids=["win7", "win81", "win10-19041", "win11-22000"])
def world(request: Any, planted_dir: str, isf_dir: Any) -> Any:
    del isf_dir    # the forge reads the ISF from the shared folder: fail early when it is missing
    return standard_world(request.param, planted_dir)
