"""`_PS_PROTECTION` decoded to the names Process Explorer and WinDbg users know: `PPL-Antimalware`.

Why: a protected process light (PPL) or protected process (PP) is the first thing an analyst asks
about lsass, csrss or an antimalware service. The byte's bit positions and the names of its type
and signer values come from the build's layout (`_PS_PROTECTION` bitfields, enums
`_PS_PROTECTED_TYPE` and `_PS_PROTECTED_SIGNER`); nothing is hard-coded. A build without the enums
(or a value the enum does not name) is shown as numbers (`type 1 signer 3`) instead of a guess.
Windows 7 has no `Protection` byte at all: `protection_of` returns None there.
"""
from typing import Any, Dict, Optional

_TYPE_ENUM = "_PS_PROTECTED_TYPE"
_SIGNER_ENUM = "_PS_PROTECTED_SIGNER"
#: enum constant prefixes dropped for display (PsProtectedTypeProtectedLight -> ProtectedLight)
_TYPE_PREFIX = "PsProtectedType"
_SIGNER_PREFIX = "PsProtectedSigner"
#: short forms of the type names, as tools print them
_TYPE_SHORT = {"ProtectedLight": "PPL", "Protected": "PP"}


def _enum_name(layouts: Any, enum: str, value: int, prefix: str) -> Optional[str]:
    if not layouts.has_enum(enum):
        return None
    name = layouts.enum(enum).name_of(value)
    if name is None:
        return None
    return name[len(prefix):] if name.startswith(prefix) else name


def decode_protection(layouts: Any, level: int) -> Optional[Dict[str, Any]]:
    """{type, signer, audit, text} for a raw `_PS_PROTECTION.Level`, or None when 0.

    `type`/`signer` are the enum names without their prefix (`ProtectedLight`, `Antimalware`) or
    the numbers when the build does not name them; `text` is `PPL-Antimalware`, `PP-WinTcb`, or
    `type 1 signer 3` for unnamed values; `-Audit` is appended when the audit bit is set.
    """
    if not level:
        return None
    prot = layouts.type("_PS_PROTECTION")
    data = bytes([level & 0xFF])
    type_value = int(prot.reader("Type")(data))
    signer_value = int(prot.reader("Signer")(data))
    audit = bool(prot.reader("Audit")(data))
    type_name = _enum_name(layouts, _TYPE_ENUM, type_value, _TYPE_PREFIX)
    signer_name = _enum_name(layouts, _SIGNER_ENUM, signer_value, _SIGNER_PREFIX)
    if type_name is not None and signer_name is not None:
        text = "%s-%s" % (_TYPE_SHORT.get(type_name, type_name), signer_name)
    else:
        text = "type %d signer %d" % (type_value, signer_value)
    if audit:
        text += "-Audit"
    return {"type": type_name if type_name is not None else type_value,
            "signer": signer_name if signer_name is not None else signer_value,
            "audit": audit, "text": text}


def protection_of(layouts: Any, view: Any) -> Any:
    """Protection of an `_EPROCESS` StructView: dict, None (unprotected / no such field) or a Fault."""
    if not view.has("Protection.Level"):
        return None
    level = view["Protection.Level"]
    if not isinstance(level, int):
        return level
    return decode_protection(layouts, level)
