"""Tokens decoded on forged dumps of four builds agree with what the forge planted: user, groups
with attributes, privileges (Present/Enabled/EnabledByDefault), integrity, identity, AppContainer
package and capabilities, the impersonation token of a thread; and the `token` command's text
follows `!token`'s columns."""
from typing import Any

import pytest

from pykd_ext.kernel.privileges import GROUP_ATTRIBUTES, bit_names
from pykd_ext.kernel.token import Token, thread_impersonation
from pykd_ext.kernel.thread import Thread
from security_world import BUILD_NAMES, world_for


@pytest.fixture(scope="module", params=BUILD_NAMES)
def world(request: Any, tmp_path_factory: Any) -> Any:
    return world_for(request.param, str(tmp_path_factory.getbasetemp()))


@pytest.mark.slow
def test_every_token_matches_what_was_planted(world: Any) -> None:
    tokens = world.security["tokens"]
    assert len(tokens) >= 15
    for pid, planted in tokens.items():
        process = world.process(pid)
        assert process.token == planted["address"]
        rec = Token(world.ctx, planted["address"]).record()
        assert rec["user"]["sid"] == planted["user"]
        assert [(g["sid"], g["attributes"]) for g in rec["groups"]] == planted["groups"]
        for group in rec["groups"]:
            assert group["attribute_names"] == bit_names(group["attributes"], GROUP_ATTRIBUTES)
        present = [p["value"] for p in rec["privileges"] if p["present"]]
        enabled = [p["value"] for p in rec["privileges"] if p["enabled"]]
        default = [p["value"] for p in rec["privileges"] if p["enabled_by_default"]]
        assert present == planted["present"]
        assert enabled == planted["enabled"]
        assert default == planted["enabled_by_default"]
        assert rec["integrity_sid"] == planted["integrity"]
        assert rec["session_id"] == planted["session"]
        assert rec["token_id_value"] == planted["token_id"]
        assert rec["source"]["name"] == planted["source"]
        assert rec["flags"] == planted["flags"]
        assert rec["token_type"] == "TokenPrimary"
        assert rec["elevation_type"] == planted["elevation"]
        assert [(r["sid"], r["attributes"]) for r in rec["restricted_sids"]] == planted["restricted"]
        assert rec["restricted_sid_count"] == len(planted["restricted"])
        if planted["package"]:
            assert rec["appcontainer"] is True
            assert rec["package"]["sid"] == planted["package"]
            assert [(c["sid"], c["attributes"]) for c in rec["capabilities"]] == planted["capabilities"]
        else:
            assert not rec["package"]


@pytest.mark.slow
def test_well_known_names_and_integrity_levels(world: Any) -> None:
    system = Token(world.ctx, world.security["tokens"][4]["address"]).record()
    assert system["user"]["name"] == "NT AUTHORITY\\SYSTEM"
    assert system["integrity"] == "System"
    assert {g["sid"]: g["name"] for g in system["groups"]}["S-1-5-32-544"] == "BUILTIN\\Administrators"
    explorer_pid = world.planted.by_name("explorer.exe")["pid"]
    medium = Token(world.ctx, world.security["tokens"][explorer_pid]["address"]).record()
    assert medium["integrity"] == "Medium" and medium["elevation_type"] == "Limited"
    rootkit = Token(world.ctx, world.security["tokens"][world.planted.by_name("rootkit.exe")["pid"]]["address"]).record()
    assert rootkit["integrity"] == "High" and rootkit["elevation_type"] == "Full"
    assert any(p["name"] == "SeDebugPrivilege" and p["enabled"] for p in rootkit["privileges"])
    address = next(t["address"] for t in world.security["tokens"].values() if t["profile"] == "restricted")
    restricted = Token(world.ctx, address).record()
    assert "IsRestricted" in restricted["flag_names"]
    assert [r["name"] for r in restricted["restricted_sids"]] == [
        "NT AUTHORITY\\RESTRICTED", "Everyone", "NT AUTHORITY\\LogonSessionId_0_318411"]


@pytest.mark.slow
def test_impersonating_thread_shows_its_token(world: Any) -> None:
    planted = world.security["impersonation"]
    assert planted, "the standard scenario has an impersonating lsass thread"
    for tid, fact in planted.items():
        info = thread_impersonation(world.ctx, Thread(world.ctx, fact["thread"]))
        assert info["active"] is True
        assert info["token"] == fact["token"]
        assert info["level"] == fact["level"]
        rec = Token(world.ctx, fact["token"]).record()
        assert rec["token_type"] == "TokenImpersonation"
        assert rec["impersonation_level"] == fact["level"]
        lines = world.run("ethread", "0x%x" % fact["thread"], fmt="text")
        # `!thread`'s line (windbg-output.md; issue 12 defect 8)
        assert "Impersonation token:  %016x (Level Impersonation)" % fact["token"] in lines
        doc = world.run("token", "--thread", "0x%x" % fact["thread"])
        assert doc["records"][0]["address"] == fact["token"]


@pytest.mark.slow
def test_token_command_text_has_the_windbg_shape(world: Any) -> None:
    lines = world.run("token", "4", fmt="text")
    planted = world.security["tokens"][4]
    assert lines[0] == "_TOKEN 0x%016x" % planted["address"]
    assert lines[1] == "TS Session ID: 0"
    assert lines[2] == "User: S-1-5-18"
    privs = [line for line in lines if line.startswith(" ") and " 0x0000000" in line]
    assert len(privs) == len(planted["present"])
    for line in privs:
        name_end = line.index("Privilege") + len("Privilege")
        assert line.index("Attributes -") == max(50, name_end + 1)   # column 50; long names push it
    trailer = {line.split(":")[0]: line for line in lines if line[:1].isalpha()}
    assert trailer["Authentication ID"][27:] == "(0,3e7)"
    assert trailer["TokenType"][27:] == "Primary"
    assert trailer["Source"].startswith("Source: *SYSTEM*")
    assert trailer["Source"][27:].startswith("TokenFlags: 0x%x" % planted["flags"])
    assert trailer["Token ID"][27:] == "ParentToken ID: 0"
    doc = world.run("token", "lsass.exe")
    assert doc["records"][0]["pid"] == world.planted.by_name("lsass.exe")["pid"]
    assert doc["meta"]["layout"]["build_id"] == world.planted.layout
