"""The independent side of the inferred-layout tests: member offsets read from the ISF JSON."""
import json
import lzma
import sys
from functools import lru_cache
from pathlib import Path
from typing import Any, Dict, List, Optional

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from isfdata import ISF_DIR, index_rows  # noqa: E402


@lru_cache(maxsize=8)
def isf_json(version: str) -> Dict[str, Any]:
    row = next(r for r in index_rows() if r["ntoskrnl_version"] == version)
    with lzma.open(ISF_DIR / "windows" / "ntkrnlmp.pdb" / row["file"]) as fh:
        return json.load(fh)


def revisions_of(build: int) -> List[str]:
    """Every ISF version of a build number (x64 kernels), by revision."""
    out = [r["ntoskrnl_version"] for r in index_rows() if r["ntoskrnl_version"].split(".")[2] == str(build)]
    return sorted(out, key=lambda v: int(v.split(".")[3]))


def isf_value(isf: Dict[str, Any], type_name: str, path: str, kind: str = "offset") -> Optional[int]:
    """A member's byte offset (dotted paths through embedded structs), bit position, or the
    type's size; None when the ISF has no such member."""
    types = isf["user_types"]
    if type_name not in types:
        return None
    if kind == "size":
        return int(types[type_name]["size"])
    current, total = type_name, 0
    parts = path.split(".")
    member: Dict[str, Any] = {}
    for i, part in enumerate(parts):
        fields = types.get(current, {}).get("fields", {})
        if part not in fields:
            return None
        member = fields[part]
        total += int(member["offset"])
        if i < len(parts) - 1:
            sub = member["type"]
            if sub.get("kind") not in ("struct", "union"):
                return None
            current = sub["name"]
    if kind == "bit_position":
        return member["type"].get("bit_position")
    return total
