"""Inferred layouts on real Windows triage dumps.

x64: no ISF exists for the dumps' exact kernels (10.0.19041.804, 10.0.17763.973), but these
members sit at the same offsets in every revision of a build: each inferred offset must equal the
ISF JSON's in the lowest and the highest revision of the build shipped in ../shared/isf (and
those two must agree, or the comparison would prove nothing). ARM64: no layout exists at all;
`eproc` must fall back to inferred layouts by itself and decode the System process the issue
names (0xffffbb8eb1690080), with the header's DTB and PID 4.
"""
import io
import json
from pathlib import Path

import pytest

from isf_offsets import isf_json, isf_value, revisions_of
from pykd_ext.cli import run_command
from pykd_ext.layouts.inferred import infer_layouts
from pykd_ext.targets.opener import open_target


@pytest.mark.parametrize("name,build", [("win10-19041-x64-triage.dmp", 19041),
                                        ("win10-17763-x64-triage.dmp", 17763)])
def test_real_x64_inferred_offsets_equal_the_isf(real_dir: Path, name: str, build: int) -> None:
    target = open_target(str(real_dir / "kernel-triage" / name))
    try:
        layouts = infer_layouts(target)
    finally:
        target.close()
    revisions = revisions_of(build)
    isfs = [isf_json(revisions[0]), isf_json(revisions[-1])]
    compared = 0
    families = set()
    for f in layouts.provenance():
        assert f["value"] is not None, f
        expected = {isf_value(isf, f["type"], f["path"], f["kind"]) for isf in isfs}
        if expected == {None} or len(expected) != 1:
            continue                   # a type the ISF lacks, or one that moved between revisions
        assert f["value"] == expected.pop(), f
        compared += 1
        families.update(s.split(":")[0] for s in f["sources"])
    assert compared >= 50
    assert {"kdbg", "kphdyn", "self-consistency"} <= families
    placed = set(layouts.placed)
    for name_ in ("_EPROCESS.UniqueProcessId", "_EPROCESS.ImageFileName", "_EPROCESS.ActiveProcessLinks",
                  "_EPROCESS.ObjectTable", "_ETHREAD.Tcb.Process", "_ETHREAD.Cid.UniqueProcess"):
        assert name_ in placed


def test_arm64_eproc_decodes_system_with_inferred_layouts(real_dir: Path) -> None:
    path = str(real_dir / "kernel-triage" / "win11-22000-arm64-triage.dmp")
    target = open_target(path)
    try:
        dtb = target.info().directory_table_base
    finally:
        target.close()
    out = io.StringIO()
    assert run_command(["eproc", "--target", path, "--format", "json"], out) == 0
    doc = json.loads(out.getvalue())
    system = [r for r in doc["records"] if int(r["address"], 16) == 0xffffbb8eb1690080]
    assert len(system) == 1
    assert system[0]["pid"] == 4 and system[0]["name"] == "System" and int(system[0]["dtb"], 16) == dtb
    assert system[0]["layout"].startswith("inferred-")
    assert doc["meta"]["layout_choice"]["method"] == "inferred"
    assert "no kernel layouts for Windows build 22000 (arm64)" in doc["meta"]["layout_choice"]["reason"]
    assert any("inferred from the dump itself" in n for n in doc["notes"])
    assert any("lacks" in n and "_EPROCESS.ObjectTable" in n for n in doc["notes"])
