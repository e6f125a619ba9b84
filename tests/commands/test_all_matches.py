"""Issue 12, defect 5: a name shared by several processes shows every match, each under an owner
line naming its process (text) and with the owner in each record (JSON).

Independent expectations: the forge's planted facts for the sample's three svchost.exe processes
(PIDs, `_EPROCESS`, token and job addresses, TEB addresses of their threads); the sample's bytes
are the forge's (`samples/make_samples.py --check`).
"""
from pathlib import Path
from typing import Any, List

import pytest

from planted import run_json, run_text
from pykd_ext.forge.kernel_objects import build_scenario
from pykd_ext.forge.scenario import standard_scenario

SAMPLE = str(Path(__file__).resolve().parents[2] / "samples" / "win10-19041-standard.dmp")


def addr(value: Any) -> int:
    return int(value, 16) if isinstance(value, str) else int(value)


@pytest.fixture(scope="module")
def svchosts() -> List[Any]:
    planted = build_scenario(standard_scenario(), "win10")[1]
    found = [p for p in planted.processes if p["name"] == "svchost.exe"]
    assert len(found) == 3
    return found


def _owner(proc: Any) -> str:
    return "PROCESS %016x  SessionId: %d  Cid: %04x  Image: svchost.exe" % (
        proc["address"], proc["session_id"], proc["pid"])


def test_token_shows_each_token_under_its_owner(svchosts: List[Any]) -> None:
    code, text = run_text(["token", "svchost.exe", "--target", SAMPLE])
    lines = text.splitlines()
    assert code == 0
    for proc in svchosts:
        at = lines.index(_owner(proc))
        assert lines[at + 1] == "_TOKEN 0x%016x" % proc["token"]
    recs = run_json(["token", "svchost.exe", "--target", SAMPLE])["records"]
    assert [(r["pid"], addr(r["process_address"]), addr(r["address"])) for r in recs] == \
        [(p["pid"], p["address"], p["token"]) for p in svchosts]


def test_job_shows_every_process_in_a_job_or_not(svchosts: List[Any]) -> None:
    code, text = run_text(["job", "svchost.exe", "--target", SAMPLE])
    lines = text.splitlines()
    assert code == 0
    for proc in svchosts:
        at = lines.index(_owner(proc))
        expected = "Job at %016x" % proc["job"] if proc["job"] else "  (not in a job)"
        assert lines[at + 1] == expected
    recs = run_json(["job", "svchost.exe", "--target", SAMPLE])["records"]
    assert [(r["pid"], r["in_job"], addr(r["address"]) if r["address"] is not None else 0) for r in recs] == \
        [(p["pid"], bool(p["job"]), p["job"]) for p in svchosts]


def test_teb_by_name_groups_threads_under_their_owner(svchosts: List[Any]) -> None:
    code, text = run_text(["teb", "svchost.exe", "--target", SAMPLE])
    lines = text.splitlines()
    assert code == 0
    owners = [l for l in lines if l.startswith("PROCESS ")]
    assert owners == [_owner(p) for p in svchosts]
    recs = run_json(["teb", "svchost.exe", "--target", SAMPLE])["records"]
    assert [addr(r["address"]) for r in recs] == [t["teb"] for p in svchosts for t in p["threads"]]


def test_eproc_and_peb_show_all_three(svchosts: List[Any]) -> None:
    recs = run_json(["eproc", "svchost.exe", "--target", SAMPLE])["records"]
    assert [addr(r["address"]) for r in recs] == [p["address"] for p in svchosts]
    pebs = run_json(["peb", "svchost.exe", "--target", SAMPLE])["records"]
    assert [(r["pid"], addr(r["address"])) for r in pebs] == [(p["pid"], p["peb"]) for p in svchosts]
