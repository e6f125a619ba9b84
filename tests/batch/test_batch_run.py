"""`pykd-ext batch` end to end: error rows, dedupe, resume, failure isolation, the tables, export.

Independent sources: the forge's plan (what each dump must say), the bad files the fixture made
(each must give its own reason), sha256 of the files (computed here with hashlib), DuckDB's own
readers of the exported files.
"""
import hashlib
import io
import json
import os
import shutil
from pathlib import Path
from typing import Any, Dict

from batch_helpers import query, table_rows
from pykd_ext.batch.run import BatchOptions, run_batch
from pykd_ext.cli import run_command


def test_every_input_gets_a_row(corpus: Dict[str, Any], local_db: Dict[str, Any], real_dir: Path) -> None:
    db = local_db["db"]
    expected = {str(Path(f.path)) for f in corpus["facts"]} | set(corpus["bad"]) | set(corpus["duplicates"])
    expected |= {str(p) for p in (real_dir / "kernel-triage").iterdir()}
    expected |= {str(p) for p in (real_dir / "malformed").iterdir()}
    rows = dict(query(db, "SELECT path, status FROM dumps"))
    assert set(rows) == expected
    assert query(db, "SELECT count(*), count(DISTINCT path) FROM dumps")[0] == (len(expected),) * 2


def test_bad_files_are_error_rows_with_their_reason(corpus: Dict[str, Any], local_db: Dict[str, Any],
                                                    real_dir: Path) -> None:
    db = local_db["db"]
    for path, words in corpus["bad"].items():
        status, error = query(db, "SELECT status, error FROM dumps WHERE path = ?", (path,))[0]
        assert status == "error" and words in error and "\n" not in error, (path, error)
    # issue 15 (H8): 32-bit triage dumps are read; the ARM32 one is a row with its drivers
    status, arch, build = query(db, "SELECT status, arch, build FROM dumps WHERE path = ?",
                                (str(real_dir / "kernel-triage/win10-17134-arm32-triage.dmp"),))[0]
    assert (status, arch, build) == ("ok", "arm", 17134)
    assert local_db["stats"].errors == len(corpus["bad"]) + 1     # + mangled minidump


def test_identical_content_is_analysed_once(corpus: Dict[str, Any], local_db: Dict[str, Any]) -> None:
    db = local_db["db"]
    stats = local_db["stats"]
    assert stats.reused == len(corpus["duplicates"])
    assert stats.analysed == stats.distinct
    for copy, original in corpus["duplicates"].items():
        sha = hashlib.sha256(Path(copy).read_bytes()).hexdigest()
        rows = query(db, "SELECT path, sha256, bucket_detail FROM dumps WHERE path IN (?, ?) "
                         "ORDER BY path", (copy, original))
        assert len(rows) == 2 and rows[0][1:] == rows[1][1:] and rows[0][1] == sha
        # child rows exist once per content
        assert query(db, "SELECT count(*) FROM drivers WHERE sha256 = ?", (sha,))[0][0] == \
            len(corpus["facts"][0].drivers if original == corpus["facts"][0].path else
                corpus["facts"][3].drivers)


def test_tables_hold_the_planted_facts(corpus: Dict[str, Any], local_db: Dict[str, Any]) -> None:
    db = local_db["db"]
    for facts in corpus["facts"][:6]:
        sha = hashlib.sha256(Path(facts.path).read_bytes()).hexdigest()
        row = query(db, "SELECT bugcheck_code, build, kernel_version, processors, crash_time, "
                        "blamed_module, pid, tid, thread_address FROM dumps WHERE path = ?",
                    (facts.path,))[0]
        assert row[0] == facts.bugcheck_code and row[1] == facts.build and row[2] == facts.version
        assert row[5] == facts.expected_blame and row[6:] == (facts.pid, facts.tid, facts.thread)
        drivers = query(db, "SELECT name, base, size FROM drivers WHERE sha256 = ? ORDER BY idx", (sha,))
        assert drivers == [(d["name"], d["base"], d["size"]) for d in facts.drivers]
        threads = query(db, "SELECT tid, pid, crashing FROM threads WHERE sha256 = ? AND crashing", (sha,))
        assert threads == [(facts.tid, facts.pid, True)]
        processes = query(db, "SELECT name, pid FROM processes WHERE sha256 = ? AND address = ?",
                          (sha, facts.process))
        assert processes == [(facts.process_name, facts.pid)]
        top = facts.top_of_stack
        planted = {top + o: v for o, v in facts.stack_words.items()}
        frames = query(db, "SELECT stack_address, address FROM stack_frames WHERE sha256 = ? "
                           "AND source = 'scan'", (sha,))
        assert frames and all(planted.get(at) == value for at, value in frames)
    types = dict((r[0], r[1]) for r in query(db, "SELECT column_name, data_type FROM "
                                                 "information_schema.columns WHERE table_name = 'dumps'"))
    assert types["crash_time"] == "TIMESTAMP" and types["bugcheck_code"] == "UBIGINT"


def test_resume_skips_what_is_held(local_db: Dict[str, Any], tmp_path: Path) -> None:
    db = str(tmp_path / "resume.duckdb")
    shutil.copyfile(local_db["db"], db)
    before = table_rows(db, "dumps")
    stats = run_batch(local_db["paths"], BatchOptions(db=db, jobs=1, resume=True, progress=False))
    assert stats.analysed == 0 and stats.skipped == stats.inputs
    assert table_rows(db, "dumps") == before


def test_resume_after_a_partial_run(corpus: Dict[str, Any], tmp_path: Path) -> None:
    """Half the files first, then everything with --resume: only the new half is analysed,
    and a new path holding known content is given its row without analysis."""
    db = str(tmp_path / "partial.duckdb")
    paths = [f.path for f in corpus["facts"] if f.version == "10.0.19041.1288"][:8]
    assert len(paths) >= 6
    paths = paths[:6]
    first = run_batch(paths[:3], BatchOptions(db=db, jobs=1, progress=False))
    assert first.analysed == 3
    extra = tmp_path / "renamed.dmp"
    shutil.copyfile(paths[0], str(extra))
    second = run_batch(paths + [str(extra)], BatchOptions(db=db, jobs=1, resume=True, progress=False))
    assert (second.analysed, second.skipped, second.reused) == (3, 3, 1)
    rows = query(db, "SELECT bucket_detail FROM dumps WHERE path IN (?, ?)", (paths[0], str(extra)))
    assert len(rows) == 2 and rows[0] == rows[1]


def test_worker_crash_and_timeout_become_error_rows(corpus: Dict[str, Any], tmp_path: Path) -> None:
    folder = tmp_path / "faulty"
    folder.mkdir()
    good = [f.path for f in corpus["facts"] if f.version == "10.0.19041.1288"][:4]
    for path in good:
        shutil.copy(path, str(folder))
    shutil.copyfile(good[0], str(folder / "crash-worker.dmp"))
    with open(str(folder / "crash-worker.dmp"), "ab") as handle:
        handle.write(b"1")                                  # other content: not deduplicated
    shutil.copyfile(good[1], str(folder / "hang.dmp"))
    with open(str(folder / "hang.dmp"), "ab") as handle:
        handle.write(b"2")
    db = str(tmp_path / "faulty.duckdb")
    stats = run_batch([str(folder)], BatchOptions(db=db, jobs=2, timeout=8, progress=False,
                                                  analyze="batch_faults:analyze"))
    rows = dict(query(db, "SELECT path, coalesce(error, status) FROM dumps"))
    assert "worker process died" in rows[str(folder / "crash-worker.dmp")]
    assert "exit code 7" in rows[str(folder / "crash-worker.dmp")]
    assert "timed out after 8 s" in rows[str(folder / "hang.dmp")]
    for path in good:
        assert rows[str(folder / os.path.basename(path))] == "ok"
    assert stats.errors == 2 and stats.analysed == 6


def test_cli_exit_status_summary_and_export(local_db: Dict[str, Any], tmp_path: Path) -> None:
    out = io.StringIO()
    code = run_command(["batch", "--db", local_db["db"], "--export", str(tmp_path / "pq"),
                        "--format", "parquet", "-q"], out=out)
    assert code == 0 and "bucket" in out.getvalue()
    import duckdb
    con = duckdb.connect()
    for table in ("dumps", "drivers", "processes", "threads", "stack_frames"):
        exported = con.execute("SELECT count(*) FROM read_parquet(?)",
                               [str(tmp_path / "pq" / (table + ".parquet"))]).fetchall()[0][0]
        assert exported == query(local_db["db"], "SELECT count(*) FROM %s" % table)[0][0]
    out = io.StringIO()
    code = run_command(["batch", "--db", local_db["db"], "--export", str(tmp_path / "js"),
                        "--format", "jsonl", "--top", "3", "-q"], out=out)
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert code == 0 and len(lines) == 3 and {"bucket", "dumps", "example"} <= set(lines[0])
    first = json.loads((tmp_path / "js" / "dumps.jsonl").read_text().splitlines()[0])
    assert "bucket" in first and "sha256" in first
    top = query(local_db["db"], "SELECT bucket, count(*) AS n FROM dumps WHERE status = 'ok' "
                                "GROUP BY bucket ORDER BY n DESC, bucket LIMIT 3")
    assert [(r["bucket"], r["dumps"]) for r in lines] == top


def test_cli_errors_are_one_line(tmp_path: Path, capsys: Any) -> None:
    code = run_command(["batch", "--db", str(tmp_path / "missing.duckdb"), "--report",
                        str(tmp_path / "r.html")], out=io.StringIO())
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("pykd-ext: ") and "no such database" in err[0]
