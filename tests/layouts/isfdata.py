"""Test helpers: read the reference ISF JSON directly (the independent side of every comparison)."""
import csv
import json
import lzma
from functools import lru_cache
from pathlib import Path
from typing import Any, Dict, List

import os

REPO = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("PYKD_EXT_SHARED", str(REPO.parent / "shared"))).resolve()
ISF_DIR = SHARED / "isf"
REAL_DIR = SHARED / "real"


@lru_cache(maxsize=None)
def index_rows() -> List[Dict[str, str]]:
    with open(ISF_DIR / "INDEX.tsv", newline="") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    seen, out = set(), []
    for r in rows:
        if r["file"] not in seen:
            seen.add(r["file"])
            out.append(r)
    return out


def row_for(version: str) -> Dict[str, str]:
    for r in index_rows():
        if r["ntoskrnl_version"] == version:
            return r
    raise KeyError(version)


@lru_cache(maxsize=16)
def isf_for(version: str) -> Dict[str, Any]:
    path = ISF_DIR / "windows" / "ntkrnlmp.pdb" / row_for(version)["file"]
    with lzma.open(path) as fh:
        return json.load(fh)


def isf_path(version: str) -> Path:
    return ISF_DIR / "windows" / "ntkrnlmp.pdb" / row_for(version)["file"]


# WinDbg spellings from /work/shared/reference/windbg-output.md (`dt` section) and the debugger docs
WINDBG_BASE = {
    ("unsigned char", 1): "UChar", ("char", 1): "Char", ("unsigned short", 2): "Uint2B",
    ("short", 2): "Int2B", ("unsigned long", 4): "Uint4B", ("long", 4): "Int4B",
    ("unsigned int", 4): "Uint4B", ("int", 4): "Int4B", ("unsigned long long", 8): "Uint8B",
    ("long long", 8): "Int8B", ("wchar", 2): "Wchar", ("double", 8): "Double", ("float", 4): "Float",
}


def shown(name: str) -> str:
    """WinDbg's spelling of Volatility's per-PDB numbered names."""
    if name.startswith("__unnamed"):
        return "<unnamed-tag>"
    if name.startswith("__anonymous"):
        return "<anonymous-tag>"
    return name


def windbg_spelling(isf: Dict[str, Any], t: Dict[str, Any]) -> str:
    """Expected `dt` type column for an ISF member type (independent of pykd_ext.layouts.model)."""
    kind = t["kind"]
    if kind == "base":
        return WINDBG_BASE[(t["name"], isf["base_types"][t["name"]]["size"])]
    if kind == "pointer":
        sub = t["subtype"]
        prefix = "Ptr%d " % (isf["base_types"]["pointer"]["size"] * 8)
        if sub["kind"] == "pointer":
            return prefix + windbg_spelling(isf, sub)
        if sub["kind"] == "base":
            return prefix + ("Void" if sub["name"] == "void" else WINDBG_BASE[(sub["name"], isf["base_types"][sub["name"]]["size"])])
        if sub["kind"] == "function":
            return prefix + "    void "
        name = sub["name"]
        return prefix + shown(name)
    if kind == "array":
        return "[%d] %s" % (t["count"], windbg_spelling(isf, t["subtype"]))
    if kind == "bitfield":
        n = t["bit_length"]
        return "Pos %d, %d Bit%s" % (t["bit_position"], n, "" if n == 1 else "s")
    if kind in ("struct", "union", "enum"):
        return shown(t["name"])
    return "void "
