"""Windows structure facts for the forge, read from the ISF symbol tables (never typed by hand).

Why: a forged dump is only a fair test if every Windows-defined offset, bit position and global
RVA in it is the real one of a real kernel build. The project's reference data (`shared/isf`,
Volatility-3 ISF JSON generated from Microsoft's PDBs) has them; this module is the forge's one
door to that data: a small, cached view (`SymbolTable`) with `offset`, `bits`, `size`, `rva`.

The forge also uses the table's PDB GUID/age as the forged kernel's CodeView identity, so a reader
that picks layouts by GUID finds exactly the table the dump was built from.

(When the project's generated layouts (`pykd_ext.layouts`) exist, this view can delegate to them;
it only reads the same ISF facts.)
"""
import json
import lzma
import os
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

_CACHE: Dict[str, "SymbolTable"] = {}


def default_shared_dir() -> Path:
    """`shared/` beside the checkout, or $PYKD_EXT_SHARED (the same rule as tests/conftest.py)."""
    env = os.environ.get("PYKD_EXT_SHARED")
    if env:
        return Path(env).resolve()
    return (Path(__file__).resolve().parents[2].parent / "shared").resolve()


class SymbolTable:
    """One kernel build's ISF: types, bitfields and global RVAs by name."""

    def __init__(self, path: str, data: Dict[str, Any], version: Optional[str] = None) -> None:
        self.path = path
        self._types: Dict[str, Any] = data.get("user_types", {})
        self._symbols: Dict[str, Any] = data.get("symbols", {})
        pdb = data.get("metadata", {}).get("windows", {}).get("pdb", {})
        self.guid: str = str(pdb.get("GUID") or "")
        self.age: int = int(pdb.get("age") or 0)
        self.pdb_name: str = str(pdb.get("database") or "ntkrnlmp.pdb")
        self.version = version                      # "10.0.19041.2604" when known (INDEX.tsv)

    @property
    def build(self) -> Optional[int]:
        if not self.version:
            return None
        parts = self.version.split(".")
        return int(parts[2]) if len(parts) > 2 else None

    # --- types ---------------------------------------------------------------------------------

    def _fields(self, type_name: str) -> Dict[str, Any]:
        try:
            return self._types[type_name]["fields"]
        except KeyError:
            raise KeyError("%s: no type %s" % (os.path.basename(self.path), type_name)) from None

    def size(self, type_name: str) -> int:
        self._fields(type_name)
        return int(self._types[type_name]["size"])

    def has_type(self, type_name: str) -> bool:
        return type_name in self._types

    def offset(self, type_name: str, path: str) -> int:
        """Byte offset of a (dotted) member path, e.g. offset("_CONTEXT", "FltSave.MxCsr")."""
        total = 0
        current = type_name
        names = path.split(".")
        for depth, name in enumerate(names):
            fields = self._fields(current)
            if name not in fields:
                raise KeyError("%s: %s has no member %s" % (os.path.basename(self.path), current,
                                                            name))
            member = fields[name]
            total += int(member["offset"])
            kind = member["type"].get("kind")
            if depth + 1 < len(names):
                if kind not in ("struct", "union"):
                    raise KeyError("%s.%s is not a struct" % (current, name))
                current = member["type"]["name"]
        return total

    def bits(self, type_name: str, member: str) -> Tuple[int, int]:
        """(bit_position, bit_length) of a bitfield member."""
        entry = self._fields(type_name).get(member)
        if entry is None or entry["type"].get("kind") != "bitfield":
            raise KeyError("%s.%s is not a bitfield in %s" % (type_name, member,
                                                             os.path.basename(self.path)))
        return int(entry["type"]["bit_position"]), int(entry["type"]["bit_length"])

    def has_member(self, type_name: str, member: str) -> bool:
        return type_name in self._types and member in self._types[type_name]["fields"]

    # --- globals -------------------------------------------------------------------------------

    def rva(self, symbol: str) -> int:
        try:
            return int(self._symbols[symbol]["address"])
        except KeyError:
            raise KeyError("%s: no symbol %s" % (os.path.basename(self.path), symbol)) from None


def _index(isf_dir: Path) -> List[Tuple[str, str, int, str]]:
    """INDEX.tsv rows: (version, guid, age, file)."""
    rows = []
    index = isf_dir / "INDEX.tsv"
    with open(str(index), "r", encoding="utf-8") as handle:
        for line in handle.read().splitlines()[1:]:
            cols = line.split("\t")
            if len(cols) >= 5:
                rows.append((cols[0], cols[1], int(cols[2]), cols[4]))
    return rows


def load_table(path: str, version: Optional[str] = None) -> SymbolTable:
    """Load (once per process) one ISF file (.json or .json.xz)."""
    key = os.path.abspath(path)
    table = _CACHE.get(key)
    if table is None:
        opener = lzma.open if key.endswith(".xz") else open
        with opener(key, "rb") as handle:
            data = json.load(handle)
        table = SymbolTable(key, data, version)
        _CACHE[key] = table
    return table


def table_for_build(build: int, isf_dir: Optional[Path] = None,
                    revision: Optional[int] = None) -> SymbolTable:
    """The ISF of an x64 kernel build (the highest revision, or the one asked for)."""
    isf_dir = Path(isf_dir) if isf_dir is not None else default_shared_dir() / "isf"
    best: Optional[Tuple[Tuple[int, ...], str, str]] = None
    for version, _guid, _age, name in _index(isf_dir):
        parts = tuple(int(p) for p in version.split("."))
        if len(parts) < 4 or parts[2] != build:
            continue
        if revision is not None and parts[3] != revision:
            continue
        if best is None or parts > best[0]:
            best = (parts, version, name)
    if best is None:
        raise KeyError("no ISF for build %d in %s" % (build, isf_dir))
    return load_table(str(isf_dir / "windows" / "ntkrnlmp.pdb" / best[2]), best[1])
