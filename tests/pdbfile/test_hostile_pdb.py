"""Hostile and broken PDBs (issue 10 for symbol files): every defect is one LayoutError line,
never a traceback, a hang, a MemoryError or code run from the file.

The files are real PDBs (clang-cl + lld-link, see conftest) with one planted defect each, placed
through the MSF block map so the defect sits exactly where the format says the field is.
"""
import json
import os
import random
import shutil
import struct
import threading
from pathlib import Path
from typing import Callable, Dict, Tuple

import pytest

from pykd_ext.errors import LayoutError
from pykd_ext.layouts.pdb import convert_pdb, read_pdb_identity
from pykd_ext.layouts.pdb.msf import MsfFile
from pykd_ext.layouts.pdb.tpi import TypeStream

Built = Dict[Tuple[str, str], Path]


def _copy(src: Path, tmp_path: Path, name: str = "bad.pdb") -> Path:
    dst = tmp_path / name
    shutil.copyfile(src, dst)
    return dst


def _file_offset(path: Path, stream: int, offset: int) -> int:
    """Where byte `offset` of a stream lies in the file (through the MSF block map)."""
    with MsfFile(str(path)) as msf:
        bs = msf.block_size
        return msf._stream_blocks[stream][offset // bs] * bs + offset % bs


def _patch(path: Path, at: int, data: bytes) -> None:
    with open(path, "r+b") as fh:
        fh.seek(at)
        fh.write(data)


def _patch_stream(path: Path, stream: int, offset: int, data: bytes) -> None:
    for i, byte in enumerate(data):          # byte by byte: a field may straddle two blocks
        _patch(path, _file_offset(path, stream, offset + i), bytes([byte]))


def _record_offset(path: Path, index: int) -> int:
    """Offset in the TPI stream of type record `index` (its length field)."""
    with MsfFile(str(path)) as msf:
        types = TypeStream(msf.stream(2))
        return types._offsets[index - types.begin]


def _find_record(path: Path, predicate: Callable[[TypeStream, int], bool]) -> int:
    with MsfFile(str(path)) as msf:
        types = TypeStream(msf.stream(2))
        return next(i for i in types.indices() if predicate(types, i))


def _refused(path: Path, *words: str) -> str:
    with pytest.raises(LayoutError) as info:
        convert_pdb(str(path))
    line = info.value.one_line()
    assert "\n" not in line
    for word in words:
        assert word in line, line
    return line


@pytest.fixture
def pdb(clang_pdbs: Built, tmp_path: Path) -> Path:
    return _copy(clang_pdbs[("layouts.c", "x64")], tmp_path)


def test_not_a_pdb(tmp_path: Path) -> None:
    for name, data in (("empty.pdb", b""), ("isf.pdb", b'{"user_types": {}}'),
                       ("zeros.pdb", bytes(8192)),
                       ("old.pdb", b"Microsoft C/C++ program database 2.00\r\n\x1aJG\x00" + bytes(100))):
        path = tmp_path / name
        path.write_bytes(data)
        line = _refused(path)
        assert "not a PDB" in line or "PDB 2.0" in line, line


def test_special_files_are_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo.pdb"
    os.mkfifo(fifo)
    outcome: Dict[str, str] = {}

    def attempt() -> None:
        try:
            convert_pdb(str(fifo))
        except LayoutError as err:
            outcome["error"] = err.one_line()

    worker = threading.Thread(target=attempt, daemon=True)
    worker.start()
    worker.join(10)
    assert "regular file" in outcome.get("error", "<still blocked on the FIFO>")
    _refused(Path("/dev/zero"), "regular file")
    _refused(tmp_path, "regular file")
    _refused(tmp_path / "missing.pdb", "cannot open")


@pytest.mark.parametrize("offset,value,words", [
    (0x20, 1000, ("block size 1000",)),                 # BlockSize
    (0x28, 0x7FFFFFFF, ("blocks declared",)),           # NumBlocks beyond the file
    (0x2C, 0x7FFFFFF0, ("stream directory",)),          # NumDirectoryBytes
    (0x34, 0x00FFFFFF, ("block map", "outside")),       # BlockMapAddr
])
def test_bad_superblock(pdb: Path, offset: int, value: int, words: Tuple[str, ...]) -> None:
    _patch(pdb, offset, struct.pack("<I", value))
    _refused(pdb, *words)


def test_truncated_files(pdb: Path, tmp_path: Path) -> None:
    data = pdb.read_bytes()
    for cut in (40, 0x38, 4096, len(data) // 2, len(data) - 4096):
        short = tmp_path / ("cut%d.pdb" % cut)
        short.write_bytes(data[:cut])
        _refused(short)


def test_bad_directory(pdb: Path) -> None:
    with MsfFile(str(pdb)) as msf:
        bs = msf.block_size
    # the directory: stream count, then sizes; make stream 2 (TPI) claim 2 GiB
    with open(pdb, "rb") as fh:
        fh.seek(0x34)
        map_block = struct.unpack("<I", fh.read(4))[0]
        fh.seek(map_block * bs)
        dir_block = struct.unpack("<I", fh.read(4))[0]
    _patch(pdb, dir_block * bs + 4 + 2 * 4, struct.pack("<I", 0x7FFFFFFF))
    _refused(pdb, "larger than the file")


def test_bad_stream_block_number(pdb: Path) -> None:
    with MsfFile(str(pdb)) as msf:
        bs = msf.block_size
        count = msf.num_streams
    with open(pdb, "rb") as fh:
        fh.seek(0x34)
        map_block = struct.unpack("<I", fh.read(4))[0]
        fh.seek(map_block * bs)
        dir_block = struct.unpack("<I", fh.read(4))[0]
    # the first block number listed (stream 1's) points far outside the file
    _patch(pdb, dir_block * bs + 4 + 4 * count, struct.pack("<I", 0x00FFFFFF))
    _refused(pdb, "outside the file")


def test_bad_tpi_header(pdb: Path, tmp_path: Path) -> None:
    huge = _copy(pdb, tmp_path, "huge.pdb")
    _patch_stream(huge, 2, 0x0C, struct.pack("<I", 0x7FFFFFFF))     # TypeIndexEnd
    _refused(huge, "TPI")
    header = _copy(pdb, tmp_path, "header.pdb")
    _patch_stream(header, 2, 0x04, struct.pack("<I", 0x10000))       # HeaderSize
    _refused(header, "TPI header size")
    records = _copy(pdb, tmp_path, "records.pdb")
    _patch_stream(records, 2, _record_offset(records, 0x1001), struct.pack("<H", 0xFFF0))
    _refused(records, "TPI")


def test_field_list_continuing_into_itself(pdb: Path) -> None:
    # replace the last member of a field list by LF_INDEX -> the list itself (a cycle)
    fl = _find_record(pdb, lambda t, i: t.leaf(i) == 0x1203
                      and any(m.kind == 0x150D and m.name == "tag" for m in t.get(i).members))
    start = _record_offset(pdb, fl)
    with open(pdb, "rb") as fh:
        fh.seek(_file_offset(pdb, 2, start))
        length = struct.unpack("<H", fh.read(2))[0]
    # the field list of `struct inner` (tag, count) becomes: LF_INDEX -> itself, then LF_PADs
    rest = 2 + length - 4 - 8
    pads = bytearray()
    while len(pads) < rest:
        step = min(15, rest - len(pads))
        pads += bytes([0xF0 | step]) + bytes(step - 1)
    _patch_stream(pdb, 2, start + 4, struct.pack("<HHI", 0x1404, 0, fl) + bytes(pads))
    _refused(pdb, "continues into itself")


def test_modifier_cycle_is_bounded(pdb: Path) -> None:
    # the `const volatile unsigned short` of outer.cv_field
    mod = _find_record(pdb, lambda t, i: t.leaf(i) == 0x1001 and t.get(i).referent in (0x21, 0x73))
    _patch_stream(pdb, 2, _record_offset(pdb, mod) + 4, struct.pack("<I", mod))
    _refused(pdb, "nested more than")


def test_bad_numeric_leaf(pdb: Path) -> None:
    # an LF_REAL32 numeric leaf where `inner.tag`'s offset is
    fl = _find_record(pdb, lambda t, i: t.leaf(i) == 0x1203
                      and any(m.kind == 0x150D and m.name == "tag" for m in t.get(i).members))
    _patch_stream(pdb, 2, _record_offset(pdb, fl) + 4 + 8, struct.pack("<H", 0x8005))
    _refused(pdb, "numeric leaf 0x8005")


def test_bad_bitfield(pdb: Path) -> None:
    bf = _find_record(pdb, lambda t, i: t.leaf(i) == 0x1205)
    _patch_stream(pdb, 2, _record_offset(pdb, bf) + 4 + 4, bytes([40, 60]))   # 40 bits at bit 60
    _refused(pdb, "bitfield at bit 60 of 40 bits")


def test_names_are_data_never_code(pdb: Path, tmp_path: Path) -> None:
    # a struct name carrying Python source and control characters stays a string in the ISF
    target = _find_record(pdb, lambda t, i: t.leaf(i) == 0x1505 and t.get(i).name == "packed"
                          and not t.get(i).forward)
    raw = pdb.read_bytes()
    start = _record_offset(pdb, target)
    # name position: after u16 len, u16 kind, u16 count, u16 props, 3 x u32, numeric size (u16)
    name_at = start + 4 + 2 + 2 + 12 + 2
    evil = b'"""\n\x1b'                  # same length as "packed" minus one, then NUL
    _patch_stream(pdb, 2, name_at, evil + b"\x00")
    marker = tmp_path / "pwned"
    conv = convert_pdb(str(pdb))
    assert '"""\n\x1b' in conv.isf["user_types"]
    assert json.loads(json.dumps(conv.isf)) == conv.isf
    assert not marker.exists() and raw != pdb.read_bytes()


def test_mutation_fuzz_gives_only_layout_errors(clang_pdbs: Built, tmp_path: Path) -> None:
    """Random byte changes in the type stream and the directory: convert or LayoutError."""
    src = clang_pdbs[("classes.cpp", "x86")]
    rng = random.Random(16)
    with MsfFile(str(src)) as msf:
        tpi_size = msf.stream_sizes[2]
        bs, tpi_blocks = msf.block_size, list(msf._stream_blocks[2])
    outcomes = {"converted": 0, "refused": 0}
    for round_ in range(300):
        path = _copy(src, tmp_path, "fuzz.pdb")
        for _ in range(rng.choice((1, 2, 4))):
            if rng.random() < 0.85:
                offset = rng.randrange(56, tpi_size)
                at = tpi_blocks[offset // bs] * bs + offset % bs
                _patch(path, at, bytes([rng.randrange(256)]))
            else:
                _patch(path, rng.randrange(0, path.stat().st_size), bytes([rng.randrange(256)]))
        try:
            convert_pdb(str(path))
            outcomes["converted"] += 1
        except LayoutError as err:
            assert "\n" not in err.one_line()
            outcomes["refused"] += 1
    assert outcomes["refused"] > 30 and outcomes["converted"] > 30, outcomes


def test_identity_of_a_broken_file_is_a_layout_error(pdb: Path) -> None:
    _patch(pdb, 0x20, struct.pack("<I", 7))
    with pytest.raises(LayoutError):
        read_pdb_identity(str(pdb))
