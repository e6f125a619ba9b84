"""`structs list|diff|history` against what the ISF JSON and INDEX.tsv say."""
import io
import json
from typing import Any, Dict

import pytest

from isfdata import index_rows, isf_for, windbg_spelling
from pykd_ext.cli import run_command


def run_json(*argv: str, status: int = 0) -> Dict[str, Any]:
    out = io.StringIO()
    assert run_command(["structs", *argv, "--format", "json"], out=out) == status
    return json.loads(out.getvalue())


def test_list_has_every_indexed_build() -> None:
    doc = run_json("list")
    jpcert = [r for r in doc["records"] if r["source"].startswith("isf:JPCERTCC")]
    by_guid = {r["guid"]: r for r in jpcert}
    rows = index_rows()
    assert len(jpcert) == len(by_guid) == len(rows) == 193
    for r in rows:
        rec = by_guid[r["pdb_guid"]]
        assert rec["version"] == r["ntoskrnl_version"] and rec["age"] == int(r["pdb_age"])
        assert r["product"] in rec["products"].split(",")


@pytest.mark.parametrize("a,b,type_name", [("10.0.17763.437", "10.0.19041.1288", "_EPROCESS"),
                                           ("10.0.19041.1288", "10.0.22000.2538", "_KTHREAD"),
                                           ("6.1.7601.24540", "6.3.9600.19913", "_TOKEN")])
def test_diff_matches_isf(a: str, b: str, type_name: str) -> None:
    doc = run_json("diff", a, b, type_name)
    ia, ib = isf_for(a), isf_for(b)
    fa, fb = ia["user_types"][type_name]["fields"], ib["user_types"][type_name]["fields"]
    got = {r["member"]: r for r in doc["records"]}
    assert {m for m, r in got.items() if r["change"] == "added"} == set(fb) - set(fa)
    assert {m for m, r in got.items() if r["change"] == "removed"} == set(fa) - set(fb)
    for name in set(fa) & set(fb):
        x, y = fa[name], fb[name]
        moved = x["offset"] != y["offset"] or x["type"].get("bit_position") != y["type"].get("bit_position")
        rec = got.get(name)
        changes = rec["change"].split(",") if rec else []
        assert ("moved" in changes) == moved, name
        if rec:
            assert rec["a_offset"] == x["offset"] and rec["b_offset"] == y["offset"]
            assert rec["a_type"] == windbg_spelling(ia, x["type"]) and rec["b_type"] == windbg_spelling(ib, y["type"])
        same_spelling = windbg_spelling(ia, x["type"]) == windbg_spelling(ib, y["type"])
        if not moved and same_spelling and x["type"]["kind"] not in ("struct", "union"):
            assert rec is None, name


def test_diff_same_layout_is_empty() -> None:
    # no differing member: nothing matched, exit 1 (README "Exit codes"); the note says why
    doc = run_json("diff", "10.0.19041.1288", "10.0.19041.1415", "_LIST_ENTRY", status=1)
    assert doc["records"] == []
    assert any("same layout" in n for n in doc["notes"])


def test_history_matches_isf() -> None:
    doc = run_json("history", "_EPROCESS.Token")
    recs = {r["build_id"]: r for r in doc["records"]}
    from pykd_ext.layouts.registry import list_builds
    assert len(recs) == len(list_builds()) >= 193
    first_14393 = [r["ntoskrnl_version"] for r in index_rows() if r["ntoskrnl_version"].startswith("10.0.14393.")][0]
    for version in ("6.1.7601.24540", "6.3.9600.19913", first_14393, "10.0.19041.1288", "10.0.22000.2538"):
        isf = isf_for(version)
        f = isf["user_types"]["_EPROCESS"]["fields"]["Token"]
        assert recs[version]["offset"] == f["offset"]
        assert recs[version]["type"] == windbg_spelling(isf, f["type"])
        assert recs[version]["type_size"] == isf["user_types"]["_EPROCESS"]["size"]


def test_history_of_a_missing_member_is_an_error() -> None:
    assert run_command(["structs", "history", "_EPROCESS.NoSuchThing", "-q"], out=io.StringIO()) == 2


def test_diff_flags_changed_embedded_types() -> None:
    doc = run_json("diff", "10.0.17763.437", "10.0.19041.1288", "_EPROCESS")
    pcb = {r["member"]: r for r in doc["records"]}["Pcb"]
    ka = isf_for("10.0.17763.437")["user_types"]["_KPROCESS"]
    kb = isf_for("10.0.19041.1288")["user_types"]["_KPROCESS"]
    assert ka["fields"] != kb["fields"]
    assert "inner" in pcb["change"].split(",")
    # -r lists the embedded members by dotted path, offsets absolute in _EPROCESS
    deep = run_json("diff", "10.0.17763.437", "10.0.19041.1288", "_EPROCESS", "-r")
    added = {r["member"]: r for r in deep["records"] if r["change"] == "added"}
    for name in set(kb["fields"]) - set(ka["fields"]):
        assert added["Pcb." + name]["b_offset"] == kb["fields"][name]["offset"]
