"""Fibers as the TEB proves them (kernel/fibers.py, `teb`, the API) on forged dumps of the
scheduling scenario: app.exe's thread 1020 and wow.exe's thread 2004 were converted to fibers
(the forge set `HasFiberData`, pointed `NtTib.FiberData` at a fiber block and `FlsData` at FLS
storage, on the 64-bit TEB and, for the WoW64 thread, on its 32-bit TEB too); the other threads
carry the OS version in `FiberData`. Expected values are the forge's planted TEB facts; the
`HasFiberData` bit position and `FlsData` offset are checked against the raw ISF JSON.
"""
from typing import Any, Tuple

import pytest

import pykd_ext
from pykd_ext.forge.kernel_objects import Planted
from pykd_ext.kernel.fibers import FIBER_LAYOUT_NOTE
from pykd_ext.layouts.registry import load_layouts

from sched_world import SCHED_BUILDS, isf, isf_field, run_json, run_text, sched_dump


@pytest.fixture(scope="module", params=SCHED_BUILDS)
def world(request: Any, tmp_path_factory: Any, isf_dir: Any) -> Tuple[str, Planted, str]:
    del isf_dir
    path, planted = sched_dump(tmp_path_factory, request.param)
    return path, planted, request.param


def test_fiber_bit_and_fls_offset_are_the_isfs(world: Tuple[str, Planted, str]) -> None:
    _, planted, build = world
    doc = isf(build)
    teb = load_layouts(planted.layout).type("_TEB")
    bit = isf_field(doc, "_TEB", "HasFiberData")
    assert teb.field("HasFiberData").bit_position == bit["type"]["bit_position"]
    assert teb.offset("HasFiberData") == bit["offset"]
    assert teb.offset("FlsData") == isf_field(doc, "_TEB", "FlsData")["offset"]


def test_fiber_thread_64bit(world: Tuple[str, Planted, str]) -> None:
    path, planted, _ = world
    facts = planted.by_name("app.exe")["user"]["tebs"][1020]
    (rec,) = run_json("teb", "0n1020", "-t", path)["records"]
    fiber = rec["fiber"]
    assert facts["has_fiber_data"] is True
    assert fiber["runs_fibers"] is True and rec["has_fiber_data"] is True
    assert fiber["current_fiber"] == rec["fiber_data"] == facts["fiber_data"]
    assert fiber["fls_data"] == rec["fls_data"] == facts["fls_data"]
    assert fiber["fiber_block_layout"] is None and fiber["note"] == FIBER_LAYOUT_NOTE
    text = run_text("teb", "0n1020", "-t", path)
    assert "    CurrentFiber:         %016x" % facts["fiber_data"] in text
    assert "    FlsData:              %016x" % facts["fls_data"] in text
    assert "layout not in public kernel symbols" in text


def test_thread_without_fibers(world: Tuple[str, Planted, str]) -> None:
    path, planted, _ = world
    facts = planted.by_name("app.exe")["user"]["tebs"][1004]
    (rec,) = run_json("teb", "0n1004", "-t", path)["records"]
    assert facts["has_fiber_data"] is False
    assert rec["fiber"]["runs_fibers"] is False and rec["fiber"]["current_fiber"] is None
    assert rec["fiber"]["version_in_fiber_data"] == facts["fiber_data"] == 0x1E00


def test_wow64_fiber_thread(world: Tuple[str, Planted, str]) -> None:
    path, planted, _ = world
    facts = planted.by_name("wow.exe")["user"]["tebs"][2004]
    (rec,) = run_json("teb", "0n2004", "-t", path)["records"]
    assert rec["fiber"]["runs_fibers"] is True and rec["fiber"]["fls_data"] == facts["fls_data"]
    sub, sub_facts = rec["teb32"], facts["teb32"]
    assert sub is not None and sub["address"] == sub_facts["address"]
    assert sub["fiber"]["runs_fibers"] is True
    assert sub["fiber"]["current_fiber"] == sub_facts["fiber_data"]
    assert sub["fls_data"] == sub_facts["fls_data"]
    other = run_json("teb", "0n2008", "-t", path)["records"][0]
    assert other["teb32"]["fiber"]["runs_fibers"] is False


def test_api_thread_teb_and_scheduling(world: Tuple[str, Planted, str]) -> None:
    path, planted, _ = world
    with pykd_ext.open(path) as dump:
        thread = dump.thread(1020)
        teb = thread.teb()
        facts = planted.by_name("app.exe")["user"]["tebs"][1020]
        assert teb["fiber"]["current_fiber"] == facts["fiber_data"]
        assert thread.scheduling()["cycle_time"] == planted.thread(1020)["cycle_time"]
        running = dump.running()
        assert [p["current_thread"] for p in running] == [p["current_thread"] for p in planted.processors]
        ready = dump.ready()
        assert [q["queue_address"] for q in ready] == [q["address"] for q in planted.scheduling["queues"]]


def test_api_process_vads(world: Tuple[str, Planted, str]) -> None:
    path, planted, _ = world
    with pykd_ext.open(path) as dump:
        vads = dump.process("app.exe").vads()
    assert [v["start"] for v in vads] == [v["start"] for v in planted.by_name("app.exe")["vads"]]
