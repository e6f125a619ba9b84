"""Kernel version look-ups against System Informer's kphdyn.xml, parsed here independently.

Expected values come from the XML itself (read with `xml.etree`, no project code), so a wrong
column, a dropped row or a mis-keyed index in the shipped table or the loader fails these tests.
"""
import json
import os
from collections import defaultdict
from pathlib import Path
from typing import Dict, List, Tuple
import xml.etree.ElementTree as ElementTree

import pytest

from pykd_ext.errors import LayoutError
from pykd_ext.layouts import kernel_versions
from pykd_ext.layouts.kernel_versions import (
    KernelVersionTable,
    lookup_kernel,
    lookup_kernel_candidates,
    lookup_sha256,
    versions_for_build,
)

KERNEL_FILES = ("ntoskrnl.exe", "ntkrla57.exe")


def _version_key(version: str) -> Tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


@pytest.fixture(scope="module")
def xml_data(shared_dir: Path) -> Tuple[List[Dict[str, str]], Dict[str, Dict[str, int]]]:
    root = ElementTree.parse(str(shared_dir / "kphdyn" / "kphdyn.xml")).getroot()
    rows = []
    for element in root.iter("data"):
        row = dict(element.attrib)
        row["fields"] = (element.text or "").strip()
        rows.append(row)
    sets = {element.get("id"): {f.get("name"): int(f.get("value"), 16) for f in element}
            for element in root.iter("fields")}
    return rows, sets


@pytest.fixture(scope="module")
def kernel_rows(xml_data) -> List[Dict[str, str]]:
    rows, _ = xml_data
    return [row for row in rows if row["file"] in KERNEL_FILES]


def test_every_kernel_row_of_the_xml_is_found_with_its_values(xml_data, kernel_rows) -> None:
    _, sets = xml_data
    assert len(kernel_rows) > 3000
    for row in kernel_rows:
        timestamp, size = int(row["timestamp"], 16), int(row["size"], 16)
        found = lookup_kernel_candidates(timestamp, size, row["arch"])
        matching = [k for k in found if k.version == row["version"] and k.file == row["file"]]
        assert len(matching) == 1, row
        kernel = matching[0]
        assert kernel.arch == row["arch"]
        assert kernel.sha256 == row["hash"].lower()
        assert kernel.timestamp == timestamp and kernel.size_of_image == size
        assert kernel.fields_id == row["fields"]
        assert dict(kernel.fields) == sets[row["fields"]]
        major, minor, build, revision = (int(p) for p in row["version"].split("."))
        assert (kernel.major, kernel.minor, kernel.build, kernel.revision) == (
            major, minor, build, revision)
    # Nothing more than the XML's kernel rows is in the table.
    assert len(kernel_versions.load_table()) == len(kernel_rows)


def test_non_kernel_rows_are_not_shipped(xml_data) -> None:
    rows, _ = xml_data
    others = [row for row in rows if row["file"] not in KERNEL_FILES]
    assert others, "the XML has lxcore.sys rows; the table must leave them out"
    for row in others:
        found = lookup_kernel_candidates(int(row["timestamp"], 16), int(row["size"], 16),
                                         row["arch"])
        assert all(k.file in KERNEL_FILES for k in found)


def test_duplicate_timestamp_and_size_are_reported_as_ambiguous(kernel_rows) -> None:
    groups: Dict[Tuple[str, int, int], List[str]] = defaultdict(list)
    for row in kernel_rows:
        groups[(row["arch"], int(row["timestamp"], 16), int(row["size"], 16))].append(
            row["version"])
    ambiguous = {key: sorted(set(v), key=_version_key) for key, v in groups.items()
                 if len(set(v)) > 1}
    # The XML lists one file (22621, same SHA-256) under two versions: the case must be handled.
    assert ambiguous
    for (arch, timestamp, size), versions in ambiguous.items():
        first = lookup_kernel(timestamp, size, arch)
        assert first is not None and first.version == versions[0]
        assert first.ambiguous and list(first.ambiguous_with) == versions[1:]
        assert versions[1] in first.describe()
        assert [k.version for k in lookup_kernel_candidates(timestamp, size, arch)] == versions
    unique = next(key for key, v in groups.items() if len(v) == 1)
    single = lookup_kernel(unique[1], unique[2], unique[0])
    assert single is not None and not single.ambiguous and single.ambiguous_with == ()


def test_versions_for_build_lists_every_revision_in_order(kernel_rows) -> None:
    for build in (17763, 19041, 22621):
        expected = sorted((row["version"] for row in kernel_rows
                           if row["arch"] == "amd64" and row["file"] == "ntoskrnl.exe"
                           and row["version"].split(".")[2] == str(build)), key=_version_key)
        got = [k.version for k in versions_for_build(build)]
        assert got == expected and got
        every_file = versions_for_build(build, file=None)
        assert len(every_file) == sum(1 for row in kernel_rows if row["arch"] == "amd64"
                                      and row["version"].split(".")[2] == str(build))
    assert versions_for_build(1) == []


def test_arch_aliases_and_arm64(kernel_rows) -> None:
    amd = next(row for row in kernel_rows if row["arch"] == "amd64")
    key = (int(amd["timestamp"], 16), int(amd["size"], 16))
    assert (lookup_kernel(*key, arch="x64") == lookup_kernel(*key, arch="AMD64")
            == lookup_kernel(*key))
    arm = next(row for row in kernel_rows if row["arch"] == "arm64")
    arm_key = (int(arm["timestamp"], 16), int(arm["size"], 16))
    found = lookup_kernel(*arm_key, arch="aarch64")
    assert found is not None and found.arch == "arm64" and found.version == arm["version"]
    assert lookup_kernel(*arm_key, arch="x86") is None


def test_sha256_lookup(kernel_rows) -> None:
    row = kernel_rows[len(kernel_rows) // 2]
    found = lookup_sha256(row["hash"].upper())
    assert row["version"] in [k.version for k in found]
    assert lookup_sha256("0" * 64) == []


@pytest.mark.parametrize("text", ["10.0.19041", "10.0.19041.804.1", "10.0.x.1", "10..1.2", ""])
def test_parse_version_refuses_malformed_versions(text: str) -> None:
    with pytest.raises(ValueError):
        kernel_versions.parse_version(text)


def test_parse_version_and_arch_names() -> None:
    assert kernel_versions.parse_version("10.0.19041.804") == (10, 0, 19041, 804)
    assert [kernel_versions.normalize_arch(a) for a in ("x64", " AMD64", "aarch64", "x86")] == [
        "amd64", "amd64", "arm64", "x86"]


def test_unknown_and_impossible_pairs_give_none() -> None:
    assert lookup_kernel(0, 0) is None
    assert lookup_kernel(-1, 0x1000) is None
    assert lookup_kernel(0x1_0000_0000, 0x1000) is None
    assert lookup_kernel_candidates(0x12345678, 1 << 40) == []


def test_as_dict_is_json_ready(kernel_rows) -> None:
    row = kernel_rows[0]
    kernel = lookup_kernel(int(row["timestamp"], 16), int(row["size"], 16), row["arch"])
    record = json.loads(json.dumps(kernel.as_dict()))
    assert record["version"] == row["version"] and record["sha256"] == row["hash"].lower()


def _write_table(folder: Path, tsv: str,
                 fields: str = '{"1": {"EpObjectTable": 1048}}') -> Tuple[str, str]:
    tsv_path, fields_path = folder / "kernels.tsv", folder / "fields.json"
    tsv_path.write_text(tsv, encoding="utf-8")
    fields_path.write_text(fields, encoding="utf-8")
    return str(tsv_path), str(fields_path)


HEADER = "\t".join(kernel_versions.TSV_COLUMNS) + "\n"
GOOD_ROW = "amd64\t10.0.1.2\tntoskrnl.exe\t0x00000010\t0x00002000\t" + "a" * 64 + "\t1\n"


def test_a_small_table_loads(tmp_path: Path) -> None:
    table = KernelVersionTable.from_files(
        *_write_table(tmp_path, "# comment\n" + HEADER + GOOD_ROW))
    found = table.lookup(0x10, 0x2000)
    assert found is not None and found.version == "10.0.1.2"
    assert found.fields["EpObjectTable"] == 1048


@pytest.mark.parametrize("tsv, fields", [
    ("", '{"1": {}}'),                                              # no header
    ("arch\tversion\n" + GOOD_ROW, '{"1": {}}'),                    # wrong header
    (HEADER + "amd64\t10.0.1.2\tntoskrnl.exe\n", '{"1": {}}'),      # too few columns
    (HEADER + GOOD_ROW.replace("0x00000010", "zz"), '{"1": {}}'),   # not hex
    (HEADER + GOOD_ROW, '{"2": {}}'),                               # unknown fields id
    (HEADER + GOOD_ROW, '{"1": {"EpObjectTable": "0x418"}}'),       # value not an integer
    (HEADER + GOOD_ROW, "[1, 2]"),                                  # not an object
    (HEADER + GOOD_ROW, "{"),                                       # not JSON
])
def test_malformed_tables_raise_layout_error(tmp_path: Path, tsv: str, fields: str) -> None:
    with pytest.raises(LayoutError):
        KernelVersionTable.from_files(*_write_table(tmp_path, tsv, fields))


def test_malformed_version_raises_layout_error_on_use(tmp_path: Path) -> None:
    table = KernelVersionTable.from_files(
        *_write_table(tmp_path, HEADER + GOOD_ROW.replace("10.0.1.2", "10.0.x")))
    with pytest.raises(LayoutError):
        table.lookup(0x10, 0x2000)


def test_missing_files_raise_layout_error(tmp_path: Path) -> None:
    with pytest.raises(LayoutError) as info:
        KernelVersionTable.from_files(str(tmp_path / "nope.tsv"), str(tmp_path / "nope.json"))
    assert "nope" in info.value.one_line()


def test_shipped_table_is_in_the_installed_package() -> None:
    folder = kernel_versions.data_dir()
    assert os.path.isfile(os.path.join(folder, kernel_versions.TSV_NAME))
    assert os.path.isfile(os.path.join(folder, kernel_versions.FIELDS_NAME))
    assert os.path.isfile(os.path.join(folder, "LICENSE-kphdyn"))
