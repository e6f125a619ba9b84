"""Session fixtures of the PDB tests: the clang-built PDBs (see `toolchain`) and the real one."""
from pathlib import Path
from typing import Dict, Tuple

import pytest

from tests.pdbfile.toolchain import SOURCES, SRC, TARGETS, build_pdb


@pytest.fixture(scope="session")
def clang_pdbs(tmp_path_factory: pytest.TempPathFactory) -> Dict[Tuple[str, str], Path]:
    """(source file name, arch) -> built PDB."""
    out = tmp_path_factory.mktemp("clang-pdbs")
    return {(src, arch): build_pdb(SRC / src, arch, out) for src in SOURCES for arch in TARGETS}


@pytest.fixture(scope="session")
def real_pdb(real_dir: Path) -> Path:
    path = real_dir / "user-dumps" / "targetapp-wow64.pdb"
    assert path.is_file(), path
    return path
