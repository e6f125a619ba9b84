"""`dt`: WinDbg's layout (shape rules of windbg-output.md), values from the target, JSON records.

Expected members/offsets/types come from the ISF JSON (isfdata.windbg_spelling is written from
the spelling rules, not from pykd_ext), expected values from the dump's raw bytes.
"""
import io
import json
import re
import struct
from typing import Any, Dict, List, Tuple

import pytest

from isfdata import REAL_DIR, isf_for, windbg_spelling
from pykd_ext.cli import run_command
from pykd_ext.errors import MemoryReadError

BUILD = "10.0.19041.1288"
TRIAGE = str(REAL_DIR / "kernel-triage" / "win10-19041-x64-triage.dmp")
LINE = re.compile(r"^((?:   )+)\+0x([0-9a-f]{3,}) (.*?) : (.*)$")


def dt(*argv: str) -> List[str]:
    out = io.StringIO()
    rc = run_command(["dt", *argv, "-q"], out=out)
    assert rc == 0
    return out.getvalue().splitlines()


def parse(lines: List[str], width: int = 16) -> List[Tuple[int, int, str, str]]:
    rows = []
    for line in lines:
        m = LINE.match(line)
        assert m, line
        indent, off, name_col, rest = m.groups()
        name = name_col.rstrip()
        # name left-justified in `width` columns; longer names run on with one space
        assert name_col == name.ljust(width) if len(name) <= width else name_col == name, line
        rows.append((len(indent) // 3 - 1, int(off, 16), name, rest))
    return rows


def expected_members(isf: Dict[str, Any], type_name: str) -> List[Tuple[int, str, str]]:
    fields = isf["user_types"][type_name]["fields"]
    return sorted((f["offset"], n, windbg_spelling(isf, f["type"])) for n, f in fields.items())


def test_layout_without_address_matches_isf() -> None:
    isf = isf_for(BUILD)
    lines = dt("_EPROCESS", "--build", BUILD)
    assert lines[0] == "nt!_EPROCESS"
    rows = parse(lines[1:])
    assert all(depth == 0 for depth, *_ in rows)
    offsets = [off for _, off, _, _ in rows]
    assert offsets == sorted(offsets)
    assert sorted((off, name, typ) for _, off, name, typ in rows) == expected_members(isf, "_EPROCESS")
    # the reference lines of windbg-output.md, verbatim
    for ref in ("   +0x000 Pcb              : _KPROCESS",
                "   +0x440 UniqueProcessId  : Ptr64 Void",
                "   +0x448 ActiveProcessLinks : _LIST_ENTRY",
                "   +0x460 Flags2           : Uint4B",
                "   +0x460 JobNotReallyActive : Pos 0, 1 Bit",
                "   +0x5a8 ImageFileName    : [15] UChar"):
        assert ref in lines


def test_field_filter_and_one_level_expand() -> None:
    isf = isf_for(BUILD)
    lines = dt("nt!_EPROCESS", "UniqueProcessId", "Pcb.", "ImageFileName", "--build", BUILD)
    rows = parse(lines[1:], width=len("UniqueProcessId"))
    top = [r for r in rows if r[0] == 0]
    assert [r[2] for r in top] == ["UniqueProcessId", "Pcb", "ImageFileName"]
    nested = [(off, name, typ) for depth, off, name, typ in rows if depth == 1]
    assert sorted(nested) == expected_members(isf, "_KPROCESS")
    assert not [r for r in rows if r[0] > 1]
    # a dotted member shows the path only
    rows = parse(dt("_EPROCESS", "Pcb.DirectoryTableBase", "--build", BUILD)[1:], width=3)
    kp = isf["user_types"]["_KPROCESS"]["fields"]["DirectoryTableBase"]
    assert rows == [(0, 0, "Pcb", "_KPROCESS"), (1, kp["offset"], "DirectoryTableBase", "Uint8B")]


def test_recursive() -> None:
    isf = isf_for(BUILD)
    rows = parse(dt("_KWAIT_BLOCK", "-r", "--build", BUILD)[1:])

    def expect(type_name: str, depth: int, out: List[Tuple[int, int, str]]) -> None:
        for off, name, _typ in expected_members(isf, type_name):
            out.append((depth, off, name))
            t = isf["user_types"][type_name]["fields"][name]["type"]
            if t["kind"] in ("struct", "union"):
                expect(t["name"], depth + 1, out)
    want: List[Tuple[int, int, str]] = []
    expect("_KWAIT_BLOCK", 0, want)
    assert [(d, o, n) for d, o, n, _ in rows] == want
    assert any(d > 0 for d, *_ in rows)


def _chosen_isf_and_raw(address: int, size: int):
    from pykd_ext.layouts.select import choose_for_target
    from pykd_ext.targets.opener import open_target
    target = open_target(TRIAGE)
    try:
        lay = choose_for_target(target)
        raw = target.kernel.read(address, size)
        info = target.info()
    finally:
        target.close()
    return isf_for(lay.version), raw, info


def _hex64(v: int) -> str:
    return "0x%08x`%08x" % (v >> 32, v & 0xFFFFFFFF)


def test_values_at_address_from_the_dump() -> None:
    from pykd_ext.targets.opener import open_target
    target = open_target(TRIAGE)
    process = target.info().extra["process"]
    target.close()
    isf, raw, _info = _chosen_isf_and_raw(process, 0xa40)
    ep = isf["user_types"]["_EPROCESS"]["fields"]
    names = ["UniqueProcessId", "ImageFileName", "ActiveProcessLinks", "Flags2", "PrimaryTokenFrozen",
             "ImageFilePointer"]
    lines = dt("_EPROCESS", "%x" % process, *names, "-t", TRIAGE)
    rows = {name: value for _, _, name, value in parse(lines, width=max(map(len, names)))}
    pid = struct.unpack_from("<Q", raw, ep["UniqueProcessId"]["offset"])[0]
    assert rows["UniqueProcessId"] == _hex64(pid)
    name = raw[ep["ImageFileName"]["offset"]:][:15].split(b"\0")[0].decode()
    assert rows["ImageFileName"] == '[15]  "%s"' % name and name == "System"
    flink, blink = struct.unpack_from("<QQ", raw, ep["ActiveProcessLinks"]["offset"])
    assert rows["ActiveProcessLinks"] == "_LIST_ENTRY [ %s - %s ]" % (_hex64(flink), _hex64(blink))
    flags = struct.unpack_from("<I", raw, ep["Flags2"]["offset"])[0]
    assert rows["Flags2"] == "0x%x" % flags
    bit = ep["PrimaryTokenFrozen"]["type"]
    assert rows["PrimaryTokenFrozen"] == "0y%d" % ((flags >> bit["bit_position"]) & 1)
    ptr = struct.unpack_from("<Q", raw, ep["ImageFilePointer"]["offset"])[0]
    assert rows["ImageFilePointer"] == ("(null)" if ptr == 0 else _hex64(ptr))


def test_unreadable_address_shows_fault_marker() -> None:
    from pykd_ext.targets.opener import open_target
    address = 0xFFFFF80000000000
    target = open_target(TRIAGE)
    try:
        with pytest.raises(MemoryReadError) as err:
            target.kernel.read(address, 8)
        marker = err.value.fault.marker
    finally:
        target.close()
    lines = dt("_EPROCESS", "%x" % address, "UniqueProcessId", "Flags2", "-t", TRIAGE)
    rows = parse(lines, width=len("UniqueProcessId"))
    assert [r[3] for r in rows] == [marker, marker]


def test_json_records_match_text() -> None:
    out = io.StringIO()
    assert run_command(["dt", "_KAPC_STATE", "--build", BUILD, "--format", "json"], out=out) == 0
    doc = json.loads(out.getvalue())
    text = dt("_KAPC_STATE", "--build", BUILD)
    rows = parse(text[1:])
    assert [(r["offset"], r["name"], r["type"]) for r in doc["records"]] == [(o, n, t) for _, o, n, t in rows]
    assert doc["meta"]["layout"]["build_id"] == BUILD and doc["meta"]["type"] == "_KAPC_STATE"


def test_unknown_type_and_member_are_errors() -> None:
    assert run_command(["dt", "_NO_SUCH_TYPE", "--build", BUILD, "-q"], out=io.StringIO()) == 2
    assert run_command(["dt", "_EPROCESS", "NoSuchMember", "--build", BUILD, "-q"], out=io.StringIO()) == 2
