"""The symbol-store layout (SymStore/SymSrv documentation) and writes a shared cache can take."""
import os
from pathlib import Path

import pytest

from pykd_ext.symbols.store import (SymbolStoreError, check_file_name, find_local, image_index,
                                    pdb_index, relative_path, store_path, write_atomic)


def test_pdb_and_image_indexes() -> None:
    # GUID upper-case without dashes, then the age in hex; image: 8 hex digits of the stamp,
    # SizeOfImage in lower-case hex
    assert pdb_index("{1d409061-3bf9-7f9b-9529-992e20e93897}", 1) == "1D4090613BF97F9B9529992E20E938971"
    assert pdb_index("1D4090613BF97F9B9529992E20E93897", 0x1A) == "1D4090613BF97F9B9529992E20E938971A"
    assert image_index(0x5C8B33E2, 0xA6F000) == "5C8B33E2a6f000"
    assert image_index(0x1234, 0x1000) == "000012341000"
    assert relative_path("ntkrnlmp.pdb", "ABC1") == "ntkrnlmp.pdb/ABC1/ntkrnlmp.pdb"
    assert relative_path("ntkrnlmp.pdb", "ABC1", two_tier=True) == "nt/ntkrnlmp.pdb/ABC1/ntkrnlmp.pdb"
    for bad in ("nope", "{1d409061}", "G" * 32):
        with pytest.raises(SymbolStoreError):
            pdb_index(bad, 1)


@pytest.mark.parametrize("name", ["", "..", "dir/..", ".hidden", "a" * 200, "x\x00y", "a\nb"])
def test_names_that_would_leave_the_store(name: str) -> None:
    with pytest.raises(SymbolStoreError):
        check_file_name(name)


def test_path_components_are_dropped() -> None:
    # an RSDS record holds the build machine's full path; only the file name is used
    assert check_file_name(r"d:\os\obj\amd64\ntkrnlmp.pdb") == "ntkrnlmp.pdb"
    assert check_file_name("../../etc/passwd") == "passwd"


def test_two_tier_and_case(tmp_path: Path) -> None:
    (tmp_path / "index2.txt").write_text("")
    path = store_path(str(tmp_path), "Ntkrnlmp.pdb", "AB1")
    assert path == str(tmp_path / "Nt" / "Ntkrnlmp.pdb" / "AB1" / "Ntkrnlmp.pdb")
    lower = tmp_path / "nt" / "ntkrnlmp.pdb" / "AB1" / "ntkrnlmp.pdb"
    lower.parent.mkdir(parents=True)
    lower.write_bytes(b"x")
    # a store written on Windows (case-insensitive) holds the lower-case spelling
    assert find_local(str(tmp_path), "Ntkrnlmp.pdb", "AB1") == str(lower)


def test_atomic_write_leaves_nothing_on_failure(tmp_path: Path) -> None:
    dest = tmp_path / "a" / "b" / "file.pdb"

    def chunks():
        yield b"part"
        raise OSError("connection lost")

    with pytest.raises(OSError):
        write_atomic(str(dest), chunks())
    assert not dest.exists() and os.listdir(dest.parent) == []
    assert write_atomic(str(dest), iter([b"ab", b"cd"])) == 4 and dest.read_bytes() == b"abcd"


def test_atomic_write_refuses_a_planted_link(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_bytes(b"keep")
    dest = tmp_path / "file.pdb"
    dest.symlink_to(victim)
    with pytest.raises(SymbolStoreError):
        write_atomic(str(dest), iter([b"evil"]))
    assert victim.read_bytes() == b"keep"
