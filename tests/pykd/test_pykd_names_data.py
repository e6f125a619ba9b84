"""The committed pykd 0.3.4.15 name list: well-formed, and it holds the API the toolkit relies on.

The expected names come from `/work/shared/reference/pykd.md` (the project's independent summary
of pykd 0.3.x), not from the list itself; the two names pykd.md calls 0.2.x-only must be absent.
"""
import re
from pathlib import Path
from typing import List

import pytest

DATA = Path(__file__).resolve().parents[1] / "data"
NAMES = DATA / "pykd-0.3.4.15-names.txt"
README = DATA / "pykd-0.3.4.15-names.README.md"
NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$")

# Every 0.3.x name pykd.md uses ("API used by a kernel walker", "Versions", "How !py runs").
REFERENCE_NAMES = [
    "loadBytes", "loadQWords", "loadDWords", "ptrQWord", "ptrDWord", "ptrPtr", "ptrSize",
    "loadUnicodeString", "loadWChars", "isValid", "isVaRegionValid", "getOffset", "module",
    "typeInfo", "typedVar", "typedVarList", "dprintln", "dbgCommand", "is64bitSystem",
    "getSystemVersion", "getCurrentProcess", "setCurrentProcess", "getImplicitThread", "reg",
    "bugCheckData", "isKernelDebugging", "isDumpAnalyzing", "isWindbgExt", "loadDump",
    "closeDump", "attachKernel", "setSymbolPath", "initialize", "getCPUMode",
    "MemoryException", "DbgException",
    "module.begin", "module.end", "module.type", "module.offset",
    "typeInfo.size", "typeInfo.fieldOffset", "typeInfo.fields", "typeInfo.field",
    "typeInfo.bitOffset", "typeInfo.bitWidth", "typeInfo.hasField",
    "typedVar.castTo", "typedVar.rawBytes", "systemVersion.buildNumber",
]
# pykd.md: "pykd 0.2.x differs: base exception pykd.BaseException ...; getProcessorMode()".
PYKD_02_ONLY = ["BaseException", "getProcessorMode"]


@pytest.fixture(scope="module")
def names() -> List[str]:
    return NAMES.read_text(encoding="utf-8").splitlines()


def test_list_is_sorted_unique_and_well_formed(names: List[str]) -> None:
    assert len(names) > 500
    assert names == sorted(set(names))
    bad = [name for name in names if not NAME.match(name)]
    assert bad == []


def test_reference_names_are_present(names: List[str], shared_dir: Path) -> None:
    reference = (shared_dir / "reference" / "pykd.md").read_text(encoding="utf-8")
    for name in REFERENCE_NAMES:
        assert name.split(".")[-1] in reference, "%s is not named in pykd.md" % name
    missing = sorted(set(REFERENCE_NAMES) - set(names))
    assert missing == []


def test_pykd_02_names_are_absent(names: List[str]) -> None:
    assert sorted(set(PYKD_02_ONLY) & set(names)) == []


def test_members_belong_to_listed_classes(names: List[str]) -> None:
    module_level = {name for name in names if "." not in name}
    owners = {name.split(".")[0] for name in names if "." in name}
    assert owners <= module_level


def test_readme_records_the_wheel_and_the_commands(names: List[str]) -> None:
    text = README.read_text(encoding="utf-8")
    assert "result: %d names" % len(names) in text
    assert "pip download pykd==0.3.4.15" in text
    assert re.search(r"`[0-9a-f]{64}`", text)
    assert (DATA / "pykd-0.3.4.15-names.extract.py").is_file()
