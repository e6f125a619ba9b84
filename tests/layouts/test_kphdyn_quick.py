"""The first look-ups of a process search kphdyn's table text instead of loading the table.

Why tested: a `!py` command asks for one kernel; the quick search must give exactly the rows the
loaded table gives. Expected values come from System Informer's kphdyn.xml read here with
`xml.etree` (independent of the shipped table and of our loader); "not loaded" is read from the
module's own state (`_TABLE` stays None), which is what makes the look-up cheap.
"""
import os
import shutil
import xml.etree.ElementTree as ElementTree
from collections import defaultdict
from pathlib import Path
from typing import Dict, List, Tuple

import pytest

from pykd_ext.layouts import kernel_versions
from pykd_ext.layouts.kernel_versions import lookup_kernel, lookup_kernel_candidates

Pair = Tuple[str, int, int]


@pytest.fixture(scope="module")
def xml_pairs(shared_dir: Path) -> Dict[Pair, List[str]]:
    """(arch, timestamp, size) -> versions of the kernel files the XML lists under that pair."""
    root = ElementTree.parse(str(shared_dir / "kphdyn" / "kphdyn.xml")).getroot()
    pairs: Dict[Pair, List[str]] = defaultdict(list)
    for element in root.iter("data"):
        row = element.attrib
        if row.get("file") in ("ntoskrnl.exe", "ntkrla57.exe"):
            pairs[(row["arch"], int(row["timestamp"], 16), int(row["size"], 16))].append(row["version"])
    return pairs


@pytest.fixture
def fresh(monkeypatch: pytest.MonkeyPatch) -> None:
    """A process that has not looked anything up yet."""
    monkeypatch.setattr(kernel_versions, "_TABLE", None)
    monkeypatch.setattr(kernel_versions, "_QUICK", {})


def _key(version: str) -> Tuple[int, ...]:
    return tuple(int(p) for p in version.split("."))


def test_quick_search_answers_like_the_xml_without_loading(xml_pairs, fresh) -> None:
    ambiguous = [pair for pair, versions in xml_pairs.items() if len(set(versions)) > 1]
    assert ambiguous, "the XML lists one file under two versions (22621.1483/.1485)"
    picked = ambiguous[:2] + sorted(xml_pairs)[::max(1, len(xml_pairs) // 5)][:5]
    assert len(picked) <= kernel_versions.QUICK_LOOKUPS
    for arch, timestamp, size in picked:
        expected = sorted(set(xml_pairs[(arch, timestamp, size)]), key=_key)
        found = lookup_kernel_candidates(timestamp, size, arch)
        assert sorted({k.version for k in found}, key=_key) == expected
        first = lookup_kernel(timestamp, size, "x64" if arch == "amd64" else arch)
        assert first is not None and first.version == expected[0]
        assert sorted(first.ambiguous_with, key=_key) == expected[1:]
    assert kernel_versions._TABLE is None


def test_unknown_pair_is_none_without_loading(xml_pairs, fresh) -> None:
    timestamp, size = 0x12345678, 0x00abc000
    assert ("amd64", timestamp, size) not in xml_pairs
    assert lookup_kernel(timestamp, size, "x64") is None
    assert kernel_versions._TABLE is None


def test_a_table_written_otherwise_is_loaded_whole(xml_pairs, fresh, monkeypatch, tmp_path) -> None:
    """Cells without the `0x` prefix: a miss of the text search is not trusted; the table decides."""
    source = kernel_versions.data_dir()
    folder = tmp_path / "kphdyn"
    folder.mkdir()
    shutil.copy(os.path.join(source, kernel_versions.FIELDS_NAME), str(folder))
    text = Path(source, kernel_versions.TSV_NAME).read_text(encoding="utf-8")
    (folder / kernel_versions.TSV_NAME).write_text(text.replace("\t0x", "\t"), encoding="utf-8")
    monkeypatch.setattr(kernel_versions, "data_dir", lambda: str(folder))
    (arch, timestamp, size), versions = next((p, v) for p, v in sorted(xml_pairs.items()) if p[0] == "amd64")
    found = lookup_kernel(timestamp, size, arch)
    assert found is not None and found.version == sorted(versions, key=_key)[0]
    assert kernel_versions._TABLE is not None
