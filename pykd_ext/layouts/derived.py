"""Identity of the derived (types-only) layouts: provenance, partial types, revision ranges.

Why a module of its own: the files in `shared/isf-derived/` are not PDB-generated ISFs. They carry
no symbol addresses and no PDB GUID, some of their types are only a prefix of the real type (the
22621/22631 `_KPRCB`) or absent (the 26100 `_KPRCB`, `_MM_SESSION_SPACE`), and each describes one
revision of a build whose layouts drift between cumulative updates. All of that is stated in each
file's `metadata.source`; this module turns it into `index.json` facts the runtime can act on:

- `source`: "derived types-only: <header set> [<licence>]" (shown by `structs list`);
- `extra.partial_types` / `extra.absent_types` / `extra.absent_enums`: what a walker must not
  trust or expect (it degrades per field instead of failing);
- `extra.revision_range`: the revisions of the build the layout is taken to describe, with the
  basis of that claim. For x64 builds kphdyn (System Informer) lists every released revision
  with a "fields set" of offsets; the range is the run of revisions around the file's own that
  share the file revision's fields set (offsets kphdyn can see do not move inside it). kphdyn has
  no x86 data, so an x86 file covers its own revision only and any other revision is "nearby".
- `extra.derived_from`, `extra.licence`: the header file and licence, for the NOTICE file.

The generator (`python -m pykd_ext.layouts.generate`) calls `annotate` for each derived file;
`version_choice` reads the result back through `BuildEntry.extra`.
"""
from typing import Any, Dict, List, Optional, Tuple

DERIVED_PREFIX = "derived types-only"

#: Builds whose kernel file is another build's (same ntoskrnl.exe, a different reported build
#: number through an enablement package). Fact from `shared/isf-derived/README.md` ("23H2 runs the
#: 22621 kernel") and kphdyn (it lists 22621 file versions for 23H2 kernels and no 22631 row).
KERNEL_FILE_BUILD = {22631: 22621, 26200: 26100}


def products_for(version: str, arch: str) -> List[str]:
    """Product family, spelled as INDEX.tsv spells the JPCERTCC builds (Win7, Win10, Win11)."""
    parts = version.split(".")
    if len(parts) < 3 or not all(p.isdigit() for p in parts[:3]):
        return []
    major, minor, build = int(parts[0]), int(parts[1]), int(parts[2])
    if (major, minor) == (6, 1):
        return ["Win7"]
    if (major, minor) == (6, 3):
        return ["Win8.1"]
    if major == 10:
        return ["Win11"] if build >= 22000 else ["Win10"]
    return []


def _short(text: Any, stop: str) -> str:
    text = str(text or "").strip()
    cut = text.find(stop)
    return text[:cut].strip() if cut > 0 else text


def source_text(src: Dict[str, Any]) -> str:
    """One line: `derived types-only: novafacing/vergilius-rs (...) [Apache-2.0 (...)]`."""
    name = _short(src.get("name") or "headers", ",")
    licence = _short(src.get("license") or "licence unknown", ";")
    return "%s: %s [%s]" % (DERIVED_PREFIX, name, licence)


def kphdyn_revision_range(build: int, revision: Optional[int],
                          arch: str) -> Optional[Tuple[int, int, str]]:
    """(first, last, basis) of the kphdyn-revision run sharing `revision`'s fields set, or None.

    `revision` None (a file naming only its build) takes the lowest revision kphdyn lists; an
    architecture kphdyn has no kernels of (x86) has no rows, so None.
    """
    from pykd_ext.layouts.kernel_versions import versions_for_build
    kernel_build = KERNEL_FILE_BUILD.get(build, build)
    rows = versions_for_build(kernel_build, arch)
    if not rows:
        return None
    wanted = revision if revision is not None else rows[0].revision
    # the row at (or just below) the file's revision names the fields set
    at = None
    for i, row in enumerate(rows):
        if row.revision <= wanted:
            at = i
    if at is None:
        at = 0
    fields_id = rows[at].fields_id
    lo = at
    while lo > 0 and rows[lo - 1].fields_id == fields_id:
        lo -= 1
    hi = at
    while hi + 1 < len(rows) and rows[hi + 1].fields_id == fields_id:
        hi += 1
    basis = ("kphdyn fields set %s is shared by ntoskrnl %d.%d..%d.%d (%d revisions)"
             % (fields_id, kernel_build, rows[lo].revision, kernel_build, rows[hi].revision,
                hi - lo + 1))
    return rows[lo].revision, rows[hi].revision, basis


def annotate(meta: Any, doc: Dict[str, Any]) -> None:
    """Fill a derived file's BuildMeta (`source`, `products`, `extra`) from its metadata.source."""
    src = (doc.get("metadata") or {}).get("source")
    if not isinstance(src, dict):
        return
    meta.source = source_text(src)
    meta.types_only = True
    if not meta.products:
        meta.products = products_for(meta.version, meta.arch)
    extra: Dict[str, Any] = {}
    partial = src.get("types_partial")
    if isinstance(partial, dict) and partial:
        extra["partial_types"] = {str(k): str(v) for k, v in sorted(partial.items())}
    absent: List[str] = []
    for key in ("types_omitted", "types_requested_missing_in_source"):
        value = src.get(key)
        names = list(value) if isinstance(value, (dict, list)) else []
        absent.extend(str(n) for n in names if str(n) not in absent)
    if absent:
        extra["absent_types"] = sorted(absent)
    enums = src.get("enums_requested_missing_in_source")
    if isinstance(enums, list) and enums:
        extra["absent_enums"] = sorted(str(e) for e in enums)
    if src.get("derived_from"):
        extra["derived_from"] = str(src["derived_from"])
    if src.get("license"):
        extra["licence"] = str(src["license"])
    found = kphdyn_revision_range(meta.build, meta.revision, meta.arch)
    if found is not None:
        first, last, basis = found
        extra["revision_range"] = {"first": first, "last": last, "basis": basis,
                                   "kernel_build": KERNEL_FILE_BUILD.get(meta.build, meta.build)}
    else:
        from pykd_ext.layouts.kernel_versions import kphdyn_arch
        rev = meta.revision
        extra["revision_range"] = {
            "first": rev, "last": rev, "kernel_build": meta.build,
            "basis": ("no revision data for %s kernels (kphdyn lists x64/arm64 only): this "
                      "revision only; others are nearby revisions" % meta.arch)
                     if kphdyn_arch(meta.arch) is None
                     else "kphdyn lists no kernel of this build"}
    meta.extra = extra


NOTICE_HEAD = """Derived (types-only) kernel layouts: provenance and licences
=============================================================

GENERATED by `python -m pykd_ext.layouts.generate` from ../shared/isf-derived (metadata.source of
each file). These layouts were converted from public C headers that other projects generated from
Microsoft's public kernel PDBs; the offsets, sizes and bit positions are facts about Microsoft's
kernels. They carry no symbol addresses (types only) and no PDB GUID.
"""


def notice_text(builds: List[Any]) -> str:
    """The NOTICE file shipped beside the derived modules: one paragraph per build."""
    lines = [NOTICE_HEAD]
    for b in builds:
        extra = getattr(b, "extra", None) or {}
        lines.append("- %s (%s, module %s)" % (b.build_id, b.pdb, b.module))
        lines.append("  source:  %s" % b.source)
        if extra.get("derived_from"):
            lines.append("  header:  %s" % extra["derived_from"])
        if extra.get("licence"):
            lines.append("  licence: %s" % extra["licence"])
    return "\n".join(lines) + "\n"
