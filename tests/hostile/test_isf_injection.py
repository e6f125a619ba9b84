"""Issue 10, defect 1: text from a symbol file never becomes code.

Every place an ISF's text used to reach generated Python source gets a payload that would create
a sentinel file if it ran: `metadata.source.arch` (the issue's reproduction), the PDB GUID, the
file's own name, a type name, a field name, an enum name and an enum constant name, each with and
without a line break. The CLI runs in a subprocess exactly as a user runs it: `dt --symbols FILE`,
then `structs import FILE` followed by `dt --build`, `structs list` and `structs history`. The
sentinel must never appear; what the file may not contain (an arch outside x64/x86, a GUID that is
not hex, control characters in names) is refused with exit 2 and one stderr line, and nothing is
stored; what it may contain (quotes, parentheses, a hostile file name) is used as data.
"""
from pathlib import Path
from typing import Any, Callable, Dict, List, Tuple

import pytest

from test_isf_samples import assert_one_error_line, eprocess_doc, run_cli, write_doc

GUID = "0123456789ABCDEF0123456789ABCDEF"


def payload(sentinel: Path, line_break: bool) -> str:
    """Text that runs `touch SENTINEL` if it is ever pasted into Python source (and `exec`d)."""
    call = '__import__("os").system("touch %s")' % sentinel
    if line_break:
        return 'x64 """\n%s\n"""' % call              # the issue's arch payload
    return 'x")+%s+("' % call


def _rename_type(doc: Dict[str, Any], old: str, new: str) -> None:
    doc["user_types"][new] = doc["user_types"].pop(old)
    for t in doc["user_types"].values():
        for member in t["fields"].values():
            x = member["type"]
            while x.get("kind") in ("array", "pointer"):
                x = x["subtype"]
            if x.get("kind") in ("struct", "union") and x.get("name") == old:
                x["name"] = new


def _enum_member(doc: Dict[str, Any], enum_name: str, constant: str) -> None:
    """_KTHREAD.State becomes an enum of that name (1 byte, the _KTHREAD_STATE values + one)."""
    constants = dict(doc["enums"]["_KTHREAD_STATE"]["constants"])
    constants[constant] = 11
    doc["enums"][enum_name] = {"base": "unsigned char", "size": 1, "constants": constants}
    doc["user_types"]["_KTHREAD"]["fields"]["State"]["type"] = {"kind": "enum", "name": enum_name}


def set_arch(doc: Dict[str, Any], text: str) -> None:
    doc["metadata"]["source"] = {"arch": text}


def set_guid(doc: Dict[str, Any], text: str) -> None:
    doc["metadata"]["windows"]["pdb"]["GUID"] = text


def set_type_name(doc: Dict[str, Any], text: str) -> None:
    _rename_type(doc, "_KWAIT_STATUS_REGISTER", text)     # held by value in _KTHREAD


def set_field_name(doc: Dict[str, Any], text: str) -> None:
    fields = doc["user_types"]["_EPROCESS"]["fields"]
    fields[text] = fields.pop("UniqueProcessId")


def set_enum_name(doc: Dict[str, Any], text: str) -> None:
    _enum_member(doc, text, "Evil")


def set_constant_name(doc: Dict[str, Any], text: str) -> None:
    _enum_member(doc, "_EVIL_STATE", text)


#: where the payload goes; the file-name vector puts it in the file's name instead
VECTORS: Dict[str, Callable[[Dict[str, Any], str], None]] = {
    "arch": set_arch, "guid": set_guid, "type-name": set_type_name, "field-name": set_field_name,
    "enum-name": set_enum_name, "enum-constant": set_constant_name,
}
#: (vector, line break) pairs whose file must be refused; every other pair is used as data
REFUSED = {("arch", True), ("arch", False), ("guid", True), ("guid", False), ("type-name", True),
           ("field-name", True), ("enum-name", True), ("enum-constant", True)}


def hostile_file(tmp_path: Path, vector: str, line_break: bool) -> Tuple[Path, Path]:
    """(the ISF file, the sentinel its payload would create)."""
    sentinel = tmp_path / "SENTINEL"
    doc = eprocess_doc()
    doc["metadata"]["windows"]["pdb"]["GUID"] = GUID
    name = "isf.json"
    text = payload(sentinel, line_break)
    if vector == "file-name":
        name = text.replace("/", "_") + ".json"             # the whole call, minus path separators
        sentinel = Path(str(sentinel).replace("/", "_"))
        sentinel = tmp_path / "work" / sentinel.name
    else:
        VECTORS[vector](doc, text)
    (tmp_path / "work").mkdir(exist_ok=True)
    return write_doc(tmp_path / "work" / name, doc), sentinel


def stored_files(home: Path) -> List[str]:
    store = home / "layouts"
    return sorted(p.name for p in store.iterdir()) if store.is_dir() else []


def check_vector(tmp_path: Path, vector: str, line_break: bool) -> None:
    path, sentinel = hostile_file(tmp_path, vector, line_break)
    home = tmp_path / "home"
    cwd = path.parent
    refused = (vector, line_break) in REFUSED
    # the type the payload sits in (or under), shown one level deep
    shown_type = "_KTHREAD" if vector in ("type-name", "enum-name", "enum-constant") else "_EPROCESS"
    # --symbols FILE with dt
    rc, out, err = run_cli(["dt", shown_type, "-r", "1", "--symbols", str(path)], home, cwd)
    if refused:
        assert_one_error_line(rc, err, "malformed ISF")
    else:
        assert rc == 0 and "+0x" in out and "Traceback" not in err, (rc, err)
    # structs import, then everything that reads the store
    rc, out, err = run_cli(["structs", "import", str(path)], home, cwd)
    if refused:
        assert_one_error_line(rc, err, "malformed ISF")
        assert not any(name.endswith(".json") and name != "index.json" for name in stored_files(home))
    else:
        assert rc == 0 and GUID in out, (rc, err)
        assert stored_files(home) == ["index.json", "u_%s_1.json" % GUID]     # data, no module
        rc, out, err = run_cli(["dt", shown_type, "-r", "1", "--build", GUID], home, cwd)
        assert rc == 0 and "+0x" in out and "Traceback" not in err, (rc, err)
        rc, out, err = run_cli(["structs", "history", "_EPROCESS.Token"], home, cwd)
        assert rc == 0 and GUID in out and "Traceback" not in err, (rc, err)
    rc, out, err = run_cli(["structs", "list"], home, cwd)
    assert rc == 0 and "Traceback" not in err and (GUID in out) != refused, (rc, err)
    assert not sentinel.exists() and not list(tmp_path.rglob("*SENTINEL")), "the payload ran"


def test_issue_arch_payload_never_runs(tmp_path: Path) -> None:
    """The issue's reproduction: arch `x64 \"\"\"\\n__import__("os").system(...)\\n\"\"\"`."""
    check_vector(tmp_path, "arch", True)


@pytest.mark.slow
@pytest.mark.parametrize("vector", sorted(VECTORS) + ["file-name"])
@pytest.mark.parametrize("line_break", [True, False], ids=["line-break", "one-line"])
def test_payload_never_runs(tmp_path: Path, vector: str, line_break: bool) -> None:
    check_vector(tmp_path, vector, line_break)
