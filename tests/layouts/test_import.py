"""`structs import` and `--symbols` of an ISF the tree does not ship: edited copy, picked by GUID."""
import gzip
import io
import json
import sys

import pytest

from fakes import KERNBASE, FakeTarget, fake_pe_module
from isfdata import isf_for
from pykd_ext.cli import run_command
from pykd_ext.errors import LayoutError
from pykd_ext.layouts import registry
from pykd_ext.layouts.select import choose_for_target, layouts_for_session
from pykd_ext.session import Session
from pykd_ext.targets.base import TargetInfo

NEW_GUID = "0123456789ABCDEF0123456789ABCDEF"


def _edited_isf(tmp_path, name="edited.json.gz", version_in_metadata=False):
    """A copy of 19041.1288's ISF with a new GUID and _EPROCESS.UniqueProcessId moved."""
    doc = json.loads(json.dumps(isf_for("10.0.19041.1288")))
    doc["metadata"]["windows"]["pdb"]["GUID"] = NEW_GUID
    doc["metadata"]["windows"]["pdb"]["age"] = 3
    doc["user_types"]["_EPROCESS"]["fields"]["UniqueProcessId"]["offset"] = 0x7f0
    doc["symbols"]["PsActiveProcessHead"]["address"] = 0x123450
    path = tmp_path / name
    if name.endswith(".gz"):
        with gzip.open(path, "wt") as fh:
            json.dump(doc, fh)
    else:
        path.write_text(json.dumps(doc))
    return path


@pytest.fixture()
def user_home(tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("PYKD_EXT_HOME", str(home))
    return home


def test_import_end_to_end_picked_by_guid(tmp_path, user_home, monkeypatch) -> None:
    path = _edited_isf(tmp_path)
    before = len(registry.list_builds())
    out = io.StringIO()
    assert run_command(["structs", "import", str(path), "--format", "json"], out=out) == 0
    doc = json.loads(out.getvalue())
    rec = doc["records"][0]
    assert rec["guid"] == NEW_GUID and rec["age"] == 3
    assert (user_home / "layouts" / "index.json").exists()
    # listed beside the shipped builds
    ids = [e.build_id for e in registry.list_builds()]
    assert rec["build_id"] in ids and len(ids) == before + 1
    lay = registry.find_by_guid(NEW_GUID, 3)
    assert lay is not None and lay.source.startswith("user import")
    assert lay.type("_EPROCESS").offset("UniqueProcessId") == 0x7f0
    assert lay.symbol_rva("PsActiveProcessHead") == 0x123450
    # a target whose kernel carries that GUID gets the imported layouts
    monkeypatch.setitem(sys.modules, "pykd_ext.targets.pe", fake_pe_module(NEW_GUID, 3, None))
    chosen = choose_for_target(FakeTarget(TargetInfo(build=19041, kernel_base=KERNBASE)))
    assert chosen.choice["method"] == "pdb-guid" and chosen.guid == NEW_GUID
    assert chosen.type("_EPROCESS").offset("UniqueProcessId") == 0x7f0
    # and by key from the command line
    assert registry.load_layouts("%s-3" % NEW_GUID.lower()).guid == NEW_GUID
    out = io.StringIO()
    assert run_command(["dt", "_EPROCESS", "UniqueProcessId", "--build", NEW_GUID], out=out) == 0
    assert "+0x7f0 UniqueProcessId : Ptr64 Void" in out.getvalue()


def test_import_with_version_matches_build_number(tmp_path, user_home) -> None:
    path = _edited_isf(tmp_path)
    entry = registry.import_isf(str(path), version="10.0.19045.9999")
    assert entry.build == 19045 and entry.build_id == "10.0.19045.9999"
    assert [e.build_id for e in registry.candidates_for_build(19045)] == ["10.0.19045.9999"]


def test_symbols_option_ad_hoc(tmp_path, user_home) -> None:
    path = _edited_isf(tmp_path, "adhoc.json")
    lay = layouts_for_session(Session(symbols=str(path)))
    assert lay.choice["method"] == "symbols-file" and lay.guid == NEW_GUID
    assert lay.type("_EPROCESS").offset("UniqueProcessId") == 0x7f0
    assert not (user_home / "layouts").exists()      # ad hoc: nothing stored


def test_bad_isf_is_a_layout_error(tmp_path, user_home) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{\"not\": \"an isf\"}")
    with pytest.raises(LayoutError):
        registry.import_isf(str(bad))
    out = io.StringIO()
    assert run_command(["structs", "import", str(tmp_path / "missing.json.xz")], out=out) == 2


def _tiny_isf(user_types):
    return {"metadata": {"windows": {"pdb": {"GUID": NEW_GUID, "age": 1, "machine_type": 34404}}},
            "base_types": {"pointer": {"size": 8, "signed": False, "kind": "int", "endian": "little"},
                           "unsigned long": {"size": 4, "signed": False, "kind": "int", "endian": "little"}},
            "user_types": user_types, "enums": {}, "symbols": {}}


@pytest.mark.parametrize("user_types,message", [
    ({"_EPROCESS": {"size": 8, "kind": "struct", "fields": {"A": {"offset": 0, "type": {"kind": "struct", "name": "_KPROCESS"}}}},
      "_KPROCESS": {"size": 8, "kind": "struct", "fields": {"B": {"offset": 0, "type": {"kind": "struct", "name": "_EPROCESS"}}}}},
     "contains itself"),
    ({"_EPROCESS": {"size": 8, "kind": "struct", "fields": {"A": {"offset": 0, "type": {"kind": "struct", "name": "_MISSING"}}}}},
     "not defined"),
    ({"_EPROCESS": {"size": 8, "kind": "struct", "fields": {"A": {"offset": 0, "type": {"kind": "array", "count": -1, "subtype": {"kind": "base", "name": "unsigned long"}}}}}},
     "array count"),
])
def test_hostile_isf_is_refused(tmp_path, user_types, message) -> None:
    from pykd_ext.layouts.registry import layouts_from_isf_doc
    doc = _tiny_isf(user_types)
    with pytest.raises(LayoutError, match=message):
        layouts_from_isf_doc(doc, "test")
    nested = {"kind": "base", "name": "unsigned long"}
    for _ in range(5000):                         # deeper than any recursion limit
        nested = {"kind": "array", "count": 1, "subtype": nested}
    doc = _tiny_isf({"_EPROCESS": {"size": 4, "kind": "struct", "fields": {"A": {"offset": 0, "type": nested}}}})
    with pytest.raises(LayoutError, match="nested"):
        layouts_from_isf_doc(doc, "test")


def test_damaged_import_is_skipped_by_layout_choice(tmp_path, user_home, monkeypatch, capsys) -> None:
    """A stored build edited after its import is noted once and skipped; choice goes on."""
    from fakes import triage_like
    path = _edited_isf(tmp_path)
    with gzip.open(path, "rt") as fh:
        doc = json.load(fh)
    bad = registry.import_isf(str(path), version="10.0.19045.9997")
    good = registry.import_isf(str(path), version="10.0.19045.9998")
    stored = user_home / "layouts" / (bad.module + ".json")
    data = json.loads(stored.read_text())
    for record in data["records"].values():
        if record["name"] == "_EPROCESS":
            record["size"] = "0x%x" % record["size"]
    stored.write_text(json.dumps(data))
    registry._loaded.clear()
    # by GUID (both imports carry it): the damaged one is skipped, the good one found
    lay = registry.find_by_guid(NEW_GUID, 3)
    assert lay is not None and lay.build_id == good.build_id
    # by build number and fingerprint, with no GUID in the target
    monkeypatch.setitem(sys.modules, "pykd_ext.targets.pe", fake_pe_module(None, None, None))
    chosen = choose_for_target(triage_like(doc, 19045))
    assert chosen.build_id == good.build_id
    assert [c["build_id"] for c in chosen.choice["candidates"]] == [good.build_id]
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("note: skipped the imported layouts 10.0.19045.9997")
    assert "_EPROCESS" in err[0] and "size" in err[0]
    # asked for by name: the one-line error
    with pytest.raises(LayoutError, match="_EPROCESS: size: must be an integer"):
        registry.load_layouts("10.0.19045.9997")
