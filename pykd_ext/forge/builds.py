"""The kernel builds forged scenarios are tested on, and how to name a build.

Why: agreement tests must cover the layouts that differ most (Windows 7 SP1 without protection,
pico or minimal processes; 8.1 with the first `_PS_PROTECTION`; Windows 10 2004–22H2 with
KVA-shadow user DTBs and encoded object-header type indexes; Windows 11 21H2 with `_KAFFINITY_EX`
thread affinity pointers) with one well-known revision each, from `shared/isf/INDEX.tsv`.
A build is forged from the ISF file (`pykd_ext.forge.isf`) and written with the shipped layouts
of the same PDB GUID (`pykd_ext.layouts.registry`), so readers pick exactly those layouts.
"""
from dataclasses import dataclass
from typing import Dict, Optional, Union

from pykd_ext.forge.isf import SymbolTable, table_for_build
from pykd_ext.layouts.model import KernelLayouts
from pykd_ext.layouts.registry import load_layouts

#: name -> ntoskrnl version (one revision per tested release).
BUILDS: Dict[str, str] = {
    "win7": "6.1.7601.24540",       # Windows 7 SP1 (the only 7601 ISF shipped)
    "win81": "6.3.9600.19913",      # Windows 8.1
    "win10": "10.0.19041.1288",     # Windows 10 2004/20H2/21H1/21H2/22H2 family
    "win11": "10.0.22000.318",      # Windows 11 21H2
}


@dataclass(frozen=True)
class BuildChoice:
    """One kernel build by its full ntoskrnl version."""

    name: str
    version: str

    @property
    def build(self) -> int:
        return int(self.version.split(".")[2])

    @property
    def revision(self) -> int:
        return int(self.version.split(".")[3])

    def table(self, isf_dir: Optional[str] = None) -> SymbolTable:
        from pathlib import Path
        return table_for_build(self.build, Path(isf_dir) if isf_dir else None,
                               revision=self.revision)

    def layouts(self) -> KernelLayouts:
        return load_layouts(self.version)


def resolve_build(build: Union[str, int, BuildChoice]) -> BuildChoice:
    """A BuildChoice from a name in BUILDS ("win10"), a version ("10.0.19041.1288"), a build
    number (19041: the BUILDS entry of that build) or a BuildChoice."""
    if isinstance(build, BuildChoice):
        return build
    if isinstance(build, int) or (isinstance(build, str) and build.isdigit()):
        number = int(build)
        for name, version in BUILDS.items():
            if int(version.split(".")[2]) == number:
                return BuildChoice(name, version)
        raise KeyError("no tested build %d (known: %s)" % (number, ", ".join(BUILDS)))
    if build in BUILDS:
        return BuildChoice(build, BUILDS[build])
    if build.count(".") == 3:
        return BuildChoice(build, build)
    raise KeyError("unknown build %r (known: %s)" % (build, ", ".join(BUILDS)))


def tested_builds() -> Dict[str, BuildChoice]:
    return {name: BuildChoice(name, version) for name, version in BUILDS.items()}


__all__ = ["BUILDS", "BuildChoice", "resolve_build", "tested_builds"]
