"""Issue 10, defect 3: symbol files are read with limits.

- Only regular files: a FIFO, `/dev/zero`, a directory or a socket given to `--symbols` or
  `structs import` fails at once with one line (a FIFO is never opened: opening one blocks).
- Bounded decompression: the issue's bomb (a ~240 KB `.json.xz` that inflates to 1.5 GB) is
  stopped at the JSON limit: the error comes back and the process's peak memory stays a small
  fraction of what the bomb would inflate to (peak RSS measured in a subprocess).
- Bounded size on disk and bounded JSON nesting; damaged compressed data is an error line.
"""
import gzip
import json
import lzma
import os
import resource
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from pykd_ext.errors import LayoutError
from pykd_ext.layouts import registry
from pykd_ext.layouts.bounded_read import MAX_COMPRESSED_BYTES, MAX_JSON_BYTES
from test_isf_samples import assert_one_error_line, eprocess_doc, run_cli

BOMB_OUTPUT = 1536 << 20          # 1.5 GiB of JSON text


def write_xz_bomb(path: Path) -> int:
    """A valid .json.xz inflating to BOMB_OUTPUT bytes: 96 concatenated xz streams (xz allows it)
    of 16 MiB each, the first opening a JSON document. Returns the file size."""
    chunk = 16 << 20
    head = lzma.compress(b'{"user_types": {"_EPROCESS": "' + b" " * (chunk - 30), preset=0)
    body = lzma.compress(b" " * chunk, preset=0)
    with open(path, "wb") as fh:
        fh.write(head)
        for _ in range(BOMB_OUTPUT // chunk - 1):
            fh.write(body)
    return path.stat().st_size


def test_xz_bomb_is_stopped_early_with_small_memory(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.json.xz"
    size = write_xz_bomb(bomb)
    assert size < 400_000
    with lzma.open(bomb) as fh:              # it is a real bomb: the first 64 MiB inflate as promised
        assert len(fh.read(64 << 20)) == 64 << 20
    probe = (
        "import sys\n"
        "from pykd_ext.errors import LayoutError\n"
        "from pykd_ext.layouts.isf import load_isf\n"
        "try:\n"
        "    load_isf(sys.argv[1])\n"
        "    print('loaded')\n"
        "except LayoutError as err:\n"
        "    print(err.one_line())\n"
        # peak RSS of this process image: VmHWM (getrusage's maxrss would also count the RSS the
        # forking test runner had, which Linux carries across exec)
        "print([l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM:')][0])\n")
    proc = subprocess.run([sys.executable, "-c", probe, str(bomb)], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, timeout=300)
    assert proc.returncode == 0, proc.stderr
    message, maxrss_kib = proc.stdout.decode().splitlines()
    assert "decompresses to more than %d MiB" % (MAX_JSON_BYTES >> 20) in message
    # peak memory: the JSON limit plus the interpreter, far below the 1.5 GiB the bomb holds
    assert int(maxrss_kib) * 1024 < MAX_JSON_BYTES + (96 << 20) < BOMB_OUTPUT // 8
    rc, _, err = run_cli(["dt", "_EPROCESS", "--symbols", str(bomb)], tmp_path / "home")
    assert_one_error_line(rc, err, "decompresses to more than")


def test_gzip_bomb_and_damaged_data(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.json.gz"
    bomb.write_bytes(gzip.compress(b'{"user_types": {"a": "' + b" " * (MAX_JSON_BYTES + 1024), compresslevel=1))
    with pytest.raises(LayoutError, match="decompresses to more than"):
        registry.load_isf_file(str(bomb))
    good = lzma.compress(b'{"user_types": {}}' + b" " * 100000)
    cut = tmp_path / "cut.json.xz"
    cut.write_bytes(good[: len(good) // 2])
    with pytest.raises(LayoutError, match="damaged"):
        registry.load_isf_file(str(cut))


def test_size_on_disk_is_bounded(tmp_path: Path) -> None:
    big_xz = tmp_path / "big.json.xz"
    with open(big_xz, "wb") as fh:
        fh.write(b"\xfd7zXZ\x00")
        fh.truncate(MAX_COMPRESSED_BYTES + 1)        # sparse: nothing is written or read
    with pytest.raises(LayoutError, match="the limit for xz-compressed files is 8 MiB"):
        registry.load_isf_file(str(big_xz))
    big_json = tmp_path / "big.json"
    with open(big_json, "wb") as fh:
        fh.write(b"{")
        fh.truncate(MAX_JSON_BYTES + 1)
    with pytest.raises(LayoutError, match="the limit for JSON files is 32 MiB"):
        registry.load_isf_file(str(big_json))


def test_json_nesting_is_bounded(tmp_path: Path) -> None:
    deep = tmp_path / "deep.json"
    deep.write_text('{"user_types": ' + "[" * 200000 + "]" * 200000 + "}")
    rc, _, err = run_cli(["dt", "_EPROCESS", "--symbols", str(deep)], tmp_path / "home")
    assert_one_error_line(rc, err, "nested too deeply")
    # deep but parseable: a member type's kind that is a list 800 levels deep is named, cut short
    doc = json.dumps(eprocess_doc()).replace('"kind": "pointer"', '"kind": ' + "[" * 800 + "]" * 800, 1)
    deep.write_text(doc)
    with pytest.raises(LayoutError, match=r"type kind \[\[\[\[\.\.\.\]\]\]\] is not one of") as info:
        registry.load_isf_file(str(deep))
    assert len(info.value.one_line()) < 400


@pytest.fixture()
def special_files(tmp_path: Path):
    """A FIFO, /dev/zero, a directory and a listening UNIX socket (in a short path: sun_path)."""
    fifo = tmp_path / "fifo.json.xz"
    os.mkfifo(str(fifo))
    short = Path(tempfile.mkdtemp(prefix="isf", dir="/tmp"))
    sock_path = short / "s.json"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(sock_path))
    sock.listen(1)
    folder = tmp_path / "folder.json"
    folder.mkdir()
    try:
        yield {"FIFO": fifo, "character device": Path("/dev/zero"), "directory": folder, "socket": sock_path}
    finally:
        sock.close()
        sock_path.unlink()
        short.rmdir()


def test_only_regular_files_cli(tmp_path: Path, special_files) -> None:
    home = tmp_path / "home"
    for what, path in special_files.items():
        for args in (["dt", "_EPROCESS", "--symbols", str(path)], ["structs", "import", str(path)]):
            rc, out, err = run_cli(args, home, timeout=60)          # a hang fails here, not forever
            assert_one_error_line(rc, err, str(path), what, "not a file")
    assert not (home / "layouts").exists()


def test_only_regular_files_api(special_files) -> None:
    for what, path in special_files.items():
        with pytest.raises(LayoutError, match=what):
            registry.load_isf_file(str(path))
    start = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(LayoutError):
        registry.load_isf_file("/dev/zero")
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - start < 64 << 10     # KiB: nothing read
