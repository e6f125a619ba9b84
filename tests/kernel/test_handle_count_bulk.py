"""Counting handles a page at a time (`count_handles`, what `ps` uses) gives exactly the count of
the per-entry decoder (`scan_handle_table`) and of what the test planted, on forged dumps of x64
(Windows 7, 8.1, 10, 11) and x86 (Windows 7, 10) builds: tables of 0, 1 and 2 pointer levels,
free entries of every shape the kernel leaves (next-free links, lock/attribute/reference bits
without a pointer), pointers whose only set bit is the lowest or highest pointer bit, NULL page
pointers and page pointers to memory the dump does not hold (the count is then partial, or a
Fault when no page is readable).

The in-use entries are encoded by the forge (`World.encode_entry` with the ISF's bit positions on
x64; the x86 forge's own handle entries, copied) and every free pattern from the ISF/derived bit
positions; the expected count is the number of entries the test planted as in use.
"""
import random
from typing import Any, Dict, List, Optional, Tuple

import pytest

from handle_tables import GAP, MISSING, PAGE, build_table_code, leaf_page
from planted import MISSING_VA, World, standard_processes
from pykd_ext.forge.x86_kernel import ProcessSpec32, ThreadSpec32, TokenSpec32, X86Scenario, build_x86
from pykd_ext.kernel.context import context_for
from pykd_ext.kernel.handles import count_handles, handle_count, scan_handle_table
from pykd_ext.memory.faults import Fault
from pykd_ext.session import Session

H = "_HANDLE_TABLE_ENTRY"
#: (levels, leaves): "L" a leaf of mixed entries, MISSING a page not in the dump, GAP a NULL pointer
SHAPES: List[Tuple[int, List[Any]]] = [
    (0, ["L"]),
    (1, ["L", "L", GAP, MISSING, "L"]),
    (2, ["L", MISSING, "L", "L", GAP, "L"]),
    (1, [MISSING, MISSING]),
]


class Patterns:
    """In-use and free entry bytes of one build, and a generator of mixed leaves."""

    def __init__(self, size: int, in_use: List[bytes], free: List[bytes]) -> None:
        self.size = size
        self.in_use = in_use
        self.free = free

    def leaf(self, rng: random.Random) -> Tuple[bytes, int]:
        """A full leaf page of entries drawn from the patterns, and how many are in use."""
        entries, used = [], 0
        for _ in range(PAGE // self.size):
            if rng.random() < 0.45:
                entries.append(rng.choice(self.in_use))
                used += 1
            else:
                entries.append(rng.choice(self.free))
        return leaf_page(self.size, entries), used


def _u(value: int, size: int) -> bytes:
    return (value & ((1 << (8 * size)) - 1)).to_bytes(size, "little")


def x64_patterns(w: World, targets: List[int]) -> Patterns:
    """Entries by the ISF's bit positions (never the decoder's): see the module docstring."""
    size = w.table.size(H)
    if w.table.has_member(H, "ObjectPointerBits"):
        pos, length = w.table.bits(H, "ObjectPointerBits")
        high_offset = w.locate(H, "GrantedAccessBits")[0]
        in_use = [_u(w.encode_entry(t), 8) + bytes(size - 8) for t in targets]
        in_use.append(_u(1 << pos, 8) + bytes(size - 8))                      # lowest pointer bit only
        in_use.append(_u(1 << (pos + length - 1), 8) + bytes(size - 8))       # highest pointer bit only
        below_pointer = (1 << pos) - 1          # Unlocked, RefCnt and Attributes all set
        free = [bytes(size),
                bytes(8) + _u(0x1234 << 2, size - 8),                          # a next-free link
                _u(below_pointer, 8) + bytes(size - 8),
                _u(below_pointer, 8) + _u(0x1FFFFF, size - 8)]
        assert high_offset == 8
    else:                                       # Windows 7: Object with three low attribute bits
        access = w.locate(H, "GrantedAccess")[0]
        in_use = [_u(t | 1, 8) + bytes(size - 8) for t in targets]
        in_use.append(_u(0x8, 8) + bytes(size - 8))                            # only bit 3 of Object
        in_use.append(_u(1 << 63, 8) + bytes(size - 8))
        free = [bytes(size), _u(0x7, 8) + bytes(size - 8),                      # lock + attribute bits
                bytes(access) + _u(0x20, size - access),                       # NextFreeTableEntry
                _u(0x1, 8) + _u(0x1FFFFF, size - 8)]
    return Patterns(size, in_use, free)


def x86_patterns(forged: Any, layouts: Any) -> Patterns:
    """In-use entries copied from the x86 forge's own handle tables; free ones from the derived
    layout's bit positions (the layout the x86 forge writes with)."""
    entry = layouts.type(H)
    size = entry.size
    in_use = []
    for pid, handles in forged.handles.items():
        table = forged.kernel.read_virtual(forged.processes[pid] + layouts.type("_EPROCESS").offset("ObjectTable"), 4)
        code = int.from_bytes(forged.kernel.read_virtual(int.from_bytes(table, "little")
                                                         + layouts.type("_HANDLE_TABLE").offset("TableCode"), 4), "little")
        for value, _body, _type, _access in handles:
            in_use.append(forged.kernel.read_virtual(code + (value // 4) * size, size))
    if entry.has_field("ObjectPointerBits"):
        f = entry.field("ObjectPointerBits")
        pos = int(f.bit_position)
        in_use.append(_u(1 << pos, 4) + bytes(4))
        in_use.append(_u(1 << (pos + int(f.bit_length) - 1), 4) + bytes(4))
        free = [bytes(8), _u((1 << pos) - 1, 4) + bytes(4), bytes(4) + _u(0x123 << 2, 4),
                _u((1 << pos) - 1, 4) + _u(0x1FFFFFF, 4)]
    else:
        in_use.append(_u(0x8, 4) + bytes(4))
        in_use.append(_u(0x80000000, 4) + bytes(4))
        free = [bytes(8), _u(0x7, 4) + bytes(4), bytes(4) + _u(0x48, 4), _u(0x1, 4) + _u(0x1F0FFF, 4)]
    return Patterns(size, in_use, free)


def plant_tables(patterns: Patterns, alloc_page: Any, write: Any, pointer_size: int,
                 missing: int, seed: int) -> List[Tuple[int, int, int, int]]:
    """(TableCode, in use planted, pages missing, readable leaves) per `SHAPES` entry."""
    rng = random.Random(seed)
    out = []
    for levels, shape in SHAPES:
        leaves: List[Optional[bytes]] = []
        used = 0
        for item in shape:
            if item == "L":
                data, n = patterns.leaf(rng)
                leaves.append(data)
                used += n
            else:
                leaves.append(item)
        code = build_table_code(alloc_page, write, pointer_size, leaves, levels, missing)
        out.append((code, used, sum(1 for item in shape if item is MISSING),
                    sum(1 for item in shape if item == "L")))
    return out


def _check(ctx: Any, tables: List[Tuple[int, int, int]], legacy_count_field: bool) -> None:
    for table, used, missing in tables:
        bulk = count_handles(ctx, table)
        each = scan_handle_table(ctx, table)
        assert bulk.counted == used == len(each.entries), (hex(table), bulk.counted, used)
        assert bulk.fault_count == each.fault_count == missing
        assert bulk.pages == each.pages
        got = handle_count(ctx, table)
        if legacy_count_field:
            assert got == 0x77                    # Windows 7: the kernel's own HandleCount field
        elif used == 0 and missing:
            assert isinstance(got, Fault)         # no page readable: a Fault, as before
        else:
            assert got == used                    # partial when pages are missing, as before


@pytest.mark.parametrize("build", [7601, 9600, 19041, 22000])
def test_bulk_count_equals_per_entry_count_x64(build: int, tmp_path: Any, isf_dir: Any) -> None:
    del isf_dir
    w = World(build)
    w.plant(standard_processes(build))
    targets = [w.process_va[4] - 0x30, w.thread_va[8] - 0x30, 0xFFFFA08000123450]
    planted = plant_tables(x64_patterns(w, targets), lambda: w.alloc(PAGE, PAGE), w.pt.write_virtual,
                           8, MISSING_VA, build)
    tables = []
    for code, used, missing, _ in planted:
        table = w.alloc(w.table.size("_HANDLE_TABLE"), 16)
        w.put("_HANDLE_TABLE", table, "TableCode", code)
        if w.has("_HANDLE_TABLE", "HandleCount"):
            w.put("_HANDLE_TABLE", table, "HandleCount", 0x77)
        tables.append((table, used, missing))
    path = w.write(str(tmp_path / ("bulk-%d.dmp" % build)))
    ctx = context_for(Session(path))
    _check(ctx, tables, legacy_count_field=w.has("_HANDLE_TABLE", "HandleCount"))


@pytest.mark.parametrize("build_id", ["6.1.7601.17514-x86", "10.0.19041.1288-x86"])
def test_bulk_count_equals_per_entry_count_x86(build_id: str, tmp_path: Any) -> None:
    procs = [ProcessSpec32(4, 0, "System", [ThreadSpec32(8)], token=TokenSpec32()),
             ProcessSpec32(640, 4, "lsass.exe", [ThreadSpec32(644)], token=TokenSpec32())]
    forged = build_x86(X86Scenario(build_id, procs))
    layouts = forged.layouts
    cursor = [0x9E000000]                       # kernel VA the x86 forge leaves free

    def alloc_page() -> int:
        va = cursor[0]
        cursor[0] += PAGE
        forged.kernel.map_new(va, PAGE, user=False)
        return va

    planted = plant_tables(x86_patterns(forged, layouts), alloc_page, forged.kernel.write_virtual,
                           4, 0x9F000000, 86)
    table_type = layouts.type("_HANDLE_TABLE")
    tables = []
    for code, used, missing, _ in planted:
        table = alloc_page()
        forged.kernel.write_virtual(table + table_type.offset("TableCode"), code.to_bytes(4, "little"))
        if table_type.has_field("HandleCount"):
            forged.kernel.write_virtual(table + table_type.offset("HandleCount"), (0x77).to_bytes(4, "little"))
        tables.append((table, used, missing))
    path = forged.write(str(tmp_path / "bulk-x86.dmp"))
    ctx = context_for(Session(path))
    assert ctx.pointer_size == 4
    _check(ctx, tables, legacy_count_field=table_type.has_field("HandleCount"))


def test_the_forges_own_tables_count_as_planted(tmp_path: Any, isf_dir: Any) -> None:
    """Handle counts of every process of a forged scenario (tables the forge wrote, one or
    more pages) equal the counts the scenario planted."""
    del isf_dir
    from pykd_ext.forge.kernel_objects import write_scenario_dump
    from pykd_ext.forge.scenario import bulk_scenario
    spec = bulk_scenario(6, 2)
    for n, proc in enumerate(spec.processes[1:]):
        proc.handles = 300 + 250 * n              # one to six leaf pages
    planted = write_scenario_dump(str(tmp_path / "bulk.dmp"), spec, "win10")
    ctx = context_for(Session(planted.path))
    expected: Dict[int, int] = {r["handle_table"]: r["handle_count"] for r in planted.processes
                                if r.get("handle_table")}
    assert expected and max(expected.values()) > 2 * 256       # several leaf pages: a level-1 table
    for table, count in expected.items():
        assert count_handles(ctx, table).counted == count == handle_count(ctx, table)
