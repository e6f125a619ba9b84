"""The VAD walk (kernel/vad.py) on forged dumps: in address order with WinDbg's levels, and the
notes a torn tree must produce (a cycle, a child not in the dump, the work budget) — never a
hang. Expected values are the forge's planted VADs (`forge.vads`); Volatility's agreement is in
tests/agreement/test_vol_vad.py.
"""
from typing import Any, Tuple

import pytest

from pykd_ext.forge.kernel_objects import Planted
from pykd_ext.kernel.budget import Budget
from pykd_ext.kernel.context import KernelContext
from pykd_ext.kernel.vad import protection_text, walk_vads
from pykd_ext.layouts.registry import load_layouts
from pykd_ext.targets.opener import open_target

from sched_world import SCHED_BUILDS, isf, isf_field, poke, run_text, sched_dump


@pytest.fixture(scope="module", params=SCHED_BUILDS)
def world(request: Any, tmp_path_factory: Any, isf_dir: Any) -> Tuple[str, Planted, str]:
    del isf_dir
    path, planted = sched_dump(tmp_path_factory, request.param)
    return path, planted, request.param


def _walk(path: str, planted: Planted, budget: Any = None) -> Any:
    ctx = KernelContext(open_target(path), load_layouts(planted.layout), budget)
    return walk_vads(ctx, planted.by_name("app.exe")["address"])


def test_vads_in_order_with_levels(world: Tuple[str, Planted, str]) -> None:
    path, planted, build = world
    walk = _walk(path, planted)
    want = planted.by_name("app.exe")["vads"]
    assert [(v["vad"], v["start"], v["end"], v["kind"]) for v in walk.vads] == \
        [(v["vad"], v["start"], v["end"], v["kind"]) for v in want]
    assert [v["level"] for v in walk.vads] == [2, 1, 2, 0, 2, 1]     # the forge's balanced tree of 6
    assert not walk.notes
    # the protection bits the decoder used are the ISF's
    flags = isf(build)["user_types"]["_MMVAD_FLAGS"]["fields"]["Protection"]["type"]
    layout = load_layouts(planted.layout).type("_MMVAD_SHORT").field("u.VadFlags.Protection")
    assert (layout.bit_position, layout.bit_length) == (flags["bit_position"], flags["bit_length"])
    assert isf_field(isf(build), "_MMVAD_SHORT", "StartingVpn")["offset"] == \
        load_layouts(planted.layout).type("_MMVAD_SHORT").offset("StartingVpn")


def test_vad_text(world: Tuple[str, Planted, str]) -> None:
    path, planted, _ = world
    text = run_text("vad", "app.exe", "-t", path)
    assert "Mapped  Exe  EXECUTE_WRITECOPY" in text and "\\Windows\\System32\\ntdll.dll" in text
    assert "Total VADs: 6" in text


def test_protection_names() -> None:
    assert protection_text(0x40 | 0x100) == "PAGE_EXECUTE_READWRITE|PAGE_GUARD"
    assert protection_text(0x01) == "PAGE_NOACCESS"


def _child_loop(machine: Any, planted: Planted) -> str:
    """The root's left child's left child points back at the root."""
    layouts = load_layouts(planted.layout)
    short = layouts.type("_MMVAD_SHORT")
    left = "VadNode.Left" if short.has_field("VadNode.Left") else "LeftChild"
    vads = planted.by_name("app.exe")["vads"]
    poke(machine, vads[0]["vad"] + short.offset(left), vads[2]["vad"], 8)
    return "vad-cycle"


def _child_missing(machine: Any, planted: Planted) -> str:
    layouts = load_layouts(planted.layout)
    short = layouts.type("_MMVAD_SHORT")
    right = "VadNode.Right" if short.has_field("VadNode.Right") else "RightChild"
    vads = planted.by_name("app.exe")["vads"]
    poke(machine, vads[4]["vad"] + short.offset(right), 0xFFFFA0F000000000, 8)   # never mapped
    return "vad-missing"


@pytest.mark.parametrize("tamper", [_child_loop, _child_missing])
def test_torn_vad_trees_are_notes(tamper: Any, tmp_path_factory: Any, isf_dir: Any) -> None:
    del isf_dir
    path, planted = sched_dump(tmp_path_factory, "win10", tamper)
    walk = _walk(path, planted)
    if tamper is _child_loop:
        assert any("cycle" in n for n in walk.notes), walk.notes
    else:
        assert any("not in the dump" in n for n in walk.notes), walk.notes
        assert len(walk.vads) == 6


def test_vad_walk_charges_the_budget(world: Tuple[str, Planted, str]) -> None:
    path, planted, _ = world
    walk = _walk(path, planted, Budget(max_entries=2))
    assert len(walk.vads) < 6


def test_cross_view_with_the_loader_lists(world: Tuple[str, Planted, str]) -> None:
    """The forge planted app.exe's loader lists (app.exe, ntdll.dll, KERNEL32.DLL,
    KERNELBASE.dll) and image VADs for app.exe, ntdll.dll and an unlisted inject.dll."""
    from sched_world import run_json
    path, planted, _ = world
    app = planted.by_name("app.exe")
    doc = run_json("vad", "app.exe", "--cross", "-t", path)
    (cross,) = doc["meta"]["cross_view"]
    modules = {m["base"]: m["name"] for m in app["user"]["modules"]}
    images = [v for v in app["vads"] if v["kind"] == "image"]
    want_unlisted = [v["start"] for v in images if v["start"] not in modules]
    assert [i["start"] for i in cross["image_vads_not_on_loader_lists"]] == want_unlisted == [0x180000000]
    starts = {v["start"] for v in images}
    assert [m["base"] for m in cross["loader_modules_without_image_vad"]] == \
        sorted(b for b in modules if b not in starts)
    assert [e["start"] for e in cross["executable_private"]] == [0x20000]
    by_start = {r["start"]: r for r in doc["records"]}
    assert by_start[app["user"]["image_base"]]["loader_module"] == "app.exe"
    text = run_text("vad", "app.exe", "--cross", "-t", path)
    assert "image view on no loader list: 180000000-180017fff" in text


def test_cross_view_without_user_pages(tmp_path: Any, isf_dir: Any) -> None:
    """A kernel dump holds no user pages: the loader lists cannot be read, so image views are
    not reported as unlisted; executable private memory still is."""
    from pykd_ext.forge.kernel_objects import write_scenario_dump
    from pykd_ext.forge.scenario import scheduling_scenario
    from sched_world import run_json
    del isf_dir
    path = str(tmp_path / "kernel.dmp")
    write_scenario_dump(path, scheduling_scenario(), "win10", kind="kernel")
    doc = run_json("vad", "app.exe", "--cross", "-t", path)
    (cross,) = doc["meta"]["cross_view"]
    assert cross["image_vads_not_on_loader_lists"] is None and cross["modules_compared"] == 0
    assert [e["start"] for e in cross["executable_private"]] == [0x20000]
    assert any("not in dump" in n for n in doc["notes"]), doc["notes"]
