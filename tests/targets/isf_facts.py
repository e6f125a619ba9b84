"""Test helper: structure facts straight from the ISF JSON (an independent source for tests).

The readers under test never see these files; tests use them to check what the dumps say
(field order of the KDBG, pointers inside the thread/process blocks, TEB/PEB self-references).
"""
import functools
import json
import lzma
from pathlib import Path
from typing import Any, Dict, List


@functools.lru_cache(maxsize=None)
def load_isf(path: str) -> Dict[str, Any]:
    opener = lzma.open if path.endswith(".xz") else open
    with opener(path, "rt") as handle:
        return json.load(handle)


def isf_files_for_build(isf_dir: Path, build: int) -> List[Path]:
    """ISF files of every revision of an NT build number, per INDEX.tsv (oldest first)."""
    rows = []
    with open(isf_dir / "INDEX.tsv", encoding="utf-8") as handle:
        next(handle)
        for line in handle:
            version, _guid, _age, _product, name = line.rstrip("\n").split("\t")
            parts = version.split(".")
            if int(parts[2]) == build:
                rows.append((int(parts[3]), isf_dir / "windows" / "ntkrnlmp.pdb" / name))
    return [path for _, path in sorted(rows)]


def type_size(isf: Dict[str, Any], name: str) -> int:
    return isf["user_types"][name]["size"]


def field_offset(isf: Dict[str, Any], type_name: str, dotted: str) -> int:
    """Offset of a dotted field path ("Tcb.Process", "NtTib.Self") inside `type_name`."""
    offset = 0
    current = type_name
    for part in dotted.split("."):
        field = isf["user_types"][current]["fields"][part]
        offset += field["offset"]
        ftype = field["type"]
        current = ftype.get("name", "")
    return offset
