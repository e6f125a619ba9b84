"""The forge at benchmark scale: thousands of processes, and a CID table that needs all three levels.

Independent sources: the handle-table geometry is the kernel's (Windows Internals 7th ed., ch. 8:
entry pages of PAGE / sizeof(_HANDLE_TABLE_ENTRY) entries under up to two levels of pointer
pages of PAGE / 8 pointers, the level count in TableCode's low bits), with the entry size and
the pointer-bits field read straight from the ISF JSON here; the big dump's CID table is walked
with kdmp-parser's own page walker; Volatility 3's `windows.pslist` (its CLI, offline with the
project's ISF folder) counts the processes of a mid-size dump. Expected values are what the
test planted.
"""
import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, Iterator, List

import pytest

from independent import PAGE, DumpReader, Isf
from pykd_ext.cli import run_command
from pykd_ext.forge.builds import resolve_build
from pykd_ext.forge.handle_tables import levels_for, link_entry_pages
from pykd_ext.forge.kernel_objects import Planted, build_scenario, write_scenario_dump
from pykd_ext.forge.physmem import pc_memory_map
from pykd_ext.forge.ram_budget import MIN_RAM_BYTES
from pykd_ext.forge.scenario import ScenarioSpec, bulk_scenario
from pykd_ext.render.renderers import addresses_as_ints  # our JSON writes addresses as "0x..."

POINTER = 8                                      # x64
POINTERS_PER_PAGE = PAGE // POINTER


def _client_ids(first: int) -> Iterator[int]:
    """Valid client ids from `first`: multiples of 4, never the first entry of a page."""
    value = first
    while True:
        if value % 1024:
            yield value
        value += 4


# ---- the level structure, on its own --------------------------------------------------------

def test_levels_follow_the_kernels_geometry() -> None:
    assert levels_for(1, POINTERS_PER_PAGE) == 0
    assert levels_for(2, POINTERS_PER_PAGE) == 1
    assert levels_for(POINTERS_PER_PAGE, POINTERS_PER_PAGE) == 1
    assert levels_for(POINTERS_PER_PAGE + 1, POINTERS_PER_PAGE) == 2
    assert levels_for(POINTERS_PER_PAGE ** 2, POINTERS_PER_PAGE) == 2
    with pytest.raises(ValueError):
        levels_for(POINTERS_PER_PAGE ** 2 + 1, POINTERS_PER_PAGE)


@pytest.mark.parametrize("levels", [0, 1, 2])
def test_entry_pages_resolve_through_the_pointer_levels(levels: int) -> None:
    """Entry page n of a level-2 table is top[n // 512] -> [n % 512]; of a level-1 table top[n]."""
    memory: Dict[int, bytes] = {}
    fresh = iter(range(0x100000, 0x10000000, PAGE))

    def write(address: int, data: bytes) -> None:
        assert address % PAGE == 0 and len(data) == PAGE
        memory[address] = data

    def pointer(page: int, slot: int) -> int:
        return int.from_bytes(memory[page][slot * POINTER:(slot + 1) * POINTER], "little")

    numbers = {0: [0], 1: [0, 1, 300, POINTERS_PER_PAGE - 1],
               2: [0, 5, POINTERS_PER_PAGE - 1, POINTERS_PER_PAGE, 3 * POINTERS_PER_PAGE + 7]}
    pages = {n: next(fresh) for n in numbers[levels]}
    code = link_entry_pages(pages, levels, POINTER, lambda: next(fresh), write)
    assert code & 3 == levels
    top = code & ~3
    for number, page in pages.items():
        if levels == 0:
            assert top == page
        elif levels == 1:
            assert pointer(top, number) == page
        else:
            middle = pointer(top, number // POINTERS_PER_PAGE)
            assert pointer(middle, number % POINTERS_PER_PAGE) == page
    with pytest.raises(ValueError):              # a page beyond the levels' reach
        link_entry_pages({POINTERS_PER_PAGE ** levels: next(fresh)}, levels, POINTER,
                         lambda: next(fresh), write)


# ---- RAM sized from the scenario ----------------------------------------------------------

@pytest.mark.slow
def test_ram_is_sized_from_the_scenario() -> None:
    """450 processes of 20 threads (TEBs, PEBs, page tables each): a fixed 256 MiB-based map ran
    out ("memory map has no room"); the budget leaves room, without declaring absurd amounts."""
    spec = bulk_scenario(449, 20, handles_per_process=30)
    machine, planted = build_scenario(spec, "win10")
    assert len(planted.processes) == 450 and len(planted.threads()) == 449 * 20 + 1
    ram = sum(count for _first, count in machine.phys.memory_map or []) * PAGE
    used = machine.phys.present_pfns()[-1] * PAGE
    assert used < ram < 8 * used
    small = build_scenario(bulk_scenario(9, 2), "win10")[0]      # small machines keep 256 MiB
    assert small.phys.memory_map == pc_memory_map(MIN_RAM_BYTES)


def test_make_dump_forges_the_bulk_machine(tmp_path: Path, isf_dir: Path,
                                           capsys: pytest.CaptureFixture) -> None:
    """`make_dump bulk:P:T:H`: P processes (System included) with T threads and H handles
    each; kdmp-parser finds the P processes along PsActiveProcessHead (from the header)."""
    from pykd_ext.forge.make_dump import main
    out = tmp_path / "bulk.dmp"
    facts = tmp_path / "facts.json"
    assert main(["bulk:4:3:5", str(out), "--facts", str(facts)]) == 0
    planted = json.loads(facts.read_text(encoding="utf-8"))
    isf = Isf(resolve_build("win10").table(str(isf_dir)).path)
    reader = DumpReader(str(out))
    head = reader.dump.header.PsActiveProcessHead
    links = isf.off("_EPROCESS", "ActiveProcessLinks")
    entry, pids = reader.u64(head), []
    while entry != head and len(pids) < 10:
        pids.append(reader.u64(entry - links + isf.off("_EPROCESS", "UniqueProcessId")))
        entry = reader.u64(entry)
    assert len(pids) == 4 and pids[0] == 4
    assert "4 processes, 10 threads" in capsys.readouterr().out
    assert [p["handle_count"] for p in planted["processes"][1:]] == [5, 5, 5]
    assert [len(p["threads"]) for p in planted["processes"][1:]] == [3, 3, 3]
    assert main(["bulk:1", str(tmp_path / "no.dmp")]) == 2
    assert "PROCESSES >= 2" in capsys.readouterr().err


# ---- a big dump, walked completely --------------------------------------------------------

def _scattered_scenario(processes: int, first_tid: int) -> ScenarioSpec:
    """`processes` ordinary processes (System included), one thread each, two handles each,
    thread ids from `first_tid` on: CID handle values beyond what two levels can index."""
    spec = bulk_scenario(processes - 1, 1, name="scale", handles_per_process=2)
    tids = _client_ids(first_tid)
    for proc in spec.processes[1:]:
        for thread in proc.threads:
            thread.tid = next(tids)
    return spec


def _ours(path: str, *argv: str) -> Dict[str, Any]:
    out = io.StringIO()
    assert run_command(list(argv) + ["--target", path, "--format", "json", "--quiet"],
                       out=out) == 0
    return addresses_as_ints(json.loads(out.getvalue()))


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory, isf_dir: Path) -> Dict[str, Any]:
    choice = resolve_build("win10")
    isf = Isf(choice.table(str(isf_dir)).path)
    per_page = PAGE // isf.types["_HANDLE_TABLE_ENTRY"]["size"]
    two_level_reach = per_page * POINTERS_PER_PAGE * 4          # first handle value beyond it
    spec = _scattered_scenario(6400, two_level_reach + 64)
    path = str(tmp_path_factory.mktemp("scale") / "scale-6400.dmp")
    planted = write_scenario_dump(path, spec, choice)
    return {"path": path, "planted": planted, "spec": spec, "isf": isf, "per_page": per_page}


@pytest.mark.slow
def test_large_dump_is_walked_completely(big: Dict[str, Any]) -> None:
    path, planted = big["path"], big["planted"]
    processes = {p["pid"]: p["address"] for p in planted.processes}
    threads = {t["tid"]: t["address"] for t in planted.threads()}
    assert len(processes) == 6400 and len(threads) == 6400
    ps = _ours(path, "ps")
    assert sorted(r["pid"] for r in ps["records"]) == sorted(processes)
    listed = _ours(path, "threads")["records"]
    assert sorted(r["tid"] for r in listed) == sorted(threads)
    cid = _ours(path, "handles", "--cid")
    found = {r["handle"]: r["object"] for r in cid["records"]}
    assert found == {**processes, **threads}
    (table,) = cid["meta"]["tables"]
    assert table["levels"] == 2 and table["pages_missing"] == 0


@pytest.mark.slow
def test_large_cid_table_has_the_kernels_three_levels(big: Dict[str, Any]) -> None:
    """kdmp-parser's page walker, the ISF's offsets and the kernel's geometry find every
    planted process and thread of the three-level PspCidTable."""
    planted: Planted = big["planted"]
    isf: Isf = big["isf"]
    per_page: int = big["per_page"]
    reader = DumpReader(big["path"])

    def u64(va: int) -> int:
        return int.from_bytes(reader.read(va, 8, planted.dtb), "little")

    table = u64(planted.kernel_base + isf.rva("PspCidTable"))
    code = u64(table + isf.off("_HANDLE_TABLE", "TableCode"))
    assert code & 3 == 2
    pointer_bits = isf.types["_HANDLE_TABLE_ENTRY"]["fields"]["ObjectPointerBits"]["type"]
    entry_size = isf.types["_HANDLE_TABLE_ENTRY"]["size"]
    span = per_page * POINTERS_PER_PAGE

    def lookup(cid: int) -> int:
        index = cid // 4
        middle = u64((code & ~3) + POINTER * (index // span))
        leaf = u64(middle + POINTER * ((index % span) // per_page))
        raw = u64(leaf + (index % per_page) * entry_size)
        bits = (raw >> pointer_bits["bit_position"]) & ((1 << pointer_bits["bit_length"]) - 1)
        return (bits << 4) | 0xFFFF000000000000

    objects: List[Dict[str, Any]] = planted.processes + planted.threads()
    for record in objects[::97] + objects[-3:]:
        cid = record["tid"] if "tid" in record else record["pid"]
        assert lookup(cid) == record["address"], cid
    assert max(t["tid"] for t in planted.threads()) // 4 >= span   # the third level is used


# ---- Volatility 3 agrees on a mid-size dump -------------------------------------------------

def _volatility() -> str:
    here = os.path.join(os.path.dirname(sys.executable), "vol")
    return here if os.access(here, os.X_OK) else "vol"


@pytest.mark.slow
def test_volatility_pslist_counts_a_mid_size_dump(tmp_path: Path, isf_dir: Path) -> None:
    spec = bulk_scenario(1599, 1, name="scale", handles_per_process=2)
    path = str(tmp_path / "scale-1600.dmp")
    planted = write_scenario_dump(path, spec, "win10")
    out = subprocess.run([_volatility(), "-q", "-r", "json", "-s", str(isf_dir), "-f", path,
                          "windows.pslist"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-500:]
    rows = json.loads(out.stdout)
    assert len(rows) == 1600
    assert sorted((r["PID"], r["PPID"], r["ImageFileName"]) for r in rows) == \
        sorted((p["pid"], p["ppid"], p["name"]) for p in planted.processes)
