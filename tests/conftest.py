"""Shared test fixtures: where the project's reference data (`../shared`) lives.

`shared/` sits beside the checkout (CI clones main with shared/ next to it). Override with the
PYKD_EXT_SHARED environment variable. Tests that need it fail (not skip) when it is missing:
a green run without the real data would prove nothing.
"""
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("PYKD_EXT_SHARED", str(REPO.parent / "shared"))).resolve()


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    assert SHARED.is_dir(), "reference data not found at %s (set PYKD_EXT_SHARED)" % SHARED
    return SHARED


@pytest.fixture(scope="session")
def isf_dir(shared_dir: Path) -> Path:
    return shared_dir / "isf"


@pytest.fixture(scope="session")
def real_dir(shared_dir: Path) -> Path:
    return shared_dir / "real"
