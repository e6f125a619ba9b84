"""Layouts built from pykd typeInfo equal the shipped layouts of the same PDB, member by member.

The independent truth: the shipped `structs/` were generated from the ISF files directly; the
typeInfo path goes ISF → stand-in pykd (kdlib's view: no union flag, long/ulong as Int4B/UInt4B)
→ `from_typeinfo` → the same generator. Every offset, size, bit position, signedness, array
count, pointer target, enum constant and global RVA must survive the trip. Also: `layouts
export` writes a file `structs import` accepts, and the session prefers an exact GUID match,
then typeInfo (cached per PDB), then the offline choice.
"""
import json
from typing import Any, Dict, List, Tuple

import pytest

from pykd_harness import run_cli, run_like_bootstrapper, script_path
from pykd_ext.layouts.from_typeinfo import (choose_layouts_for_pykd, isf_from_pykd,
                                            layouts_from_isf_doc)
from pykd_ext.layouts.model import KernelLayouts, compile_record
from pykd_ext.layouts.registry import load_layouts
from pykd_ext.targets.pykd_target import open_pykd_target

Row = Tuple[Any, ...]


def flatten(layouts: KernelLayouts, type_name: str, depth: int = 4) -> Dict[str, Row]:
    """Every member path of a type (nested structs expanded `depth` levels), as comparable rows."""
    rows: Dict[str, Row] = {}
    stack: List[Tuple[str, Any, int, int]] = [("", layouts.type(type_name), 0, 0)]
    while stack:
        prefix, tl, base, level = stack.pop()
        for name, fl in tl.fields.items():
            path = prefix + name
            kind = "struct" if fl.kind == "union" else fl.kind
            element = fl.element
            target = fl.type_name if fl.kind == "pointer" and fl.target_kind not in ("base",) else None
            target_kind = {"union": "struct"}.get(fl.target_kind, fl.target_kind) if fl.kind == "pointer" else None
            rows[path] = (base + fl.offset, fl.size, kind, fl.bit_position, fl.bit_length, fl.signed,
                          fl.count, target, target_kind, fl.depth,
                          element.size if element is not None else None,
                          element.kind.replace("union", "struct") if element is not None else None)
            if fl.record is not None and level < depth:
                stack.append((path + ".", compile_record(fl.record), base + fl.offset, level + 1))
    return rows


def _typeinfo_layouts(standin: Any, dump: Any) -> Tuple[KernelLayouts, Dict[str, Any]]:
    standin._standin_configure(dump=dump.path, isf=dump.isf)
    target = open_pykd_target()
    info = target.info()
    doc = isf_from_pykd(standin, info.extra["pdb_guid"], info.extra["pdb_age"], None, "x64", info.kernel_base)
    return layouts_from_isf_doc(doc, "pykd typeInfo"), doc


@pytest.mark.parametrize("build", [7601, 9600, 19041, 22000])
def test_typeinfo_layouts_equal_shipped(standin: Any, machines: Dict[int, Any], build: int) -> None:
    dump = machines[build]
    ours, doc = _typeinfo_layouts(standin, dump)
    shipped = load_layouts(dump.machine.table.version)
    assert ours.guid == shipped.guid and ours.age == shipped.age
    # anonymous types (`__anonymous_*` in an ISF, "<unnamed-tag>" in DbgEng) have no stable name
    def named(layouts: KernelLayouts) -> set:
        return {n for n in layouts.type_names() if not n.startswith("__")}
    assert named(ours) == named(shipped)
    assert set(ours.enum_names()) == set(shipped.enum_names())
    compared = 0
    for name in named(shipped):
        assert ours.type(name).size == shipped.type(name).size, name
    for root in ("_EPROCESS", "_ETHREAD", "_KPRCB", "_TOKEN", "_PEB", "_TEB", "_HANDLE_TABLE", "_OBJECT_HEADER"):
        if not shipped.has_type(root):
            continue
        mine, theirs = flatten(ours, root), flatten(shipped, root)
        assert mine.keys() == theirs.keys(), root
        for path in theirs:
            assert mine[path] == theirs[path], "%s.%s" % (root, path)
        compared += len(theirs)
    assert compared > 1000
    for name in shipped.enum_names():
        assert dict(ours.enum(name).items()) == dict(shipped.enum(name).items()), name
    assert {s: ours.symbol_rva(s) for s in ours.symbol_names()} == \
        {s: shipped.symbol_rva(s) for s in shipped.symbol_names()}
    # the ISF symbols are the truth for the RVAs
    with open(dump.isf, "rb") as fh:
        import lzma
        isf = json.loads(lzma.decompress(fh.read()))
    for sym in ours.symbol_names():
        assert ours.symbol_rva(sym) == isf["symbols"][sym]["address"]


def test_session_prefers_guid_then_typeinfo_then_cache(standin: Any, machines: Dict[int, Any],
                                                       monkeypatch: pytest.MonkeyPatch,
                                                       private_home: Any) -> None:
    dump = machines[19041]
    standin._standin_configure(dump=dump.path, isf=dump.isf)
    target = open_pykd_target()
    exact = choose_layouts_for_pykd(target)
    assert exact.choice["method"] == "pdb-guid" and exact.guid == dump.machine.table.guid.upper()

    # a kernel whose PDB we do not ship: typeInfo builds the layouts, then they are cached
    import pykd_ext.layouts.registry as registry
    monkeypatch.setattr(registry, "find_by_guid", lambda guid, age: None)
    start = standin._standin_calls().get("typeInfo", 0)
    built = choose_layouts_for_pykd(target)
    assert built.choice["method"] == "pykd-typeinfo"
    assert standin._standin_calls().get("typeInfo", 0) - start >= 30      # one per root type and enum
    assert built.type("_EPROCESS").offset("UniqueProcessId") == exact.type("_EPROCESS").offset("UniqueProcessId")
    cached = list((private_home / "typeinfo").glob("*"))          # data (JSON), never a module
    assert [p.name for p in cached] == ["nt_%s_%d.json" % (dump.machine.table.guid.upper(), dump.machine.table.age)]
    before = standin._standin_calls().get("typeInfo", 0)
    again = choose_layouts_for_pykd(open_pykd_target())
    assert again.choice["method"] == "pykd-typeinfo"
    # served from the cache: only the new target's own two lookups (KUSER_SHARED_DATA time)
    assert standin._standin_calls().get("typeInfo", 0) - before <= 2
    assert flatten(again, "_EPROCESS") == flatten(built, "_EPROCESS")
    # a damaged cache entry is rebuilt, not an error
    cached[0].write_text("this is not JSON{")
    rebuilt = choose_layouts_for_pykd(open_pykd_target())
    assert rebuilt.choice["method"] == "pykd-typeinfo"
    assert flatten(rebuilt, "_EPROCESS") == flatten(built, "_EPROCESS")


def test_no_symbols_falls_back_to_the_offline_choice(standin: Any, machines: Dict[int, Any],
                                                     monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    dump = machines[19041]
    empty = tmp_path / "empty.json"
    empty.write_text(json.dumps({"metadata": {}, "base_types": {}, "user_types": {}, "enums": {}, "symbols": {}}))
    standin._standin_configure(dump=dump.path, isf=str(empty))
    import pykd_ext.layouts.registry as registry
    real_find = registry.find_by_guid
    monkeypatch.setattr(registry, "find_by_guid", lambda guid, age: None)
    target = open_pykd_target()
    lay = choose_layouts_for_pykd(target)
    assert lay.choice["method"] != "pykd-typeinfo"
    assert any("typeInfo layouts unavailable" in w for w in lay.choice["warnings"])
    assert real_find is not None


def test_layouts_export_then_structs_import(standin: Any, machines: Dict[int, Any], tmp_path: Any) -> None:
    """`!py layouts export FILE` in the VM, `pykd-ext structs import FILE` at home: same layouts."""
    dump = machines[22000]
    standin._standin_configure(dump=dump.path, isf=dump.isf)
    out_file = tmp_path / "vm-layouts.json"
    out, err = run_like_bootstrapper(script_path("layouts"), ["export", str(out_file)])
    assert "Wrote %s" % out_file in out, out + err
    doc = json.loads(out_file.read_text())
    assert doc["metadata"]["windows"]["pdb"]["GUID"] == dump.machine.table.guid.upper()
    assert doc["metadata"]["source"]["version"] == dump.machine.table.version
    code, out, err = run_cli(["structs", "import", str(out_file)])
    assert code == 0, err
    imported = load_layouts(dump.machine.table.version + "-user")
    shipped = load_layouts(dump.machine.table.version)
    assert flatten(imported, "_EPROCESS") == flatten(shipped, "_EPROCESS")
    assert flatten(imported, "_KTHREAD") == flatten(shipped, "_KTHREAD")
    assert imported.symbol_rva("PsActiveProcessHead") == shipped.symbol_rva("PsActiveProcessHead")
    code, listing, _ = run_cli(["structs", "list"])
    assert dump.machine.table.version + "-user" in listing


def test_layouts_show_names_the_method(standin: Any, machines: Dict[int, Any]) -> None:
    dump = machines[9600]
    standin._standin_configure(dump=dump.path)
    out, err = run_like_bootstrapper(script_path("layouts"), [])
    assert "Chosen by: pdb-guid" in out, out + err
    assert dump.machine.table.guid.upper() in out


def test_export_needs_a_debugger(machines: Dict[int, Any], tmp_path: Any) -> None:
    code, out, err = run_cli(["layouts", "export", str(tmp_path / "x.json"), "--target", machines[19041].path])
    assert code == 2 and "inside WinDbg" in err


class _NoFields:
    """A typeInfo without `fields()` (older pykd): members only by index."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        if name == "fields":
            raise AttributeError(name)
        value = getattr(self._inner, name)
        if not callable(value):
            return value

        def call(*args: Any) -> Any:
            result = value(*args)
            return _NoFields(result) if hasattr(result, "isPointer") else result
        return call

    def __len__(self) -> int:
        return len(self._inner)

    def __int__(self) -> int:
        return int(self._inner)


def test_pykd_without_fields_method(standin: Any, machines: Dict[int, Any]) -> None:
    import types
    dump = machines[7601]
    reference, _ = _typeinfo_layouts(standin, dump)
    old = types.SimpleNamespace(typeInfo=lambda name: _NoFields(standin.typeInfo(name)),
                                getOffset=standin.getOffset, DbgException=standin.DbgException)
    info = open_pykd_target().info()
    doc = isf_from_pykd(old, info.extra["pdb_guid"], info.extra["pdb_age"], None, "x64", info.kernel_base)
    ours = layouts_from_isf_doc(doc, "pykd typeInfo")
    assert flatten(ours, "_EPROCESS") == flatten(reference, "_EPROCESS")
    assert reference.enum_names() and ours.enum_names() == reference.enum_names()
    for name in reference.enum_names():
        assert dict(ours.enum(name).items()) == dict(reference.enum(name).items()), name
