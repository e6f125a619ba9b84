"""`--fetch-symbols` (issue 16): a dump whose kernel has no layout gets its PDB, imports it, goes on.

The kernel PDB is written by LLVM (`llvm-pdbutil yaml2pdb`, tests/pdbfile/kernel_pdb.py) from the
original ISF of the sample's kernel (../shared/isf), with the GUID and age the sample's kernel
names, and served from a symbol store on loopback. The shipped layouts of the sample's build
family are hidden, so only the fetched PDB can decode it; the processes it lists must equal
those listed with the shipped layouts, and our PDB reader must read every shipped type of that
build from LLVM's file exactly as the shipped layouts have it.
"""
import io
import json
import lzma
from pathlib import Path
from typing import Any, Dict, List

import pytest

from pykd_ext.cli import run_command
from pykd_ext.layouts import registry
from tests.pdbfile.kernel_pdb import write_kernel_pdb
from tests.symbols.conftest import StoreServer
from pykd_ext.render.renderers import addresses_as_ints  # our JSON writes addresses as "0x..."

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "samples" / "win10-19041-standard.dmp"
VERSION = "10.0.19041.1288"
#: the sample kernel's family: builds 19041..19045 share ntoskrnl 10.0.19041.x
FAMILY = range(19041, 19046)


@pytest.fixture(scope="module")
def kernel_pdb(tmp_path_factory: pytest.TempPathFactory, isf_dir: Path) -> Dict[str, Any]:
    shipped = registry.load_layouts(VERSION)
    path = isf_dir / "windows" / "ntkrnlmp.pdb" / ("%s-%d.json.xz" % (shipped.guid, shipped.age))
    with lzma.open(path, "rt") as fh:
        doc = json.load(fh)
    out = tmp_path_factory.mktemp("kernel-pdb") / "ntkrnlmp.pdb"
    write_kernel_pdb(doc, shipped.type_names(), out)
    return {"path": out, "guid": shipped.guid, "age": shipped.age}


def _ps(*extra: str) -> List[Dict[str, Any]]:
    out = io.StringIO()
    assert run_command(["ps", "--target", str(SAMPLE), "--format", "json", "--quiet"] + list(extra), out=out) == 0
    return addresses_as_ints(json.loads(out.getvalue()))["records"]


def _facts(records: List[Dict[str, Any]]) -> List[Any]:
    return sorted((r["pid"], r["ppid"], r["name"], str(r["address"]), r.get("threads")) for r in records)


def test_pdb_written_by_llvm_reads_as_the_shipped_layouts(kernel_pdb: Dict[str, Any]) -> None:
    ours = registry.load_isf_file(str(kernel_pdb["path"]), version=VERSION)
    shipped = registry.load_layouts(VERSION)
    assert (ours.guid, ours.age) == (kernel_pdb["guid"], kernel_pdb["age"])
    assert ours.type_names() == shipped.type_names()
    for name in shipped.type_names():
        mine = [(f.name, f.offset, f.size, f.kind, f.type_name, f.bit_position, f.bit_length)
                for f in ours.type(name).walk()]
        theirs = [(f.name, f.offset, f.size, f.kind, f.type_name, f.bit_position, f.bit_length)
                  for f in shipped.type(name).walk()]
        assert mine == theirs, name
    for name in shipped.enum_names():
        assert ours.enum(name).items() == shipped.enum(name).items(), name


def test_fetch_symbols_imports_the_pdb_and_goes_on(kernel_pdb: Dict[str, Any], store_server: StoreServer,
                                                   tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   no_symbol_env: Path) -> None:
    monkeypatch.setenv("PYKD_EXT_HOME", str(tmp_path / "home"))
    expected = _facts(_ps())                      # with the shipped layouts
    assert len(expected) >= 19
    kept = [e for e in registry.shipped_builds() if e.build not in FAMILY]
    monkeypatch.setattr(registry, "shipped_builds", lambda: list(kept))

    out = io.StringIO()                           # without: inferred layouts (issue 15), no network
    assert run_command(["ps", "--target", str(SAMPLE), "--quiet", "-f", "json"], out=out) == 0
    assert json.loads(out.getvalue())["meta"]["layout"]["build_id"].startswith("inferred")
    assert store_server.requests == []            # nothing asked without --fetch-symbols

    index = "%s%X" % (kernel_pdb["guid"], kernel_pdb["age"])
    store_server.put("ntkrnlmp.pdb/%s/ntkrnlmp.pdb" % index, kernel_pdb["path"].read_bytes())
    cache = tmp_path / "cache"
    spath = "srv*%s*%s" % (cache, store_server.url)
    out = io.StringIO()
    assert run_command(["ps", "--target", str(SAMPLE), "--format", "json", "--quiet", "--fetch-symbols",
                        "--symbol-path", spath], out=out) == 0
    doc = addresses_as_ints(json.loads(out.getvalue()))
    assert _facts(doc["records"]) == expected
    assert any("imported as build" in n for n in doc.get("notes", [])), doc.get("notes")
    assert (cache / "ntkrnlmp.pdb" / index / "ntkrnlmp.pdb").is_file()     # WinDbg's cache layout
    asked = len(store_server.requests)
    assert asked >= 1

    # from now on offline: found by GUID in the user store, the server is not asked again
    assert _facts(_ps()) == expected
    assert len(store_server.requests) == asked


def test_fetch_failure_is_a_note_and_the_command_goes_on(store_server: StoreServer, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch, no_symbol_env: Path) -> None:
    monkeypatch.setenv("PYKD_EXT_HOME", str(tmp_path / "home"))
    kept = [e for e in registry.shipped_builds() if e.build not in FAMILY]
    monkeypatch.setattr(registry, "shipped_builds", lambda: list(kept))
    out = io.StringIO()
    rc = run_command(["ps", "--target", str(SAMPLE), "--quiet", "-f", "json", "--symbol-path",
                      "srv*%s*%s" % (tmp_path / "c", store_server.url)], out=out)
    assert rc == 0                                # decoded with inferred layouts (issue 15)
    doc = json.loads(out.getvalue())
    assert doc["meta"]["layout"]["build_id"].startswith("inferred")
    assert any("could not be fetched" in n for n in doc["notes"]), doc["notes"]
    assert len(store_server.requests) >= 1        # a symbol path alone turns fetching on
