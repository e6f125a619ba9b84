"""The fact tables of the token decoder checked against an independent copy (Volatility 3's
`sids_and_privileges.json`) and the SID text form / reader checked on hand-made SIDs."""
import json
from pathlib import Path
from typing import Dict

import pytest
import volatility3

from pykd_ext.kernel.privileges import (GROUP_ATTRIBUTES, PRIVILEGES, TOKEN_FLAGS, bit_names,
                                        privileges_from_masks)
from pykd_ext.kernel.sids import (WELL_KNOWN_SIDS, SidReader, integrity_level, sid_name,
                                  sid_to_string)
from pykd_ext.memory.faults import Fault

VOL_TABLES = Path(volatility3.__file__).parent / "framework" / "plugins" / "windows" / "sids_and_privileges.json"


@pytest.fixture(scope="module")
def vol_tables() -> Dict:
    with open(str(VOL_TABLES), "r", encoding="utf-8") as handle:
        return json.load(handle)


def test_privilege_names_agree_with_volatility(vol_tables: Dict) -> None:
    theirs = {int(k): v[0] for k, v in vol_tables["privileges"].items()}
    for luid, name in PRIVILEGES.items():
        assert theirs[luid] == name
    assert set(PRIVILEGES) == set(range(2, 37))


def test_well_known_sids_are_known_to_volatility(vol_tables: Dict) -> None:
    """Every SID we name is a SID Volatility's table also names (the spelling differs: we follow
    LookupAccountSid's DOMAIN\\name form)."""
    theirs = vol_tables["well known"]
    common = [sid for sid in WELL_KNOWN_SIDS if sid in theirs]
    assert len(common) >= 40
    for sid in ("S-1-5-18", "S-1-5-32-544", "S-1-16-16384", "S-1-1-0", "S-1-5-11"):
        assert sid in theirs and sid in WELL_KNOWN_SIDS
    # the plain-name part agrees where Volatility spells the same account
    assert theirs["S-1-1-0"] == WELL_KNOWN_SIDS["S-1-1-0"] == "Everyone"
    assert theirs["S-1-5-32-544"].endswith("Administrators")


def test_sid_names_and_integrity() -> None:
    assert sid_name("S-1-5-18") == "NT AUTHORITY\\SYSTEM"
    assert sid_name("S-1-5-5-0-318411") == "NT AUTHORITY\\LogonSessionId_0_318411"
    assert sid_name("S-1-5-21-1-2-3-500") == "(domain or machine)\\Administrator"
    assert sid_name("S-1-5-21-1-2-3-1001") is None
    assert integrity_level("S-1-16-8192") == "Medium"
    assert integrity_level("S-1-16-12345") == "Mandatory Level 0x3039"
    assert integrity_level("S-1-5-18") is None


def test_sid_text_form() -> None:
    assert sid_to_string(1, bytes([0, 0, 0, 0, 0, 5]), [32, 544]) == "S-1-5-32-544"
    # authorities of 2^32 and above are written in hex (MS-DTYP 2.4.2.1)
    assert sid_to_string(1, bytes([0, 1, 0, 0, 0, 0]), [7]) == "S-1-0x000100000000-7"


def test_bit_tables() -> None:
    assert bit_names(0xC0000007, GROUP_ATTRIBUTES) == ["Mandatory", "Default", "Enabled", "LogonId"]
    assert bit_names(0x40000000, GROUP_ATTRIBUTES) == []           # half of LogonId is not LogonId
    assert bit_names(0x2000, TOKEN_FLAGS) == ["NotLow"]
    recs = privileges_from_masks(present=(1 << 23) | (1 << 20), enabled=1 << 23, default=1 << 23)
    assert [(r["name"], r["enabled"]) for r in recs] == [("SeDebugPrivilege", False), ("SeChangeNotifyPrivilege", True)]


class _Mem:
    def __init__(self, blobs: Dict[int, bytes]) -> None:
        self.blobs = blobs

    def read(self, address: int, size: int) -> bytes:
        from pykd_ext.errors import MemoryReadError
        for base, data in self.blobs.items():
            if base <= address and address + size <= base + len(data):
                return data[address - base:address - base + size]
        raise MemoryReadError(Fault("not in dump", address))


def test_sid_reader_rejects_non_sids() -> None:
    from pykd_ext.layouts.registry import load_layouts
    layouts = load_layouts("10.0.19041.1288")
    good = bytes([1, 2, 0, 0, 0, 0, 0, 5]) + (32).to_bytes(4, "little") + (544).to_bytes(4, "little")
    bad_revision = bytes([2, 1, 0, 0, 0, 0, 0, 5, 18, 0, 0, 0])
    too_many = bytes([1, 16, 0, 0, 0, 0, 0, 5]) + bytes(64)
    truncated = bytes([1, 3, 0, 0, 0, 0, 0, 5, 1, 0, 0, 0])
    reader = SidReader(_Mem({0x1000: good, 0x2000: bad_revision, 0x3000: too_many, 0x4000: truncated}), layouts)
    assert reader.read(0x1000) == "S-1-5-32-544"
    for address in (0x2000, 0x3000, 0x4000, 0x5000, 0):
        assert isinstance(reader.read(address), Fault)
