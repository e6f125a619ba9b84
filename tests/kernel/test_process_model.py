"""The process model against planted worlds of four builds (7 SP1, 8.1, 10 2004, 11 21H2).

Every expected value is what `planted.py` wrote, with offsets and enum values read from the ISF
JSON by the forge's own reader — not from the generated layouts the decoder uses.
"""
from typing import Any, Dict, List

from planted import run_json
from pykd_ext.kernel.times import filetime_to_iso


def by_pid(records: List[Dict[str, Any]]) -> Dict[int, Dict[str, Any]]:
    return {r["pid"]: r for r in records}


def test_ps_lists_exactly_the_linked_processes_in_list_order(world: Any) -> None:
    doc = run_json(["ps", "--target", world.path])
    linked = [p for p in world.specs if not p.unlinked]
    assert [r["pid"] for r in doc["records"]] == [p.pid for p in linked]
    assert [r["address"] for r in doc["records"]] == [world.process_va[p.pid] for p in linked]
    for rec in doc["records"]:
        assert rec["found_by"] == ["ActiveProcessLinks"]
        assert rec["layout"] == doc["meta"]["layout"]["build_id"]
    assert doc["meta"]["layout"]["guid"] == world.table.guid.upper()


def test_ps_fields_match_what_was_planted(world: Any) -> None:
    recs = by_pid(run_json(["ps", "--target", world.path])["records"])
    for spec in world.specs:
        if spec.unlinked:
            continue
        rec = recs[spec.pid]
        assert rec["ppid"] == spec.ppid
        assert rec["name"] == spec.name
        assert rec["create_time_raw"] == spec.create
        assert rec["create_time"] == filetime_to_iso(spec.create)
        assert rec["threads_active"] == len(spec.threads)
        assert rec["threads_listed"] == sum(1 for t in spec.threads if t.in_elist)
        assert rec["session_id"] == spec.session
        assert rec["dtb"] == 0x1AD000 + spec.pid * 0x1000
        assert rec["peb"] == spec.peb
        assert rec["token"] == world.token_va[spec.pid]          # _EX_FAST_REF count masked off
        assert rec["image_path"] == (spec.image_path or None)
        assert rec["wow64"] is spec.wow64
        if spec.wow64:
            assert rec["peb32"] == world.wow64_peb32[spec.pid]
        if spec.exited:
            assert rec["exit_time_raw"] == spec.create + 50000000
            assert rec["exit_time"] == filetime_to_iso(spec.create + 50000000)
            assert rec["exit_status"] == 0
        else:
            assert rec["exit_time"] is None and rec["exit_status"] == 0x103


def test_kinds_and_protection(world: Any) -> None:
    recs = by_pid(run_json(["ps", "--target", world.path])["records"])
    modern = world.table.has_member("_EPROCESS", "Protection")
    assert recs[4]["kind"] == "system"
    assert recs[388]["kind"] == "normal" and recs[388]["kind_flags"] == ["normal"]
    assert "exited" in recs[1300]["kind_flags"]
    if modern:
        assert recs[88]["kind"] == "minimal"
        assert recs[1200]["kind"] == "pico"
        assert recs[700]["kind"] == "protected"
        prot = recs[700]["protection"]
        # 0x41: type 1 (bits 0-2), signer 4 (bits 4-7): the ISF's enums name them
        assert prot == {"type": "ProtectedLight", "signer": "Lsa", "audit": False, "text": "PPL-Lsa"}
    else:           # Windows 7 has no Protection byte, no Minimal bit, no PicoContext
        assert recs[700]["protection"] is None and recs[700]["signature_level"] is None
        assert recs[88]["kind"] == "normal" and recs[1200]["kind"] == "normal"


def test_threads_of_a_process(world: Any) -> None:
    doc = run_json(["threads", "lsass.exe", "--target", world.path])
    recs = {r["tid"]: r for r in doc["records"]}
    assert sorted(recs) == [704, 708]
    lsass = world.process_va[700]
    waiting, running = recs[704], recs[708]
    # On Windows 7 (no _KTHREAD_STATE in its symbols) the names come from a neighbouring build.
    assert waiting["state"] == "Waiting"
    assert running["state"] == "Running"
    assert waiting["wait_reason"] == "WrLpcReceive"
    assert waiting["wait_mode"] == "UserMode" and waiting["alertable"] is True
    assert running["running_on"] == 1 and waiting["running_on"] is None
    for tid, rec in recs.items():
        assert rec["pid"] == 700 and rec["process"] == lsass and rec["address"] == world.thread_va[tid]
        assert rec["stack_limit"] < rec["stack_current"] < rec["stack_init"] <= rec["stack_base"]
        assert rec["start_address"] == 0xFFFFF8047BC25870
        assert rec["win32_start_address"] == 0x00007FF64A3B1000
        assert rec["create_time_raw"] == 132583451020698648
    # (Windows 7 names no thread states: its wait blocks are listed whenever present)
    event_type = world.enum("_KOBJECTS", "EventSynchronizationObject")
    assert len(waiting["wait_objects"]) == 1
    obj = waiting["wait_objects"][0]
    assert obj["address"] == world.event_va[704]
    assert obj["type"] in (event_type, "EventSynchronizationObject")
    assert running["wait_objects"] == []


def test_thread_lists_disagreement_is_noted(world: Any) -> None:
    doc = run_json(["threads", "0n1400", "--target", world.path])
    assert sorted(r["tid"] for r in doc["records"]) == [1404, 1408]
    assert any("thread lists disagree" in n and "1 only on _KPROCESS.ThreadListHead" in n for n in doc["notes"])
    ps = by_pid(run_json(["ps", "app32.exe", "--target", world.path])["records"])
    assert ps[1400]["threads_listed"] == 1 and ps[1400]["threads_active"] == 2


def test_system_threads_flags(world: Any) -> None:
    doc = run_json(["threads", "System", "--target", world.path])
    recs = {r["tid"]: r for r in doc["records"]}
    assert sorted(recs) == [8, 12]
    assert "system" in recs[8]["thread_flags"] and recs[8]["running_on"] == 0
    assert recs[8]["wait_mode"] == "KernelMode"


def test_unlinked_process_shows_in_psxview(world: Any) -> None:
    doc = run_json(["psxview", "--target", world.path])
    recs = by_pid(doc["records"])
    hidden = recs[1500]
    assert hidden["ActiveProcessLinks"] is False and hidden["PspCidTable"] is True
    assert hidden["ThreadOwner"] is True and hidden["SessionList"] is True
    assert hidden["disagree"] is True and hidden["missing_from"] == ["ActiveProcessLinks"]
    assert hidden["address"] == world.process_va[1500]
    assert any("hidden.exe" in n and "not on ActiveProcessLinks" in n for n in doc["notes"])
    gone = recs[1300]
    assert gone["PspCidTable"] is False and gone["disagree"] is False and "exited" in gone["explained"]
    assert recs[4]["ProcessorCurrentThread"] is True and recs[700]["ProcessorCurrentThread"] is True
    assert all(not r["disagree"] for pid, r in recs.items() if pid != 1500)
    assert set(recs) == {p.pid for p in world.specs}
    idle = recs[0]
    assert idle["found_by"] == ["ProcessorCurrentThread"] and idle["name"] == "Idle"
    assert "idle process" in idle["explained"]


def test_pstree_depths(world: Any) -> None:
    recs = run_json(["pstree", "--target", world.path])["records"]
    depth = {r["pid"]: r["depth"] for r in recs}
    assert depth == {4: 0, 88: 1, 388: 1, 700: 2, 1200: 3, 1300: 3, 1400: 3}
    order = [r["pid"] for r in recs]
    assert order.index(388) < order.index(700) < order.index(1200)


def test_eproc_finds_by_name_pid_address_and_hidden(world: Any) -> None:
    lsass = world.process_va[700]
    for spec in ("lsass.exe", "LSASS.EXE", "0n700", "2bc", "0x2bc", "%x" % lsass, "0x%x" % lsass):
        recs = run_json(["eproc", spec, "--target", world.path])["records"]
        assert [r["address"] for r in recs] == [lsass], spec
    hidden = run_json(["eproc", "hidden.exe", "--target", world.path])["records"]
    assert hidden[0]["pid"] == 1500 and "ActiveProcessLinks" not in hidden[0]["found_by"]
    assert "PspCidTable" in hidden[0]["found_by"]


def test_ethread_by_tid_and_address(world: Any) -> None:
    by_tid = run_json(["ethread", "0n1504", "--target", world.path])["records"]
    assert by_tid[0]["address"] == world.thread_va[1504] and by_tid[0]["pid"] == 1500
    by_addr = run_json(["ethread", "%x" % world.thread_va[704], "--target", world.path])["records"]
    assert by_addr[0]["tid"] == 704
