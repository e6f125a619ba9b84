"""Issue 10, defects 1-2 in the per-user layout store: it holds data, and a damaged entry costs
only that entry.

- A store written by an older pykd-ext (generated `u_*.py` modules, an index without `format`) is
  never imported: its module would create a sentinel file; instead the modules are disabled, a
  note says once to import the ISF again, and every command keeps working.
- A stored build edited after the import (an offset turned into a string, an offset changed so the
  content no longer matches its digest, a path-like module name in the index, garbage JSON) is
  refused where it is asked for by name (exit 2, one line) and skipped with one note where all
  builds are gone over (`structs history`); `structs list` and `dt --build` of every other build
  are unaffected. The CLI runs in a subprocess.
"""
import json
from pathlib import Path
from typing import Any, Dict

import pytest

from test_isf_samples import assert_one_error_line, eprocess_doc, run_cli, write_doc

GUID = "0123456789ABCDEF0123456789ABCDEF"
BUILD = "%s-1" % GUID


def test_legacy_code_store_is_never_imported(tmp_path: Path) -> None:
    home = tmp_path / "home"
    store = home / "layouts"
    store.mkdir(parents=True)
    sentinel = tmp_path / "SENTINEL"
    (store / "u_10_0_19045_9999.py").write_text('open(%r, "w").close()\nBUILDS = {}\n' % str(sentinel))
    (store / "index.json").write_text(json.dumps({"builds": [{
        "build_id": "10.0.19045.9999", "version": "10.0.19045.9999", "build": 19045, "revision": 9999,
        "guid": None, "age": None, "arch": "x64", "pointer_size": 8, "products": [],
        "source": "user import: old.json.xz", "types_only": False, "module": "u_10_0_19045_9999"}]}))
    rc, out, err = run_cli(["dt", "_EPROCESS", "Token", "--build", "10.0.19045.9999"], home)
    # the stored code is not loaded: --build resolves to a shipped layout (issue 12: nearest
    # revision of the 19041 kernel file that 19045 runs), named in a note
    assert rc == 0 and "10.0.19045.9999 (Windows 10 22H2, kernel file 19041) -> layout 10.0.19041." in err
    assert "note: ignored layouts that an older pykd-ext stored as Python code" in err
    assert "10.0.19045.9999 (user import: old.json.xz)" in err and "structs import" in err
    assert sorted(p.name for p in store.iterdir()) == ["index.json", "u_10_0_19045_9999.py.disabled"]
    # the note is said once; the store keeps working
    rc, out, err = run_cli(["structs", "list"], home)
    assert rc == 0 and err == "" and "10.0.19045.9999" not in out
    rc, out, err = run_cli(["dt", "_EPROCESS", "Token", "--build", "10.0.19041.1288"], home)
    assert rc == 0 and "+0x4b8 Token" in out
    assert not sentinel.exists()


def _import_good(tmp_path: Path, home: Path) -> Path:
    doc = eprocess_doc()
    doc["metadata"]["windows"]["pdb"]["GUID"] = GUID
    rc, _, err = run_cli(["structs", "import", str(write_doc(tmp_path / "good.json", doc))], home)
    assert rc == 0, err
    return home / "layouts" / ("u_%s_1.json" % GUID)


def _tamper_offset_type(data: Dict[str, Any]) -> None:
    for record in data["records"].values():
        for member in record["fields"]:
            if record["name"] == "_EPROCESS" and member[0] == "Token":
                member[1] = str(member[1])


def _tamper_offset_value(data: Dict[str, Any]) -> None:
    for record in data["records"].values():
        for member in record["fields"]:
            if record["name"] == "_EPROCESS" and member[0] == "Token":
                member[1] += 8


TAMPERING = {
    "offset-string": (_tamper_offset_type, ("_EPROCESS", "Token", "offset", "string")),
    "offset-changed": (_tamper_offset_value, ("_EPROCESS", "does not match its digest")),
}


@pytest.mark.parametrize("how", sorted(TAMPERING))
def test_tampered_store_entry_is_skipped(tmp_path: Path, how: str) -> None:
    home = tmp_path / "home"
    stored = _import_good(tmp_path, home)
    tamper, expected = TAMPERING[how]
    data = json.loads(stored.read_text())
    tamper(data)
    stored.write_text(json.dumps(data))
    # asked for by name: refused in one line
    rc, _, err = run_cli(["dt", "_EPROCESS", "Token", "--build", GUID], home)
    assert_one_error_line(rc, err, str(stored), *expected)
    rc, _, err = run_cli(["structs", "diff", "10.0.19041.1288", GUID, "_EPROCESS"], home)
    assert_one_error_line(rc, err, *expected)
    # gone over with every build: one note, every other build still there
    rc, out, err = run_cli(["structs", "history", "_EPROCESS.Token", "--format", "json"], home)
    assert rc == 0 and "Traceback" not in err
    notes = err.splitlines()
    assert len(notes) == 1 and notes[0].startswith("note: skipped the imported layouts %s" % BUILD), err
    rows = json.loads(out)["records"]
    assert BUILD not in {r["build_id"] for r in rows} and len(rows) >= 193
    # listing reads only the index; other builds decode as before
    rc, out, err = run_cli(["structs", "list"], home)
    assert rc == 0 and BUILD in out and err == ""
    rc, out, err = run_cli(["dt", "_EPROCESS", "Token", "--build", "10.0.19041.1288"], home)
    assert rc == 0 and "+0x4b8 Token" in out


def test_hostile_index_entries_are_skipped(tmp_path: Path) -> None:
    home = tmp_path / "home"
    _import_good(tmp_path, home)
    index_path = home / "layouts" / "index.json"
    index = json.loads(index_path.read_text())
    good = index["builds"][0]
    bad_module = dict(good, build_id="10.0.1.2", version="10.0.1.2", build=1, revision=2,
                      module="../../../../etc/passwd")
    bad_types = dict(good, build_id="10.0.1.3", version="10.0.1.3", build=1, revision=3, pointer_size="8")
    index["builds"] = [good, bad_module, bad_types, "garbage"]
    index_path.write_text(json.dumps(index))
    rc, out, err = run_cli(["structs", "list"], home)
    assert rc == 0 and BUILD in out and "10.0.1.2" not in out and "10.0.1.3" not in out
    notes = err.splitlines()
    assert len(notes) == 3 and all(n.startswith("note: skipped a damaged entry of the user layout index") for n in notes)
    assert "module" in notes[0] and "pointer_size" in notes[1]
    rc, out, err = run_cli(["dt", "_EPROCESS", "Token", "--build", GUID], home)
    assert rc == 0 and "+0x4b8 Token" in out
    index_path.write_text("{ not json")
    rc, out, err = run_cli(["structs", "list"], home)
    assert rc == 0 and BUILD not in out and "10.0.19041.1288" in out
    assert err.startswith("note: the user layout index") and len(err.splitlines()) == 1
