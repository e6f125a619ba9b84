"""Layouts built as data from a user's ISF (`--symbols`, `structs import`, layouts/from_reduced.py)
equal the shipped generated modules of the same table in everything a decoder reads: every
member's offset, size, kind, type name, bit position and length, array count and element,
signedness, pointer size/target/depth, every record's size, kind and digest, every enum's
constants, every global RVA. The shipped modules are code generated in the repository (checked
against the ISF JSON itself by test_generated_vs_isf); the data path must not differ from them,
and it must run no code: `exec`, `compile` and module loading from files are forbidden while it
loads a table, stores it, and reads it back.
"""
import builtins
import importlib.util
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Dict, Iterator, List, Tuple

import pytest

from isfdata import ISF_DIR, SHARED, row_for
# the modules the data path uses, imported before `no_code_runs` (importing one runs its code,
# which the check would count; this test must not depend on which tests ran before it)
import gzip, uuid  # noqa: E401,F401
from pykd_ext.layouts import bounded_read, from_reduced, isf, reduced_json, registry, user_store  # noqa: F401
from pykd_ext.layouts.cons import Record
from pykd_ext.layouts.model import KernelLayouts, compile_record

#: (ISF file, shipped build id): two JPCERTCC tables (Windows 10 2004, Windows 7 SP1) and one x86
#: types-only table derived from headers
CASES = [
    (ISF_DIR / "windows" / "ntkrnlmp.pdb" / row_for("10.0.19041.1288")["file"], "10.0.19041.1288"),
    (ISF_DIR / "windows" / "ntkrnlmp.pdb" / row_for("6.1.7601.24540")["file"], "6.1.7601.24540"),
    (SHARED / "isf-derived" / "10.0.19041.1288-x86.json.xz", "10.0.19041.1288-x86"),
]


def record_rows(layouts: KernelLayouts) -> Dict[Tuple[str, str], List[Tuple[Any, ...]]]:
    """Every record reachable by value from the layout's types: (name, digest) -> member rows."""
    out: Dict[Tuple[str, str], List[Tuple[Any, ...]]] = {}
    todo: List[Record] = [layouts.construct(n) for n in layouts.type_names()]
    while todo:
        record = todo.pop()
        key = (record.type_name, record.digest)
        if key in out:
            continue
        t = compile_record(record)
        rows: List[Tuple[Any, ...]] = [("record", t.name, t.size, t.kind, t.digest)]
        for fl in t.fields.values():
            element = fl.element
            while element is not None and element.kind == "array":
                element = element.element
            rows.append((fl.name, fl.offset, fl.kind, fl.size, fl.type_name, fl.bit_position, fl.bit_length,
                         fl.count, fl.signed, fl.pointer_size, fl.target_kind, fl.depth, fl.windbg_type(),
                         None if element is None else (element.kind, element.size, element.type_name)))
            inner = fl.record if fl.record is not None else (element.record if element is not None else None)
            if inner is not None:
                todo.append(inner)
        out[key] = rows
    return out


def facts(layouts: KernelLayouts) -> Dict[str, Any]:
    return {
        "records": record_rows(layouts),
        "types": {n: layouts.construct(n).digest for n in layouts.type_names()},
        "enums": {n: (layouts.enum(n).size, layouts.enum(n).items()) for n in layouts.enum_names()},
        "symbols": {n: layouts.symbol_rva(n) for n in layouts.symbol_names()},
        "identity": (layouts.arch, layouts.pointer_size, layouts.types_only),
    }


@contextmanager
def no_code_runs() -> Iterator[None]:
    """Fail if anything execs, compiles or loads a module from a file path meanwhile."""
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("code was run while loading data")
    saved = builtins.exec, builtins.compile, importlib.util.spec_from_file_location
    builtins.exec = builtins.compile = importlib.util.spec_from_file_location = refuse  # type: ignore
    try:
        yield
    finally:
        builtins.exec, builtins.compile, importlib.util.spec_from_file_location = saved  # type: ignore


@pytest.mark.parametrize("path,build_id", CASES, ids=[c[1] for c in CASES])
def test_data_layouts_equal_shipped_module(path: Path, build_id: str, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYKD_EXT_HOME", str(tmp_path / "home"))
    shipped = registry.load_layouts(build_id)
    assert shipped.entry.store is None
    expected = facts(shipped)
    assert len(expected["records"]) > 40 and sum(len(r) for r in expected["records"].values()) > 1000
    with no_code_runs():
        ad_hoc = registry.load_isf_file(str(path))              # --symbols: built in memory
        entry = registry.import_isf(str(path))                  # structs import: stored as data
        registry._loaded.clear()
        stored = registry.layouts_for_entry(entry)              # read back, checked, built again
    assert facts(ad_hoc) == expected
    assert facts(stored) == expected
    assert stored.entry.store == str(tmp_path / "home" / "layouts")
    assert sorted(p.name for p in (tmp_path / "home" / "layouts").iterdir()) == ["index.json", entry.module + ".json"]


def test_every_derived_table_builds_as_shipped() -> None:
    """All 14 derived (types-only) tables pass the checks and build as data into the shipped
    layouts (the JPCERTCC tables: test_generated_vs_isf.check_data_build, in the same pass)."""
    files = sorted((SHARED / "isf-derived").glob("*.json.xz"))
    assert len(files) == 14
    for path in files:
        data = registry.load_isf_file(str(path))
        shipped = registry.load_layouts(data.build_id)
        assert shipped.entry.store is None and data.types_only and shipped.types_only
        assert {n: data.construct(n).digest for n in data.type_names()} == \
            {n: shipped.construct(n).digest for n in shipped.type_names()}, path.name
        assert {n: data.enum(n).items() for n in data.enum_names()} == \
            {n: shipped.enum(n).items() for n in shipped.enum_names()}, path.name
