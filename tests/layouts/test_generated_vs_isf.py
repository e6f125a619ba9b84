"""Every generated layout matches the ISF it came from: types, members, enums, global RVAs.

The expectation is the ISF JSON itself (read here with json/lzma, not with our reducer), and the
layouts under test are the committed `structs/` modules compiled through the runtime model, i.e.
exactly what walkers use. One build per build-number group runs in the fast suite; all 193 builds
run in the slow one. Each file also goes through the path a user's file takes (`--symbols`: the
whole file checked, reduced, built as data) and must give the same layouts.
"""
import csv
import json
import lzma
from pathlib import Path
from typing import Any, Dict, List, Tuple

import pytest

from pykd_ext.layouts.registry import find_by_guid, shipped_builds

# The list of root types, enums and globals (the specification, not our code's lists).
SPEC_TYPES = """_EPROCESS _KPROCESS _ETHREAD _KTHREAD _PEB _PEB_LDR_DATA _LDR_DATA_TABLE_ENTRY
_RTL_USER_PROCESS_PARAMETERS _TEB _NT_TIB _CLIENT_ID _LIST_ENTRY _UNICODE_STRING _EX_FAST_REF _TOKEN
_SEP_TOKEN_PRIVILEGES _SID_AND_ATTRIBUTES _SID _HANDLE_TABLE _HANDLE_TABLE_ENTRY _OBJECT_HEADER
_OBJECT_HEADER_NAME_INFO _OBJECT_TYPE _EJOB _PS_PROTECTION _KAPC_STATE _DISPATCHER_HEADER
_KWAIT_BLOCK _KPRCB _KPCR _MM_SESSION_SPACE _FILE_OBJECT""".split()
SPEC_ENUMS = """_KTHREAD_STATE _KWAIT_REASON _PS_PROTECTED_TYPE _PS_PROTECTED_SIGNER _TOKEN_TYPE
_SECURITY_IMPERSONATION_LEVEL _KPROCESS_STATE""".split()
SPEC_GLOBALS = """PsActiveProcessHead PspCidTable ObTypeIndexTable ObHeaderCookie PsInitialSystemProcess
KiProcessorBlock PsLoadedModuleList KdDebuggerDataBlock NtBuildNumber MmPfnDatabase""".split()


def index_rows(isf_dir: Path) -> List[Dict[str, str]]:
    with open(isf_dir / "INDEX.tsv", newline="") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    seen, out = set(), []
    for r in rows:
        if r["file"] not in seen:
            seen.add(r["file"])
            out.append(r)
    return out


def check_type(layouts: Any, isf: Dict[str, Any], name: str, problems: List[str]) -> int:
    """Compare type `name` and everything it embeds by value; returns members compared."""
    user = isf["user_types"]
    base_types = isf["base_types"]
    compared = 0
    todo: List[Tuple[str, Any]] = [(name, layouts.type(name))]
    done = set()
    while todo:
        isf_name, ours = todo.pop()
        if isf_name in done:
            continue
        done.add(isf_name)
        src = user[isf_name]
        where = "%s %s" % (layouts.build_id, isf_name)
        if ours.size != src["size"] or ours.kind != src["kind"]:
            problems.append("%s: size/kind %s/%s vs %s/%s" % (where, ours.size, ours.kind, src["size"], src["kind"]))
        expected_name = ("<unnamed-tag>" if isf_name.startswith("__unnamed") else
                         "<anonymous-tag>" if isf_name.startswith("__anonymous") else isf_name)
        if ours.name != expected_name:
            problems.append("%s: name %s" % (where, ours.name))
        if set(ours.fields) != set(src["fields"]):
            problems.append("%s: members differ: %s" % (where, set(ours.fields) ^ set(src["fields"])))
            continue
        offsets = [f.offset for f in ours.fields.values()]
        if offsets != sorted(offsets):
            problems.append("%s: members not in offset order" % where)
        for mname, member in src["fields"].items():
            compared += 1
            f = ours.fields[mname]
            t = member["type"]
            if f.offset != member["offset"]:
                problems.append("%s.%s: offset 0x%x vs 0x%x" % (where, mname, f.offset, member["offset"]))
            for _ in range(8):                  # arrays of arrays
                if t["kind"] != "array":
                    break
                if f.kind != "array" or f.count != t["count"]:
                    problems.append("%s.%s: array count %s vs %s" % (where, mname, f.count, t["count"]))
                    break
                f, t = f.element, t["subtype"]
            kind = t["kind"]
            if f.kind != ("bitfield" if kind == "bitfield" else kind):
                problems.append("%s.%s: kind %s vs %s" % (where, mname, f.kind, kind))
                continue
            if kind == "bitfield":
                if (f.bit_position, f.bit_length) != (t["bit_position"], t["bit_length"]):
                    problems.append("%s.%s: bits" % (where, mname))
                storage = t["type"]
                size = base_types[storage["name"]]["size"] if storage["kind"] == "base" else \
                    isf["enums"][storage["name"]]["size"]
                if f.size != size:
                    problems.append("%s.%s: bit storage size" % (where, mname))
            elif kind == "base":
                bt = base_types[t["name"]]
                if (f.type_name, f.size, f.signed) != (t["name"], bt["size"], bt["signed"]):
                    problems.append("%s.%s: base %s" % (where, mname, t["name"]))
            elif kind == "pointer":
                sub = t["subtype"]
                while sub["kind"] == "pointer":
                    sub = sub["subtype"]
                want = sub.get("name", "void")
                if sub["kind"] == "function":
                    want = "<function>"
                elif want.startswith("__unnamed"):
                    want = "<unnamed-tag>"
                elif want.startswith("__anonymous"):
                    want = "<anonymous-tag>"
                if f.type_name != want or f.size != base_types["pointer"]["size"]:
                    problems.append("%s.%s: pointer to %s vs %s" % (where, mname, f.type_name, want))
            elif kind == "enum":
                if f.type_name != t["name"] or f.size != isf["enums"][t["name"]]["size"]:
                    problems.append("%s.%s: enum" % (where, mname))
            elif kind in ("struct", "union"):
                todo.append((t["name"], layouts_type_of(f)))
    return compared


def layouts_type_of(f: Any) -> Any:
    from pykd_ext.layouts.model import compile_record
    return compile_record(f.record)


def check_build(row: Dict[str, str], isf_dir: Path) -> int:
    path = isf_dir / "windows" / "ntkrnlmp.pdb" / row["file"]
    with lzma.open(path) as fh:
        isf = json.load(fh)
    layouts = find_by_guid(row["pdb_guid"], int(row["pdb_age"]))
    assert layouts is not None, "no layouts for %s" % row["file"]
    assert layouts.version == row["ntoskrnl_version"]
    assert layouts.build == int(row["ntoskrnl_version"].split(".")[2])
    assert (layouts.arch, layouts.pointer_size, layouts.types_only) == ("x64", 8, False)
    problems: List[str] = []
    compared = 0
    for name in SPEC_TYPES:
        if name in isf["user_types"]:
            compared += check_type(layouts, isf, name, problems)
        else:
            assert not layouts.has_type(name)
    for name in layouts.type_names():
        compared += check_type(layouts, isf, name, problems)
    for name in SPEC_ENUMS:
        assert layouts.has_enum(name) == (name in isf["enums"]), name
    for name in layouts.enum_names():
        ours = layouts.enum(name)
        assert dict(ours.items()) == isf["enums"][name]["constants"], name
        assert ours.size == isf["enums"][name]["size"]
    for name in SPEC_GLOBALS:
        assert layouts.has_symbol(name) == (name in isf["symbols"]), name
    for name in layouts.symbol_names():
        assert layouts.symbol_rva(name) == isf["symbols"][name]["address"], name
    assert not problems, problems[:20]
    check_data_build(isf, layouts, str(path))
    return compared


def check_data_build(isf: Dict[str, Any], shipped: Any, path: str) -> None:
    """The same table given by a user (`--symbols`): the whole file passes the checks and builds,
    as data, into the very layouts the shipped module holds (same variant digests, enums, RVAs)."""
    from pykd_ext.layouts.registry import layouts_from_isf_doc
    data = layouts_from_isf_doc(isf, "ad hoc: test", path=path)
    assert data.type_names() == shipped.type_names()
    for name in shipped.type_names():
        assert data.construct(name).digest == shipped.construct(name).digest, name
    assert data.enum_names() == shipped.enum_names()
    for name in shipped.enum_names():
        assert data.enum(name).items() == shipped.enum(name).items(), name
    assert {n: data.symbol_rva(n) for n in data.symbol_names()} == \
        {n: shipped.symbol_rva(n) for n in shipped.symbol_names()}


def test_index_lists_every_isf(isf_dir: Path) -> None:
    rows = index_rows(isf_dir)
    assert len(rows) == 193
    jpcert = [e for e in shipped_builds() if e.source.startswith("isf:JPCERTCC")]
    by_guid = {(e.guid, e.age): e for e in jpcert}
    assert len(jpcert) == len(by_guid) == 193
    for r in rows:
        e = by_guid[(r["pdb_guid"], int(r["pdb_age"]))]
        assert e.version == r["ntoskrnl_version"]
        assert e.source.startswith("isf:JPCERTCC")
    # products of duplicated INDEX rows are merged, not lost
    products = {}
    with open(isf_dir / "INDEX.tsv", newline="") as fh:
        for r in csv.DictReader(fh, delimiter="\t"):
            products.setdefault(r["pdb_guid"], set()).add(r["product"])
    for e in jpcert:
        assert set(e.products) == products[e.guid]


def test_one_build_per_group_matches_isf(isf_dir: Path) -> None:
    rows = index_rows(isf_dir)
    firsts = {}
    for r in rows:
        firsts.setdefault(".".join(r["ntoskrnl_version"].split(".")[:3]), r)
    assert len(firsts) == 9
    total = sum(check_build(r, isf_dir) for r in firsts.values())
    assert total > 9 * 1500


@pytest.mark.slow
def test_every_shipped_build_matches_isf(isf_dir: Path) -> None:
    total = 0
    for row in index_rows(isf_dir):
        total += check_build(row, isf_dir)
    assert total > 193 * 1500
