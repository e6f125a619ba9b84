"""Source 1: the offsets and sizes the KDBG block states (`kdbg:<wdbgexts.h field>`).

The kernel fills KDDEBUGGER_DATA64 with its own `FIELD_OFFSET`s for the debugger, so these are
the running kernel's statements, not ours. A zero is "not filled in" (the field does not apply
to this architecture, e.g. the IA-64 BStore fields), never offset 0.
"""
from typing import Any, Mapping

from pykd_ext.layouts.inferred.evidence import Inference
from pykd_ext.layouts.inferred.kdbg_facts import KDBG_LAYOUT_FACTS
from pykd_ext.layouts.inferred.shapes import outer_path


def add_kdbg_evidence(inference: Inference, kdbg: Mapping[str, Any]) -> int:
    """Evidence from one decoded KDBG block (`target.info().kdbg`); returns how many fields."""
    added = 0
    for key, type_name, path in KDBG_LAYOUT_FACTS:
        value = kdbg.get(key)
        if not isinstance(value, int) or value <= 0:
            continue
        source = "kdbg:%s" % key
        if path == "SIZE":
            inference.add(type_name, "", value, source, "size")
        else:
            outer, outer_member = outer_path(type_name, path)
            inference.add(outer, outer_member, value, source)
        added += 1
    return added


__all__ = ["add_kdbg_evidence"]
