"""Builds as people name them: `19041`, `10.0.19041`, `10.0.26100.2000`, `22H2`, `24H2`, a PDB GUID.

Why one module: `--build` of `dt`, `structs diff`, the session (`layouts_for_session`) and the
Python API must all accept the same spellings and pick the same layout. The registry answers only
exact keys (a shipped build id, a version, a GUID[-age]); everything else is resolved here to the
nearest shipped revision, and the choice is said in a note (never silently):

- an exact build id / version / PDB GUID (with or without age): that layout, no note;
- `major.minor.build.revision`, `build.revision`: the layout of that exact revision, else the one
  whose revision range covers it, else the nearest revision (`version_choice.rank_candidates`);
- `major.minor.build` or a bare build (`19041`): the latest shipped revision of that build;
- a release name (`1809`, `2004`, `22H2`, `win10-22H2`, `Windows 11 24H2`, `server 2022`): its
  OS build from `release_names.tsv` (Microsoft's release-information pages), then the layouts of
  the kernel file that release runs (Windows 10 20H2..22H2 run the 19041 kernel, 23H2 the 22621
  one, 25H2 the 26100 one). `21H2` and `22H2` name both a Windows 10 and a Windows 11 release: a
  bare one means Windows 11 (the note says so and how to ask for Windows 10);
- an `-x86`/`x86` suffix asks for the 32-bit layouts; without it x64 is preferred.
"""
import os
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple

from pykd_ext.errors import UnknownBuildError
from pykd_ext.layouts.entry import BuildEntry
from pykd_ext.targets.arch import DEFAULT_ARCH

if TYPE_CHECKING:
    from pykd_ext.layouts.model import KernelLayouts

__all__ = ["BuildChoice", "Release", "layouts_for_build_name", "release_names", "resolve_build_name"]

RELEASES_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "release_names.tsv")
#: a bare release name that both products used means the newer product (the note says so)
PREFERRED_PRODUCT = "win11"
_PRODUCT_WORDS = {"win10": "Windows 10", "win11": "Windows 11", "server": "Windows Server"}


@dataclass(frozen=True)
class Release:
    """One row of `release_names.tsv`."""

    product: str          # win10 | win11 | server
    name: str             # 1809, 22H2, 2022
    build: int            # the OS build number (19045)
    kernel_build: int     # the build of the ntoskrnl.exe file it runs (19041)

    @property
    def label(self) -> str:
        return "%s %s" % (_PRODUCT_WORDS.get(self.product, self.product), self.name)


@dataclass
class BuildChoice:
    """What a `--build` text resolved to: the layout entry and, when not exact, why this one."""

    asked: str
    entry: BuildEntry
    note: Optional[str] = None


_releases: Optional[List[Release]] = None


def release_names() -> List[Release]:
    """Every known release name (loaded once from the data file)."""
    global _releases
    if _releases is None:
        rows = []
        with open(RELEASES_FILE, "r", encoding="utf-8") as fh:
            for line in fh:
                if not line.strip() or line.startswith("#"):
                    continue
                product, name, build, kernel = line.rstrip("\n").split("\t")
                rows.append(Release(product, name.upper(), int(build), int(kernel)))
        _releases = rows
    return list(_releases)


_ARCH_SUFFIX = re.compile(r"^(?P<rest>.*?)[\s_-]*(?P<arch>x86|x64|amd64|i386)$", re.IGNORECASE)
_RELEASE = re.compile(r"^(?:(?P<product>win(?:dows)?[\s_-]*(?:10|11)|(?:windows[\s_-]*)?server|ws)"
                      r"[\s_-]*)?(?:version[\s_-]*)?(?P<name>\d\d[hH][12]|\d{4})$", re.IGNORECASE)
_VERSION = re.compile(r"^(?:(?P<major>\d+)\.(?P<minor>\d+)\.)?(?P<build>\d+)(?:\.(?P<revision>\d+))?$")


def _product_of(text: Optional[str]) -> Optional[str]:
    if not text:
        return None
    low = re.sub(r"[\s_-]", "", text.lower())
    if "server" in low or low == "ws":
        return "server"
    return "win11" if low.endswith("11") else "win10"


def _release(text: str) -> Optional[Tuple[Release, Optional[str]]]:
    """(release, note about an ambiguous bare name) for a release name, else None."""
    m = _RELEASE.match(text)
    if not m:
        return None
    name, product = m.group("name").upper(), _product_of(m.group("product"))
    found = [r for r in release_names() if r.name == name and (product is None or r.product == product)]
    if not found:
        return None
    if product is None and len(found) > 1:
        clients = [r for r in found if r.product != "server"] or found
        chosen = next((r for r in clients if r.product == PREFERRED_PRODUCT), clients[0])
        others = [r for r in found if r is not chosen]
        return chosen, ("%s is also %s; took %s (say %s for the other)"
                        % (name, " and ".join("%s (build %d)" % (r.label, r.build) for r in others),
                           chosen.label, " or ".join("`%s-%s`" % (r.product, r.name) for r in others)))
    return found[0], None


def _kernel_build(build: int) -> int:
    """The kernel file's build for an OS build (19045 -> 19041); the build itself otherwise."""
    from pykd_ext.layouts.derived import KERNEL_FILE_BUILD
    for r in release_names():
        if r.build == build:
            return r.kernel_build
    return KERNEL_FILE_BUILD.get(build, build)


def _candidates(build: int, arch: Optional[str]) -> Tuple[List[BuildEntry], Optional[str]]:
    """Layouts of the OS build and of its kernel file's build; the default architecture (x64)
    preferred when no arch asked."""
    from pykd_ext.layouts.registry import candidates_for_build, list_builds
    builds = [build] + ([_kernel_build(build)] if _kernel_build(build) != build else [])
    default = DEFAULT_ARCH.name
    arches = [arch] if arch else [default] + sorted({e.arch for e in list_builds()} - {default})
    for a in arches:
        found = [e for b in builds for e in candidates_for_build(b, a)]
        if found:
            other = None if (arch or a == default) else "no %s layouts of build %d: using the %s ones" % (
                default, build, a)
            return found, other
    return [], None


def _known_builds_text() -> str:
    from pykd_ext.layouts.registry import list_builds
    seen: Dict[int, int] = {}
    for e in list_builds():
        seen[e.build] = seen.get(e.build, 0) + 1
    return ", ".join("%d" % b for b in sorted(seen))


def resolve_build_name(text: str) -> BuildChoice:
    """The layout entry a `--build` text names (see the module docstring); UnknownBuildError when
    no shipped or imported layout fits."""
    from pykd_ext.layouts.registry import HOW_TO_ADD, _match, list_builds
    asked = str(text).strip()
    exact = _match(asked, list_builds())
    # a bare version that only an x86 layout carries (10.0.19045.2965-x86) still means x64 first
    if exact and (exact[0].arch == DEFAULT_ARCH.name or exact[0].build_id == asked or exact[0].guid):
        return BuildChoice(asked, exact[0])
    body, arch = asked, None
    m = _ARCH_SUFFIX.match(asked)
    if m and m.group("rest"):
        body = m.group("rest")
        arch = "x86" if m.group("arch").lower() in ("x86", "i386") else "x64"
    notes: List[str] = []
    revision: Optional[int] = None
    v: Any = None
    said = ""          # what the name means, for the note ("Windows 11 24H2, build 26100")
    release = _release(body)
    if release is not None:
        rel, ambiguity = release
        build = rel.build
        said = "%s, build %d%s" % (rel.label, rel.build,
                                   ", kernel file %d" % rel.kernel_build if rel.kernel_build != rel.build else "")
        if ambiguity:
            notes.append(ambiguity)
    else:
        v = _VERSION.match(body)
        if not v:
            raise UnknownBuildError("--build %r is not a build (19041), a version (10.0.19041.1288), a "
                                    "release name (22H2) or a PDB GUID. %s" % (asked, HOW_TO_ADD))
        build = int(v.group("build"))
        revision = int(v.group("revision")) if v.group("revision") is not None else None
        named = [r for r in release_names() if r.build == build]
        if named:
            said = "%s%s" % (" / ".join(r.label for r in named),
                             ", kernel file %d" % _kernel_build(build) if _kernel_build(build) != build else "")
    entries, arch_note = _candidates(build, arch)
    if arch_note:
        notes.append(arch_note)
    if not entries:
        raise UnknownBuildError("no kernel layouts for %r (build %d%s); builds we have: %s. %s"
                                % (asked, build, ", " + said if said else "",
                                   _known_builds_text(), HOW_TO_ADD))
    if revision is None:
        own = [e for e in entries if e.build == build] or entries
        chosen = max(own, key=lambda e: ((e.revision or 0), e.build_id))
        count = len(own)
        how = ("the latest of %d shipped revisions" % count) if count > 1 else "the only layout of it"
        notes.insert(0, "%s%s -> layout %s (%s)" % (asked, " (%s)" % said if said else "", chosen.build_id, how))
        return BuildChoice(asked, chosen, "; ".join(notes))
    from pykd_ext.layouts.version_choice import EXACT, IN_RANGE, rank_candidates
    wanted = "10.0.%d.%d" % (_kernel_build(build), revision)
    if v is not None and v.group("major") is not None:
        wanted = "%s.%s.%d.%d" % (v.group("major"), v.group("minor"), _kernel_build(build), revision)
    chosen, kind, distance = rank_candidates(entries, wanted)[0]
    if kind == EXACT and chosen.version == body:
        return BuildChoice(asked, chosen, "; ".join(notes) or None)
    if kind == EXACT:
        how = "the same kernel file %s" % wanted
    elif kind == IN_RANGE:
        rr = chosen.extra.get("revision_range") or {}
        how = "its revision range %s.%s-%s covers %s" % (rr.get("kernel_build"), rr.get("first"),
                                                          rr.get("last"), wanted)
    else:
        how = "the nearest shipped revision to %s, %d revisions away" % (wanted, distance)
    notes.insert(0, "%s%s -> layout %s (%s)" % (asked, " (%s)" % said if said else "", chosen.build_id, how))
    return BuildChoice(asked, chosen, "; ".join(notes))


def layouts_for_build_name(text: str) -> "KernelLayouts":
    """The layouts `--build TEXT` means, with `choice` saying how they were chosen (its note among
    the warnings, which commands print)."""
    from pykd_ext.layouts.registry import layouts_for_entry
    found = resolve_build_name(text)
    lay = layouts_for_entry(found.entry)
    lay.choice = {"method": "build-option", "warnings": [found.note] if found.note else [],
                  "candidates": [lay.build_id], "chosen": lay.build_id, "reason": "--build %s" % text}
    return lay
