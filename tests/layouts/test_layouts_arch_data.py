"""The layout tools ask the data which architectures kphdyn covers, instead of testing for "x64"
(issue 11: architectures as data).

Independent source: the shipped kphdyn table itself (`structs/kphdyn/kernels.tsv`, read here
with the csv module): its `arch` column names the architectures and its rows the revisions.
"""
import csv
import os
from typing import Dict, List, Tuple

from pykd_ext.layouts import derived
from pykd_ext.layouts.generate import group_name
from pykd_ext.layouts.isf import BuildMeta
from pykd_ext.layouts.kernel_versions import KPHDYN_ARCHES, data_dir, kphdyn_arch, load_table
from pykd_ext.targets.arch import ARCHES


def _rows() -> List[Tuple[str, str, str]]:
    with open(os.path.join(data_dir(), "kernels.tsv"), newline="") as f:
        return [(r[0], r[1], r[2]) for r in csv.reader(f, delimiter="\t")
                if r and not r[0].startswith("#") and r[0] != "arch"]


def test_the_table_names_the_architectures_of_its_rows() -> None:
    listed = {arch for arch, _v, _f in _rows()}
    assert load_table().arches() == listed == KPHDYN_ARCHES == {"amd64", "arm64"}
    # every architecture pykd-ext knows maps onto a listed one, or onto none (kphdyn: no x86/ARM)
    named = {arch.name: kphdyn_arch(arch.name) for arch in ARCHES}
    assert named == {"x64": "amd64", "arm64": "arm64", "x86": None, "arm": None, "ia64": None}
    assert kphdyn_arch(None) == "amd64"                   # not stated: the default architecture


def test_revision_ranges_come_from_the_architectures_own_rows() -> None:
    revisions: Dict[str, List[int]] = {}
    for arch, version, file in _rows():
        if version.split(".")[2] == "22621" and file == "ntoskrnl.exe":
            revisions.setdefault(arch, []).append(int(version.split(".")[3]))
    for name, kphdyn in (("x64", "amd64"), ("arm64", "arm64")):
        found = derived.kphdyn_revision_range(22621, None, name)
        assert found is not None, name
        first, last, _basis = found
        assert first == min(revisions[kphdyn]) and last in revisions[kphdyn]
    assert derived.kphdyn_revision_range(22621, None, "x86") is None     # kphdyn has no x86 kernels


def test_generated_module_names_follow_the_build_id_rule() -> None:
    def meta(arch: str) -> BuildMeta:
        return BuildMeta(build_id="x", version="10.0.19041.1288", build=19041, revision=1288,
                         guid=None, age=None, arch=arch, pointer_size=8, products=[], source="t",
                         types_only=False)
    assert group_name(meta("x64")) == "nt_10_0_19041"
    assert group_name(meta("x86")) == "nt_10_0_19041_x86"
