"""What an inferred layout tries to prove, and the structural facts it may rely on.

Offsets are never taken from here: this module names *which* members the sources look for
(`WANTED`), which embedded structures start their container (`_EPROCESS.Pcb`, `_ETHREAD.Tcb`:
`PsGetCurrentProcess()` returns the `_KPROCESS` as the `_EPROCESS`), and which small types are
part of the public ABI (wdm.h: `LIST_ENTRY`, `CLIENT_ID`, `KAPC_STATE`, `UNICODE_STRING`,
`EX_FAST_REF`, `PS_PROTECTION`) whose inside layout is the same in every kernel of a pointer
size (tests/layouts/inferred checks that claim against every shipped build).

A member's *type* (pointer, UCHAR, 15-byte array, LIST_ENTRY) is taken from the donor layout:
the shipped build nearest to the target's build number with the same pointer size; only its
member types are used, never its offsets.
"""
from typing import Dict, Optional, Tuple

#: embedded structures at offset 0 of their container: (outer type, member) -> inner type
EMBEDDED_AT_ZERO: Dict[Tuple[str, str], str] = {
    ("_EPROCESS", "Pcb"): "_KPROCESS",
    ("_ETHREAD", "Tcb"): "_KTHREAD",
}
#: the inner type -> (outer type, member), to state its members as the outer type's
_INNER = {inner: (outer, member) for (outer, member), inner in EMBEDDED_AT_ZERO.items()}

#: public-ABI types whose members sit at the same offsets in every kernel of a pointer size
ABI_TYPES = ("_LIST_ENTRY", "_CLIENT_ID", "_KAPC_STATE", "_UNICODE_STRING", "_EX_FAST_REF",
             "_PS_PROTECTION", "_LARGE_INTEGER")

#: enums whose names the decoders show (thread states, wait reasons, protection levels) and
#: whose values the kernel keeps across builds: their names come from the donor, with a note
ABI_ENUMS = ("_KTHREAD_STATE", "_KWAIT_REASON", "_MODE", "_KOBJECTS", "_PS_PROTECTED_TYPE",
             "_PS_PROTECTED_SIGNER")

#: the members inference looks for, per outer type ("" = the type's size); the recovery table
#: counts against this list
WANTED: Dict[str, Tuple[str, ...]] = {
    "_EPROCESS": ("", "UniqueProcessId", "ActiveProcessLinks", "ImageFileName",
                  "Pcb.DirectoryTableBase", "Pcb.ThreadListHead", "ThreadListHead", "Peb",
                  "InheritedFromUniqueProcessId", "ObjectTable", "ExitStatus", "Job", "Protection",
                  "Session", "WoW64Process", "SectionObject"),
    "_ETHREAD": ("", "Cid.UniqueProcess", "Cid.UniqueThread", "ThreadListEntry",
                 "Tcb.ThreadListEntry", "Tcb.Process", "Tcb.ApcState.Process", "Tcb.Teb",
                 "Tcb.State", "Tcb.WaitReason", "Tcb.NextProcessor", "Tcb.KernelStack",
                 "Tcb.InitialStack", "Tcb.StackLimit", "Tcb.StackBase", "Tcb.QueueListEntry",
                 "IrpList"),
    "_KPRCB": ("", "CurrentThread", "IdleThread", "Number"),
}


def outer_path(type_name: str, path: str) -> Tuple[str, str]:
    """State a `_KPROCESS`/`_KTHREAD` member as its `_EPROCESS.Pcb.`/`_ETHREAD.Tcb.` path (one
    spelling per field, so sources about either type meet)."""
    found = _INNER.get(type_name)
    if found is None:
        return type_name, path
    return found[0], "%s.%s" % (found[1], path)


def embedded_type(outer: str, member: str) -> Optional[str]:
    return EMBEDDED_AT_ZERO.get((outer, member))


def wanted_count() -> int:
    return sum(len(paths) for paths in WANTED.values())


__all__ = ["ABI_ENUMS", "ABI_TYPES", "EMBEDDED_AT_ZERO", "WANTED", "embedded_type", "outer_path",
           "wanted_count"]
