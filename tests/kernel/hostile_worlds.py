"""Corrupted kernels shaped like the hostile dumps of issue 10 (defects 4 and 7), built on the
planted worlds of `planted.py`: every structure is written by the test at offsets the ISF gives.

- `overlapping_chain`: `PsActiveProcessHead` leads through N `LIST_ENTRY`s spaced so closely that
  each "process" found on it has its `ThreadListHead` on the same chain (every process walks the
  whole chain again as its thread list: N * N entries without a budget);
- `huge_thread_list`: one process whose `ThreadListHead` holds N packed entries;
- `shared_handle_table`: several processes whose `ObjectTable` is one multi-level table with
  every entry of every leaf page in use;
- `handle_table_world`: helpers to plant corrupt tables (level 3, self-referencing) on a process.

Used by `tests/hostile/test_budget_*.py`, `tests/hostile/test_handles_*.py` and the measurements
reported for the work budget.
"""
from array import array
from typing import List, Optional, Tuple

from handle_tables import build_table_code
from planted import MISSING_VA, PSpec, World, standard_processes

PAGE = 0x1000


def _stride_for(distance: int) -> int:
    """The smallest spacing (a multiple of 8, room for a LIST_ENTRY) that divides `distance`,
    so that entry i's process has its ThreadListHead exactly on entry i + distance / stride."""
    for stride in range(16, abs(distance) + 1, 8):
        if distance % stride == 0:
            return stride
    raise ValueError("no stride divides %d" % distance)


def overlapping_chain(build: int, count: int, path: str) -> Tuple[World, int]:
    """A world whose active process list is `count` overlapping entries; returns (world, stride)."""
    w = World(build)
    w.plant(standard_processes(build))
    link = w.locate("_EPROCESS", "ActiveProcessLinks")[0]
    threads = w.locate("_EPROCESS", "ThreadListHead")[0]
    stride = _stride_for(threads - link)
    size = count * stride + w.table.size("_EPROCESS") + PAGE
    base = w.alloc(size, PAGE) + w.table.size("_EPROCESS")       # room below entry 0's process
    head = w.m.globals["PsActiveProcessHead"]
    words = array("Q", bytes(count * stride))
    step = stride // 8
    for i in range(count):
        entry = base + i * stride
        words[i * step] = base + (i + 1) * stride if i + 1 < count else head
        words[i * step + 1] = base + (i - 1) * stride if i else head
    w.pt.write_virtual(base, words.tobytes())
    w.pt.write_u64(head, base)
    w.pt.write_u64(head + 8, base + (count - 1) * stride)
    w.path = w.write(path)
    return w, stride


def huge_thread_list(build: int, count: int, path: str, pid: int = 700) -> World:
    """The standard world whose process `pid` has `count` packed entries on `ThreadListHead`."""
    w = World(build, pool_size=max(0x800000, -(-(count * 16 + 0x400000) // 0x200000) * 0x200000))
    w.plant(standard_processes(build))
    head = w.process_va[pid] + w.locate("_EPROCESS", "ThreadListHead")[0]
    base = w.alloc(count * 16, PAGE)
    words = array("Q", bytes(count * 16))
    for i in range(count):
        words[2 * i] = base + (i + 1) * 16 if i + 1 < count else head
        words[2 * i + 1] = base + (i - 1) * 16 if i else head
    w.pt.write_virtual(base, words.tobytes())
    w.pt.write_u64(head, base)
    w.pt.write_u64(head + 8, base + (count - 1) * 16)
    w.path = w.write(path)
    return w


def full_leaf(w: World, target: int) -> bytes:
    """One leaf page with every entry in use, pointing at `target` (the forge's entry encoding)."""
    size = w.table.size("_HANDLE_TABLE_ENTRY")
    entry = w.encode_entry(target).to_bytes(8, "little") + bytes(size - 8)
    return entry * (PAGE // size)


def multi_level_table(w: World, leaves: List[Optional[bytes]], levels: Optional[int] = None) -> int:
    """A `_HANDLE_TABLE` whose leaf pages hold `leaves` (`handle_tables.MISSING`: a pointer to
    memory not in the dump; `GAP`: a NULL pointer); one pointer level when the leaves fit one
    page of pointers, else two (or `levels`). Returns the table's address."""
    if levels is None:
        levels = 1 if len(leaves) <= PAGE // 8 else 2
    code = build_table_code(lambda: w.alloc(PAGE, PAGE), w.pt.write_virtual, 8, leaves, levels,
                            MISSING_VA)
    table = w.alloc(w.table.size("_HANDLE_TABLE"), 16)
    w.put("_HANDLE_TABLE", table, "TableCode", code)
    return table


def shared_handle_table(build: int, sharers: int, leaf_pages: int, path: str) -> Tuple[World, int]:
    """The standard world where the first `sharers` processes of the active list share one
    table of `leaf_pages` full leaf pages. Returns (world, table address)."""
    pool = -(-((leaf_pages + 16) * PAGE + 0x400000) // 0x200000) * 0x200000
    w = World(build, pool_size=max(0x800000, pool))
    specs = standard_processes(build)
    linked_count = sum(1 for s in specs if not s.unlinked)
    specs += [PSpec(2000 + 4 * i, 4, "share%d.exe" % i) for i in range(max(0, sharers - linked_count))]
    w.plant(specs)
    target = w.process_va[4] - 0x30          # an object header in front of System's body
    leaf = full_leaf(w, target)
    table = multi_level_table(w, [leaf] * leaf_pages)
    linked = [s.pid for s in specs if not s.unlinked][:sharers]
    for pid in linked:
        w.put("_EPROCESS", w.process_va[pid], "ObjectTable", table)
    w.path = w.write(path)
    return w, table


__all__ = ["full_leaf", "huge_thread_list", "multi_level_table", "overlapping_chain",
           "shared_handle_table"]
