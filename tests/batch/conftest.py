"""Fixtures of the batch tests: a forged triage corpus with known blame, bad inputs, one local run.

Kept small for CI (a few dozen dumps, three kernel builds); the benchmark makes thousands.
"""
import shutil
import struct
from pathlib import Path
from typing import Any, Dict

import pytest

from pykd_ext.forge.triage_dump import write_corpus
from pykd_ext.targets.dumpheader import HEADER64_SIZE
from pykd_ext.targets.triage import TRIAGE_DUMP64, TRIAGE_OFFSET

#: three builds keep ISF loading short; every one has an ISF, layouts and a kphdyn row
TEST_VERSIONS = ("10.0.17763.2183", "10.0.19041.1288", "10.0.22000.318")
CORPUS_SIZE = 24
SEED = 1313


def _offset_in_triage(name: str) -> int:
    at = 0
    for sub in TRIAGE_DUMP64.subcons:
        if sub.name == name:
            return TRIAGE_OFFSET + at
        at += sub.sizeof()
    raise KeyError(name)


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: Any) -> Dict[str, Any]:
    """{"dir", "facts" (what each forged dump planted), "bad" (path -> what must be said),
    "duplicates" (copy -> original)}."""
    folder = tmp_path_factory.mktemp("batch-corpus")
    dumps = folder / "dumps"
    facts = write_corpus(str(dumps), CORPUS_SIZE, seed=SEED, versions=TEST_VERSIONS)
    bad = folder / "bad"
    bad.mkdir()
    first = Path(facts[0].path)
    raw = first.read_bytes()
    truncated = bad / "truncated.dmp"
    truncated.write_bytes(raw[:HEADER64_SIZE + 0x40])
    corrupt = bytearray(raw)
    struct.pack_into("<I", corrupt, _offset_in_triage("DataBlocksCount"), 0x7FFFFFFF)
    (bad / "corrupt.dmp").write_bytes(bytes(corrupt))
    (bad / "notes.txt").write_text("not a dump\n")
    (bad / "empty.dmp").write_bytes(b"")
    copies = folder / "copies"
    copies.mkdir()
    duplicates = {}
    for index in (0, 3):
        target = copies / ("same-as-%d.dmp" % index)
        shutil.copyfile(facts[index].path, str(target))
        duplicates[str(target)] = facts[index].path
    return {"dir": folder, "dumps": dumps, "facts": facts, "duplicates": duplicates,
            "seed": SEED, "versions": TEST_VERSIONS,
            "bad": {str(truncated): "TRIAGE_DUMP64", str(bad / "corrupt.dmp"): "DataBlocksCount",
                    str(bad / "notes.txt"): "not a Windows dump",
                    str(bad / "empty.dmp"): "empty file"}}


@pytest.fixture(scope="session")
def local_db(corpus: Dict[str, Any], real_dir: Path, tmp_path_factory: Any) -> Dict[str, Any]:
    """One local run (2 worker processes) over the corpus, the bad inputs and the real dumps."""
    from pykd_ext.batch.run import BatchOptions, run_batch
    db = str(tmp_path_factory.mktemp("batch-db") / "local.duckdb")
    paths = [str(corpus["dir"]), str(real_dir / "kernel-triage"), str(real_dir / "malformed")]
    stats = run_batch(paths, BatchOptions(db=db, jobs=2, timeout=120, progress=False))
    return {"db": db, "paths": paths, "stats": stats}
