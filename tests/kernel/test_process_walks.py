"""Walks over hostile or torn lists end with a visible note, never an exception; big CID tables."""
from typing import Any

import pytest

from planted import MISSING_VA, PSpec, TSpec, World, bulk_processes, run_json, standard_processes


@pytest.fixture(scope="module")
def broken_dumps(tmp_path_factory: pytest.TempPathFactory, isf_dir: Any) -> Any:
    del isf_dir
    folder = tmp_path_factory.mktemp("broken")
    out = {}
    # 1. a Flink into memory the dump does not hold, after the third process
    w = World(19041)
    w.specs = standard_processes(19041)
    w.plant(w.specs)
    links = w.locate("_EPROCESS", "ActiveProcessLinks")[0]
    w.pt.write_u64(w.process_va[388] + links, MISSING_VA)
    out["unreadable"] = (w, w.write(str(folder / "unreadable.dmp")))
    # 2. a cycle that never returns to the head: the fourth process points back to the second
    w = World(19041)
    w.specs = standard_processes(19041)
    w.plant(w.specs)
    w.pt.write_u64(w.process_va[700] + links, w.process_va[88] + links)
    # and a thread list whose Flink points at itself without being the head
    tlinks = w.locate("_ETHREAD", "ThreadListEntry")[0]
    w.pt.write_u64(w.thread_va[704] + tlinks, w.thread_va[704] + tlinks)
    out["cycle"] = (w, w.write(str(folder / "cycle.dmp")))
    return out


def test_unreadable_link_ends_walk_with_note(broken_dumps: Any) -> None:
    w, path = broken_dumps["unreadable"]
    doc = run_json(["ps", "--target", path])
    assert [r["pid"] for r in doc["records"]] == [4, 88, 388]
    assert any("PsActiveProcessHead: walk stopped after 3 entries (unreadable link at 0x%x" % MISSING_VA in n
               for n in doc["notes"])


def test_unlinked_tail_still_found_cross_view(broken_dumps: Any) -> None:
    w, path = broken_dumps["unreadable"]
    recs = {r["pid"]: r for r in run_json(["psxview", "--target", path])["records"]}
    # processes behind the broken link are still in the CID table and on the session lists
    assert recs[700]["ActiveProcessLinks"] is False and recs[700]["PspCidTable"] is True


def test_cycle_ends_walk_with_note(broken_dumps: Any) -> None:
    w, path = broken_dumps["cycle"]
    doc = run_json(["ps", "--target", path])
    assert [r["pid"] for r in doc["records"]] == [4, 88, 388, 700]
    assert any("PsActiveProcessHead" in n and "(cycle" in n for n in doc["notes"])
    threads = run_json(["threads", "lsass.exe", "--target", path])
    assert any("ThreadListHead" in n and "cycle" in n for n in threads["notes"])
    assert 704 in [r["tid"] for r in threads["records"]]


def test_two_level_cid_table(tmp_path: Any, isf_dir: Any) -> None:
    del isf_dir
    specs = bulk_processes(6, 60)               # ids up to ~1450: entries past the first page
    w = World(22000)
    w.plant(specs)
    path = w.write(str(tmp_path / "cid2.dmp"))
    doc = run_json(["psxview", "--target", path])
    assert {r["pid"] for r in doc["records"]} == {p.pid for p in specs}
    assert all(r["PspCidTable"] and r["ThreadOwner"] for r in doc["records"])
    ethread = run_json(["ethread", "0n%d" % specs[-1].threads[-1].tid, "--target", path])["records"]
    assert ethread[0]["address"] == w.thread_va[specs[-1].threads[-1].tid]


def test_dkom_pid_change_still_classified_by_thread_owner(tmp_path: Any, isf_dir: Any) -> None:
    """A process whose UniqueProcessId was overwritten is not a consistent CID entry; its threads
    still lead to it (ThreadOwner)."""
    del isf_dir
    specs = [PSpec(4, 0, "System", [TSpec(8, "Running", "Executive", 0, running_on=0, system=True)]),
             PSpec(600, 4, "rootkit.exe", [TSpec(604)], unlinked=True)]
    w = World(19041)
    w.plant(specs)
    w.put("_EPROCESS", w.process_va[600], "UniqueProcessId", 0x1234)
    path = w.write(str(tmp_path / "dkom.dmp"))
    doc = run_json(["psxview", "--target", path])
    recs = {r["address"]: r for r in doc["records"]}
    hidden = recs[w.process_va[600]]
    assert hidden["ThreadOwner"] is True and hidden["ActiveProcessLinks"] is False
    assert any("neither a consistent process nor thread" in n for n in doc["notes"])


def test_thread_listing_streamed_and_kept_agree(world: Any) -> None:
    """`iter_threads` (made one at a time) and `threads` (kept) give the same threads in the same
    order with the same sources: EPROCESS-list order, then threads only on the KPROCESS list, then
    those only a processor or the triage block places in the process (planted: app32.exe's 1408
    is on the KPROCESS list only; the running threads are also processors' current threads)."""
    from pykd_ext.kernel.context import context_for
    from pykd_ext.kernel.processes import BY_ETHREAD_LIST, BY_KTHREAD_LIST, all_processes
    from pykd_ext.session import Session
    ctx = context_for(Session(world.path))
    for process in all_processes(ctx).ordered():
        listing = process.thread_listing()
        streamed = [(t.address, list(t.found_by)) for t in listing.iter_threads()]
        kept = [(t.address, list(t.found_by)) for t in listing.threads]
        assert streamed == kept
        spec = next(s for s in world.specs if s.pid == process.pid)
        planted = {world.thread_va[t.tid]: t for t in spec.threads}
        assert [a for a, _ in kept] == [world.thread_va[t.tid] for t in spec.threads if t.in_elist] + \
            [world.thread_va[t.tid] for t in spec.threads if not t.in_elist and t.in_klist]
        for address, sources in kept:
            t = planted[address]
            want = [m for m, on in ((BY_ETHREAD_LIST, t.in_elist), (BY_KTHREAD_LIST, t.in_klist)) if on]
            assert sources[:len(want)] == want
            assert ("ProcessorCurrentThread" in sources) == (t.running_on is not None)
