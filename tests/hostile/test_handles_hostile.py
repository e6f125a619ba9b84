"""Issue 10, defects 4 and 7: handle tables that are shared, huge, self-referencing or of an
invalid level, and `handles --all` on an empty process list, each said plainly.

Every table is planted by the test (`tests/kernel/hostile_worlds.py`, entries in the forge's
encoding with the ISF's bit positions); expected counts are what the test planted.
"""
import os
import sys
from typing import Any, Dict, List

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "kernel"))

from handle_tables import PAGE  # noqa: E402
from hostile_worlds import full_leaf, multi_level_table, shared_handle_table  # noqa: E402
from planted import MISSING_VA, World, run_json, run_text, standard_processes  # noqa: E402

BUILD = 19041


def _notes(doc: Dict[str, Any]) -> List[str]:
    return list(doc.get("notes") or [])


@pytest.fixture(scope="module")
def big_shared(tmp_path_factory: Any, isf_dir: Any) -> Any:
    """Nine processes sharing one table of 4,079 full leaf pages (the issue's dump)."""
    del isf_dir
    return shared_handle_table(BUILD, 9, 4079, str(tmp_path_factory.mktemp("shared") / "big.dmp"))


def test_ps_counts_a_shared_4079_page_table_for_each_process(big_shared: Any) -> None:
    world, table = big_shared
    per_page = PAGE // world.table.size("_HANDLE_TABLE_ENTRY")
    doc = run_json(["ps", "--target", world.path])
    counts = [r["handle_count"] for r in doc["records"] if r["handle_count"] is not None]
    assert counts == [4079 * per_page] * 9
    assert not [n for n in _notes(doc) if "work budget" in n]


def test_handles_all_decodes_a_shared_table_once_and_says_it_is_shared(tmp_path: Any, isf_dir: Any) -> None:
    del isf_dir
    world, table = shared_handle_table(BUILD, 9, 24, str(tmp_path / "shared.dmp"))
    per_page = PAGE // world.table.size("_HANDLE_TABLE_ENTRY")
    doc = run_json(["handles", "--all", "--target", world.path])
    records = doc["records"]
    assert len(records) == 24 * per_page                     # decoded once, not nine times
    assert {r["pid"] for r in records} == {4}                # listed under the first process
    shared = [n for n in _notes(doc) if "is shared with process 4 (System)" in n]
    assert len(shared) == 8 and all("%x" % table in n for n in shared)
    code, text = run_text(["handles", "--all", "--target", world.path])
    assert code == 0
    assert text.count("Handle table at %016x with %d entries in use" % (table, 24 * per_page)) == 1


def _world_with_table(tmp_path: Any, name: str, plant: Any) -> Any:
    w = World(BUILD)
    w.plant(standard_processes(BUILD))
    table = plant(w)
    w.put("_EPROCESS", w.process_va[700], "ObjectTable", table)
    w.path = w.write(str(tmp_path / name))
    return w, table


def test_table_code_level_3_is_called_invalid(tmp_path: Any, isf_dir: Any) -> None:
    del isf_dir

    def plant(w: World) -> int:
        page = w.alloc(PAGE, PAGE)
        w.pt.write_virtual(page, full_leaf(w, w.process_va[4] - 0x30))
        table = w.alloc(w.table.size("_HANDLE_TABLE"), 16)
        w.put("_HANDLE_TABLE", table, "TableCode", page | 3)
        return table
    w, table = _world_with_table(tmp_path, "level3.dmp", plant)
    doc = run_json(["handles", "0n700", "--target", w.path], status=1)     # no handle: exit 1
    assert doc["records"] == []
    notes = _notes(doc)
    assert any("handle table 0x%x has an invalid TableCode level 3" % table in n for n in notes)
    assert not any("invalid address" in n or "not readable" in n for n in notes)
    code, text = run_text(["handles", "0n700", "--target", w.path])
    assert "Handle table at %016x has an invalid TableCode level 3" % table in text
    assert "entries in use" not in text


def test_self_referencing_tables_are_said_to_be(tmp_path: Any, isf_dir: Any) -> None:
    del isf_dir

    def plant(w: World) -> int:
        mid = w.alloc(PAGE, PAGE)                    # a level-1 page whose every pointer is itself
        w.pt.write_virtual(mid, mid.to_bytes(8, "little") * (PAGE // 8))
        table = w.alloc(w.table.size("_HANDLE_TABLE"), 16)
        w.put("_HANDLE_TABLE", table, "TableCode", mid | 1)
        return table
    w, table = _world_with_table(tmp_path, "selfref.dmp", plant)
    doc = run_json(["handles", "0n700", "--target", w.path], status=1)     # no handle: exit 1
    assert doc["records"] == []
    assert any("handle table 0x%x refers to pages already read %d time(s)" % (table, PAGE // 8) in n
               for n in _notes(doc))
    code, text = run_text(["handles", "0n700", "--target", w.path])
    assert "with 0 entries in use (refers to itself: see the notes)" in text


def test_table_code_pointing_at_its_own_table(tmp_path: Any, isf_dir: Any) -> None:
    del isf_dir

    def plant(w: World) -> int:
        table = w.alloc(PAGE, PAGE)                  # TableCode names the table's own page
        w.put("_HANDLE_TABLE", table, "TableCode", table)
        return table
    w, table = _world_with_table(tmp_path, "ownpage.dmp", plant)
    doc = run_json(["handles", "0n700", "--target", w.path], status=1)     # no handle: exit 1
    assert any("TableCode 0x%x points back into the table's own page" % table in n for n in _notes(doc))


def _empty_list_world(tmp_path: Any, first_link: Any) -> World:
    w = World(BUILD)
    w.plant(standard_processes(BUILD))
    head = w.m.globals["PsActiveProcessHead"]
    w.pt.write_u64(head, first_link(head))
    w.pt.write_u64(head + 8, head)
    w.path = w.write(str(tmp_path / "empty.dmp"))
    return w


def test_handles_all_on_an_empty_process_list_says_why(tmp_path: Any, isf_dir: Any, capsys: Any) -> None:
    del isf_dir
    w = _empty_list_world(tmp_path, lambda head: head)
    code, _ = run_text(["handles", "--all", "--target", w.path])
    err = capsys.readouterr().err
    assert code == 2
    head = w.m.globals["PsActiveProcessHead"]
    assert ("handles --all: no process found: the active process list (PsActiveProcessHead at "
            "0x%x) is empty" % head) in err
    assert "needs NAME" not in err


def test_handles_all_when_the_first_link_is_unreadable(tmp_path: Any, isf_dir: Any, capsys: Any) -> None:
    del isf_dir
    w = _empty_list_world(tmp_path, lambda head: MISSING_VA)
    code, _ = run_text(["handles", "--all", "--target", w.path])
    err = capsys.readouterr().err
    assert code == 2
    assert "no process found" in err and "unreadable link at 0x%x" % MISSING_VA in err
    assert "needs NAME" not in err


def test_a_table_with_a_missing_leaf_is_counted_partially(tmp_path: Any, isf_dir: Any) -> None:
    """`ps` counts the readable pages (as before) and `handles` says which pages are missing."""
    del isf_dir

    def plant(w: World) -> int:
        leaf = full_leaf(w, w.process_va[4] - 0x30)
        return multi_level_table(w, [leaf, None, leaf])
    w, table = _world_with_table(tmp_path, "missing.dmp", plant)
    leaf_entries = PAGE // w.table.size("_HANDLE_TABLE_ENTRY")
    by_pid = {r["pid"]: r for r in run_json(["ps", "--target", w.path])["records"]}
    assert by_pid[700]["handle_count"] == 2 * leaf_entries
    doc = run_json(["handles", "0n700", "--target", w.path])
    assert len(doc["records"]) == 2 * leaf_entries
    assert any("1 handle table page(s) not in the dump" in n for n in _notes(doc))


def test_page_budget_stops_handle_counts_of_later_processes(big_shared: Any) -> None:
    """With a 5,000-page budget the first sharer's table (4,079 leaves + 8 mid pages + the top
    page) is counted in full, the second is cut, every later count is unknown (None), and one
    note names the page budget."""
    from pykd_ext.kernel.context import context_for
    from pykd_ext.kernel.processes import all_processes
    from pykd_ext.session import Session
    world, table = big_shared
    per_page = PAGE // world.table.size("_HANDLE_TABLE_ENTRY")
    session = Session(world.path)
    session.max_pages = 5000
    ctx = context_for(session)
    counts = [p.handle_count for p in all_processes(ctx).ordered() if p.field("ObjectTable") == table]
    assert counts == [4079 * per_page] + [None] * 8
    assert ctx.budget.pages == 0 and ctx.budget.exhausted == ["pages"]
    assert [n for n in ctx.notes if "--max-pages" in n] == [ctx.budget.note("pages")]
