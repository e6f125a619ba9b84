"""Checks shared by the types-only agreement tests (derived x64 builds and x86 builds).

Both forge their kernels with `pykd_ext.forge.typesonly_kernel` and run Volatility 3 on them, so
the token and handle comparisons are the same: each test module calls these with its own run
object (`.forged`, `.vol[plugin]` rows, `.ours(command, *args)` JSON).
"""
from typing import Any


def _sid_text(sid) -> str:
    authority, subs = sid
    return "S-1-%d%s" % (authority, "".join("-%d" % x for x in subs))


def check_token_privileges_and_sids(run: Any) -> None:
    """Privileges agree with Volatility's windows.privileges; SIDs (Volatility's getsids needs
    registry symbols) agree with the plant."""
    f = run.forged
    vol = set()
    for r in run.vol["privileges"]:
        flags = set(filter(None, r["Attributes"].split(",")))
        if "Present" in flags:
            vol.add((r["PID"], r["Value"], r["Privilege"], "Enabled" in flags, "Default" in flags))
    ours = set()
    for p in f.scenario.processes:
        rec = run.ours("token", "0n%d" % p.pid)["records"][0]
        assert rec["address"] == f.tokens[p.pid] and rec["layout"] == f.layouts.build_id
        for priv in rec["privileges"]:
            if priv["present"]:
                ours.add((p.pid, priv["value"], priv["name"], priv["enabled"], priv["enabled_by_default"]))
        # what Volatility's getsids needs a registry for is checked against the plant
        assert rec["user"]["sid"] == _sid_text(p.token.user)
        assert [(g["sid"], g["attributes"]) for g in rec["groups"]] == \
            [(_sid_text(sid), attributes) for sid, attributes in p.token.groups]
        assert rec["session_id"] == p.token.session_id
        assert rec["integrity_sid"] == "S-1-16-16384"
    assert ours == vol and len(ours) >= 5 * len(f.scenario.processes)


def check_handles(run: Any) -> None:
    """Handles agree with Volatility's windows.handles and with the plant."""
    f = run.forged
    mask = (1 << 48) - 1
    vol = sorted((r["PID"], r["HandleValue"], r["Offset"] & mask, r["GrantedAccess"], r["Type"])
                 for r in run.vol["handles"])
    planted = sorted((pid, handle, body & mask, access, type_name)
                     for pid, rows in f.handles.items() for handle, body, type_name, access in rows)
    assert vol == planted and len(planted) == 3 * len(f.scenario.processes)
    ours = []
    for p in f.scenario.processes:
        doc = run.ours("handles", "0n%d" % p.pid)
        for r in doc["records"]:
            # types-only layout: no ObTypeIndexTable/ObHeaderCookie symbols; the table is found
            # by its shape in .data and the Windows 10+ cookie derived from known objects
            ours.append((r["pid"], r["handle"], r["object"] & mask, r["granted_access"], r["type"]))
            assert r["handle_count"] == 1 and r["pointer_count"] == 2
    assert sorted(ours) == planted == vol
