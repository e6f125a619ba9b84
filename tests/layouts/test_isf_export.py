"""`structs export BUILD --isf FILE|DIR` (issue 16): a build's layouts as a Volatility 3 ISF.

Independent checks: the original ISF files in ../shared/isf (what the layouts were generated
from) for every member of every exported named type, and Volatility 3 itself, which must list the
same processes on the sample dump with our exported table as with the original one.
"""
import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict

import pytest

from isfdata import index_rows, isf_for, isf_path
from pykd_ext.cli import run_command
from pykd_ext.layouts.isf_export import isf_of_layouts, volatility_relative_path, write_isf_file
from pykd_ext.layouts.registry import load_isf_file, load_layouts

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "samples" / "win10-19041-standard.dmp"
#: one build per family of the ISF set: Windows 7, 10 1607, 10 2004, 11 21H2 (all x64)
BUILDS = ("6.1.7601.24540", "10.0.14393.4583", "10.0.19041.1288", "10.0.22000.2538")


def _version_of(build_id: str) -> str:
    return build_id.split("-")[0]


def _shown(name: str) -> str:
    return "<unnamed>" if name.startswith(("__unnamed", "__anonymous")) else name


def _shape(t: Dict[str, Any]) -> Any:
    """A member type as comparable data: kinds, names (anonymous ones blurred), counts, bits."""
    kind = t.get("kind")
    if kind == "pointer":
        return ("pointer", _shape(t.get("subtype") or {}))
    if kind == "array":
        return ("array", t.get("count"), _shape(t.get("subtype") or {}))
    if kind == "bitfield":
        return ("bitfield", t.get("bit_position"), t.get("bit_length"), _shape(t.get("type") or {}))
    if kind == "function":
        return ("function",)
    return (kind, _shown(str(t.get("name", ""))))


def _pointee_known(t: Dict[str, Any], doc: Dict[str, Any]) -> bool:
    """Whether a pointer's pointee is described in `doc` (ours writes void/opaque otherwise)."""
    while t.get("kind") == "pointer":
        t = t.get("subtype") or {}
    name = str(t.get("name", ""))
    if t.get("kind") in ("struct", "union"):
        return bool((doc["user_types"].get(name) or {}).get("fields"))
    return t.get("kind") == "base" and name in doc["base_types"] and name != "void"


def _pick(build_id: str) -> str:
    ids = {r["ntoskrnl_version"] for r in index_rows()}
    version = _version_of(build_id)
    if version not in ids:
        pytest.fail("test build %s is not in ../shared/isf/INDEX.tsv" % version)
    return build_id


@pytest.mark.parametrize("build_id", BUILDS)
def test_exported_members_equal_the_original_isf(build_id: str) -> None:
    layouts = load_layouts(_pick(build_id))
    ours = isf_of_layouts(layouts)
    original = isf_for(_version_of(build_id))
    assert ours["metadata"]["windows"]["pdb"]["GUID"] == original["metadata"]["windows"]["pdb"]["GUID"].upper()
    compared = 0
    for name, ut in ours["user_types"].items():
        if name.startswith(("__unnamed", "__anonymous")) or not ut["fields"]:
            continue                                  # anonymous (renamed) or opaque declarations
        src = original["user_types"][name]
        assert ut["size"] == src["size"], name
        assert ut["kind"] == src["kind"], name
        assert set(ut["fields"]) == set(src["fields"]), name
        for member, desc in ut["fields"].items():
            want = src["fields"][member]
            assert desc["offset"] == want["offset"], (name, member)
            if desc["type"].get("kind") == "pointer" and not _pointee_known(desc["type"], ours):
                assert want["type"]["kind"] == "pointer", (name, member)
            else:
                assert _shape(desc["type"]) == _shape(want["type"]), (name, member)
            compared += 1
    assert compared > 1000
    for name, sym in ours["symbols"].items():
        assert sym["address"] == original["symbols"][name]["address"], name
    for name, en in ours["enums"].items():
        assert en["constants"] == original["enums"][name]["constants"], name


def test_round_trip_through_import_gives_the_same_layouts(tmp_path: Path) -> None:
    shipped = load_layouts("10.0.19041.1288")
    path, size = write_isf_file(isf_of_layouts(shipped), str(tmp_path / "nt.json.xz"))
    assert size > 1000
    back = load_isf_file(path, version=shipped.version)
    assert back.type_names() == shipped.type_names()
    for name in shipped.type_names():
        mine = [(f.name, f.offset, f.size, f.kind, f.type_name, f.bit_position, f.bit_length)
                for f in back.type(name).walk()]
        theirs = [(f.name, f.offset, f.size, f.kind, f.type_name, f.bit_position, f.bit_length)
                  for f in shipped.type(name).walk()]
        assert mine == theirs, name


def _vol_pslist(isf_dir: str, tmp: Path) -> Any:
    (tmp / "volcache").mkdir(parents=True)
    env = dict(os.environ, HOME=str(tmp))            # Volatility's own cache stays in the test folder
    proc = subprocess.run([os.path.join(os.path.dirname(sys.executable), "vol"), "-q", "--offline", "-r", "json",
                           "-s", isf_dir, "--cache-path", str(tmp / "volcache"), "-f", str(SAMPLE),
                           "windows.pslist"], capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = json.loads(proc.stdout)
    return sorted((r["PID"], r["PPID"], r["ImageFileName"], r["Offset(V)"], r["Threads"], r["SessionId"],
                   r["Wow64"], r["CreateTime"], r["ExitTime"]) for r in rows)


def test_volatility_reads_the_exported_table_like_the_original(tmp_path: Path) -> None:
    out = io.StringIO()
    symbols = tmp_path / "symbols"
    symbols.mkdir()
    assert run_command(["structs", "export", "10.0.19041.1288", "--isf", str(symbols), "-f", "json"],
                       out=out) == 0
    rec = json.loads(out.getvalue())["records"][0]
    doc = isf_of_layouts(load_layouts("10.0.19041.1288"))
    assert rec["file"] == str(symbols / volatility_relative_path(doc))
    original = tmp_path / "original"                  # only the one original table: Volatility
    (original / os.path.dirname(volatility_relative_path(doc))).mkdir(parents=True)   # indexes fast
    os.symlink(isf_path("10.0.19041.1288"), original / volatility_relative_path(doc))
    ours = _vol_pslist(str(symbols), tmp_path / "a")
    theirs = _vol_pslist(str(original), tmp_path / "b")
    assert len(ours) >= 19
    assert ours == theirs


def test_export_refuses_a_bad_name_and_replaces_a_planted_link(tmp_path: Path) -> None:
    err = io.StringIO()
    assert run_command(["structs", "export", "10.0.19041.1288", "--isf", str(tmp_path / "x.txt")],
                       out=err) == 2
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    link = tmp_path / "nt.json"
    link.symlink_to(victim)
    assert run_command(["structs", "export", "10.0.19041.1288", "--isf", str(link)], out=io.StringIO()) == 0
    assert victim.read_text() == "keep me"
    assert not link.is_symlink()
    assert json.loads(link.read_text())["metadata"]["format"] == "6.2.0"
