"""Bad input to the virtual-only readers: one typed error with a clear message, never a crash."""
import struct
from pathlib import Path
from typing import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pykd_ext.errors import DumpFormatError, MemoryReadError, PykdExtError, TruncatedDumpError
from pykd_ext.targets.opener import open_target

TRIAGE = "kernel-triage/win10-17763-x64-triage.dmp"
MDMP = "user-dumps/win10-17134-wow64-fullmem.dmp"
USERDU = "user-dumps/win10-17134-x64-userdu64.dmp"


def _copy(real_dir: Path, tmp_path: Path, name: str, edit: Callable[[bytearray], bytes],
          out: str = "bad.dmp") -> str:
    data = bytearray((real_dir / name).read_bytes())
    path = tmp_path / out
    path.write_bytes(bytes(edit(data)))
    return str(path)


def _patch(offset: int, fmt: str, value: int) -> Callable[[bytearray], bytes]:
    def edit(data: bytearray) -> bytes:
        struct.pack_into(fmt, data, offset, value)
        return bytes(data)
    return edit


# --- the CTF file ------------------------------------------------------------------------------

def test_mangled_minidump_is_refused_clearly(real_dir: Path) -> None:
    path = str(real_dir / "malformed" / "ctf-mangled-minidump.dmp")
    with pytest.raises(DumpFormatError) as err:
        open_target(path)
    line = err.value.one_line()
    assert err.value.path == path and "\n" not in line
    assert "stream directory RVA 0x4 lies inside the 32-byte MINIDUMP_HEADER" in line
    assert "shifted or corrupt" in line


# --- user minidumps -----------------------------------------------------------------------------

def test_minidump_cut_inside_header(real_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(TruncatedDumpError, match="MINIDUMP_HEADER"):
        open_target(_copy(real_dir, tmp_path, MDMP, lambda d: d[:16]))


def test_minidump_streams_past_end(real_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(DumpFormatError, match="points past the end of the file"):
        open_target(_copy(real_dir, tmp_path, MDMP, lambda d: d[:0x400]))


def test_minidump_wrong_version(real_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(DumpFormatError, match="MINIDUMP_VERSION"):
        open_target(_copy(real_dir, tmp_path, MDMP, _patch(4, "<I", 0x1234)))


def test_minidump_absurd_counts(real_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(DumpFormatError, match="NumberOfStreams"):
        open_target(_copy(real_dir, tmp_path, MDMP, _patch(8, "<I", 0x7FFFFFFF), "a.dmp"))
    # ThreadList stream at RVA 0x6f0 (its first ULONG32 is NumberOfThreads).
    with pytest.raises(DumpFormatError, match="ThreadList claims 2147483647 entries"):
        open_target(_copy(real_dir, tmp_path, MDMP, _patch(0x6F0, "<I", 0x7FFFFFFF), "b.dmp"))


def test_minidump_truncated_memory_is_served_with_a_note(real_dir: Path, tmp_path: Path) -> None:
    path = _copy(real_dir, tmp_path, MDMP, lambda d: d[:5_000_000])
    with open_target(path) as target:
        info = target.info()
        assert any("truncated" in note for note in info.notes)
        assert info.extra["bytes_mapped"] < 5_000_000
        last_start, last_size = list(target.kernel.regions())[-1]
        with pytest.raises(MemoryReadError):
            target.kernel.read(last_start + last_size, 1)


# --- triage dumps ---------------------------------------------------------------------------------

def test_triage_cut_inside_triage_header(real_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(TruncatedDumpError, match="TRIAGE_DUMP64"):
        open_target(_copy(real_dir, tmp_path, TRIAGE, lambda d: d[:0x2040]))


def test_triage_absurd_counts(real_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(DumpFormatError, match="DataBlocksCount"):
        open_target(_copy(real_dir, tmp_path, TRIAGE, _patch(0x207C, "<I", 0xFFFFFFFF), "a.dmp"))
    with pytest.raises(DumpFormatError, match="DriverCount"):
        open_target(_copy(real_dir, tmp_path, TRIAGE, _patch(0x2034, "<I", 0xFFFFFFF), "b.dmp"))
    with pytest.raises(TruncatedDumpError, match="data blocks"):
        open_target(_copy(real_dir, tmp_path, TRIAGE, _patch(0x207C, "<I", 0x10000), "c.dmp"))


def test_triage_cut_inside_data_blocks(real_dir: Path, tmp_path: Path) -> None:
    table = struct.unpack_from("<I", (real_dir / TRIAGE).read_bytes(), 0x2078)[0]
    with pytest.raises(TruncatedDumpError, match="data blocks"):
        open_target(_copy(real_dir, tmp_path, TRIAGE, lambda d: d[:table + 40]))


def test_triage_data_past_end_is_skipped_with_a_note(real_dir: Path, tmp_path: Path) -> None:
    raw = (real_dir / TRIAGE).read_bytes()
    table, count = struct.unpack_from("<II", raw, 0x2078)
    cut = table + 16 * count + 0x100
    with open_target(_copy(real_dir, tmp_path, TRIAGE, lambda d: d[:cut])) as target:
        notes = " ".join(target.info().notes)
        assert "past the end of the file" in notes and "truncated" in notes


def test_triage_encoded_kdbg(real_dir: Path, tmp_path: Path) -> None:
    raw = (real_dir / TRIAGE).read_bytes()
    kdbg_offset = struct.unpack_from("<I", raw, 0x2070)[0]

    def scramble(data: bytearray) -> bytes:
        data[kdbg_offset + 0x10:kdbg_offset + 0x14] = b"\x9a\x31\x7c\xe2"
        return bytes(data)

    with open_target(_copy(real_dir, tmp_path, TRIAGE, scramble)) as target:
        info = target.info()
        assert info.kdbg is None and info.kernel_base is None
        notes = " ".join(info.notes)
        assert "KDBG block is encoded" in notes
        assert "thread address not proven" in notes and info.extra["thread"] is None


# --- USERDU64 ---------------------------------------------------------------------------------------

def test_userdump_bad_inputs(real_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(TruncatedDumpError, match="header"):
        open_target(_copy(real_dir, tmp_path, USERDU, lambda d: d[:0x40], "a.dmp"))
    with pytest.raises(DumpFormatError, match="memory regions count"):
        open_target(_copy(real_dir, tmp_path, USERDU, _patch(0x1C, "<I", 0x7FFFFFFF), "b.dmp"))
    with pytest.raises(DumpFormatError, match="MachineImageType"):
        open_target(_copy(real_dir, tmp_path, USERDU, _patch(0x10, "<I", 0x1234), "c.dmp"))
    with pytest.raises(TruncatedDumpError, match="memory regions"):
        open_target(_copy(real_dir, tmp_path, USERDU, lambda d: d[:0x200], "d.dmp"))
    with pytest.raises(DumpFormatError, match="name length"):
        open_target(_copy(real_dir, tmp_path, USERDU, _patch(0x1AF0 + 12, "<I", 0x7FFFFFFF),
                          "e.dmp"))


def test_userdump_truncated_data_is_noted(real_dir: Path, tmp_path: Path) -> None:
    with open_target(_copy(real_dir, tmp_path, USERDU, lambda d: d[:0x100000])) as target:
        assert any("truncated" in note for note in target.info().notes)


# --- fuzz -----------------------------------------------------------------------------------------

@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(which=st.sampled_from([TRIAGE, MDMP, USERDU]),
       edits=st.lists(st.tuples(st.integers(0, 0x3000), st.integers(0, 255)), min_size=1,
                      max_size=24),
       cut=st.one_of(st.none(), st.integers(0, 0x30000)))
def test_fuzzed_headers_give_only_typed_errors(real_dir: Path, tmp_path: Path, which: str,
                                               edits: list, cut: int) -> None:
    data = bytearray((real_dir / which).read_bytes()[:0x40000])
    for offset, value in edits:
        data[offset] = value
    if cut is not None:
        del data[cut:]
    path = tmp_path / "fuzz.dmp"
    path.write_bytes(bytes(data))
    try:
        target = open_target(str(path))
    except PykdExtError:
        return
    with target:
        info = target.info()
        info.to_dict()
        for start, size in list(target.kernel.regions())[:50]:
            target.kernel.read(start, min(size, 64))
