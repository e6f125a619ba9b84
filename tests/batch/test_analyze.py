"""The crash record and the blame rules, on the real triage dumps and on forged ones.

Independent sources: the published ground truth of the real dumps (shared/real/README.md: the
19041 exception address is amdppm.sys+0x334c; the analyst of the 17763 crash blamed winhvr.sys),
the real dumps' own redundancy (the exception record a parameter points at repeats the code and
the address of the other parameters), Microsoft's bug check reference, and the forge's plan.
"""
from pathlib import Path
from typing import Any, Dict

import pykd_ext as pk
from pykd_ext.batch import bugcodes
from pykd_ext.batch.analyze import analyze_dump
from pykd_ext.targets.dumpheader import EXCEPTION_RECORD64

SEVENTEEN = "kernel-triage/win10-17763-x64-triage.dmp"
NINETEEN = "kernel-triage/win10-19041-x64-triage.dmp"


def test_names_come_from_the_reference() -> None:
    assert bugcodes.name_of(0x1000007E) == "SYSTEM_THREAD_EXCEPTION_NOT_HANDLED_M"
    assert bugcodes.name_of(0xD1) == "DRIVER_IRQL_NOT_LESS_OR_EQUAL"
    assert bugcodes.name_of(0x1C8) == "MANUALLY_INITIATED_POWER_BUTTON_HOLD"
    assert bugcodes.name_of(0xABCDEF) == "BUGCHECK_0xABCDEF"
    meanings = bugcodes.meanings(0x1000007E, [0xC0000005, 0, 0, 0])
    assert meanings[1] == "The address where the exception occurred."


def test_roles_agree_with_the_real_dumps(real_dir: Path) -> None:
    """0x1000007E: the exception record (role of P3) repeats P1 and P2; the context record (P4)
    holds P2 as Rip. So the roles the reference's text gave P1-P4 are the dumps' truth."""
    code = 0x1000007E
    roles = {bugcodes.parameter_with_role(code, r): r for r in
             ("exception_code", "fault_address", "exception_record", "context_record")}
    assert roles == {0: "exception_code", 1: "fault_address", 2: "exception_record",
                     3: "context_record"}
    for name in (NINETEEN, SEVENTEEN):
        with pk.open(str(real_dir / name)) as dump:
            params = dump.info["bugcheck_parameters"]
            raw = dump.session.target.kernel.read(params[2], EXCEPTION_RECORD64.sizeof())
            record = EXCEPTION_RECORD64.parse(bytes(raw))
            assert record.ExceptionCode == params[0] & 0xFFFFFFFF
            assert record.ExceptionAddress == params[1]
            assert dump.struct("_CONTEXT", params[3]).Rip == params[1]


def test_19041_blames_amdppm_at_the_exception_address(real_dir: Path) -> None:
    row = analyze_dump(str(real_dir / NINETEEN))["dump"]
    assert row["bugcheck_name"] == "SYSTEM_THREAD_EXCEPTION_NOT_HANDLED_M"
    assert row["fault_location"] == "amdppm.sys+0x334c"
    assert (row["blamed_module"], row["blamed_offset"]) == ("amdppm.sys", 0x334C)
    assert row["blame_source"] == "parameter 2"
    assert row["bucket"] == "SYSTEM_THREAD_EXCEPTION_NOT_HANDLED_M_amdppm.sys"
    assert row["bucket_detail"] == "SYSTEM_THREAD_EXCEPTION_NOT_HANDLED_M_amdppm.sys+0x334c"
    assert (row["process_name"], row["pid"]) == ("System", 4)
    assert row["param2_meaning"] == "The address where the exception occurred."


def test_17763_blames_winhvr_from_the_stack(real_dir: Path) -> None:
    """The exception address is inside ntoskrnl; the first non-kernel return-address candidate
    above the faulting frame (the header CONTEXT's Rsp) is in winhvr.sys, as the analyst said."""
    record = analyze_dump(str(real_dir / SEVENTEEN))
    row = record["dump"]
    assert row["fault_location"].startswith("ntoskrnl.exe+")
    assert row["blamed_module"] == "winhvr.sys"
    assert row["blame_source"] == "stack scan"
    assert "not an unwind" in row["notes"]
    frames = record["stack_frames"]
    assert frames[0]["source"] == "context" and frames[0]["module"] == "ntoskrnl.exe"
    assert all(f["source"] == "scan" for f in frames[1:])
    first_third_party = [f for f in frames if f["module"] not in ("ntoskrnl.exe", "hal.dll")][0]
    assert first_third_party["module"] == "winhvr.sys"
    assert first_third_party["module_offset"] == row["blamed_offset"]
    with pk.open(str(real_dir / SEVENTEEN)) as dump:
        rsp = dump.session.target.info().extra["context"]["rsp"]
        word = dump.session.target.kernel.read(rsp, 8)
    # the scan starts at the faulting frame: its first slot holds the blamed return address
    assert int.from_bytes(bytes(word), "little") == first_third_party["address"]


def test_forged_crashes_blame_what_was_planted(corpus: Dict[str, Any]) -> None:
    sources = set()
    for facts in corpus["facts"]:
        row = analyze_dump(facts.path)["dump"]
        assert (row["blamed_module"], row["blamed_offset"]) == (facts.expected_blame,
                                                                facts.expected_offset), facts.path
        assert (row["process_name"], row["pid"], row["tid"]) == (facts.process_name, facts.pid,
                                                                 facts.tid)
        name = bugcodes.name_of(facts.bugcheck_code)
        assert row["bucket"] == "%s_%s" % (name, facts.expected_blame)
        assert row["kernel_version"] == facts.version
        source = row["blame_source"]
        sources.add("parameter" if source.startswith("parameter") else source)
        assert source.startswith({"parameter": "parameter", "stack scan": "stack scan",
                                              "kernel": "kernel"}[facts.expected_source])
        if facts.expected_source == "parameter":
            assert row["fault_bytes"] == facts.fault_code.hex()
    assert sources == {"parameter", "stack scan", "kernel"}      # every rule was exercised


def test_unreadable_parts_are_notes_not_crashes(real_dir: Path) -> None:
    """ARM64: no layouts ship for it; inferred ones (issue 15) decode what the dump proves, the
    rest is notes; the record still has the bugcheck, drivers and a bucket."""
    record = analyze_dump(str(real_dir / "kernel-triage/win11-22000-arm64-triage.dmp"))
    row = record["dump"]
    assert row["bugcheck_name"] == "MANUALLY_INITIATED_POWER_BUTTON_HOLD"
    assert row["arch"] == "arm64" and len(record["drivers"]) == 245
    assert row["layout"].startswith("inferred-22000")
    # System at 0xffffbb8eb1690080: the address issue 15 gives for this dump
    assert {"pid": 4, "name": "System", "address": 0xFFFFBB8EB1690080} in [
        {k: p[k] for k in ("pid", "name", "address")} for p in record["processes"]]
    assert "not decoded" in row["notes"]
    assert row["bucket"].startswith("MANUALLY_INITIATED_POWER_BUTTON_HOLD_")
