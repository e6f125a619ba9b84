"""`windbg-setup --write DIR` in a folder someone else prepared (issue 10, defect 6).

It must not follow a link planted in DIR (the victim file stays byte-for-byte as it was), must not
replace a file it did not write (one line, exit 2, nothing written), and must update its own files
on a rerun. The victim's bytes, mode and inode are read from the file system before and after:
the file system is the independent witness.
"""
import io
import os
import stat
from pathlib import Path
from typing import List, Tuple

import pytest

from pykd_ext.cli import run_command
from pykd_ext.commands.windbg_setup import CMDTREE_NAME, MARKER, SCRIPTS, cmdtree_text, script_text

EXPECTED = sorted(["%s.py" % c for c in SCRIPTS] + [CMDTREE_NAME])


def run(argv: List[str], capsys: pytest.CaptureFixture) -> Tuple[int, str, str]:
    out = io.StringIO()
    code = run_command(argv, out=out)
    captured = capsys.readouterr()
    return code, out.getvalue() + captured.out, captured.err


def snapshot(path: Path) -> Tuple[bytes, int, int, float]:
    info = os.lstat(str(path))
    return path.read_bytes(), info.st_ino, stat.S_IMODE(info.st_mode), info.st_mtime


def listing(folder: Path) -> List[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.mark.parametrize("planted", ["ps.py", CMDTREE_NAME])
def test_a_planted_symlink_is_not_followed(tmp_path: Path, planted: str, capsys: pytest.CaptureFixture) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"precious data\n")
    os.chmod(str(victim), 0o600)
    before = snapshot(victim)
    folder = tmp_path / "scripts"
    folder.mkdir()
    os.symlink(str(victim), str(folder / planted))
    code, out, err = run(["windbg-setup", "--write", str(folder)], capsys)
    assert code == 2, out + err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pykd-ext: %s: " % (folder / planted)), err
    assert "link" in lines[0]
    assert snapshot(victim) == before
    assert os.path.islink(str(folder / planted)) and os.readlink(str(folder / planted)) == str(victim)
    assert listing(folder) == [planted]                        # nothing else written, no temp left


def test_a_dangling_symlink_does_not_create_its_target(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    folder = tmp_path / "scripts"
    folder.mkdir()
    aim = tmp_path / "elsewhere" / "created-by-attacker.py"
    aim.parent.mkdir()
    os.symlink(str(aim), str(folder / "eproc.py"))
    code, _, err = run(["windbg-setup", "--write", str(folder)], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert not aim.exists() and listing(aim.parent) == []
    assert listing(folder) == ["eproc.py"]


@pytest.mark.parametrize("name", ["token.py", CMDTREE_NAME])
def test_a_foreign_file_is_left_alone(tmp_path: Path, name: str, capsys: pytest.CaptureFixture) -> None:
    folder = tmp_path / "scripts"
    folder.mkdir()
    foreign = folder / name
    foreign.write_text('print("my own token helper")\n', encoding="utf-8")
    before = snapshot(foreign)
    code, out, err = run(["windbg-setup", "--write", str(folder)], capsys)
    assert code == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pykd-ext: %s: " % foreign)
    assert "not written by windbg-setup" in lines[0]
    assert snapshot(foreign) == before
    assert listing(folder) == [name]                           # nothing written


def test_a_folder_or_fifo_in_the_way_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    folder = tmp_path / "scripts"
    folder.mkdir()
    (folder / "ps.py").mkdir()
    code, _, err = run(["windbg-setup", "--write", str(folder)], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert listing(folder) == ["ps.py"] and listing(folder / "ps.py") == []
    if hasattr(os, "mkfifo"):
        (folder / "ps.py").rmdir()
        os.mkfifo(str(folder / "ps.py"))                     # opening it to read would block
        code, _, err = run(["windbg-setup", "--write", str(folder)], capsys)
        assert code == 2 and len(err.strip().splitlines()) == 1
        assert stat.S_ISFIFO(os.lstat(str(folder / "ps.py")).st_mode) and listing(folder) == ["ps.py"]


def test_a_rerun_updates_its_own_files(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    folder = tmp_path / "scripts"
    code, _, err = run(["windbg-setup", "--write", str(folder)], capsys)
    assert code == 0, err
    assert listing(folder) == EXPECTED
    # an older version of our own files (marked), and one the user edited but kept marked
    stale = folder / "eproc.py"
    stale.write_text(script_text("eproc").replace("run_script", "old_run_script"), encoding="utf-8")
    tree = folder / CMDTREE_NAME
    tree.write_text(cmdtree_text().replace("!py ps", "!py old-ps"), encoding="utf-8")
    inode = os.lstat(str(stale)).st_ino
    code, out, err = run(["windbg-setup", "--write", str(folder)], capsys)
    assert code == 0, err
    assert "Wrote %d files to %s" % (len(EXPECTED), folder) in out
    assert listing(folder) == EXPECTED                         # no temporary file left
    for command in SCRIPTS:
        assert (folder / ("%s.py" % command)).read_text(encoding="utf-8") == script_text(command)
    assert tree.read_text(encoding="utf-8") == cmdtree_text()
    assert os.lstat(str(stale)).st_ino != inode               # replaced by rename, not rewritten in place


def test_scripts_written_before_the_mark_are_updated(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """An earlier version wrote the same script without the mark line: exactly that text is ours."""
    folder = tmp_path / "scripts"
    folder.mkdir()
    old = folder / "threads.py"
    old.write_text(script_text("threads").replace(MARKER + "\n", ""), encoding="utf-8")
    code, _, err = run(["windbg-setup", "--write", str(folder)], capsys)
    assert code == 0, err
    assert old.read_text(encoding="utf-8") == script_text("threads")


def test_deleting_the_mark_keeps_a_users_edits(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """The marker line says so: without it the file is the user's and is never replaced."""
    folder = tmp_path / "scripts"
    assert run(["windbg-setup", "--write", str(folder)], capsys)[0] == 0
    edited = folder / "ps.py"
    text = edited.read_text(encoding="utf-8")
    assert MARKER in text.splitlines()
    edited.write_text(text.replace(MARKER + "\n", "# my edit\n"), encoding="utf-8")
    before = snapshot(edited)
    others = {p.name: snapshot(p) for p in folder.iterdir() if p.name != "ps.py"}
    code, _, err = run(["windbg-setup", "--write", str(folder)], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert snapshot(edited) == before
    assert {p.name: snapshot(p) for p in folder.iterdir() if p.name != "ps.py"} == others


def test_written_scripts_carry_the_mark_and_run(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """The mark is a comment: the written script is still valid Python with its usage docstring."""
    folder = tmp_path / "scripts"
    assert run(["windbg-setup", "--write", str(folder)], capsys)[0] == 0
    for command in SCRIPTS:
        source = (folder / ("%s.py" % command)).read_text(encoding="utf-8")
        code = compile(source, command, "exec")
        assert code.co_consts[0].startswith("`!py %s" % command)              # the docstring
        assert MARKER in source.splitlines()
