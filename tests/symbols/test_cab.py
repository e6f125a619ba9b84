"""CAB (`.pd_`) unpacking, against cabinets written by GNOME's gcab (an independent writer):
MSZIP over many 32 KiB blocks (each block's history is the previous block's output), stored
cabinets, several members; and broken or hostile cabinets refused in one line."""
import struct
import zlib
from pathlib import Path
from typing import Dict, List

import pytest

from pykd_ext.symbols.cab import CabError, extract, list_members

from tests.symbols.conftest import gcab


def _unpack(path: Path, max_output: int = 1 << 30, member=None) -> bytes:
    parts: List[bytes] = []
    with open(path, "rb") as fh:
        name, size = extract(fh, path.stat().st_size, parts.append, max_output, member=member)
    data = b"".join(parts)
    assert size == len(data)
    return data


def test_gcab_mszip_of_a_real_pdb(real_dir: Path, tmp_path: Path) -> None:
    src = real_dir / "user-dumps" / "targetapp-wow64.pdb"        # 1.4 MB: ~44 MSZIP blocks
    cab = gcab(tmp_path / "targetapp.pd_", src)
    assert cab.stat().st_size < src.stat().st_size // 2
    assert _unpack(cab) == src.read_bytes()


def test_gcab_stored_and_several_members(built: Dict[str, Path], tmp_path: Path) -> None:
    stored = gcab(tmp_path / "stored.cab", built["pdb"], compress=False)
    assert _unpack(stored) == built["pdb"].read_bytes()
    multi = tmp_path / "multi.cab"
    import subprocess
    subprocess.run(["gcab", "-c", "-n", "-z", str(multi), str(built["pdb"]), str(built["exe"])],
                   check=True, capture_output=True, timeout=60)
    with open(multi, "rb") as fh:
        names = [n for n, _s in list_members(fh, multi.stat().st_size)]
    assert names == [built["pdb"].name, built["exe"].name]
    with pytest.raises(CabError, match="holds 2 files"):
        _unpack(multi)
    assert _unpack(multi, member=built["exe"].name) == built["exe"].read_bytes()


def _one_block_cab(payload: bytes, compress: int = 1, declared: int = -1) -> bytes:
    """A minimal one-folder, one-file cabinet ([MS-CAB]) for defects gcab will not write."""
    body = payload
    if compress == 1:
        co = zlib.compressobj(9, zlib.DEFLATED, -15)
        body = b"CK" + co.compress(payload) + co.flush()
    name = b"x.pdb\x00"
    files_at = 36 + 8
    data_at = files_at + 16 + len(name)
    size = len(payload) if declared < 0 else declared
    header = b"MSCF" + struct.pack("<IIIIIBBHHHHH", 0, data_at + 8 + len(body), 0, files_at, 0, 3, 1,
                                   1, 1, 0, 0, 0)
    folder = struct.pack("<IHH", data_at, 1, compress)
    cffile = struct.pack("<IIHHHH", size, 0, 0, 0, 0, 0x20) + name
    data = struct.pack("<IHH", 0, len(body), len(payload)) + body
    return header + folder + cffile + data


def test_minimal_writer_is_read_by_gcab(tmp_path: Path) -> None:
    # the hand-made cabinet below is a valid one: gcab lists and extracts it
    import subprocess
    path = tmp_path / "mini.cab"
    path.write_bytes(_one_block_cab(b"hello world" * 100))
    out = subprocess.run(["gcab", "-t", str(path)], check=True, capture_output=True, text=True)
    assert out.stdout.split() == ["x.pdb"]
    assert _unpack(path) == b"hello world" * 100


@pytest.mark.parametrize("raw,words", [
    (b"", "not a cabinet"),
    (b"MSCF" + bytes(10), "malformed cabinet"),
    (_one_block_cab(b"a" * 1000)[:-20], "malformed cabinet"),                      # truncated
    (_one_block_cab(b"a" * 1000, compress=3), "LZX compression is not supported"),
    (_one_block_cab(b"a" * 1000, declared=0xFFFFFFFF), "more than"),
])
def test_broken_cabinets(tmp_path: Path, raw: bytes, words: str) -> None:
    path = tmp_path / "bad.cab"
    path.write_bytes(raw)
    with pytest.raises(CabError) as info:
        _unpack(path, max_output=1 << 20)
    assert words in info.value.one_line() and "\n" not in info.value.one_line()


def test_corrupt_deflate_and_bomb(tmp_path: Path) -> None:
    good = bytearray(_one_block_cab(b"abc" * 5000))
    good[-10] ^= 0xFF                                     # inside the deflate stream
    path = tmp_path / "corrupt.cab"
    path.write_bytes(bytes(good))
    with pytest.raises(CabError):
        _unpack(path)
    # a block claiming more than 32 KiB of output is refused before inflating
    bomb = bytearray(_one_block_cab(b"\x00" * 30000))
    at = bomb.index(b"CK") - 2                           # CFDATA.cbUncomp
    bomb[at:at + 2] = struct.pack("<H", 0xFFFF)
    path.write_bytes(bytes(bomb))
    with pytest.raises(CabError, match="unpacks to 65535 bytes"):
        _unpack(path)
