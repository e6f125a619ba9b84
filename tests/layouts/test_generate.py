"""The generator: reproduces the committed tree byte for byte; takes derived (types-only) ISFs."""
import json
import lzma
from pathlib import Path

import pytest

from isfdata import ISF_DIR, SHARED
from pykd_ext.errors import MissingLayoutError
from pykd_ext.layouts import generate
from pykd_ext.layouts.registry import load_isf_file, shipped_dir

DERIVED = SHARED / "isf-derived"


@pytest.mark.slow
def test_regenerating_reproduces_committed_tree(tmp_path: Path) -> None:
    out = tmp_path / "structs"
    assert generate.main(["--isf", str(ISF_DIR), "--out", str(out)]) == 0
    committed = Path(shipped_dir())
    produced = sorted(p.name for p in out.iterdir())
    for name in produced:
        assert (committed / name).read_bytes() == (out / name).read_bytes(), name
    # no stale generated module is left in the committed tree
    stale = {p.name for p in committed.glob("nt_*.py")} - set(produced)
    assert not stale
    total = sum(p.stat().st_size for p in out.iterdir())
    assert total < 20_000_000


def test_generated_files_carry_attribution() -> None:
    committed = Path(shipped_dir())
    licence = (committed / "LICENSE-JPCERTCC").read_text()
    assert licence == (ISF_DIR / "LICENSE").read_text()
    # H10: modules of derived (types-only) builds name their own provenance (NOTICE-derived)
    index = json.loads((committed / "index.json").read_text())
    derived = {b["module"] for b in index["builds"] if b["source"].startswith("derived")}
    for module in committed.glob("nt_*.py"):
        head = module.read_text()[:1200]
        if module.stem in derived:
            assert "NOTICE-derived" in head and "JPCERTCC" not in head, module.name
        else:
            assert "JPCERTCC/Windows-Symbol-Tables" in head and "BSD-3-Clause" in head, module.name
        assert "GENERATED" in head
    notice = (committed / "NOTICE-derived").read_text()
    for b in index["builds"]:
        if b["module"] in derived:
            assert b["build_id"] in notice and b["extra"]["licence"] in notice


def test_derived_types_only_isf_loads() -> None:
    path = DERIVED / "10.0.19041.1288-x86.json.xz"
    with lzma.open(path) as fh:
        doc = json.load(fh)
    lay = load_isf_file(str(path))
    assert lay.build_id == "10.0.19041.1288-x86" and lay.arch == "x86" and lay.pointer_size == 4
    assert lay.types_only and lay.guid is None
    ep = doc["user_types"]["_EPROCESS"]
    t = lay.type("_EPROCESS")
    assert t.size == ep["size"]
    for name, member in ep["fields"].items():
        assert t.fields[name].offset == member["offset"], name
    assert t.field("ActiveProcessLinks.Flink").windbg_type() == "Ptr32 _LIST_ENTRY"
    with pytest.raises(MissingLayoutError, match="types-only"):
        lay.symbol_rva("PsActiveProcessHead")


def test_deterministic_module_text() -> None:
    from pykd_ext.layouts.isf import load_isf, meta_from_isf, reduce_isf
    path = str(DERIVED / "10.0.17134.1-x64.json.xz")
    doc = load_isf(path)
    texts = set()
    for _ in range(2):
        reduced = reduce_isf(doc, meta_from_isf(doc, path=path), path)
        texts.add(generate.render_module("m", [reduced], "test"))
    assert len(texts) == 1
