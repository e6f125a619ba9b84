"""Tokens, handles and jobs: our `token`, `handles` and `job` commands agree with Volatility 3's
`windows.getsids`, `windows.privileges`, `windows.handles` and `windows.joblinks` on the forged
dumps of the four tested builds, field by field where both report it (and with what the forge
planted, so neither reader can be wrong in the same way unnoticed).

Volatility runs in-process (`volrun.VolatilityRun`), once per build, on the dumps the agreement
conftest writes (the standard scenario, which includes `forge.security_objects`).
"""
from typing import Any, Dict, List

import pytest

from volrun import VolatilityRun

from pykd_ext.kernel.handles import LEGACY_ACCESS_MASK, LEGACY_PROTECT_CLOSE_BIT
from pykd_ext.layouts.registry import load_layouts

SECURITY_PLUGINS = {"getsids": "windows.getsids.GetSIDs", "privileges": "windows.privileges.Privs",
                    "joblinks": "windows.joblinks.JobLinks"}
_VOL: Dict[str, Dict[str, List[Dict[str, Any]]]] = {}
VA48 = (1 << 48) - 1


def _handle_pids(forged: Any) -> List[int]:
    planted = forged.planted
    # explorer: the typed, named objects in a 3-level table; csrss: handles to other processes
    return [planted.by_name("explorer.exe")["pid"], planted.by_name("csrss.exe")["pid"]]


def vol(forged: Any, isf_dir: Any) -> Dict[str, List[Dict[str, Any]]]:
    if forged.name not in _VOL:
        run = VolatilityRun(forged.path, str(isf_dir))
        rows = {key: run.rows(plugin) for key, plugin in SECURITY_PLUGINS.items()}
        rows["handles"] = run.rows("windows.handles.Handles", pid=_handle_pids(forged))
        _VOL[forged.name] = rows
    return _VOL[forged.name]


def _linked_pids(forged: Any) -> List[int]:
    return [p["pid"] for p in forged.planted.linked()]


@pytest.mark.slow
def test_getsids_agrees_with_token(forged: Any, isf_dir: Any) -> None:
    rows = vol(forged, isf_dir)["getsids"]
    theirs: Dict[int, List[str]] = {}
    for row in rows:
        theirs.setdefault(row["PID"], []).append(row["SID"])
    tokens = forged.planted.security["tokens"]
    checked = 0
    for pid in _linked_pids(forged):
        if pid not in tokens:
            continue
        rec = forged.ours("token", "0n%d" % pid)["records"][0]
        ours = [rec["user"]["sid"]] + [g["sid"] for g in rec["groups"]]
        assert theirs[pid] == ours, pid
        planted = tokens[pid]
        assert ours == [planted["user"]] + [s for s, _a in planted["groups"]]
        checked += 1
    assert checked >= 15


@pytest.mark.slow
def test_privileges_agree_with_token(forged: Any, isf_dir: Any) -> None:
    rows = vol(forged, isf_dir)["privileges"]
    theirs: Dict[int, Dict[int, Any]] = {}
    for row in rows:
        if row["Attributes"]:
            theirs.setdefault(row["PID"], {})[row["Value"]] = (row["Privilege"], set(row["Attributes"].split(",")))
    for pid in _linked_pids(forged):
        if pid not in forged.planted.security["tokens"]:
            continue
        rec = forged.ours("token", "0n%d" % pid)["records"][0]
        ours = {p["value"]: (p["name"], {n for n, k in (("Present", "present"), ("Enabled", "enabled"),
                                                        ("Default", "enabled_by_default")) if p[k]})
                for p in rec["privileges"]}
        assert theirs.get(pid, {}) == ours, pid


@pytest.mark.slow
def test_handles_agree(forged: Any, isf_dir: Any) -> None:
    rows = vol(forged, isf_dir)["handles"]
    entry = load_layouts(forged.planted.layout).type("_HANDLE_TABLE_ENTRY")
    legacy = not entry.has_field("ObjectPointerBits")        # the pre-Windows 8 entry format
    keys = forged.planted.security["keys"]
    key_names = 0
    for pid in _handle_pids(forged):
        theirs = {r["HandleValue"]: r for r in rows if r["PID"] == pid}
        ours = {r["handle"]: r for r in forged.ours("handles", "0n%d" % pid)["records"]}
        assert set(theirs) == set(ours), pid
        assert len(ours) == forged.planted.process(pid)["handle_count"]
        for handle, mine in ours.items():
            other = theirs[handle]
            # Volatility does not sign-extend Windows 8+ ObjectPointerBits: compare 48-bit VAs
            assert other["Offset"] & VA48 == mine["object"] & VA48, (pid, handle)
            assert mine["object"] >> 47 == 0x1FFFF               # ours: a canonical kernel VA
            assert other["Type"] == mine["type"], (pid, handle)
            if legacy:
                # Windows 7: Volatility shows the raw GrantedAccess, whose bit 25 is protect-from-
                # close (ObpAccessProtectCloseBit); we split it into the mask and "Protected"
                assert other["GrantedAccess"] & LEGACY_ACCESS_MASK == mine["granted_access"], (pid, handle)
                assert bool(other["GrantedAccess"] & LEGACY_PROTECT_CLOSE_BIT) == \
                    ("Protected" in mine["attributes"]), (pid, handle)
            else:
                assert other["GrantedAccess"] == mine["granted_access"], (pid, handle)
            name = other["Name"]
            if mine["type"] == "Process":
                assert name == "%s Pid %d" % (mine["details"]["image"], mine["details"]["pid"])
            elif mine["type"] == "Thread":
                assert name == "Tid %d Pid %d" % (mine["details"]["tid"], mine["details"]["pid"])
            elif mine["type"] == "File":
                assert name == mine["name"]
            elif mine["type"] == "Key":
                # Volatility joins the KCB names below the root KCB ("MACHINE\\SOFTWARE\\...");
                # WinDbg and we show the root too ("\\REGISTRY\\MACHINE\\SOFTWARE\\...")
                assert "\\REGISTRY\\" + name == mine["name"], (pid, handle)
                assert mine["name"] == keys[mine["object"]], (pid, handle)
                key_names += 1
            elif name:
                # Volatility prints the object's own name; ours adds its directory chain
                assert mine["name"].endswith("\\" + name), (pid, handle)
    assert key_names == len(keys) == 4
    typed = {r["Type"] for r in rows}
    assert {"File", "Section", "Event", "Mutant", "Directory", "Process", "Thread", "Token", "Key"} <= typed


@pytest.mark.slow
def test_joblinks_agree_with_job(forged: Any, isf_dir: Any) -> None:
    rows = vol(forged, isf_dir)["joblinks"]
    originals = [r for r in rows if r["_depth"] == 0]
    jobs = forged.planted.security["jobs"]
    member_pids = {pid for fact in jobs.values() for pid in fact["members"]}
    linked = set(_linked_pids(forged))
    assert {r["PID"] for r in originals} == member_pids & linked
    for row in originals:
        rec = forged.ours("job", "0n%d" % row["PID"])["records"][0]
        assert row["Total"] == rec["total_processes"]
        assert row["Active"] == rec["active_processes"]
        assert row["Term"] == rec["total_terminated_processes"]
        assert row["JobSess"] == rec["session_id"]
        members = [r for r in rows if r["_depth"] == 1]
        assert row["PID"] in {m["pid"] for m in rec["members"]}
        assert {m["PID"] for m in members} >= {m["pid"] for m in rec["members"]}
