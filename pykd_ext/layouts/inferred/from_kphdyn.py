"""Source 4: System Informer's kphdyn offsets for the exact kernel file (`kphdyn:<field>`).

The kernel file is named by its PE TimeDateStamp + SizeOfImage (triage driver list or the
image's header, `version_choice.kernel_version_of`); only an exact kphdyn row counts — a
neighbouring revision's offsets would be a guess. `KPHDYN_FIELD_SOURCES` says which member each
kphdyn field is (System Informer's own `kphdyn.h` comments).
"""
from typing import Any, Optional

from pykd_ext.layouts.inferred.evidence import Inference
from pykd_ext.layouts.inferred.shapes import outer_path

_ARCH = {"x64": "amd64", "arm64": "arm64"}


def add_kphdyn_evidence(inference: Inference, info: Any) -> Optional[str]:
    """Evidence from the kphdyn row of this exact kernel; returns its version, or None."""
    from pykd_ext.layouts import version_choice
    from pykd_ext.layouts.kernel_versions import KPHDYN_FIELD_SOURCES, lookup_kernel
    arch = _ARCH.get(getattr(info, "arch", None) or "x64")
    found = version_choice.kernel_version_of(info)
    if arch is None or not found or not isinstance(found.get("timestamp"), int):
        inference.notes.append("kphdyn: this kernel file (TimeDateStamp/SizeOfImage) is not in System "
                               "Informer's table; its offsets were not used")
        return found.get("version") if found else None
    kernel = lookup_kernel(found["timestamp"], found["size_of_image"], arch)
    if kernel is None:
        return None
    for name, value in sorted(kernel.fields.items()):
        where = KPHDYN_FIELD_SOURCES.get(name)
        if where is None or not isinstance(value, int) or value < 0 or value == 0xFFFF:
            continue          # no PDB member known, or kphdyn's "not present" value
        outer, path = outer_path(where.type_name, where.path)
        inference.add(outer, path, value, "kphdyn:%s" % name, where.kind)
    return kernel.version


__all__ = ["add_kphdyn_evidence"]
