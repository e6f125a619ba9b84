"""Inferred kernel layouts: a partial layout proven by the dump itself (issue 15).

Used with `--layout inferred`, and automatically when no shipped layout fits the target's build.
Four sources add evidence, each field keeping its provenance (see `evidence`):
1. `from_kdbg`: the KDBG block's offset and size fields (`kdbg:OffsetEprocessPeb`);
2. `consistency`: System and the objects around it agreeing with themselves
   (`self-consistency:System`, `...:process-list`, `...:thread-list`);
3. `getters`: capstone disassembly of exported kernel getters (`disasm:PsGetProcessPeb`);
4. `from_kphdyn`: System Informer's offsets for the exact kernel file (`kphdyn:EpObjectTable`).
`build` turns the agreed fields into an ordinary `KernelLayouts` (only proven members); fields
nobody proved stay unknown and commands say so.

This package is imported only when inference runs (`infer_layouts`); `kdbg_facts` is the small
table the layout choice shares.
"""
from typing import Any, Optional

__all__ = ["infer_layouts"]


def infer_layouts(target: Any, reason: Optional[str] = None, unusable: Optional[str] = None) -> Any:
    """The `InferredLayouts` of a target (see the package docstring); `reason` says why
    inference was used (the user's option, or no shipped layout fitting). Raises
    `UnknownBuildError` (with `unusable` as its text, when given) when not even a process's
    identity (`UniqueProcessId`, `ImageFileName`, `ActiveProcessLinks`) could be proven."""
    from pykd_ext.layouts.inferred.build import build_layouts, nearest_donor
    from pykd_ext.layouts.inferred.consistency import add_consistency_evidence
    from pykd_ext.layouts.inferred.evidence import Inference
    from pykd_ext.layouts.inferred.from_kdbg import add_kdbg_evidence
    from pykd_ext.layouts.inferred.from_kphdyn import add_kphdyn_evidence
    from pykd_ext.layouts.inferred.getters import add_getter_evidence
    info = target.info()
    arch = info.arch or "x64"
    pointer = 4 if arch in ("x86", "arm") else 8
    build = int(info.build or 0)
    inference = Inference(arch, pointer)
    donor = nearest_donor(build, pointer, arch)
    if info.kdbg:
        add_kdbg_evidence(inference, info.kdbg)
    extra = info.extra or {}
    for key, type_name in (("process_size", "_EPROCESS"), ("thread_size", "_ETHREAD"), ("prcb_size", "_KPRCB")):
        if isinstance(extra.get(key), int) and extra[key] > 0:
            inference.add(type_name, "", extra[key], "triage-header:%s" % key, "size")
    version = add_kphdyn_evidence(inference, info)
    add_getter_evidence(inference, target.kernel, info, donor)
    process_object = thread_object = None
    if donor is not None and donor.has_enum("_KOBJECTS"):
        kinds = donor.enum("_KOBJECTS")
        process_object, thread_object = kinds.value_of("ProcessObject"), kinds.value_of("ThreadObject")
    add_consistency_evidence(inference, target.kernel, info, process_object, thread_object)
    layouts = build_layouts(inference, build, version, arch, donor)
    core = ("_EPROCESS.UniqueProcessId", "_EPROCESS.ImageFileName", "_EPROCESS.ActiveProcessLinks")
    if not all(name in layouts.placed for name in core):
        from pykd_ext.errors import UnknownBuildError
        lacking = [name for name in core if name not in layouts.placed]
        raise UnknownBuildError(unusable or "the dump does not prove %s: no inferred layout (%s)" % (
            ", ".join(lacking), "; ".join(inference.notes) or "no sources"))
    from pykd_ext.layouts.inferred.code_globals import find_code_globals
    base = info.kernel_base or (info.kdbg or {}).get("KernBase")
    code = find_code_globals(target.kernel, base if isinstance(base, int) else None, arch)
    layouts.choice = {"method": "inferred", "chosen": layouts.build_id,
                      "reason": reason or "--layout inferred",
                      "warnings": layouts.context_notes()[:2], "candidates": [layouts.build_id],
                      "fields": layouts.provenance(), "unplaced": dict(layouts.unplaced),
                      # H12: globals the kernel's code names (kernel.context resolves them too)
                      "globals": [dict(found, name=name) for name, found in sorted(code.items())]}
    return layouts
