"""Inferred layouts where the truth is known: forged dumps of shipped x64 builds.

The forge writes every structure, the KDBG block and the kernel getters' code from the build's
ISF JSON; decoding those dumps with `--layout inferred` must (1) infer only offsets equal to the
ISF's (read here straight from the JSON), (2) give the same `ps` values and thread lists as the
real layout, and (3) recover the wanted fields a dump of this kind can prove. A sample of builds
runs in the quick loop; every shipped x64 build number is swept in the slow test.
"""
from pathlib import Path
from typing import Any, Dict, List, Tuple

import pytest

from isf_offsets import isf_json, isf_value
from pykd_ext.forge.kernel_objects import write_scenario_dump
from pykd_ext.forge.scenario import bulk_scenario
from pykd_ext.kernel.context import context_for
from pykd_ext.kernel.processes import active_processes
from pykd_ext.layouts.registry import shipped_builds
from pykd_ext.session import Session

#: one revision per generation: Windows 7 (no protection), 8.1, 10 1809, 10 2004+, 11 21H2
SAMPLE = ("6.1.7601.24540", "6.3.9600.19913", "10.0.19041.1288", "10.0.22000.318")
#: the record values a forged dump lets inference prove (ObjectTable: only kphdyn states it)
COMPARED = ("address", "pid", "ppid", "name", "dtb", "peb", "job", "exit_status", "wow64", "protection",
            "session_id")
#: what the forged dumps cannot prove: ObjectTable/SectionObject come only from kphdyn, which
#: names real kernel files (a forged image's TimeDateStamp is in no table)
NOT_PROVABLE = {"_EPROCESS.ObjectTable", "_EPROCESS.SectionObject"}


def _decode(path: str, mode: str) -> Tuple[List[Dict[str, Any]], Any]:
    session = Session(target_path=path)
    session.layout_mode = mode
    try:
        ctx = context_for(session)
        procs, _end = active_processes(ctx)
        out = []
        for proc in procs:
            record = proc.record(with_threads=False)
            row = {key: record[key] for key in COMPARED}
            row["threads"] = [(t.address, t.tid, t.pid) for t in proc.threads()]
            out.append(row)
        return out, session.layouts
    finally:
        session.close()


def _forge(tmp_path: Path, version: str) -> str:
    path = str(tmp_path / ("%s.dmp" % version))
    write_scenario_dump(path, bulk_scenario(3, 2, handles_per_process=1), version, overwrite=True)
    return path


def check_build(tmp_path: Path, version: str) -> Any:
    path = _forge(tmp_path, version)
    real, _ = _decode(path, "auto")
    inferred, layouts = _decode(path, "inferred")
    assert layouts.choice["method"] == "inferred"
    isf = isf_json(version)
    proven = [f for f in layouts.provenance() if f["value"] is not None]
    assert not [f for f in layouts.provenance() if f["value"] is None], "sources disagreed"
    for f in proven:
        expected = isf_value(isf, f["type"], f["path"], f["kind"])
        assert f["value"] == expected, (version, f)
    assert len(real) == len(inferred) == 4
    for want, got in zip(real, inferred):
        for key in COMPARED:
            if got[key] is not None:          # None: the inferred layout lacks it (and says so)
                assert got[key] == want[key], (version, want["name"], key)
        assert got["threads"] == want["threads"], (version, want["name"])
    # a getter the build's symbols lack was not forged: only it could have proven its field
    from pykd_ext.layouts.inferred.getters import GETTERS
    unforged = {"%s.%s" % (type_name, path) for name, (type_name, paths, _k, _t) in GETTERS.items()
                if name not in isf["symbols"] for path in paths}
    missing = set(layouts.unknown_wanted())
    assert missing <= NOT_PROVABLE | unforged, (version, missing - NOT_PROVABLE - unforged)
    return layouts


@pytest.mark.parametrize("version", SAMPLE)
def test_inferred_agrees_with_isf_and_real_layout(tmp_path: Path, version: str) -> None:
    layouts = check_build(tmp_path, version)
    sources = {s.split(":")[0] for f in layouts.provenance() for s in f["sources"]}
    assert {"kdbg", "self-consistency", "disasm"} <= sources
    # the getters alone give these (the forged code carries the ISF's displacements)
    by_name = {(f["type"], f["path"]): f["sources"] for f in layouts.provenance()}
    assert "disasm:PsGetProcessPeb" in by_name[("_EPROCESS", "Peb")]
    assert "kdbg:OffsetEprocessPeb" in by_name[("_EPROCESS", "Peb")]
    assert "self-consistency:System" in by_name[("_EPROCESS", "UniqueProcessId")]


def test_inferred_notes_name_what_is_missing(tmp_path: Path) -> None:
    import io
    import json
    from pykd_ext.cli import run_command
    path = _forge(tmp_path, "10.0.19041.1288")
    out = io.StringIO()
    assert run_command(["eproc", "4", "--layout", "inferred", "--target", path, "--format", "json"], out) == 0
    doc = json.loads(out.getvalue())
    record = doc["records"][0]
    assert record["pid"] == 4 and record["name"] == "System" and record["token"] is None
    notes = " | ".join(doc["notes"])
    assert "inferred from the dump itself" in notes
    assert "lacks _EPROCESS.ObjectTable" in notes                 # a wanted field nobody proved
    assert "_EPROCESS.Token.Value" in notes and "were not decoded" in notes   # asked for, lacking


def test_disagreeing_sources_leave_a_field_unknown() -> None:
    from pykd_ext.layouts.inferred.evidence import Inference
    inference = Inference("x64", 8)
    inference.add("_EPROCESS", "Peb", 0x550, "kdbg:OffsetEprocessPeb")
    inference.add("_EPROCESS", "Peb", 0x550, "disasm:PsGetProcessPeb")
    inference.add("_EPROCESS", "Job", 0x510, "disasm:PsGetProcessJob")
    inference.add("_EPROCESS", "Job", 0x518, "kphdyn:EpJob")
    fields = inference.fields()
    assert fields[("_EPROCESS", "Peb", "offset")].value == 0x550
    assert fields[("_EPROCESS", "Peb", "offset")].sources == ["kdbg:OffsetEprocessPeb", "disasm:PsGetProcessPeb"]
    job = fields[("_EPROCESS", "Job", "offset")]
    assert job.value is None and sorted(job.conflict) == [("disasm:PsGetProcessJob", 0x510), ("kphdyn:EpJob", 0x518)]


def _sweep_versions() -> List[str]:
    """One revision of every shipped x64 build number with an ISF, and every 10th revision."""
    entries = [e for e in shipped_builds() if e.arch == "x64" and not e.types_only and e.guid]
    best: Dict[int, Any] = {}
    for entry in entries:
        best.setdefault(entry.build, entry.version)
    chosen = set(best.values()) | {e.version for e in entries[::10]}
    return sorted(chosen, key=lambda v: tuple(int(p) for p in v.split(".")))


@pytest.mark.slow
def test_inferred_sweep_every_x64_build_number(tmp_path: Path) -> None:
    failures = []
    for version in _sweep_versions():
        try:
            check_build(tmp_path, version)
        except AssertionError as err:        # collect, so one run names every failing build
            failures.append("%s: %s" % (version, err))
    assert not failures, failures
