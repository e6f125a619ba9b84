"""What kind of process an `_EPROCESS` is, decided from its flags and fields, never from its name.

Why: names lie (malware calls itself `svchost.exe`); the kernel's own bits do not. Which bits
exist depends on the build, so every test first asks the layout (`has_field`) and a build without
the bit simply cannot report that kind:

- system:    `Flags3.SystemProcess` (Windows 10 1709+), else the process `PsInitialSystemProcess`
             points to (any build with symbols).
- secure:    an IUM trustlet or Secure System: `Pcb.SecureState.SecureHandle` (1709+) or
             `TrustletIdentity` (1607) non-zero.
- pico:      `PicoContext` non-zero (WSL1 processes; 8.1+).
- minimal:   `Flags3.Minimal` (Registry, MemCompression, pico hosts; 8.1+).
- protected: `Protection.Level` non-zero (PP/PPL; 8.1+).
- exited:    `ExitTime` set or `Flags.ProcessDelete` set: gone but still referenced.
- frozen:    `Pcb.DeepFreeze` set or `Pcb.FreezeCount` non-zero.
- normal:    none of the above.
"""
from typing import Any, List, Optional

#: The contract's order of precedence (the first that applies is the primary `kind`).
KIND_ORDER = ("system", "secure", "pico", "minimal", "protected", "exited", "frozen", "normal")


def _set(view: Any, path: str) -> bool:
    """True when the build has the field and its value is a non-zero int (a Fault counts as unset)."""
    if not view.has(path):
        return False
    value = view[path]
    return isinstance(value, int) and value != 0


def kind_flags(view: Any, system_process: Optional[int] = None) -> List[str]:
    """All kinds that apply to an `_EPROCESS` view, in `KIND_ORDER`; `["normal"]` when none does.

    `system_process` is the value of `PsInitialSystemProcess` when known (used on builds without
    `SystemProcess`).
    """
    flags: List[str] = []
    if view.has("SystemProcess"):
        if _set(view, "SystemProcess"):
            flags.append("system")
    elif system_process and view.address == system_process:
        flags.append("system")
    if _set(view, "Pcb.SecureState.SecureHandle") or _set(view, "TrustletIdentity"):
        flags.append("secure")
    if _set(view, "PicoContext"):
        flags.append("pico")
    if _set(view, "Minimal"):
        flags.append("minimal")
    if _set(view, "Protection.Level"):
        flags.append("protected")
    if _set(view, "ExitTime.QuadPart") or _set(view, "ProcessDelete"):
        flags.append("exited")
    if _set(view, "Pcb.DeepFreeze") or _set(view, "Pcb.FreezeCount"):
        flags.append("frozen")
    return flags or ["normal"]


def primary_kind(flags: List[str]) -> str:
    for kind in KIND_ORDER:
        if kind in flags:
            return kind
    return "normal"
