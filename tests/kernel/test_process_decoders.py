"""Small decoders: protection names, process kinds, FILETIME text, fallbacks checked against the ISF."""
import datetime
import json
import lzma
import random
from pathlib import Path
from typing import Any, Dict, List

import pytest

from pykd_ext.kernel.context import _MODE_FALLBACK
from pykd_ext.kernel.kinds import kind_flags, primary_kind
from pykd_ext.kernel.protection import decode_protection
from pykd_ext.kernel.times import duration_100ns, filetime_to_iso, filetime_to_windbg, ticks_text
from pykd_ext.layouts.registry import find_by_guid, load_layouts
from pykd_ext.memory.faults import Fault


def isf_documents(isf_dir: Path) -> List[Dict[str, Any]]:
    """One ISF per kernel build number (INDEX.tsv), read straight from the JSON."""
    chosen: Dict[str, str] = {}
    for line in (isf_dir / "INDEX.tsv").read_text().splitlines()[1:]:
        cols = line.split("\t")
        chosen.setdefault(".".join(cols[0].split(".")[:3]), cols[4])
    docs = []
    for name in sorted(chosen.values()):
        with lzma.open(str(isf_dir / "windows" / "ntkrnlmp.pdb" / name), "rb") as handle:
            docs.append(json.load(handle))
    return docs


@pytest.fixture(scope="module")
def isf_docs(isf_dir: Path) -> List[Dict[str, Any]]:
    docs = isf_documents(isf_dir)
    assert len(docs) >= 9
    return docs


@pytest.mark.slow
def test_protection_names_come_from_the_build_enums(isf_docs: List[Dict[str, Any]]) -> None:
    checked = 0
    for doc in isf_docs:
        pdb = doc["metadata"]["windows"]["pdb"]
        layouts = find_by_guid(pdb["GUID"], pdb["age"])
        assert layouts is not None
        enums = doc["enums"]
        if "_PS_PROTECTED_TYPE" not in enums:
            continue
        types = {v: k for k, v in enums["_PS_PROTECTED_TYPE"]["constants"].items()}
        signers = {v: k for k, v in enums["_PS_PROTECTED_SIGNER"]["constants"].items()}
        bits = doc["user_types"]["_PS_PROTECTION"]["fields"]
        for type_value, signer_value, audit in ((1, 3, 0), (2, 6, 0), (1, 4, 1), (2, 7, 0)):
            level = ((type_value << bits["Type"]["type"]["bit_position"])
                     | (signer_value << bits["Signer"]["type"]["bit_position"])
                     | (audit << bits["Audit"]["type"]["bit_position"]))
            got = decode_protection(layouts, level)
            want_type = types[type_value].replace("PsProtectedType", "")
            want_signer = signers[signer_value].replace("PsProtectedSigner", "")
            assert got["type"] == want_type and got["signer"] == want_signer
            assert got["audit"] is bool(audit)
            short = {"ProtectedLight": "PPL", "Protected": "PP"}[want_type]
            assert got["text"] == "%s-%s%s" % (short, want_signer, "-Audit" if audit else "")
            checked += 1
    assert checked >= 28
    assert decode_protection(layouts, 0) is None


def test_well_known_protection_texts() -> None:
    layouts = load_layouts("10.0.19041.329")
    assert decode_protection(layouts, 0x31)["text"] == "PPL-Antimalware"
    assert decode_protection(layouts, 0x62)["text"] == "PP-WinTcb"
    assert decode_protection(layouts, 0x72)["text"] == "PP-WinSystem"


class _NoEnums:
    """A layout set whose build has the bitfield but no enums: numbers, not invented names."""

    def __init__(self, real: Any) -> None:
        self.real = real

    def type(self, name: str) -> Any:
        return self.real.type(name)

    def has_enum(self, name: str) -> bool:
        return False


def test_protection_without_enums_says_numbers() -> None:
    layouts = _NoEnums(load_layouts("10.0.19041.329"))
    got = decode_protection(layouts, 0x31)
    assert got == {"type": 1, "signer": 3, "audit": False, "text": "type 1 signer 3"}


class _View:
    def __init__(self, fields: Dict[str, Any], address: int = 0x1000) -> None:
        self.fields = fields
        self.address = address

    def has(self, path: str) -> bool:
        return path in self.fields

    def __getitem__(self, path: str) -> Any:
        return self.fields[path]


def test_kinds_from_flags_in_contract_order() -> None:
    view = _View({"SystemProcess": 0, "Minimal": 1, "PicoContext": 0x1234, "Protection.Level": 0x41,
                  "ExitTime.QuadPart": 0, "ProcessDelete": 0, "Pcb.DeepFreeze": 1})
    flags = kind_flags(view)
    assert flags == ["pico", "minimal", "protected", "frozen"]
    assert primary_kind(flags) == "pico"
    assert kind_flags(_View({"SystemProcess": 1})) == ["system"]
    # builds without SystemProcess: the process PsInitialSystemProcess points to
    assert kind_flags(_View({}, 0x5000), system_process=0x5000) == ["system"]
    assert kind_flags(_View({}, 0x5000), system_process=0x6000) == ["normal"]
    # unreadable flags are not set flags
    assert kind_flags(_View({"Minimal": Fault("not in dump", 0)})) == ["normal"]
    assert kind_flags(_View({"Pcb.SecureState.SecureHandle": 8, "ExitTime.QuadPart": 5})) == ["secure", "exited"]


def test_filetime_text() -> None:
    unix_epoch = 116444736000000000
    assert filetime_to_iso(unix_epoch) == "1970-01-01T00:00:00.000000+00:00"
    moment = datetime.datetime(2021, 2, 21, 1, 38, 22, 69864, tzinfo=datetime.timezone.utc)
    raw = unix_epoch + int(moment.timestamp()) * 10000000 + 69864 * 10
    assert filetime_to_iso(raw) == moment.isoformat(timespec="microseconds")
    for bad in (0, -5, 1 << 63, None, "x", Fault("not in dump", 0)):
        assert filetime_to_iso(bad) is None
    assert duration_100ns(12500000) == "00:00:01.250"
    assert filetime_to_windbg(raw) == "Sun Feb 21 01:38:22.069 2021 (UTC + 0:00)"
    assert ticks_text(64, 156250) == "00:00:01.000"
    assert ticks_text(64, None) == "64 ticks"


def test_filetime_calendar_agrees_with_datetime_over_the_whole_range() -> None:
    """The integer calendar of `kernel.times` against the standard library's, from the FILETIME
    epoch to the last second of 9999 (leap years, century rules, month ends, weekdays)."""
    epoch = datetime.datetime(1601, 1, 1, tzinfo=datetime.timezone.utc)
    last = datetime.datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=datetime.timezone.utc)
    rng = random.Random(1601)
    moments = [epoch + datetime.timedelta(microseconds=1), last.replace(microsecond=0),
               datetime.datetime(1900, 2, 28, 23, 59, 59, tzinfo=datetime.timezone.utc),
               datetime.datetime(2000, 2, 29, 12, 0, 0, 1, tzinfo=datetime.timezone.utc),
               datetime.datetime(2100, 3, 1, tzinfo=datetime.timezone.utc)]
    span = int((last - epoch).total_seconds())
    moments += [epoch + datetime.timedelta(seconds=rng.randrange(span), microseconds=rng.randrange(10 ** 6))
                for _ in range(20000)]
    for n, moment in enumerate(moments):
        delta = moment - epoch
        below_a_microsecond = rng.randrange(10) if n >= 5 else 0       # the edges exactly
        raw = (delta.days * 86400 + delta.seconds) * 10000000 + delta.microseconds * 10 + below_a_microsecond
        assert filetime_to_iso(raw) == moment.isoformat(timespec="microseconds")
        assert filetime_to_windbg(raw) == "%s %s %2d %s.%03d %d (UTC + 0:00)" % (
            ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")[moment.weekday()],
            ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")[moment.month - 1],
            moment.day, moment.strftime("%H:%M:%S"), moment.microsecond // 1000, moment.year)
    past = int((last - epoch).total_seconds()) * 10000000 + 10000000
    assert filetime_to_iso(past) is None and filetime_to_windbg(past) == "(none)"


def test_mode_fallback_matches_every_isf(isf_docs: List[Dict[str, Any]]) -> None:
    for doc in isf_docs:
        constants = doc["enums"]["_MODE"]["constants"]
        for value, name in _MODE_FALLBACK.items():
            assert constants[name] == value


def test_structures_read_at_offset_zero_are_at_offset_zero(isf_docs: List[Dict[str, Any]]) -> None:
    """process.py reads `_OBJECT_NAME_INFORMATION.Name` and the WoW64 block's PEB pointer at +0."""
    for doc in isf_docs:
        types = doc["user_types"]
        assert types["_OBJECT_NAME_INFORMATION"]["fields"]["Name"]["offset"] == 0
        if "_EWOW64PROCESS" in types:
            assert types["_EWOW64PROCESS"]["fields"]["Peb"]["offset"] == 0
        if "_WOW64_PROCESS" in types:
            assert types["_WOW64_PROCESS"]["fields"]["Wow64"]["offset"] == 0
