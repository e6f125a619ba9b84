"""Jobs decoded on forged dumps of four builds agree with what the forge planted: limits by name,
members, the ParentJob chain and children (Windows 8+), server silos with container id and the
processes running in them (Windows 10+)."""
from typing import Any

import pytest

from pykd_ext.kernel.job import JOB_LIMIT_FLAGS, Job
from pykd_ext.kernel.privileges import bit_names
from security_world import BUILD_NAMES, world_for


@pytest.fixture(scope="module", params=BUILD_NAMES)
def world(request: Any, tmp_path_factory: Any) -> Any:
    return world_for(request.param, str(tmp_path_factory.getbasetemp()))


def _pid_of(world: Any, address: int) -> int:
    return next(p["pid"] for p in world.planted.processes if p["address"] == address)


@pytest.mark.slow
def test_every_job_matches_what_was_planted(world: Any) -> None:
    jobs = world.security["jobs"]
    assert jobs
    layouts = world.ctx.layouts
    for address, fact in jobs.items():
        rec = Job(world.ctx, address).record()
        assert [m["pid"] for m in rec["members"]] == fact["members"]
        assert rec["limit_flags"] == fact["limit_flags"]
        assert rec["limit_names"] == bit_names(fact["limit_flags"], JOB_LIMIT_FLAGS)
        assert rec["active_process_limit"] == fact["active_limit"]
        if layouts.type("_EJOB").has_field("ParentJob"):
            assert rec["parent_job"] == (fact["parent"] or 0)
            chain = [address] + ([fact["parent"]] if fact["parent"] else [])
            assert rec["chain"] == chain
            assert rec["children"] == fact.get("children", [])
        else:
            assert rec["parent_job"] is None and rec["chain"] == [address]
        if layouts.type("_EJOB").has_field("Silo"):
            assert rec["is_silo"] is fact["silo"]
            assert rec["is_server_silo"] is fact["server_silo"]
            assert rec["container_id"] == fact["container_id"]
        else:
            assert rec["is_silo"] is None
    for address, fact in jobs.items():
        for pid in fact["members"]:
            assert world.process(pid).job == address


@pytest.mark.slow
def test_job_command_text_and_silo_members(world: Any) -> None:
    jobs = world.security["jobs"]
    member_job = next((a, f) for a, f in jobs.items() if f["members"] and not f["silo"])
    pid = member_job[1]["members"][0]
    lines = world.run("job", "0n%d" % pid, fmt="text")
    assert lines[0] == "Job at %016x" % member_job[0]
    values = {l[:27].strip(): l[27:] for l in lines[1:11]}
    assert values["LimitFlags"] == "0x%x" % member_job[1]["limit_flags"]
    assert values["ActiveProcessLimit"] == "0x%x" % member_job[1]["active_limit"]
    assert any(("Cid: %04x" % pid) in l for l in lines)
    silos = [(a, f) for a, f in jobs.items() if f["server_silo"]]
    if world.ctx.layouts.type("_EJOB").has_field("ServerSiloGlobals"):
        assert len(silos) == 1
        address, fact = silos[0]
        doc = world.run("job", "0x%x" % address)
        rec = doc["records"][0]
        assert rec["is_server_silo"] is True and rec["container_id"] == fact["container_id"]
        assert [p["pid"] for p in rec["silo_processes"]] == fact["members"]
    else:
        assert not silos


@pytest.mark.slow
def test_job_summary_in_eproc_v(world: Any) -> None:
    for address, fact in world.security["jobs"].items():
        for pid in fact["members"]:
            lines = world.run("eproc", "0n%d" % pid, "-v", fmt="text")
            summary = [l for l in lines if l.strip().startswith("Job summary:")][0]
            assert ("%016x" % address) in summary
            if fact["server_silo"]:
                assert "server silo %s" % fact["container_id"] in summary
                assert any(l.strip().startswith("Server silo:") for l in lines)
            elif fact["parent"]:
                assert "nested 2 deep (root %016x)" % fact["parent"] in summary
