"""The derived (types-only) layouts: generated into structs/ exactly as the files state them.

Independent sources: the derived ISF JSON itself (every member's offset, bit position and length,
every type size, the `metadata.source` partial/absent lists), and System Informer's kphdyn table
for the offsets it knows and for the revision ranges.
"""
import io
import json
import lzma
from pathlib import Path
from typing import Any, Dict, Tuple

import pytest

from pykd_ext.layouts.kernel_versions import check_layout_fields, lookup_kernel, versions_for_build
from pykd_ext.layouts.registry import load_layouts, shipped_builds

DERIVED_FILES = (
    "10.0.22621.382-x64", "10.0.22631.2428-x64", "10.0.26100-x64", "10.0.17134.1-x64",
    "6.1.7601.17514-x86", "10.0.10240.16384-x86", "10.0.14393.0-x86", "10.0.15063.0-x86",
    "10.0.16299.15-x86", "10.0.17134.1-x86", "10.0.17763.107-x86", "10.0.18362.418-x86",
    "10.0.19041.1288-x86", "10.0.19045.2965-x86")


def _build_id(stem: str) -> str:
    version, arch = stem.rsplit("-", 1)
    return version if arch == "x64" else stem


_DOCS: Dict[str, Any] = {}


def _doc(shared_dir: Path, stem: str) -> Dict[str, Any]:
    if stem not in _DOCS:
        with lzma.open(shared_dir / "isf-derived" / (stem + ".json.xz"), "rt", encoding="utf-8") as fh:
            _DOCS[stem] = json.load(fh)
    return _DOCS[stem]


def test_every_derived_file_is_shipped_and_marked_types_only(shared_dir: Path) -> None:
    on_disk = sorted(p.name[:-len(".json.xz")] for p in (shared_dir / "isf-derived").glob("*.json.xz"))
    assert on_disk == sorted(DERIVED_FILES)
    entries = {e.build_id: e for e in shipped_builds()}
    for stem in DERIVED_FILES:
        src = _doc(shared_dir, stem)["metadata"]["source"]
        e = entries[_build_id(stem)]
        assert e.types_only and e.guid is None and e.age is None
        assert e.source.startswith("derived types-only: ") and src["name"].split(",")[0] in e.source
        assert e.arch == src["arch"] and e.pointer_size == (4 if src["arch"] == "x86" else 8)
        assert e.pdb == _doc(shared_dir, stem)["metadata"]["windows"]["pdb"]["database"]
        assert e.extra["licence"] == src["license"] and e.extra["derived_from"] == src["derived_from"]
        assert dict(e.extra.get("partial_types", {})) == dict(src["types_partial"])
        absent = set(src["types_omitted"]) | set(src["types_requested_missing_in_source"])
        assert set(e.extra.get("absent_types", [])) == absent
        assert set(e.extra.get("absent_enums", [])) == set(src["enums_requested_missing_in_source"])
        assert e.products == (["Win7"] if stem.startswith("6.1") else
                              ["Win11"] if e.build >= 22000 else ["Win10"])
    # the cases the README names
    assert set(entries["10.0.22621.382"].extra["partial_types"]) == {"_KPCR", "_KPRCB"}
    assert set(entries["10.0.26100"].extra["absent_types"]) == {"_KPRCB", "_MM_SESSION_SPACE"}
    assert "_PS_PROTECTION" in entries["6.1.7601.17514-x86"].extra["absent_types"]


@pytest.mark.parametrize("stem", DERIVED_FILES)
def test_generated_layout_equals_the_derived_isf(shared_dir: Path, stem: str) -> None:
    doc = _doc(shared_dir, stem)
    lay = load_layouts(_build_id(stem))
    assert lay.types_only and not lay.symbol_names()
    user_types = doc["user_types"]
    compared = 0
    for name in lay.type_names():
        src = user_types[name]
        t = lay.type(name)
        assert t.size == src["size"], name
        for member, info in src["fields"].items():
            f = t.fields[member]
            assert f.offset == info["offset"], (name, member)
            kind = info["type"]
            if kind.get("kind") == "bitfield":
                assert (f.bit_position, f.bit_length) == (kind["bit_position"], kind["bit_length"])
            if kind.get("kind") == "pointer":
                assert f.size == lay.pointer_size
            compared += 1
    for name in lay.enum_names():
        assert dict(lay.enum(name).items()) == doc["enums"][name]["constants"], name
    assert compared > 1000
    for root in ("_EPROCESS", "_ETHREAD", "_KTHREAD", "_PEB", "_TEB", "_TOKEN", "_HANDLE_TABLE_ENTRY"):
        assert lay.has_type(root), root


def _kphdyn_row(stem: str) -> Tuple[str, Any]:
    """The kphdyn entry the README compares each x64 file with."""
    wanted = {"10.0.22621.382-x64": "10.0.22621.382", "10.0.22631.2428-x64": "10.0.22621.2428",
              "10.0.26100-x64": "10.0.26100.1", "10.0.17134.1-x64": "10.0.17134.1"}[stem]
    parts = wanted.split(".")
    rows = [r for r in versions_for_build(int(parts[2])) if r.version == wanted]
    assert rows, wanted
    return wanted, rows[0]


@pytest.mark.parametrize("stem", [s for s in DERIVED_FILES if s.endswith("-x64")])
def test_kphdyn_offsets_agree_with_every_x64_derived_layout(stem: str) -> None:
    _, row = _kphdyn_row(stem)
    result = check_layout_fields(row, load_layouts(_build_id(stem)))
    assert result.ok, result.mismatches
    assert result.compared >= 17           # README (b): 17 of 17 for every x64 file


@pytest.mark.parametrize("stem", [s for s in DERIVED_FILES if s.endswith("-x64")])
def test_revision_range_is_the_kphdyn_run_of_the_same_fields_set(stem: str) -> None:
    e = {x.build_id: x for x in shipped_builds()}[_build_id(stem)]
    rr = e.extra["revision_range"]
    rows = versions_for_build(rr["kernel_build"])
    _, anchor = _kphdyn_row(stem)
    inside = [r for r in rows if rr["first"] <= r.revision <= rr["last"]]
    assert anchor in inside and all(r.fields_id == anchor.fields_id for r in inside)
    before = [r for r in rows if r.revision < rr["first"]]
    after = [r for r in rows if r.revision > rr["last"]]
    assert not before or before[-1].fields_id != anchor.fields_id
    assert not after or after[0].fields_id != anchor.fields_id
    assert rr["basis"].startswith("kphdyn fields set %s" % anchor.fields_id)


def test_x86_revision_ranges_cover_their_own_revision_only() -> None:
    for e in shipped_builds():
        if e.arch == "x86":
            rr = e.extra["revision_range"]
            assert rr["first"] == rr["last"] == e.revision and "kphdyn" in rr["basis"]


def test_structs_list_shows_the_derived_builds_with_their_source() -> None:
    from pykd_ext.cli import run_command
    out = io.StringIO()
    assert run_command(["structs", "list", "--format", "json"], out=out) == 0
    rows = {r["build_id"]: r for r in json.loads(out.getvalue())["records"]}
    for stem in DERIVED_FILES:
        r = rows[_build_id(stem)]
        assert r["types_only"] and r["source"].startswith("derived types-only")
    assert rows["10.0.22621.382"]["revisions"] == "22621.1-22621.%d" % versions_for_build(22621)[-1].revision
    assert rows["6.1.7601.17514-x86"]["revisions"] == "7601.17514 only"
    text = io.StringIO()
    assert run_command(["structs", "list"], out=text) == 0
    assert "10.0.26100" in text.getvalue() and "ntdiff/headers" in text.getvalue()


def test_partial_and_absent_types_degrade_per_field() -> None:
    lay = load_layouts("10.0.22621.382")
    prcb = lay.type("_KPRCB")
    assert prcb.size == 0x700 and prcb.has_field("CurrentThread") and not prcb.has_field("DpcStack")
    assert not lay.type("_KPCR").has_field("Prcb") and lay.type("_KPCR").has_field("CurrentPrcb")
    lay26 = load_layouts("10.0.26100")
    assert not lay26.has_type("_KPRCB") and not lay26.has_type("_MM_SESSION_SPACE")
    assert lay26.type("_EPROCESS").field("Session").type_name == "_PSP_SESSION_SPACE"
    # the layout checks skip a prefix-only type's size instead of failing the layout
    from pykd_ext.layouts.select import fingerprint
    from pykd_ext.targets.base import TargetInfo
    info = TargetInfo(arch="x64", build=22621, extra={"prcb_size": 0xBF00, "process_size": 0xB80})
    checks = {c.name: c for c in fingerprint(lay, info, reader=_NoMemory())}
    assert not any("prcb_size" in n for n in checks)
    assert checks["triage process_size = sizeof(_EPROCESS)"].ok is (lay.type("_EPROCESS").size == 0xB80)


class _NoMemory:
    def get(self, address: int, size: int) -> None:
        return None
