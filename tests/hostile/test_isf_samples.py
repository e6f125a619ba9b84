"""Shared builders of the hostile-ISF tests (test_isf_*.py): small real ISF documents and a CLI
runner. No tests here (pytest collects nothing from this file).

The base documents are cut out of a real JPCERTCC table (10.0.19041.1288): the by-value closure
of a few root types, every base type, the enums those types use and a few global symbols, so a
CLI run on them takes milliseconds of symbol work and every value in them is real.
"""
import copy
import json
import lzma
import os
import subprocess
import sys
from functools import lru_cache
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Tuple

REPO = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("PYKD_EXT_SHARED", str(REPO.parent / "shared"))).resolve()
ISF_DIR = SHARED / "isf"
PYTHON = sys.executable
#: the real table the samples are cut from, and its identity (INDEX.tsv)
SOURCE_VERSION = "10.0.19041.1288"
SYMBOLS = ("PsActiveProcessHead", "PspCidTable", "PsLoadedModuleList", "KdDebuggerDataBlock")


@lru_cache(maxsize=None)
def real_isf_path(version: str = SOURCE_VERSION) -> Path:
    with open(ISF_DIR / "INDEX.tsv", encoding="utf-8") as fh:
        header = fh.readline().rstrip("\n").split("\t")
        for line in fh:
            row = dict(zip(header, line.rstrip("\n").split("\t")))
            if row["ntoskrnl_version"] == version:
                return ISF_DIR / "windows" / "ntkrnlmp.pdb" / row["file"]
    raise KeyError(version)


@lru_cache(maxsize=None)
def _real_doc(version: str) -> str:
    with lzma.open(real_isf_path(version)) as fh:
        return fh.read().decode("utf-8")


def real_doc(version: str = SOURCE_VERSION) -> Dict[str, Any]:
    """A fresh (mutable) copy of a real ISF document."""
    return json.loads(_real_doc(version))


def _by_value(t: Dict[str, Any]) -> Iterable[Tuple[str, str]]:
    """(kind, name) of the struct/union/enum a member type holds by value (through arrays)."""
    while t.get("kind") == "array":
        t = t["subtype"]
    if t.get("kind") == "bitfield":
        t = t["type"]
    if t.get("kind") in ("struct", "union", "enum"):
        yield t["kind"], t["name"]


def cut(doc: Dict[str, Any], roots: Iterable[str]) -> Dict[str, Any]:
    """The by-value closure of `roots` in `doc`, with its enums, all base types, a few symbols."""
    types: Dict[str, Any] = {}
    enums: Dict[str, Any] = {}
    todo: List[str] = [r for r in roots if r in doc["user_types"]]
    while todo:
        name = todo.pop()
        if name in types:
            continue
        types[name] = doc["user_types"][name]
        for member in types[name]["fields"].values():
            for kind, used in _by_value(member["type"]):
                if kind == "enum":
                    enums[used] = doc["enums"][used]
                else:
                    todo.append(used)
    for name in ("_KTHREAD_STATE", "_KWAIT_REASON"):
        enums.setdefault(name, doc["enums"][name])
    return {"metadata": copy.deepcopy(doc["metadata"]), "base_types": copy.deepcopy(doc["base_types"]),
            "user_types": copy.deepcopy(types), "enums": copy.deepcopy(enums),
            "symbols": {s: copy.deepcopy(doc["symbols"][s]) for s in SYMBOLS if s in doc["symbols"]}}


@lru_cache(maxsize=None)
def _sample(roots: Tuple[str, ...]) -> str:
    return json.dumps(cut(real_doc(), roots))


def eprocess_doc() -> Dict[str, Any]:
    """_EPROCESS and everything it holds by value (what `dt _EPROCESS` and `structs history` use)."""
    return json.loads(_sample(("_EPROCESS", "_KTHREAD")))


def small_doc() -> Dict[str, Any]:
    """A handful of small root types (struct, union, bitfields, arrays, pointers, an enum)."""
    return json.loads(_sample(("_LIST_ENTRY", "_UNICODE_STRING", "_CLIENT_ID", "_EX_FAST_REF",
                               "_KAPC_STATE", "_PS_PROTECTION", "_SID", "_SID_AND_ATTRIBUTES")))


def write_doc(path: Path, doc: Any) -> Path:
    path.write_text(json.dumps(doc), encoding="utf-8")
    return path


def run_cli(args: List[str], home: Path, cwd: Optional[Path] = None, timeout: float = 120) -> Tuple[int, str, str]:
    """(exit code, stdout, stderr) of `python -m pykd_ext ARGS` with PYKD_EXT_HOME=home."""
    env = dict(os.environ, PYKD_EXT_HOME=str(home), PYTHONIOENCODING="utf-8")
    proc = subprocess.run([PYTHON, "-m", "pykd_ext"] + args, cwd=str(cwd or home.parent), env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)
    return proc.returncode, proc.stdout.decode("utf-8", "replace"), proc.stderr.decode("utf-8", "replace")


def assert_one_error_line(rc: int, err: str, *expected: str) -> str:
    """The CLI's contract for bad input: exit 2 and exactly one stderr line `pykd-ext: ...`."""
    lines = err.splitlines()
    assert rc == 2, (rc, err)
    assert len(lines) == 1 and lines[0].startswith("pykd-ext: "), err
    assert "Traceback" not in err
    for text in expected:
        assert text in lines[0], (text, lines[0])
    return lines[0]
