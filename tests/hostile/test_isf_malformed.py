"""Issue 10, defect 2: a malformed ISF is refused whole, in one line, and never stored.

Each case is one value from the issue (a field offset given as a string, a float, `inf`, a negative
number; `fields` as a list; a pointer size of 2^31; names that cannot be shown) or of the same
families (sizes, counts, bit positions, enum constants, symbol addresses, identity). The CLI runs
in a subprocess: `dt --symbols FILE` must exit 2 with exactly one stderr line that names the type
and field at fault. `structs import` must refuse the same file with the same error and store
nothing, and a store holding a good import keeps working after a refused one.
"""
import io
import json
from pathlib import Path
from typing import Any, Callable, Dict, List, Tuple

import pytest

from pykd_ext.cli import run_command
from pykd_ext.errors import LayoutError
from pykd_ext.layouts import registry
from test_isf_samples import assert_one_error_line, eprocess_doc, run_cli, write_doc

Mutator = Callable[[Dict[str, Any]], None]


def field(name: str, key: str, value: Any, type_name: str = "_EPROCESS") -> Mutator:
    def mutate(doc: Dict[str, Any]) -> None:
        doc["user_types"][type_name]["fields"][name][key] = value
    return mutate


def member_type(name: str, key: str, value: Any, type_name: str = "_EPROCESS") -> Mutator:
    def mutate(doc: Dict[str, Any]) -> None:
        doc["user_types"][type_name]["fields"][name]["type"][key] = value
    return mutate


def rename_field(new: str) -> Mutator:
    def mutate(doc: Dict[str, Any]) -> None:
        fields = doc["user_types"]["_EPROCESS"]["fields"]
        fields[new] = fields.pop("UniqueProcessId")
    return mutate


def fields_as_list(doc: Dict[str, Any]) -> None:
    t = doc["user_types"]["_EPROCESS"]
    t["fields"] = [dict(member, name=name) for name, member in t["fields"].items()]


def pointer_size(doc: Dict[str, Any]) -> None:
    doc["base_types"]["pointer"]["size"] = 2 ** 31


def record_size(doc: Dict[str, Any]) -> None:
    doc["user_types"]["_EPROCESS"]["size"] = "0xa40"


def base_size(doc: Dict[str, Any]) -> None:
    doc["base_types"]["unsigned long"]["size"] = 3


def enum_constant(doc: Dict[str, Any]) -> None:
    doc["enums"]["_KTHREAD_STATE"]["constants"]["Huge"] = 2 ** 40      # a 4-byte enum


def symbol_address(doc: Dict[str, Any]) -> None:
    doc["symbols"]["PsActiveProcessHead"]["address"] = -8


def guid(doc: Dict[str, Any]) -> None:
    doc["metadata"]["windows"]["pdb"]["GUID"] = "not-a-guid"


def version(doc: Dict[str, Any]) -> None:
    doc["metadata"]["source"] = {"version": "10.0.x19041"}


def deep_type(doc: Dict[str, Any]) -> None:
    nested: Dict[str, Any] = {"kind": "base", "name": "unsigned long"}
    for _ in range(40):                          # real member types nest a few levels
        nested = {"kind": "array", "count": 1, "subtype": nested}
    doc["user_types"]["_EPROCESS"]["fields"]["UniqueProcessId"]["type"] = nested


# (case id, mutation, what the error line must say)
CASES: List[Tuple[str, Mutator, Tuple[str, ...]]] = [
    ("offset-string", field("UniqueProcessId", "offset", "0x440"), ("_EPROCESS", "UniqueProcessId", "offset", "string")),
    ("offset-float", field("UniqueProcessId", "offset", 1088.5), ("_EPROCESS", "UniqueProcessId", "offset", "1088.5")),
    ("offset-inf", field("UniqueProcessId", "offset", float("inf")), ("_EPROCESS", "UniqueProcessId", "offset", "inf")),
    ("offset-negative", field("UniqueProcessId", "offset", -8), ("_EPROCESS", "UniqueProcessId", "offset", "-8")),
    ("offset-bool", field("UniqueProcessId", "offset", True), ("_EPROCESS", "UniqueProcessId", "offset", "boolean")),
    ("offset-beyond-size", field("UniqueProcessId", "offset", 0x10000), ("_EPROCESS", "UniqueProcessId", "offset")),
    ("fields-list", fields_as_list, ("_EPROCESS", "fields", "list")),
    ("pointer-size-2^31", pointer_size, ("base_types.pointer.size", "2147483648")),
    ("name-escape", rename_field("Pid\x1b[2J"), ("_EPROCESS", "U+001B")),
    ("name-newline", rename_field("Pid\nnote: forged"), ("_EPROCESS", "U+000A")),
    ("name-c1", rename_field("Pid\x9b"), ("_EPROCESS", "U+009B")),
    ("name-bidi", rename_field("Pid\u202etxt.exe"), ("_EPROCESS", "U+202E")),
    ("name-empty", rename_field(""), ("_EPROCESS", "empty")),
    ("name-long", rename_field("P" * 5000), ("_EPROCESS", "5000 characters")),
    ("record-size-string", record_size, ("_EPROCESS", "size", "string")),
    ("array-count", member_type("ImageFileName", "count", 2 ** 40), ("_EPROCESS", "ImageFileName", "array count")),
    ("bit-position", member_type("ProcessSelfDelete", "bit_position", 40), ("_EPROCESS", "ProcessSelfDelete", "storage")),
    ("member-kind", member_type("Peb", "kind", "cheese"), ("_EPROCESS", "Peb", "cheese")),
    ("base-size-3", base_size, ("unsigned long", "size")),
    ("enum-constant", enum_constant, ("_KTHREAD_STATE", "Huge", "out of range")),
    ("symbol-address", symbol_address, ("PsActiveProcessHead", "address", "-8")),
    ("guid", guid, ("GUID", "not-a-guid")),
    ("version", version, ("version", "10.0.x19041")),
    ("deep-type", deep_type, ("_EPROCESS", "UniqueProcessId", "nested more than")),
]
ISSUE_CASES = ("offset-string", "offset-float", "offset-inf", "offset-negative", "fields-list", "pointer-size-2^31",
               "name-escape", "name-bidi")


def bad_file(tmp_path: Path, mutate: Mutator) -> Path:
    doc = eprocess_doc()
    mutate(doc)
    return write_doc(tmp_path / "bad.json", doc)


@pytest.mark.parametrize("case,mutate,expected", CASES, ids=[c[0] for c in CASES])
def test_refused_in_process_with_the_field_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 case: str, mutate: Mutator, expected: Tuple[str, ...]) -> None:
    monkeypatch.setenv("PYKD_EXT_HOME", str(tmp_path / "home"))
    path = bad_file(tmp_path, mutate)
    with pytest.raises(LayoutError) as info:
        registry.load_isf_file(str(path))
    line = info.value.one_line()
    for text in expected:
        assert text in line, (text, line)
    assert "\n" not in line and not any(c in line for c in "\x1b\x9b\u202e")
    with pytest.raises(LayoutError) as again:
        registry.import_isf(str(path))
    assert again.value.one_line() == line
    assert not (tmp_path / "home" / "layouts").exists()          # nothing stored


@pytest.mark.parametrize("case", ISSUE_CASES)
def test_cli_one_line_exit_2(tmp_path: Path, case: str) -> None:
    _, mutate, expected = next(c for c in CASES if c[0] == case)
    path = bad_file(tmp_path, mutate)
    rc, out, err = run_cli(["dt", "_EPROCESS", "--symbols", str(path)], tmp_path / "home")
    assert_one_error_line(rc, err, str(path), "malformed ISF", *expected)
    assert out == ""


def test_refused_import_leaves_the_store_working(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    good = eprocess_doc()
    good["metadata"]["windows"]["pdb"]["GUID"] = "0123456789ABCDEF0123456789ABCDEF"
    good_path = write_doc(tmp_path / "good.json", good)
    rc, _, err = run_cli(["structs", "import", str(good_path)], home)
    assert rc == 0, err
    before = sorted(p.read_bytes() for p in (home / "layouts").iterdir())
    bad = json.loads(json.dumps(good))
    bad["metadata"]["windows"]["pdb"]["GUID"] = "FEDCBA9876543210FEDCBA9876543210"
    bad["user_types"]["_EPROCESS"]["fields"]["Token"]["offset"] = "0x4b8"
    rc, _, err = run_cli(["structs", "import", str(write_doc(tmp_path / "bad.json", bad))], home)
    assert_one_error_line(rc, err, "_EPROCESS", "Token", "offset")
    assert sorted(p.read_bytes() for p in (home / "layouts").iterdir()) == before
    monkeypatch.setenv("PYKD_EXT_HOME", str(home))
    out = io.StringIO()
    assert run_command(["structs", "history", "_EPROCESS.Token", "--format", "json"], out=out) == 0
    rows = {r["build_id"]: r for r in json.loads(out.getvalue())["records"]}
    assert rows["0123456789ABCDEF0123456789ABCDEF-1"]["offset"] == good["user_types"]["_EPROCESS"]["fields"]["Token"]["offset"]
    assert "FEDCBA9876543210FEDCBA9876543210-1" not in rows
