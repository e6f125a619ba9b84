"""The exact kernel version of a target (kphdyn) and the layout it calls for, with honest wording.

Why: a triage minidump or a raw image names no PDB GUID, and within one build number layouts
drift (17763.2928 added an `_EPROCESS` field; 22621/26100 cumulative updates grew `_ETHREAD`).
The kernel's PE `TimeDateStamp` + `SizeOfImage` (from the triage driver list, the loaded-module
list or the image's own PE header) name the exact ntoskrnl file version through System Informer's
kphdyn table (`kernel_versions`). From that version this module picks the layout:

1. the same version (a JPCERTCC build of that exact revision) -> "exact";
2. a derived (types-only) layout whose `revision_range` covers the revision -> "revision range"
   (the range is the run of revisions kphdyn gives the same offsets, see `layouts/derived.py`);
3. otherwise the nearest revision of the same build -> "nearby revision", said in the output.

The choice is then confirmed against the data by `select.fingerprint` (the structs issue's
checks) and against kphdyn's own offsets for that version (`check_layout_fields`: EpObjectTable,
KtInitialStack, ObDecodeShift, ...). Entry points: `kernel_version_of(info)`,
`annotate_info(info)` (sets `info.extra["kernel_version"]`, printed by `info`),
`rank_candidates(entries, version)`, `describe_choice(entry, version)`.
"""
from typing import Any, Dict, List, Optional, Sequence, Tuple

from pykd_ext.errors import PykdExtError
from pykd_ext.layouts.derived import KERNEL_FILE_BUILD

EXACT = "exact"
IN_RANGE = "revision range"
NEARBY = "nearby revision"


def _parse(version: Optional[str]) -> Optional[Tuple[int, int, int, int]]:
    if not version:
        return None
    parts = str(version).split(".")
    if len(parts) != 4 or not all(p.isdigit() for p in parts):
        return None
    a, b, c, d = (int(p) for p in parts)
    return a, b, c, d


def kernel_version_of(info: Any) -> Optional[Dict[str, Any]]:
    """{version, method, kphdyn, ...} for a target's kernel, or None when nothing names it.

    Evidence, in order: the triage driver list entry of the kernel (TimeDateStamp+SizeOfImage),
    the kernel image's PE header (`extra.kernel_timestamp/kernel_size_of_image`, set by the
    readers), then the image's own version resource (`extra.kernel_file_version`).
    """
    from pykd_ext.layouts.kernel_versions import find_kernel_entry, kphdyn_arch, lookup_kernel
    extra = getattr(info, "extra", None) or {}
    arch = kphdyn_arch(getattr(info, "arch", None))       # None: kphdyn has no x86/ARM kernels
    kernel_base = getattr(info, "kernel_base", None) or (getattr(info, "kdbg", None) or {}).get("KernBase")
    pairs: List[Tuple[str, Any, Any]] = []
    drivers = extra.get("drivers")
    if isinstance(drivers, list) and drivers:
        entry = find_kernel_entry(drivers, kernel_base) or find_kernel_entry(drivers)
        if entry is not None:
            pairs.append(("driver list: %s TimeDateStamp+SizeOfImage" % (entry.get("name") or "kernel"),
                          entry.get("timestamp"), entry.get("size")))
    pairs.append(("kernel PE header TimeDateStamp+SizeOfImage", extra.get("kernel_timestamp"),
                  extra.get("kernel_size_of_image")))
    for method, timestamp, size in pairs:
        if arch is None or not isinstance(timestamp, int) or not isinstance(size, int):
            continue
        found = lookup_kernel(timestamp, size, arch)
        if found is not None:
            out = {"version": found.version, "method": method + " -> kphdyn",
                   "timestamp": timestamp, "size_of_image": size, "kphdyn": found.as_dict()}
            if found.ambiguous_with:
                out["ambiguous_with"] = list(found.ambiguous_with)
            resource = extra.get("kernel_file_version")
            if isinstance(resource, str) and resource and resource != found.version:
                out["disagrees_with_resource"] = resource
            return out
    resource = extra.get("kernel_file_version")
    if isinstance(resource, str) and _parse(resource):
        return {"version": resource, "method": "kernel image version resource", "kphdyn": None}
    return None


def annotate_info(info: Any) -> Optional[Dict[str, Any]]:
    """Set `info.extra["kernel_version"]` (the version string `info` prints) and
    `info.extra["kernel_version_source"]`; idempotent, never raises on odd data."""
    extra = getattr(info, "extra", None)
    if extra is None:
        return None
    if "kernel_version_source" in extra:
        return extra["kernel_version_source"]
    try:
        found = kernel_version_of(info)
    except (PykdExtError, ValueError, TypeError) as err:
        info.notes.append("exact kernel version not determined: %s" % err)
        return None
    if found is None:
        return None
    extra["kernel_version"] = found["version"]
    extra["kernel_version_source"] = found
    if found.get("ambiguous_with"):
        info.notes.append("kphdyn lists this kernel file as %s and %s"
                          % (found["version"], ", ".join(found["ambiguous_with"])))
    if found.get("disagrees_with_resource"):
        info.notes.append("kphdyn names the kernel %s but its version resource says %s"
                          % (found["version"], found["disagrees_with_resource"]))
    build = getattr(info, "build", None)
    parsed = _parse(found["version"])
    if parsed and isinstance(build, int) and build and parsed[2] != build \
            and KERNEL_FILE_BUILD.get(build) != parsed[2]:
        info.notes.append("the dump header says build %d but the kernel file is %s"
                          % (build, found["version"]))
    return found


def _revision_range(entry: Any) -> Optional[Tuple[int, int, int]]:
    rr = (getattr(entry, "extra", None) or {}).get("revision_range")
    if not isinstance(rr, dict) or not isinstance(rr.get("first"), int) or not isinstance(rr.get("last"), int):
        return None
    return int(rr.get("kernel_build") or entry.build), rr["first"], rr["last"]


def match_kind(entry: Any, version: str) -> str:
    """How well a layout entry fits an exact kernel version: EXACT, IN_RANGE or NEARBY."""
    parsed = _parse(version)
    if parsed is None:
        return NEARBY
    if entry.version == version:
        return EXACT
    rr = _revision_range(entry)
    if rr is not None:
        kernel_build, first, last = rr
        if parsed[2] == kernel_build and first <= parsed[3] <= last and rr[1] != rr[2]:
            return IN_RANGE
    return NEARBY


def rank_candidates(entries: Sequence[Any], version: str) -> List[Tuple[Any, str, int]]:
    """Entries ordered best first for `version`: (entry, match kind, revision distance)."""
    parsed = _parse(version)
    revision = parsed[3] if parsed else 0
    order = {EXACT: 0, IN_RANGE: 1, NEARBY: 2}
    ranked = []
    for e in entries:
        kind = match_kind(e, version)
        distance = abs((e.revision or 0) - revision)
        ranked.append((e, kind, distance))
    ranked.sort(key=lambda item: (order[item[1]], item[2], -(item[0].revision or 0), item[0].build_id))
    return ranked


def candidates_for_version(version: str, arch: str, header_build: Optional[int] = None) -> List[Any]:
    """Known layouts of the version's build, plus builds sharing its kernel file (22621/22631)."""
    from pykd_ext.layouts.registry import candidates_for_build
    parsed = _parse(version)
    builds = []
    if header_build:
        builds.append(int(header_build))
    if parsed:
        builds.append(parsed[2])
    for b in list(builds):
        builds.extend(k for k, v in KERNEL_FILE_BUILD.items() if v == b)
        if b in KERNEL_FILE_BUILD:
            builds.append(KERNEL_FILE_BUILD[b])
    seen = set()
    out = []
    for b in builds:
        if b in seen:
            continue
        seen.add(b)
        out.extend(candidates_for_build(b, arch))
    # the header's own build first when it has layouts (23H2 says 22631, its file is 22621.x)
    if header_build:
        out.sort(key=lambda e: 0 if e.build == header_build else 1)
    return out


def describe_choice(entry: Any, version: Optional[str]) -> Tuple[str, str]:
    """(match kind, one sentence for warnings/JSON) for a chosen layout and the exact version."""
    if not version:
        return NEARBY, "exact kernel version unknown; layout %s chosen by the build number" % entry.build_id
    kind = match_kind(entry, version)
    if kind == EXACT:
        return kind, "layout %s is the kernel's exact version" % entry.build_id
    if kind == IN_RANGE:
        rr = entry.extra["revision_range"]
        return kind, ("kernel %s: layout %s (%s), whose revision range %s.%s-%s.%s covers it (%s)"
                      % (version, entry.build_id, "types only" if entry.types_only else entry.source,
                         rr.get("kernel_build"), rr["first"], rr.get("kernel_build"), rr["last"],
                         rr.get("basis", "")))
    return kind, ("kernel %s: using layout %s of a nearby revision (no layout of %s itself); "
                  "members may differ where later updates changed the type"
                  % (version, entry.build_id, version))


def kphdyn_cross_check(layouts: Any, found: Optional[Dict[str, Any]]) -> Optional[Dict[str, Any]]:
    """kphdyn's offsets of the exact version against a layout (None when kphdyn has no row)."""
    if not found or not found.get("kphdyn"):
        return None
    from pykd_ext.layouts.kernel_versions import check_layout_fields, lookup_kernel
    row = found["kphdyn"]
    kv = lookup_kernel(row["timestamp"], row["size_of_image"], row["arch"])
    if kv is None:
        return None
    result = check_layout_fields(kv, layouts)
    return {"kphdyn_version": kv.version, "compared": result.compared, "agreed": len(result.agreed),
            "mismatches": [{"field": n, "kphdyn": e, "layout": a} for n, e, a in result.mismatches],
            "ok": result.ok}


#: Globals the walkers use, and what needs each (for the types-only warning).
GLOBAL_USES = (
    ("PsActiveProcessHead", "the process list (ps, pstree, threads)"),
    ("PsLoadedModuleList", "kernel module names (start_module)"),
    ("KiProcessorBlock", "processors and 'RUNNING on processor N'"),
    ("PspCidTable", "the CID-table view of psxview"),
    ("ObTypeIndexTable", "object type names (handles, object types): found by scanning the "
                         "kernel's .data for the table's shape instead, when those pages are in the dump"),
    ("ObHeaderCookie", "the Windows 10+ header cookie: derived from the first process and its "
                       "threads instead"),
)


def types_only_gaps(layouts: Any, info: Any, code_named: Any = ()) -> Optional[str]:
    """For a types-only layout: which globals neither the layout nor the target states, and
    which output needs them (None when nothing is missing or the layout has symbols).
    `code_named`: globals the kernel's exported code names (H12, `layouts.inferred.code_globals`)."""
    if not getattr(layouts, "types_only", False):
        return None
    kdbg = getattr(info, "kdbg", None) or {}
    stated = {"PsActiveProcessHead": getattr(info, "ps_active_process_head", None) or kdbg.get("PsActiveProcessHead"),
              "PsLoadedModuleList": getattr(info, "ps_loaded_module_list", None) or kdbg.get("PsLoadedModuleList"),
              "KiProcessorBlock": kdbg.get("KiProcessorBlock"), "PspCidTable": kdbg.get("PspCidTable")}
    missing = [(name, use) for name, use in GLOBAL_USES if not stated.get(name) and name not in code_named]
    if not missing:
        return None
    return ("types-only layout %s has no symbol addresses; globals come from the dump header and "
            "KDBG block, which do not state %s (%s)"
            % (layouts.build_id, ", ".join(n for n, _ in missing), "; ".join(u for _, u in missing)))
