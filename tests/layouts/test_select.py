"""Choosing layouts for a target: by PDB GUID, nearest revision, or fingerprint; clear errors."""
import sys

import pytest

from fakes import KERNBASE, FakeTarget, fake_pe_module, triage_like
from isfdata import REAL_DIR, isf_for, row_for
from pykd_ext.errors import UnknownBuildError
from pykd_ext.layouts.select import choose_for_target, layouts_for_session
from pykd_ext.session import Session
from pykd_ext.targets.base import TargetInfo
from pykd_ext.render.renderers import addresses_as_ints  # our JSON writes addresses as "0x..."


def test_unknown_build_says_how_to_add(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "pykd_ext.targets.pe", fake_pe_module(None, None, None))
    target = FakeTarget(TargetInfo(build=12345, kernel_base=KERNBASE))
    with pytest.raises(UnknownBuildError) as err:
        choose_for_target(target)
    text = err.value.one_line()
    assert "12345" in text and "pykd-ext structs import" in text and "--symbols" in text


def test_unknown_build_option_says_how_to_add() -> None:
    with pytest.raises(UnknownBuildError) as err:
        layouts_for_session(Session(build="10.0.99999.1"))
    assert "structs import" in err.value.one_line()


def test_exact_pdb_guid(monkeypatch) -> None:
    row = row_for("10.0.19041.1288")
    monkeypatch.setitem(sys.modules, "pykd_ext.targets.pe",
                        fake_pe_module(row["pdb_guid"].lower(), int(row["pdb_age"]), None))
    lay = choose_for_target(FakeTarget(TargetInfo(build=19041, kernel_base=KERNBASE)))
    assert lay.version == "10.0.19041.1288" and lay.guid == row["pdb_guid"]
    assert lay.choice["method"] == "pdb-guid" and not lay.choice["warnings"]


def test_unknown_guid_uses_nearest_revision_with_warning(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "pykd_ext.targets.pe",
                        fake_pe_module("00" * 16, 1, "10.0.19041.1300"))
    lay = choose_for_target(FakeTarget(TargetInfo(build=19041, kernel_base=KERNBASE)))
    assert lay.choice["method"] == "nearest-revision"
    assert lay.version == "10.0.19041.1288"         # 1288 is the shipped revision nearest to 1300
    assert any("nearest revision 10.0.19041.1288" in w for w in lay.choice["warnings"])


@pytest.mark.parametrize("version", ["10.0.17763.437", "10.0.19041.1288", "10.0.22000.2538"])
def test_fingerprint_picks_a_layout_matching_the_planted_one(monkeypatch, version: str) -> None:
    monkeypatch.setitem(sys.modules, "pykd_ext.targets.pe", fake_pe_module(None, None, None))
    isf = isf_for(version)
    target = triage_like(isf, int(version.split(".")[2]))
    lay = choose_for_target(target)
    assert lay.choice["method"] == "fingerprint"
    assert version in lay.choice["fits"]
    # the planted globals' RVAs single out the revision they came from
    assert lay.version == version
    assert any("no PDB GUID" in w for w in lay.choice["warnings"])
    failed = [c for c in lay.choice["checks"] if c["ok"] is False]
    assert not failed
    names = {c["check"] for c in lay.choice["checks"] if c["ok"]}
    assert "System: ImageFileName = System" in names
    assert "thread Cid.UniqueProcess = process UniqueProcessId" in names


def test_fingerprint_rejects_wrong_layouts(monkeypatch) -> None:
    # plant 17763.437's layout (SizeEProcess 0x850): the 0x858 revisions must not fit
    monkeypatch.setitem(sys.modules, "pykd_ext.targets.pe", fake_pe_module(None, None, None))
    isf = isf_for("10.0.17763.437")
    lay = choose_for_target(triage_like(isf, 17763))
    by_id = {c["build_id"]: c for c in lay.choice["candidates"]}
    size = isf["user_types"]["_EPROCESS"]["size"]
    late = isf_for("10.0.17763.5933")["user_types"]["_EPROCESS"]["size"]
    assert size != late
    assert not by_id["10.0.17763.5933"]["fits"]
    assert any("SizeEProcess" in f for f in by_id["10.0.17763.5933"]["failed"])


# ------------------------------------------------------------------ the real triage dumps

def _open(name: str):
    from pykd_ext.targets.opener import open_target
    return open_target(str(REAL_DIR / "kernel-triage" / name))


def test_real_triage_19041() -> None:
    target = _open("win10-19041-x64-triage.dmp")
    try:
        lay = choose_for_target(target)
        info = target.info()
    finally:
        target.close()
    assert lay.choice["method"] == "fingerprint" and lay.build == 19041
    assert lay.choice["fits"], lay.choice["candidates"]
    assert lay.build_id in lay.choice["fits"]
    # independent: the chosen build's own ISF places the KDBG's globals at the KDBG's addresses
    isf = isf_for(lay.version)
    kdbg = info.kdbg
    for sym in ("PsActiveProcessHead", "PsLoadedModuleList", "PspCidTable", "KiProcessorBlock"):
        assert kdbg[sym] - kdbg["KernBase"] == isf["symbols"][sym]["address"], sym
    assert kdbg["SizeEProcess"] == isf["user_types"]["_EPROCESS"]["size"]
    ok = {c["check"] for c in lay.choice["checks"] if c["ok"]}
    assert "System: ImageFileName = System" in ok
    assert "System: ActiveProcessLinks.Blink = PsActiveProcessHead" in ok
    assert "PRCB CurrentThread = thread" in ok


def test_real_triage_17763() -> None:
    target = _open("win10-17763-x64-triage.dmp")
    try:
        lay = choose_for_target(target)
        kdbg = target.info().kdbg
    finally:
        target.close()
    assert lay.choice["method"] == "fingerprint" and lay.build == 17763
    fits = lay.choice["fits"]
    assert fits and lay.build_id in fits
    # independent: every fitting candidate's ISF has the KDBG's structure sizes and offsets
    for version in (fits[0], fits[-1]):
        isf = isf_for(version)
        assert isf["user_types"]["_EPROCESS"]["size"] == kdbg["SizeEProcess"]
        assert isf["user_types"]["_ETHREAD"]["size"] == kdbg["SizeEThread"]
        assert isf["user_types"]["_EPROCESS"]["fields"]["Peb"]["offset"] == kdbg["OffsetEprocessPeb"]
    rejected = [c for c in lay.choice["candidates"] if not c["fits"]]
    assert rejected
    for c in (rejected[0], rejected[-1]):
        assert isf_for(c["build_id"])["user_types"]["_EPROCESS"]["size"] != kdbg["SizeEProcess"]
    assert any("chose %s" % lay.build_id in w for w in lay.choice["warnings"])


def test_session_uses_target_choice_and_notes() -> None:
    from pykd_ext.cli import run_command
    import io
    out = io.StringIO()
    rc = run_command(["dt", "_EPROCESS", "--target", str(REAL_DIR / "kernel-triage" / "win10-19041-x64-triage.dmp"),
                      "--format", "json", "-q"], out=out)
    assert rc == 0
    import json
    doc = addresses_as_ints(json.loads(out.getvalue()))
    assert doc["meta"]["layout"]["method"] == "fingerprint"
    assert any("no PDB GUID" in n for n in doc["notes"])


def test_forged_kernel_dump_is_matched_by_pdb_guid(tmp_path) -> None:
    """End to end through the real readers: dump file -> KDBG KernBase -> PE CodeView -> layouts."""
    from pykd_ext.forge.kernel_objects import write_scenario_dump
    from pykd_ext.forge.scenario import standard_scenario
    from pykd_ext.targets.opener import open_target
    path = str(tmp_path / "forged.dmp")
    write_scenario_dump(path, standard_scenario(), "10.0.19041.1288", kind="kernel")
    target = open_target(path)
    try:
        lay = choose_for_target(target)
    finally:
        target.close()
    row = row_for("10.0.19041.1288")
    assert lay.choice["method"] == "pdb-guid"
    assert (lay.guid, lay.age, lay.version) == (row["pdb_guid"], int(row["pdb_age"]), "10.0.19041.1288")
