"""Bug check names and the documented meaning of their parameters, loaded from shipped data.

Why a data file: the names (0x1000007E is SYSTEM_THREAD_EXCEPTION_NOT_HANDLED_M), the meaning of
the four parameters, and which parameter holds the faulting code address are Microsoft's
published facts. `bugcheck_codes.tsv` / `bugcheck_subcodes.tsv` are extracted from the "Bug Check
Code Reference" (CC-BY-4.0, see `NOTICE-bugcheck-codes`) by `gen_bugcodes.py`; nothing here is
typed from memory. Loaded once per process (a few hundred rows).

Roles (derived from each description by `gen_bugcodes.ROLE_RULES`): `fault_address` (the code
address that faulted or referenced memory), `exception_record`, `context_record`, `trap_frame`
(addresses of structures holding it), `exception_code`, `referenced_address` (the data address).
"""
import os
from typing import Dict, List, NamedTuple, Optional, Tuple

_HERE = os.path.dirname(os.path.abspath(__file__))
CODES_FILE = os.path.join(_HERE, "bugcheck_codes.tsv")
SUBCODES_FILE = os.path.join(_HERE, "bugcheck_subcodes.tsv")


class BugCheck(NamedTuple):
    code: int
    name: str
    page: str                                   # page of the reference, for links
    parameters: Tuple[str, str, str, str]       # documented meanings ("" when undocumented)
    roles: Dict[int, str]                       # parameter number (1-4) -> role


_CODES: Optional[Dict[int, BugCheck]] = None
_SUBCODES: Optional[Dict[Tuple[int, int], Tuple[str, str, str, str]]] = None


def _rows(path: str) -> List[Dict[str, str]]:
    with open(path, "r", encoding="utf-8") as handle:
        lines = [line.rstrip("\n") for line in handle if not line.startswith("#")]
    columns = lines[0].split("\t")
    return [dict(zip(columns, line.split("\t"))) for line in lines[1:] if line]


def _load() -> Dict[int, BugCheck]:
    global _CODES
    if _CODES is None:
        table: Dict[int, BugCheck] = {}
        for row in _rows(CODES_FILE):
            roles = {}
            for item in filter(None, row["roles"].split(",")):
                number, role = item.split(":", 1)
                roles[int(number)] = role
            code = int(row["code"], 16)
            table[code] = BugCheck(code, row["name"], row["page"],
                                   (row["param1"], row["param2"], row["param3"], row["param4"]),
                                   roles)
        _CODES = table
    return _CODES


def _load_subcodes() -> Dict[Tuple[int, int], Tuple[str, str, str, str]]:
    global _SUBCODES
    if _SUBCODES is None:
        table: Dict[Tuple[int, int], Tuple[str, str, str, str]] = {}
        for row in _rows(SUBCODES_FILE):
            try:
                value = int(row["value"], 0)
            except ValueError:
                continue                        # ranges and prose values stay on the page
            table.setdefault((int(row["code"], 16), value),
                             (row["param2"], row["param3"], row["param4"], row["cause"]))
        _SUBCODES = table
    return _SUBCODES


def lookup(code: Optional[int]) -> Optional[BugCheck]:
    """The reference's entry for a code, or None when the reference does not list it."""
    if code is None:
        return None
    return _load().get(int(code))


def name_of(code: Optional[int]) -> Optional[str]:
    """`SYSTEM_THREAD_EXCEPTION_NOT_HANDLED_M` for 0x1000007E; `BUGCHECK_0x...` when unlisted."""
    if code is None:
        return None
    entry = lookup(code)
    return entry.name if entry is not None else "BUGCHECK_0x%X" % int(code)


def meanings(code: Optional[int], parameters: List[int]) -> List[str]:
    """The documented meaning of each of the four parameters ("" when the reference is silent).

    For codes whose parameters 2-4 depend on parameter 1 (0x9F, 0x133, ...), the row of the
    reference for that value of parameter 1 is used, and its cause goes after parameter 1's text.
    """
    entry = lookup(code)
    if entry is None:
        return ["", "", "", ""]
    out = list(entry.parameters)
    if parameters and code is not None:
        sub = _load_subcodes().get((int(code), int(parameters[0])))
        if sub is not None:
            out[1], out[2], out[3] = sub[0], sub[1], sub[2]
            if sub[3]:
                out[0] = (out[0] + " " if out[0] else "") + "Here: " + sub[3]
    return out


def parameter_with_role(code: Optional[int], role: str) -> Optional[int]:
    """Index (0-3) of the parameter of `code` that has `role`, or None."""
    entry = lookup(code)
    if entry is None:
        return None
    for number, found in sorted(entry.roles.items()):
        if found == role:
            return number - 1
    return None
