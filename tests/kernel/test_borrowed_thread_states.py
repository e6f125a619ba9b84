"""Windows 7 x64's symbols have no `_KTHREAD_STATE`: state names come from a neighbouring build.

Independent expectation: the forge plants Windows 7 thread states from the WRK's `ke.h` values
(pykd_ext.forge.kernel_memory), not from any shipped layout, and records each state's name.
"""
import io
import json

import pytest

from pykd_ext.cli import run_command
from pykd_ext.forge.builds import resolve_build
from pykd_ext.forge.kernel_objects import write_scenario_dump
from pykd_ext.forge.scenario import standard_scenario
from pykd_ext.render.renderers import addresses_as_ints  # our JSON writes addresses as "0x..."


@pytest.fixture(scope="module")
def win7_dump(tmp_path_factory):
    path = tmp_path_factory.mktemp("win7") / "win7.dmp"
    planted = write_scenario_dump(str(path), standard_scenario(), resolve_build("win7"))
    return str(path), planted


def test_win7_thread_states_are_named_and_match_what_was_planted(win7_dump):
    path, planted = win7_dump
    out = io.StringIO()
    assert run_command(["threads", "--target", path, "--format", "json", "-q"], out=out) == 0
    doc = addresses_as_ints(json.loads(out.getvalue()))
    ours = {rec["tid"]: rec["state"] for rec in doc["records"]}
    expected = {t["tid"]: t["state_value"] for t in planted.threads()}
    common = set(ours) & set(expected)
    assert len(common) >= 20
    # Compare values: the WRK calls state 8 "GateWait", later symbols "GateWaitObsolete".
    from pykd_ext.layouts.registry import load_layouts
    names = load_layouts("6.3.9600.19913").enum("_KTHREAD_STATE")
    assert {tid: names.value_of(ours[tid]) for tid in common} == {tid: expected[tid] for tid in common}
    assert "Waiting" in ours.values() and "Running" in ours.values()
    assert any("_KTHREAD_STATE" in note and "symbols" in note for note in doc["notes"])


def test_builds_with_the_enum_do_not_borrow(tmp_path):
    from pykd_ext.kernel.context import KernelContext
    from pykd_ext.layouts.registry import load_layouts

    class NoTarget:
        kernel = None

        def info(self):
            from pykd_ext.targets.base import TargetInfo
            return TargetInfo()

    ctx = KernelContext(NoTarget(), load_layouts("10.0.19041.1288"))
    assert ctx.enum_name("_KTHREAD_STATE", 5) == "Waiting"
    assert ctx.notes == []
