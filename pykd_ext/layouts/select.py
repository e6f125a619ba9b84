"""Choosing the kernel layouts for a target, and saying why.

Order of evidence (issue 3):
1. `--symbols FILE` or `--build B` from the user: used as given.
2. The kernel image's CodeView record (PDB GUID/age, from its PE debug directory): exact layouts.
3. GUID unknown to us: the nearest shipped revision of the same build number, with a warning.
4. No GUID at all (triage minidumps carry none): every candidate layout of the build number is
   checked against the data: the KDBG block's own offsets and sizes, the global RVAs it holds
   (pointer - KernBase), the triage header's structure sizes, and facts any correct layout must
   reproduce (the thread's process is the dump's process, the thread's Cid names that process,
   System has PID 4 / name `System` / Blink to PsActiveProcessHead / the header's DTB, the
   PRCB's current thread is the dump's thread). The candidates that fit and the one chosen are
   recorded on `layouts.choice` and shown to the user.
"""
from typing import Any, Dict, List, NamedTuple, Optional, Tuple

from pykd_ext.errors import MemoryReadError, MissingLayoutError, PykdExtError, UnknownBuildError
# KDBG field -> (type, member path) it states: shared with the inferred layouts (H9, issue 15)
from pykd_ext.layouts.inferred.kdbg_facts import KDBG_LAYOUT_FACTS
from pykd_ext.layouts.model import KernelLayouts
from pykd_ext.layouts.registry import (HOW_TO_ADD, BuildEntry, candidates_for_build, find_by_guid,
                                       load_isf_file, usable_layouts)

#: KDBG pointers whose target is not the ISF symbol of the same name (NtBuildLab points into
#: the build string, not at its start, on some builds)
RVA_CHECK_SKIP = ("NtBuildLab",)
#: triage header sizes (`info.extra`) -> type
TRIAGE_SIZES: Tuple[Tuple[str, str], ...] = (
    ("process_size", "_EPROCESS"), ("thread_size", "_ETHREAD"), ("prcb_size", "_KPRCB"))


class Check(NamedTuple):
    """One fact checked against one candidate layout: ok is True/False, None when not checkable."""

    name: str
    expected: Any
    actual: Any
    ok: Optional[bool]
    #: "layout" (a stated offset/size), "data" (a fact of the dump's bytes): a correct layout must
    #: pass these; "rva" (a global's RVA): identifies the revision, does not disqualify a layout
    kind: str = "layout"

    def to_dict(self) -> Dict[str, Any]:
        return {"check": self.name, "kind": self.kind, "expected": self.expected,
                "actual": self.actual, "ok": self.ok}


def _layout_value(layouts: KernelLayouts, type_name: str, path: str) -> Optional[int]:
    if not layouts.has_type(type_name):
        return None
    t = layouts.type(type_name)
    if path == "SIZE":
        return t.size
    return t.offset(path) if t.has_field(path) else None


def _kdbg_checks(layouts: KernelLayouts, kdbg: Dict[str, Any]) -> List[Check]:
    checks: List[Check] = []
    for key, type_name, path in KDBG_LAYOUT_FACTS:
        stated = kdbg.get(key)
        if not isinstance(stated, int) or stated == 0:
            continue
        ours = _layout_value(layouts, type_name, path)
        label = "KDBG.%s = %s.%s" % (key, type_name, "size" if path == "SIZE" else path)
        checks.append(Check(label, stated, ours, None if ours is None else ours == stated))
    base = kdbg.get("KernBase")
    if isinstance(base, int) and base:
        for sym in layouts.symbol_names():
            if sym in RVA_CHECK_SKIP:
                continue
            va = kdbg.get(sym)
            if isinstance(va, int) and va:
                checks.append(Check("KDBG.%s - KernBase = RVA(%s)" % (sym, sym), va - base,
                                    layouts.symbol_rva(sym), va - base == layouts.symbol_rva(sym), "rva"))
    return checks


class _Reader:
    """Reads whole structures from the target once per (address, size)."""

    def __init__(self, space: Any) -> None:
        self.space = space
        self.cache: Dict[Tuple[int, int], Optional[bytes]] = {}

    def get(self, address: int, size: int) -> Optional[bytes]:
        key = (address, size)
        if key not in self.cache:
            try:
                self.cache[key] = self.space.read(address, size)
            except (MemoryReadError, PykdExtError, ValueError, OverflowError):
                self.cache[key] = None
        return self.cache[key]


def _field(layouts: KernelLayouts, type_name: str, path: str, data: Optional[bytes]) -> Optional[Any]:
    if data is None or not layouts.has_type(type_name):
        return None
    t = layouts.type(type_name)
    if not t.has_field(path):
        return None
    f = t.field(path)
    if f.offset + f.size > len(data):
        return None
    return t.reader(path)(data)


def _data_checks(layouts: KernelLayouts, info: Any, reader: _Reader) -> List[Check]:
    checks: List[Check] = []
    extra = info.extra or {}
    partial = (getattr(getattr(layouts, "entry", None), "extra", None) or {}).get("partial_types") or {}
    for key, type_name in TRIAGE_SIZES:
        stated = extra.get(key)
        if type_name in partial:   # H10: a derived prefix-only type's declared size is not its size
            continue
        if isinstance(stated, int) and stated and layouts.has_type(type_name):
            size = layouts.type(type_name).size
            checks.append(Check("triage %s = sizeof(%s)" % (key, type_name), stated, size, size == stated, "data"))
    proc_va, thread_va = extra.get("process"), extra.get("thread")
    if not layouts.has_type("_EPROCESS") or not layouts.has_type("_ETHREAD"):
        return checks
    eproc = reader.get(proc_va, layouts.type("_EPROCESS").size) if isinstance(proc_va, int) else None
    ethread = reader.get(thread_va, layouts.type("_ETHREAD").size) if isinstance(thread_va, int) else None

    def add(name: str, expected: Any, actual: Any) -> None:
        ok = None if expected is None or actual is None else expected == actual
        checks.append(Check(name, expected, actual, ok, "data"))

    if ethread is not None and proc_va is not None:
        add("thread Tcb.Process = process", proc_va, _field(layouts, "_ETHREAD", "Tcb.Process", ethread))
        add("thread Tcb.ApcState.Process = process", proc_va,
            _field(layouts, "_ETHREAD", "Tcb.ApcState.Process", ethread))
    pid = _field(layouts, "_EPROCESS", "UniqueProcessId", eproc)
    if ethread is not None and eproc is not None:
        add("thread Cid.UniqueProcess = process UniqueProcessId", pid,
            _field(layouts, "_ETHREAD", "Cid.UniqueProcess", ethread))
    if eproc is not None:
        name_bytes = _field(layouts, "_EPROCESS", "ImageFileName", eproc)
        name = _ascii_name(name_bytes)
        checks.append(Check("process ImageFileName is a NUL-terminated printable name", True,
                            name is not None, name is not None, "data"))
        if pid == 4:
            add("System: ImageFileName = System", "System", name)
            head = info.ps_active_process_head or (info.kdbg or {}).get("PsActiveProcessHead")
            add("System: ActiveProcessLinks.Blink = PsActiveProcessHead", head,
                _field(layouts, "_EPROCESS", "ActiveProcessLinks.Blink", eproc))
            dtb = _field(layouts, "_EPROCESS", "Pcb.DirectoryTableBase", eproc)
            header = info.directory_table_base
            # CR3's low 12 bits hold PCID/flags, not part of the table's address
            add("System: Pcb.DirectoryTableBase = header DTB (page frame)",
                header & ~0xfff if isinstance(header, int) else None,
                dtb & ~0xfff if isinstance(dtb, int) else None)
    prcb_va = extra.get("prcb")
    if isinstance(prcb_va, int) and layouts.has_type("_KPRCB") and thread_va is not None:
        t = layouts.type("_KPRCB")
        if t.has_field("CurrentThread"):
            f = t.field("CurrentThread")
            data = reader.get(prcb_va + f.offset, f.size)
            add("PRCB CurrentThread = thread", thread_va,
                int.from_bytes(data, "little") if data is not None else None)
    return checks


def _ascii_name(raw: Optional[bytes]) -> Optional[str]:
    if raw is None:
        return None
    text = raw.split(b"\0", 1)[0]
    if not text or len(text) == len(raw) or any(c < 0x20 or c > 0x7e for c in text):
        return None
    return text.decode("ascii")


def fingerprint(layouts: KernelLayouts, info: Any, space: Any = None, reader: Optional[_Reader] = None) -> List[Check]:
    """Every fact of the target checked against one candidate layout."""
    checks = _kdbg_checks(layouts, info.kdbg or {}) if info.kdbg else []
    if space is not None or reader is not None:
        checks += _data_checks(layouts, info, reader or _Reader(space))
    return checks


def _pe_identity(target: Any, base: Optional[int]) -> Tuple[Optional[str], Optional[int], Optional[str], List[str]]:
    """(guid, age, file version, notes) of the kernel image, via targets.pe when available."""
    notes: List[str] = []
    if not base:
        return None, None, None, ["kernel image base unknown (no KDBG KernBase)"]
    try:
        from pykd_ext.targets.pe import read_pe_info
    except ImportError:
        return None, None, None, ["PE reader not available"]
    try:
        pe = read_pe_info(target.kernel, base)
    except (PykdExtError, ValueError) as err:
        return None, None, None, ["kernel PE header at %#x unreadable: %s" % (base, err)]

    def get(*names: str) -> Any:
        for n in names:
            v = pe.get(n) if isinstance(pe, dict) else getattr(pe, n, None)
            if v is not None:
                return v
        return None
    guid = get("pdb_guid", "guid", "codeview_guid")
    age = get("pdb_age", "age", "codeview_age")
    version = get("file_version", "version", "product_version")
    if isinstance(version, (tuple, list)):
        version = ".".join(str(v) for v in version)
    if guid is not None:
        guid = str(guid).strip("{}").replace("-", "").upper()
    if guid is None:
        notes.append("kernel image has no CodeView record in the dump")
    return guid, (int(age) if age is not None else None), (str(version) if version else None), notes


def _revision_of(version: Optional[str]) -> Optional[int]:
    if not version:
        return None
    parts = version.split(".")
    return int(parts[3]) if len(parts) > 3 and parts[3].isdigit() else None


def choose_for_target(target: Any) -> KernelLayouts:
    info = target.info()
    arch = info.arch or "x64"
    kdbg = info.kdbg or {}
    base = info.kernel_base or kdbg.get("KernBase")
    guid, age, file_version, notes = _pe_identity(target, base)
    # H10 (issue 7): the exact kernel version from kphdyn (triage driver list / PE header)
    from pykd_ext.layouts import version_choice
    kernel_version = version_choice.annotate_info(info)
    exact_version = kernel_version["version"] if kernel_version else None
    if file_version is None and exact_version:
        file_version = exact_version
    warnings: List[str] = []
    if guid:
        exact = find_by_guid(guid, age if age is not None else 1)
        if exact is not None:
            exact.choice = {"method": "pdb-guid", "warnings": [], "candidates": [exact.build_id],
                            "chosen": exact.build_id, "reason": "PDB %s-%s of the kernel image" % (guid, age),
                            "notes": notes}
            if exact_version:   # H10
                exact.choice["kernel_version"] = exact_version
            return exact
    build = info.build
    if not build:
        raise UnknownBuildError("the target does not state its Windows build number; use --build B. "
                                + HOW_TO_ADD)
    entries = candidates_for_build(int(build), arch)
    if exact_version:   # H10: also the builds sharing this kernel file (22621 <-> 22631)
        entries = version_choice.candidates_for_version(exact_version, arch, int(build)) or entries
    if not entries:
        what = " (kernel PDB %s-%s)" % (guid, age) if guid else ""
        # H9 (issue 15): no shipped layout fits: a partial layout proven by the dump itself
        from pykd_ext.layouts.inferred import infer_layouts
        return infer_layouts(target, reason="no kernel layouts for Windows build %s (%s)%s: inferred from "
                             "the dump" % (build, arch, what),
                             unusable="no kernel layouts for Windows build %s (%s)%s, and too little could "
                             "be inferred from the dump. %s" % (build, arch, what, HOW_TO_ADD))
    reader = _Reader(target.kernel)
    scored: List[Tuple[BuildEntry, KernelLayouts, List[Check]]] = []
    for entry in entries:
        found = usable_layouts(entry)
        if found is None:                # a damaged imported build: noted once, skipped
            continue
        lay = found
        try:
            checks = fingerprint(lay, info, reader=reader)
        except MissingLayoutError:
            checks = [Check("layout usable", True, False, False)]
        scored.append((entry, lay, checks))
    if not scored:
        raise UnknownBuildError("no usable kernel layouts for Windows build %s (%s): the imported ones are "
                                "damaged. %s" % (build, arch, HOW_TO_ADD))
    def failed_of(checks: List[Check]) -> List[Check]:
        return [c for c in checks if c.ok is False and c.kind != "rva"]

    summary = []
    for entry, lay, checks in scored:
        summary.append({"build_id": entry.build_id, "fits": not failed_of(checks),
                        "passed": sum(1 for c in checks if c.ok and c.kind != "rva"),
                        "checked": sum(1 for c in checks if c.ok is not None and c.kind != "rva"),
                        "rva_matches": sum(1 for c in checks if c.ok and c.kind == "rva"),
                        "rva_checked": sum(1 for c in checks if c.ok is not None and c.kind == "rva"),
                        "failed": [c.name for c in failed_of(checks)]})
    fits = [s for s in scored if not failed_of(s[2])]
    pool = fits or scored
    target_rev = _revision_of(file_version)

    def rank(item: Tuple[BuildEntry, KernelLayouts, List[Check]]) -> Tuple[Any, ...]:
        entry, _lay, checks = item
        failed = len(failed_of(checks))
        rva = sum(1 for c in checks if c.ok and c.kind == "rva")
        closeness = -abs((entry.revision or 0) - target_rev) if target_rev is not None else 0
        # globals move a little between neighbouring revisions: the nearest RVAs suggest the
        # nearest revision when none matches exactly
        drift = sum(abs(c.expected - c.actual) for c in checks
                    if c.kind == "rva" and isinstance(c.expected, int) and isinstance(c.actual, int))
        # H10: exact version > a derived layout's revision range > nearby; the header's build
        match = -{"exact": 0, "revision range": 1}.get(
            version_choice.match_kind(entry, exact_version), 2) if exact_version else 0
        same_build = 1 if entry.build == int(build) else 0
        return (-failed, match, rva, same_build, closeness, -drift, entry.revision or 0)
    entry, chosen, checks = max(pool, key=rank)
    fit_ids = [s[0].build_id for s in fits]
    if guid:
        method = "nearest-revision"
        warnings.append("no layouts for kernel PDB %s-%s%s; using the nearest revision %s of build %s"
                        % (guid, age, " (ntoskrnl %s)" % file_version if file_version else "", entry.build_id, build))
    else:
        method = "fingerprint"
        rva_ok = sum(1 for c in checks if c.ok and c.kind == "rva")
        rva_all = sum(1 for c in checks if c.ok is not None and c.kind == "rva")
        warnings.append("no PDB GUID in the target; chose %s by checking %d candidate layout(s) of build %s "
                        "against the data: %d fit%s; %d of %d KDBG global RVAs match the chosen one"
                        % (entry.build_id, len(scored), build, len(fits),
                           " (%s)" % ", ".join(fit_ids) if 0 < len(fits) <= 12 else "", rva_ok, rva_all))
    if not fits:
        warnings.append("no candidate layout passes every check; %s fails: %s"
                        % (entry.build_id, "; ".join(c.name for c in failed_of(checks))))
    else:
        differing = _differing_types(chosen, [s[1] for s in fits])
        if differing:
            warnings.append("the fitting candidates have different layouts of %s (in members the "
                            "checks do not cover)" % ", ".join(differing))
    reason = ("%d candidate layout(s) of build %s checked against the target's data, %d fit; %s has "
              "%d of %d KDBG global RVAs" % (len(scored), build, len(fits), entry.build_id,
                                            sum(1 for c in checks if c.ok and c.kind == "rva"),
                                            sum(1 for c in checks if c.ok is not None and c.kind == "rva")))
    if target_rev is not None:
        reason += "; nearest to the image's version %s" % file_version
    # H10: say how the layout relates to the exact kernel version, and check kphdyn's offsets
    code_named: Any = ()
    if getattr(chosen, "types_only", False):      # H12: globals the kernel's code names
        from pykd_ext.layouts.inferred.code_globals import find_code_globals
        base = info.kernel_base or (info.kdbg or {}).get("KernBase")
        code_named = find_code_globals(target.kernel, base if isinstance(base, int) else None, info.arch or "x64")
    gaps = version_choice.types_only_gaps(chosen, info, code_named)
    if gaps:
        warnings.append(gaps)
    match, sentence = version_choice.describe_choice(entry, exact_version)
    if exact_version and match != "exact":
        warnings.append(sentence)
    kphdyn_check = version_choice.kphdyn_cross_check(chosen, kernel_version)
    if kphdyn_check and kphdyn_check["mismatches"]:
        warnings.append("kphdyn's offsets for %s disagree with layout %s: %s" % (
            kphdyn_check["kphdyn_version"], entry.build_id,
            ", ".join("%s %s != %s" % (m["field"], m["kphdyn"], m["layout"]) for m in kphdyn_check["mismatches"])))
    chosen.choice = {"method": method, "reason": reason, "warnings": warnings, "candidates": summary,
                     "fits": fit_ids,
                     "chosen": entry.build_id, "checks": [c.to_dict() for c in checks], "notes": notes,
                     "kernel_version": exact_version, "match": match, "match_text": sentence,
                     "kernel_version_source": kernel_version, "kphdyn_check": kphdyn_check}
    return chosen


#: types whose layout matters most to the walkers; candidates that differ here are worth a warning
KEY_TYPES = ("_EPROCESS", "_KPROCESS", "_ETHREAD", "_KTHREAD", "_PEB", "_TEB", "_TOKEN",
             "_HANDLE_TABLE", "_OBJECT_HEADER", "_KPRCB", "_KPCR")


def _differing_types(chosen: KernelLayouts, others: List[KernelLayouts]) -> List[str]:
    out = []
    for name in KEY_TYPES:
        if not chosen.has_type(name):
            continue
        mine = chosen.construct(name)
        if any(o.has_type(name) and o.construct(name) is not mine
               and getattr(o.construct(name), "digest", None) != getattr(mine, "digest", None) for o in others):
            out.append(name)
    return out


def layouts_for_session(session: Any) -> KernelLayouts:
    """The layouts a command uses: --layout inferred, --symbols, --build, or chosen from the target."""
    if getattr(session, "layout_mode", None) == "inferred":     # H9 (issue 15)
        from pykd_ext.layouts.inferred import infer_layouts
        return infer_layouts(session.target)
    if getattr(session, "symbols", None):
        lay = load_isf_file(session.symbols)
        lay.choice = {"method": "symbols-file", "warnings": [], "candidates": [lay.build_id],
                      "chosen": lay.build_id, "reason": "--symbols %s" % session.symbols}
        return lay
    if getattr(session, "build", None):
        # issue 12: builds as people name them (19041, 22H2, 10.0.26100.2000), the choice in a note
        from pykd_ext.layouts.build_names import layouts_for_build_name
        return layouts_for_build_name(str(session.build))
    layouts = choose_for_target(session.target)
    _give_target_pte_bits(session.target, layouts)
    return layouts


def _give_target_pte_bits(target: Any, layouts: KernelLayouts) -> None:
    """Tell a paged target where this build keeps its software PTE bits (pagefile offsets).

    The paging code works without them (it then reports "paged out" without an offset); only
    targets with page tables have `set_software_pte`.
    """
    setter = getattr(target, "set_software_pte", None)
    if setter is None:
        return
    from pykd_ext.memory.pte import SoftwarePteLayout
    try:
        setter(SoftwarePteLayout.from_layouts(layouts))
    except MissingLayoutError:
        pass
