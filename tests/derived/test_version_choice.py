"""Exact kernel version (kphdyn) of a target, the layout it calls for, and how `info` says it.

Independent sources: the real triage dumps' own driver lists read with `kdmp_parser`-independent
means (the dump's TRIAGE driver entry as our reader parses it is cross-checked against the
kernel's KDBG KernBase), the kphdyn table, and the index of shipped layouts.
"""
import io
import json
from pathlib import Path

import pytest

from pykd_ext.layouts import version_choice as vc
from pykd_ext.layouts.kernel_versions import versions_for_build
from pykd_ext.layouts.registry import shipped_builds
from pykd_ext.targets.base import TargetInfo

TRIAGE = {"win10-19041-x64-triage.dmp": ("10.0.19041.804", 19041),
          "win10-17763-x64-triage.dmp": ("10.0.17763.973", 17763)}


def _entries():
    return {e.build_id: e for e in shipped_builds()}


def _run(*argv: str):
    from pykd_ext.cli import run_command
    out = io.StringIO()
    code = run_command(list(argv), out=out)
    assert code == 0, out.getvalue()[-400:]
    return out.getvalue()


@pytest.mark.parametrize("name", sorted(TRIAGE))
def test_info_names_the_exact_version_of_the_real_triage_dumps(real_dir: Path, name: str) -> None:
    version, build = TRIAGE[name]
    path = str(real_dir / "kernel-triage" / name)
    text = _run("info", "--target", path)
    assert "NT build:                  %d  (%s)" % (build, version) in text
    doc = json.loads(_run("info", "--target", path, "--format", "json"))
    rec = doc["records"][0]
    src = rec["extra"]["kernel_version_source"]
    assert rec["extra"]["kernel_version"] == version
    assert src["method"].startswith("driver list: ntoskrnl.exe")
    # the driver entry used is the one loaded at the KDBG's KernBase
    kernel = [d for d in rec["extra"]["drivers"] if d["base"] == rec["kdbg"]["KernBase"]]
    assert len(kernel) == 1 and kernel[0]["name"].lower() == "ntoskrnl.exe"
    assert (src["timestamp"], src["size_of_image"]) == (kernel[0]["timestamp"], kernel[0]["size"])
    assert src["kphdyn"]["version"] == version


def test_triage_layout_choice_uses_the_exact_version(real_dir: Path) -> None:
    doc = json.loads(_run("ps", "--target", str(real_dir / "kernel-triage" / "win10-19041-x64-triage.dmp"),
                          "--format", "json", "--quiet"))
    choice = doc["meta"]["layout_choice"]
    assert choice["kernel_version"] == "10.0.19041.804"
    assert choice["chosen"] == "10.0.19041.804" and choice["match"] == vc.EXACT
    assert choice["kphdyn_check"]["ok"] and choice["kphdyn_check"]["compared"] >= 10
    doc = json.loads(_run("ps", "--target", str(real_dir / "kernel-triage" / "win10-17763-x64-triage.dmp"),
                          "--format", "json", "--quiet"))
    choice = doc["meta"]["layout_choice"]
    assert choice["kernel_version"] == "10.0.17763.973"
    # no 17763.973 layout is shipped: a nearby revision, and the output says so
    assert "10.0.17763.973" not in _entries()
    assert choice["match"] == vc.NEARBY
    assert any("nearby revision" in w and "10.0.17763.973" in w for w in choice["warnings"])
    assert choice["kphdyn_check"]["ok"]


def test_match_kinds_and_ranking() -> None:
    e = _entries()
    last_22621 = versions_for_build(22621)[-1].revision
    assert vc.match_kind(e["10.0.22621.382"], "10.0.22621.382") == vc.EXACT
    assert vc.match_kind(e["10.0.22621.382"], "10.0.22621.%d" % last_22621) == vc.IN_RANGE
    assert vc.match_kind(e["10.0.22631.2428"], "10.0.22621.2861") == vc.IN_RANGE
    assert vc.match_kind(e["10.0.19041.1288-x86"], "10.0.19041.1300") == vc.NEARBY
    # 23H2 reports build 22631 but runs a 22621.x kernel file: both layouts are candidates,
    # the header's own build first
    cands = vc.candidates_for_version("10.0.22621.2861", "x64", 22631)
    assert [c.build_id for c in cands[:2]] == ["10.0.22631.2428", "10.0.22621.382"]
    ranked = vc.rank_candidates(cands, "10.0.22621.2861")
    assert ranked[0][0].build_id == "10.0.22631.2428" and ranked[0][1] == vc.IN_RANGE
    # 26100 revisions after the fields-set change fall outside the range: "nearby revision"
    rows = versions_for_build(26100)
    rr = e["10.0.26100"].extra["revision_range"]
    outside = [r for r in rows if r.revision > rr["last"]]
    assert outside
    kind, text = vc.describe_choice(e["10.0.26100"], outside[0].version)
    assert kind == vc.NEARBY and "nearby revision" in text and outside[0].version in text
    kind, text = vc.describe_choice(e["10.0.26100"], "10.0.26100.%d" % rr["last"])
    assert kind == vc.IN_RANGE and "covers it" in text
    # JPCERTCC builds: exact where the revision exists
    ranked = vc.rank_candidates([x for x in e.values() if x.build == 19041 and x.arch == "x64"],
                                "10.0.19041.804")
    assert ranked[0][0].build_id == "10.0.19041.804" and ranked[0][1] == vc.EXACT


def test_kernel_version_from_pe_header_and_resource() -> None:
    row = versions_for_build(22621)[5]
    info = TargetInfo(arch="x64", build=22621,
                      extra={"kernel_timestamp": row.timestamp, "kernel_size_of_image": row.size_of_image})
    found = vc.annotate_info(info)
    assert found["version"] == row.version and info.extra["kernel_version"] == row.version
    assert found["method"].startswith("kernel PE header")
    assert vc.annotate_info(info) is found                 # idempotent
    # x86: kphdyn has no x86 kernels; the image's version resource is used when present
    info = TargetInfo(arch="x86", build=7601, extra={"kernel_timestamp": row.timestamp,
                                                     "kernel_size_of_image": row.size_of_image,
                                                     "kernel_file_version": "6.1.7601.17514"})
    assert vc.annotate_info(info)["method"] == "kernel image version resource"
    assert vc.annotate_info(TargetInfo(arch="x86", build=7601)) is None
    # a build number that disagrees with the kernel file is said
    info = TargetInfo(arch="x64", build=19041, extra={"kernel_timestamp": row.timestamp,
                                                      "kernel_size_of_image": row.size_of_image})
    vc.annotate_info(info)
    assert any("build 19041" in n and row.version in n for n in info.notes)
