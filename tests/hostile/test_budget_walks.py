"""Issue 10, defect 4: the work budget bounds the sum of every walk of one command.

Hostile kernels built by the test (`tests/kernel/hostile_worlds.py`, offsets from the ISF):
- 4,096 overlapping "processes" whose thread lists are the process chain itself (without a
  budget: 16 million thread entries, > 60 s and MemoryError at 4 GB);
- one process with a 1,048,576-entry thread list (before: 97 s and 6 GB);
- a token whose UserAndGroupCount is 0xFFFFFFFF (before: 4,095 silent garbage rows).
Assertions are on entry counts and notes, never on time.
"""
import os
import sys
from typing import Any, Dict, List

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "kernel"))

from hostile_worlds import huge_thread_list, overlapping_chain  # noqa: E402
from planted import World, run_json, standard_processes  # noqa: E402
from pykd_ext.kernel.budget import (BUDGET_CUT, DEFAULT_MAX_ENTRIES, Budget,  # noqa: E402
                                    budget_for)
from pykd_ext.kernel.context import KernelContext, context_for  # noqa: E402
from pykd_ext.kernel.processes import (BY_ETHREAD_LIST, DEFAULT_THREAD_LIMIT,  # noqa: E402
                                       all_processes)
from pykd_ext.session import Session  # noqa: E402

CHAIN = 4096


@pytest.fixture(scope="module")
def chain(tmp_path_factory: Any, isf_dir: Any) -> Any:
    del isf_dir
    world, stride = overlapping_chain(19041, CHAIN, str(tmp_path_factory.mktemp("chain") / "chain.dmp"))
    return world


def budget_notes(notes: List[str]) -> List[str]:
    return [n for n in notes if "work budget" in n and "--max-" in n]


def test_chain_walks_stop_at_the_budget_exactly(chain: Any) -> None:
    """With a 50,000-entry budget the sum of every list entry visited is exactly 50,000: the
    process list (4,096) and the thread lists of the first processes; every later walk stops at
    once, its count unknown (None), and one note says which budget cut the output."""
    session = Session(chain.path)
    session.max_entries = 50000
    ctx = context_for(session)
    assert ctx.budget.max_entries == 50000
    processes = all_processes(ctx).ordered()
    assert len(processes) == CHAIN                  # the process list itself fits the budget
    listings = [p.thread_listing() for p in processes]
    walked = CHAIN + sum(end.count for listing in listings for end in listing.ends.values())
    assert walked == 50000 and ctx.budget.entries == 0
    cut = [listing for listing in listings if any(e.cut_by_budget for e in listing.ends.values())]
    assert cut and all(listing.counts[BY_ETHREAD_LIST] is None for listing in cut[1:])
    # the first processes' own lists went round the whole chain (4,096 entries, the head included)
    assert listings[0].counts[BY_ETHREAD_LIST] == CHAIN
    assert budget_notes(ctx.notes) == [ctx.budget.note("entries")]
    assert "--max-entries" in ctx.notes[-1] and "50,000 list and table entries" in ctx.notes[-1]
    # no per-walk note for the walks the budget cut: the one budget note says it
    notes = [n for listing in listings for n in listing.notes]
    assert not any(BUDGET_CUT in n and "back links" not in n for n in notes)


@pytest.mark.slow
def test_ps_on_the_overlapping_chain_prints_every_process_and_one_budget_note(chain: Any) -> None:
    """`ps` with the default budget: all 4,096 processes are printed; the thread-list counts
    stop at the budget; exactly one note names it and the option that raises it."""
    doc = run_json(["ps", "--target", chain.path])
    records = doc["records"]
    assert len(records) == CHAIN
    listed = [r["threads_listed"] for r in records]
    unknown = [n for n in listed if n is None]
    assert unknown, "the budget must have cut some thread lists"
    assert sum(n for n in listed if isinstance(n, int)) < DEFAULT_MAX_ENTRIES
    notes = budget_notes(doc.get("notes") or [])
    assert len(notes) == 1 and "--max-entries" in notes[0]


def test_a_million_entry_thread_list_stops_at_the_per_process_limit(tmp_path: Any, isf_dir: Any) -> None:
    """1,048,576 entries on one ThreadListHead: the walk stops at DEFAULT_THREAD_LIMIT with a
    "limit reached" note; `ps` prints every process; no budget note (the limit came first)."""
    del isf_dir
    world = huge_thread_list(19041, 1 << 20, str(tmp_path / "threads.dmp"))
    assert DEFAULT_THREAD_LIMIT < 1 << 20
    doc = run_json(["ps", "--target", world.path])
    by_pid: Dict[int, Dict[str, Any]] = {r["pid"]: r for r in doc["records"]}
    assert by_pid[700]["threads_listed"] == DEFAULT_THREAD_LIMIT
    system = [s for s in standard_processes(19041) if s.pid == 4][0]
    assert by_pid[4]["threads_listed"] == len(system.threads)     # the other processes are untouched
    notes = doc.get("notes") or []
    assert any("ThreadListHead: walk stopped after %d entries (limit reached" % DEFAULT_THREAD_LIMIT in n
               for n in notes)
    assert budget_notes(notes) == []


def test_budget_counts_and_cuts_once() -> None:
    notes: List[str] = []
    budget = Budget(max_entries=10, max_pages=2, max_bytes=100, notes=notes)
    assert budget.take_entries(7) == 7 and budget.take_entries(7) == 3
    assert budget.walks_stopped and budget.exhausted == ["entries"]
    assert not budget.take_page() and budget.exhausted == ["entries"]   # not blamed on pages
    assert budget.take_bytes(60) == 60 and budget.take_bytes(60) == 40
    assert budget.exhausted == ["entries", "bytes"] and len(notes) == 2
    assert "--max-entries N (N > 10)" in notes[0] and "--max-bytes" in notes[1]


def test_budget_from_the_session() -> None:
    class Bare:
        pass
    session = Bare()
    assert budget_for(session).max_entries == DEFAULT_MAX_ENTRIES
    assert budget_for(session) is budget_for(session)            # one budget per command
    other = Bare()
    other.max_entries, other.max_pages, other.max_bytes = 5, 6, 7   # type: ignore[attr-defined]
    made = budget_for(other)
    assert (made.max_entries, made.max_pages, made.max_bytes) == (5, 6, 7)
    given = Budget(max_entries=3)
    other.budget = given                                          # type: ignore[attr-defined]
    assert budget_for(other) is given


def _token_world(tmp_path: Any) -> Any:
    """lsass's token has UserAndGroupCount 0xFFFFFFFF over an array holding two SIDs, then zeros."""
    w = World(19041)
    w.plant(standard_processes(19041))
    token = w.alloc(w.table.size("_TOKEN"), 16)
    w.put("_EPROCESS", w.process_va[700], "Token.Value", token)
    sid_size = w.table.size("_SID_AND_ATTRIBUTES")
    array = w.alloc(64 * sid_size, 16)
    for i, subs in enumerate(([18], [32, 544])):
        sid = w.alloc(8 + 4 * len(subs), 8)
        w.pt.write_virtual(sid, bytes([1, len(subs)]) + (5).to_bytes(6, "big")
                           + b"".join(s.to_bytes(4, "little") for s in subs))
        w.put("_SID_AND_ATTRIBUTES", array + i * sid_size, "Sid", sid)
        w.put("_SID_AND_ATTRIBUTES", array + i * sid_size, "Attributes", 0x7)
    w.put("_TOKEN", token, "UserAndGroups", array)
    w.put("_TOKEN", token, "UserAndGroupCount", 0xFFFFFFFF)
    w.put("_TOKEN", token, "TokenId.LowPart", 0x4242)
    w.path = w.write(str(tmp_path / "token.dmp"))
    return w, token


def test_token_with_0xffffffff_groups_shows_the_readable_ones_and_a_note(tmp_path: Any, isf_dir: Any) -> None:
    del isf_dir
    w, token = _token_world(tmp_path)
    doc = run_json(["token", "0n700", "--target", w.path])
    record = doc["records"][0]
    assert record["user"]["sid"] == "S-1-5-18"
    assert [g["sid"] for g in record["groups"]] == ["S-1-5-32-544"]
    assert ("token at 0x%x: UserAndGroupCount 4294967295 is implausible (a token holds at most "
            "1024 SIDs); showing the first 2 readable" % token) in (doc.get("notes") or [])


def test_context_without_session_has_a_default_budget(chain: Any) -> None:
    session = Session(chain.path)
    ctx = KernelContext(session.target, session.layouts)
    assert ctx.budget.max_entries == DEFAULT_MAX_ENTRIES and ctx.budget.notes is ctx.notes

