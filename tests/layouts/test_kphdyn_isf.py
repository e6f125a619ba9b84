"""kphdyn offsets vs the ISF symbol tables: two independent sources must agree.

For every ISF in `../shared/isf` whose ntoskrnl version (INDEX.tsv) kphdyn also lists, each kphdyn
field with a known PDB meaning (`KPHDYN_FIELD_SOURCES`, from System Informer's kphdyn.h comments)
is compared with the member's offset (or bit position) read straight from the ISF JSON here.

The fast test covers one ISF per distinct (build number, kphdyn fields set), i.e. every build and
every offset set that occurs; the slow test covers every overlapping ISF.
"""
import json
import lzma
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Dict, List, NamedTuple, Optional, Tuple
import xml.etree.ElementTree as ElementTree

import pytest

from pykd_ext.layouts.kernel_versions import (
    KPHDYN_FIELD_SOURCES,
    KernelVersion,
    check_layout_fields,
    lookup_kernel,
    versions_for_build,
)


class Overlap(NamedTuple):
    version: str
    isf_file: str
    fields_id: str


def _isf_types(isf_dir: Path, file_name: str) -> Dict[str, dict]:
    with lzma.open(str(isf_dir / "windows" / "ntkrnlmp.pdb" / file_name)) as handle:
        return json.loads(handle.read())["user_types"]


def _isf_member(types: Dict[str, dict], type_name: str, path: str) -> Optional[Tuple[int, dict]]:
    """(offset from the type's start, member's ISF type) for a dotted path, or None."""
    offset, current = 0, type_name
    member_type: dict = {}
    for part in path.split("."):
        fields = types.get(current, {}).get("fields", {})
        if part not in fields:
            return None
        offset += fields[part]["offset"]
        member_type = fields[part]["type"]
        current = member_type.get("name", "")
    return offset, member_type


def _isf_value(types: Dict[str, dict], name: str) -> Optional[int]:
    source = KPHDYN_FIELD_SOURCES[name]
    member = _isf_member(types, source.type_name, source.path)
    if member is None:
        return None
    if source.kind == "bit_position":
        return member[1].get("bit_position")
    return member[0]


@pytest.fixture(scope="module")
def kphdyn_xml(shared_dir: Path) -> Tuple[Dict[str, str], Dict[str, Dict[str, int]]]:
    root = ElementTree.parse(str(shared_dir / "kphdyn" / "kphdyn.xml")).getroot()
    by_version = {e.get("version"): (e.text or "").strip() for e in root.iter("data")
                  if e.get("arch") == "amd64" and e.get("file") == "ntoskrnl.exe"}
    sets = {e.get("id"): {f.get("name"): int(f.get("value"), 16) for f in e}
            for e in root.iter("fields")}
    return by_version, sets


@pytest.fixture(scope="module")
def overlaps(isf_dir: Path, kphdyn_xml) -> List[Overlap]:
    by_version, _ = kphdyn_xml
    result = []
    lines = (isf_dir / "INDEX.tsv").read_text(encoding="utf-8").splitlines()
    assert lines[0].split("\t")[0] == "ntoskrnl_version" and lines[0].split("\t")[4] == "file"
    for line in lines[1:]:
        cells = line.split("\t")
        if cells[0] in by_version:
            result.append(Overlap(cells[0], cells[4], by_version[cells[0]]))
    assert result, "no ISF build is listed in kphdyn"
    return result


def _compare_one(isf_dir: Path, overlap: Overlap, fields: Dict[str, int]
                 ) -> Tuple[int, List[tuple]]:
    types = _isf_types(isf_dir, overlap.isf_file)
    problems = []
    for name, value in sorted(fields.items()):
        expected = _isf_value(types, name) if name in KPHDYN_FIELD_SOURCES else None
        if expected != value:
            problems.append((overlap.version, name, value, expected))
    return len(fields), problems


def _compare(isf_dir: Path, sets, chosen: List[Overlap]) -> Tuple[int, List[tuple]]:
    """(fields compared, mismatches); the ISF files are decompressed in parallel."""
    workers = max(1, min(4, os.cpu_count() or 1, len(chosen)))
    with ProcessPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(_compare_one, [isf_dir] * len(chosen), chosen,
                                [sets[o.fields_id] for o in chosen]))
    return sum(r[0] for r in results), [p for r in results for p in r[1]]


def test_field_meanings_cover_every_kernel_field(kphdyn_xml) -> None:
    by_version, sets = kphdyn_xml
    names = {name for fields_id in set(by_version.values()) for name in sets[fields_id]}
    assert names <= set(KPHDYN_FIELD_SOURCES)


def test_kphdyn_agrees_with_isf_sample(isf_dir: Path, kphdyn_xml, overlaps) -> None:
    _, sets = kphdyn_xml
    first: Dict[Tuple[str, str], Overlap] = {}
    for overlap in overlaps:
        first.setdefault((overlap.version.split(".")[2], overlap.fields_id), overlap)
    chosen = list(first.values())
    compared, problems = _compare(isf_dir, sets, chosen)
    print("kphdyn vs ISF sample: %d ISF files (%d build numbers, %d fields sets), "
          "%d fields compared, %d mismatches"
          % (len(chosen), len({k[0] for k in first}), len({k[1] for k in first}),
             compared, len(problems)))
    assert compared >= len(chosen) * 30
    assert problems == []


@pytest.mark.slow
def test_kphdyn_agrees_with_every_overlapping_isf(isf_dir: Path, kphdyn_xml, overlaps) -> None:
    _, sets = kphdyn_xml
    compared, problems = _compare(isf_dir, sets, overlaps)
    print("kphdyn vs ISF: %d overlapping builds, %d fields compared, %d mismatches"
          % (len(overlaps), compared, len(problems)))
    assert problems == []


class _IsfField:
    def __init__(self, offset: int, bit_position: Optional[int]) -> None:
        self.offset = offset
        self.bit_position = bit_position


class _IsfType:
    def __init__(self, types: Dict[str, dict], name: str) -> None:
        self._types, self._name = types, name

    def has_field(self, path: str) -> bool:
        return _isf_member(self._types, self._name, path) is not None

    def field(self, path: str) -> _IsfField:
        offset, member_type = _isf_member(self._types, self._name, path)
        return _IsfField(offset, member_type.get("bit_position"))


class _IsfLayouts:
    """The slice of the `KernelLayouts` API `check_layout_fields` uses, over raw ISF JSON."""

    def __init__(self, types: Dict[str, dict]) -> None:
        self._types = types

    def has_type(self, name: str) -> bool:
        return name in self._types

    def type(self, name: str) -> _IsfType:
        return _IsfType(self._types, name)


def _kernel(version: str) -> KernelVersion:
    build = int(version.split(".")[2])
    return next(k for k in versions_for_build(build) if k.version == version)


def test_check_layout_fields_accepts_the_right_layout_and_flags_a_wrong_one(
        isf_dir: Path, overlaps) -> None:
    by_version = {o.version: o for o in overlaps}
    right = by_version["10.0.19041.1052"] if "10.0.19041.1052" in by_version else next(
        o for o in overlaps if o.version.startswith("10.0.19041."))
    layouts = _IsfLayouts(_isf_types(isf_dir, right.isf_file))

    good = check_layout_fields(_kernel(right.version), layouts)
    assert good.ok and good.compared == len(_kernel(right.version).fields)
    assert good.unavailable == []

    other = next(o for o in overlaps if o.version.startswith("10.0.17763."))
    bad = check_layout_fields(_kernel(other.version), layouts)
    assert not bad.ok
    names = {m[0] for m in bad.mismatches}
    assert "EpObjectTable" in names      # _EPROCESS grew between 1809 and 2004
    assert bad.compared == len(bad.agreed) + len(bad.mismatches)


def test_check_layout_fields_lists_what_the_layout_lacks() -> None:
    kernel = lookup_kernel(0x0D8333E6, 0x01046000)   # the 19041 triage dump's kernel
    assert kernel is not None
    empty = check_layout_fields(kernel, _IsfLayouts({}))
    assert empty.compared == 0 and sorted(empty.unavailable) == sorted(kernel.fields)


@pytest.mark.parametrize("timestamp, size, version", [
    (0x0D8333E6, 0x01046000, "10.0.19041.804"),   # kernel of the real 19041 triage dump
    (0x11B35B7E, 0x00A6E000, "10.0.17763.973"),   # kernel of the real 17763 triage dump
])
def test_check_layout_fields_with_the_project_layouts(timestamp: int, size: int,
                                                      version: str) -> None:
    """The shipped layouts (pykd_ext.layouts.registry) agree with kphdyn where both have a field.

    A triage dump has no PDB GUID; kphdyn names the exact version.  When that version is shipped
    (19041.804 is) its layouts must agree; otherwise the nearest shipped revision of the build is
    what the target gets, and kphdyn must not contradict it on the walker's fields.
    """
    from pykd_ext.layouts import registry

    kernel = lookup_kernel(timestamp, size)
    assert kernel is not None and kernel.version == version
    entries = [e for e in registry.candidates_for_build(kernel.build) if not e.types_only]
    assert entries
    exact = [e for e in entries if e.version == kernel.version]
    chosen = exact[0] if exact else min(
        entries, key=lambda e: abs((e.revision or 0) - kernel.revision))
    result = check_layout_fields(kernel, registry.load_layouts(chosen.build_id))
    assert result.ok, result.mismatches
    for name in ("EpObjectTable", "KtInitialStack", "KtKernelStack", "OtName", "OtIndex",
                 "ObDecodeShift", "ObAttributesShift"):
        assert name in result.agreed
