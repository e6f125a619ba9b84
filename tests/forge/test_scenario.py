"""The scenario forge plants what it reports, checked with readers that share none of its code.

Independent sources: kdmp-parser (its own dump parser and page walker) reads the written dumps,
and structure offsets, bit positions and enum values come straight from the ISF JSON files (a
small resolver in `independent.py`), not from `pykd_ext.layouts` or the forge's `BuildFacts`.
Expected values are the scenario's own inputs (what the test asked to plant).
"""
import hashlib
import json
from pathlib import Path
from typing import Any, Dict, Iterator, List

import pytest

from independent import PAGE, DumpReader, Isf
from pykd_ext.forge.builds import BUILDS, resolve_build
from pykd_ext.forge.kernel_objects import build_scenario, write_scenario_dump
from pykd_ext.forge.scenario import (ProcessSpec, ScenarioSpec, ThreadSpec, load_scenario,
                                     scenario_from_dict, scenario_to_dict, standard_scenario)

MASK64 = (1 << 64) - 1


def walk(reader: DumpReader, head: int, limit: int = 10000) -> Iterator[int]:
    entry = reader.u64(head)
    for _ in range(limit):
        if entry == head:
            return
        yield entry
        entry = reader.u64(entry)
    raise AssertionError("list at 0x%x does not close" % head)


@pytest.fixture(scope="module", params=sorted(BUILDS))
def forged(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
           isf_dir: Path) -> Dict[str, Any]:
    choice = resolve_build(request.param)
    path = str(tmp_path_factory.mktemp("scenario") / ("%s.dmp" % request.param))
    spec = standard_scenario()
    planted = write_scenario_dump(path, spec, choice)
    isf = Isf(choice.table(str(isf_dir)).path)
    return {"spec": spec, "planted": planted, "reader": DumpReader(path), "isf": isf,
            "name": request.param, "path": path}


def test_active_process_list_holds_the_linked_processes(forged: Dict[str, Any]) -> None:
    reader, isf, planted, spec = (forged["reader"], forged["isf"], forged["planted"],
                                  forged["spec"])
    head = planted.kernel_base + isf.rva("PsActiveProcessHead")
    links = isf.off("_EPROCESS", "ActiveProcessLinks")
    seen = []
    for entry in walk(reader, head):
        ep = entry - links
        name = reader.read(ep + isf.off("_EPROCESS", "ImageFileName"), 15).split(b"\0")[0]
        seen.append((reader.u64(ep + isf.off("_EPROCESS", "UniqueProcessId")),
                     reader.u64(ep + isf.off("_EPROCESS", "InheritedFromUniqueProcessId")),
                     name.decode(), reader.u64(ep + isf.off("_EPROCESS", "CreateTime")),
                     reader.u64(ep + isf.off("_EPROCESS", "ExitTime"))))
    expected = [(p.pid, p.ppid, p.name[:15], p.create_time, p.exit_time)
                for p in spec.processes if not p.unlinked]
    assert seen == expected
    hidden = [p for p in spec.processes if p.unlinked]
    assert hidden, "the standard scenario has a DKOM-hidden process"
    for proc in hidden:
        ep = planted.process(proc.pid)["address"]
        assert reader.u64(ep + links) == ep + links          # unlinked: points at itself


def test_cid_table_holds_every_process_and_thread(forged: Dict[str, Any]) -> None:
    reader, isf, planted = forged["reader"], forged["isf"], forged["planted"]
    table = reader.u64(planted.kernel_base + isf.rva("PspCidTable"))
    code = reader.u64(table + isf.off("_HANDLE_TABLE", "TableCode"))
    entry_size = isf.types["_HANDLE_TABLE_ENTRY"]["size"]
    per_page = PAGE // entry_size
    fields = isf.types["_HANDLE_TABLE_ENTRY"]["fields"]

    def lookup(cid: int) -> int:
        index = cid // 4
        if code & 3 == 0:
            assert index < per_page
            leaf = code
        else:
            assert code & 3 == 1
            leaf = reader.u64((code & ~3) + 8 * (index // per_page))
        raw = reader.u64(leaf + (index % per_page) * entry_size)
        if "ObjectPointerBits" in fields:
            bits = fields["ObjectPointerBits"]["type"]
            pointer = (raw >> bits["bit_position"]) & ((1 << bits["bit_length"]) - 1)
            return (pointer << 4) | 0xFFFF000000000000
        return raw & ~7

    for proc in planted.processes:
        assert lookup(proc["pid"]) == proc["address"], proc["name"]
        for thread in proc["threads"]:
            assert lookup(thread["tid"]) == thread["address"], thread["tid"]


def test_thread_lists_states_and_processors(forged: Dict[str, Any]) -> None:
    reader, isf, planted, spec = (forged["reader"], forged["isf"], forged["planted"],
                                  forged["spec"])
    states = isf.enums.get("_KTHREAD_STATE", {}).get("constants")
    reasons = isf.enums["_KWAIT_REASON"]["constants"]
    for proc_spec in spec.processes:
        proc = planted.process(proc_spec.pid)
        ep = proc["address"]
        for list_head, link in (("ThreadListHead", "ThreadListEntry"),
                                ("Pcb.ThreadListHead", "Tcb.ThreadListEntry")):
            found = [e - isf.off("_ETHREAD", link)
                     for e in walk(reader, ep + isf.off("_EPROCESS", list_head))]
            assert found == [t["address"] for t in proc["threads"]], (proc_spec.name, list_head)
        expected_tids = [t.tid for t in proc_spec.threads] if not proc_spec.exited else []
        planted_tids = [t["tid"] for t in proc["threads"]]
        assert set(planted_tids) <= set(expected_tids)
        for thread in proc["threads"]:
            et = thread["address"]
            assert reader.u64(et + isf.off("_ETHREAD", "Cid.UniqueThread")) == thread["tid"]
            assert reader.u64(et + isf.off("_ETHREAD", "Cid.UniqueProcess")) == proc["pid"]
            assert reader.u64(et + isf.off("_ETHREAD", "Tcb.Process")) == ep
            state = reader.u8(et + isf.off("_ETHREAD", "Tcb.State"))
            if states is not None:                     # Windows 7's PDB has no such enum
                assert state == states[thread["state"]]
            assert reader.u8(et + isf.off("_ETHREAD", "Tcb.WaitReason")) == \
                reasons[thread["wait_reason"]]
            assert reader.u64(et + isf.off("_ETHREAD", "StartAddress")) == \
                thread["start_address"]
    every_state = {t["state"] for t in planted.threads()}
    if states is not None:
        wanted = {n for n in states if not n.endswith("Max")}
        assert wanted <= every_state, wanted - every_state
    block = planted.kernel_base + isf.rva("KiProcessorBlock")
    running = {t.running_on: t.tid for p in spec.processes for t in p.threads
               if t.running_on is not None}
    for cpu in range(spec.processors):
        prcb = reader.u64(block + 8 * cpu)
        assert reader.u32(prcb + isf.off("_KPRCB", "Number")) == cpu
        current = reader.u64(prcb + isf.off("_KPRCB", "CurrentThread"))
        assert current == planted.thread(running[cpu])["address"]


def test_object_headers_decode_to_their_types(forged: Dict[str, Any]) -> None:
    """TypeIndex (XOR ObHeaderCookie and the header address on Windows 10+) names the type."""
    reader, isf, planted = forged["reader"], forged["isf"], forged["planted"]
    body = isf.off("_OBJECT_HEADER", "Body")
    table = planted.kernel_base + isf.rva("ObTypeIndexTable")
    cookie = None
    if "ObHeaderCookie" in isf.symbols:
        cookie = reader.u8(planted.kernel_base + isf.rva("ObHeaderCookie"))

    def type_name(obj: int) -> str:
        header = obj - body
        index = reader.u8(header + isf.off("_OBJECT_HEADER", "TypeIndex"))
        if cookie is not None:
            index = (index ^ cookie ^ (header >> 8)) & 0xFF
        object_type = reader.u64(table + 8 * index)
        name = object_type + isf.off("_OBJECT_TYPE", "Name")
        length = int.from_bytes(reader.read(name, 2), "little")
        return reader.read(reader.u64(name + isf.off("_UNICODE_STRING", "Buffer")),
                           length).decode("utf-16-le")

    for proc in planted.processes:
        assert type_name(proc["address"]) == "Process"
        assert type_name(proc["token"]) == "Token"
        for thread in proc["threads"]:
            assert type_name(thread["address"]) == "Thread"


def test_process_details_as_planted(forged: Dict[str, Any]) -> None:
    reader, isf, planted, spec = (forged["reader"], forged["isf"], forged["planted"],
                                  forged["spec"])
    name_info = isf.off("_OBJECT_NAME_INFORMATION", "Name")
    for proc_spec in spec.processes:
        proc = planted.process(proc_spec.pid)
        ep = proc["address"]
        audit = reader.u64(ep + isf.off("_EPROCESS", "SeAuditProcessCreationInfo.ImageFileName"))
        if proc_spec.image_path is None:
            assert audit == 0
        else:
            length = int.from_bytes(reader.read(audit + name_info, 2), "little")
            buffer = reader.u64(audit + name_info + isf.off("_UNICODE_STRING", "Buffer"))
            assert reader.read(buffer, length).decode("utf-16-le") == proc_spec.image_path
        token = reader.u64(ep + isf.off("_EPROCESS", "Token")) & ~0xF
        assert token == proc["token"]
        dtb = reader.u64(ep + isf.off("_EPROCESS", "Pcb.DirectoryTableBase"))
        assert dtb == proc["dtb"]
        if proc["peb"]:
            # the PEB is mapped in the process' own address space and names its parameters
            params = int.from_bytes(
                reader.read(proc["peb"] + isf.off("_PEB", "ProcessParameters"), 8, dtb),
                "little")
            cmd = params + isf.off("_RTL_USER_PROCESS_PARAMETERS", "CommandLine")
            length = int.from_bytes(reader.read(cmd, 2, dtb), "little")
            buffer = int.from_bytes(reader.read(cmd + 8, 8, dtb), "little")
            assert reader.read(buffer, length, dtb).decode("utf-16-le") == proc_spec.command_line
        if "Protection" in isf.types["_EPROCESS"]["fields"] and proc["protection"]:
            level = reader.u8(ep + isf.off("_EPROCESS", "Protection"))
            assert level == proc["protection"]["level"]


def test_same_scenario_same_bytes(tmp_path: Path) -> None:
    spec = standard_scenario()
    digests = []
    for n in range(2):
        path = str(tmp_path / ("again%d.dmp" % n))
        write_scenario_dump(path, spec, "win10")
        with open(path, "rb") as handle:
            digests.append(hashlib.sha256(handle.read()).hexdigest())
    assert digests[0] == digests[1]


def test_kernel_dump_leaves_user_pages_out(tmp_path: Path) -> None:
    spec = standard_scenario()
    path = str(tmp_path / "kernel.dmp")
    planted = write_scenario_dump(path, spec, "win10", kind="kernel")
    reader = DumpReader(path)
    lsass = planted.by_name("lsass.exe")
    assert reader.dump.read_virtual_page(lsass["peb"], lsass["dtb"]) is None
    assert reader.dump.read_virtual_page(lsass["address"] & ~(PAGE - 1)) is not None


def test_scenarios_round_trip_through_json_and_yaml(tmp_path: Path) -> None:
    import yaml
    spec = standard_scenario(many_threads=5)
    data = scenario_to_dict(spec)
    assert scenario_from_dict(json.loads(json.dumps(data))) == spec
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    assert load_scenario(str(path)) == spec
    with pytest.raises(ValueError):
        scenario_from_dict(dict(data, colour="blue"))


@pytest.mark.parametrize("bad", [
    [ProcessSpec("a.exe", 8, 4), ProcessSpec("b.exe", 8, 4)],                 # duplicate PID
    [ProcessSpec("a.exe", 1024, 4)],                                          # reserved value
    [ProcessSpec("a.exe", 8, 4, threads=[ThreadSpec(tid=8)])],                # PID == TID
    [ProcessSpec("a.exe", 8, 4, threads=[ThreadSpec(tid=12, wait_objects=["QueueObject"] * 5)])],
    [ProcessSpec("a.exe", 8, 4, threads=[ThreadSpec(tid=12, running_on=9)])],
])
def test_invalid_scenarios_are_refused(bad: List[ProcessSpec]) -> None:
    with pytest.raises(ValueError):
        build_scenario(ScenarioSpec(name="bad", processes=bad), "win10")


@pytest.mark.parametrize("build", ["win7", "win11"])
def test_example_yaml_becomes_a_dump(tmp_path: Path, isf_dir: Path, build: str) -> None:
    from pykd_ext.forge.make_dump import main
    example = Path(__file__).resolve().parents[2] / "samples" / "scenario-example.yaml"
    out, facts = tmp_path / "example.dmp", tmp_path / "facts.json"
    assert main([str(example), str(out), "--build", build, "--facts", str(facts)]) == 0
    planted = json.loads(facts.read_text(encoding="utf-8"))
    reader = DumpReader(str(out))
    isf = Isf(resolve_build(build).table(str(isf_dir)).path)
    head = planted["kernel_base"] + isf.rva("PsActiveProcessHead")
    links = isf.off("_EPROCESS", "ActiveProcessLinks")
    pids = [reader.u64(e - links + isf.off("_EPROCESS", "UniqueProcessId"))
            for e in walk(reader, head)]
    assert pids == [4, 636]                                   # hidden.exe is unlinked
    assert [p["pid"] for p in planted["processes"]] == [4, 636, 700]
    assert main([str(example), str(out), "--build", build]) == 2      # exists: refused


def test_make_dump_reports_bad_scenarios(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from pykd_ext.forge.make_dump import main
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"name": "x", "processes": [{"name": "a", "pid": 6, "ppid": 0}]}),
                   encoding="utf-8")
    assert main([str(bad), str(tmp_path / "x.dmp")]) == 2
    assert "client id 6" in capsys.readouterr().err


#: Record keys of issue 4's `ps`/`threads` JSON that the planted facts carry under the same name.
PROCESS_KEYS = ("address", "pid", "ppid", "name", "image_path", "session_id", "create_time_raw",
                "exit_time_raw", "exit_status", "threads_active", "threads_listed",
                "handle_count", "dtb", "user_dtb", "peb", "wow64", "peb32", "token", "job",
                "protection", "signature_level", "section_signature_level", "kind", "kind_flags")
THREAD_KEYS = ("address", "tid", "pid", "process", "state", "wait_reason", "wait_mode",
               "alertable", "wait_objects", "priority", "base_priority", "io_priority",
               "page_priority", "ideal_processor", "affinity", "context_switches",
               "kernel_time", "user_time", "wait_start_tick", "teb", "start_address",
               "win32_start_address", "stack_init", "stack_base", "stack_limit",
               "stack_current", "create_time_raw", "thread_flags", "running_on",
               "impersonating")


def test_planted_records_use_the_json_record_keys(forged: Dict[str, Any]) -> None:
    planted = forged["planted"]
    kinds = ("system", "secure", "pico", "minimal", "protected", "exited", "frozen", "normal")
    for proc in planted.processes:
        assert set(PROCESS_KEYS) <= set(proc), set(PROCESS_KEYS) - set(proc)
        assert proc["kind"] == proc["kind_flags"][0]
        assert [k for k in kinds if k in proc["kind_flags"]] == proc["kind_flags"]
        for thread in proc["threads"]:
            assert set(THREAD_KEYS) <= set(thread), set(THREAD_KEYS) - set(thread)
    # what each build can express is planted, the rest is noted
    flags = {f for p in planted.processes for f in p["kind_flags"]}
    if forged["name"] == "win7":
        assert flags == {"system", "exited", "normal"}
        assert any("_PS_PROTECTION" in note for note in planted.notes)
    else:
        assert {"system", "pico", "minimal", "protected", "exited", "frozen"} <= flags
        assert ("secure" in flags) == (forged["name"] in ("win10", "win11"))
