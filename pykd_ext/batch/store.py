"""The batch database: an embedded DuckDB file with one typed table per kind of row.

Why DuckDB: users ask their own questions ("which driver crashes our machines, on which builds,
since when") in SQL, over millions of rows, without a server; DuckDB is one file, columnar, and
exports Parquet/JSON/CSV itself. Why this module: the schema is written down once (`TABLES`),
every write goes through `Store.write` (one transaction per batch of results, columns handed to
DuckDB as arrays: row-by-row inserts cost milliseconds each), and `--resume` asks it what is held.

Keys: `dumps` has one row per input file (`path`, unique); every other table is keyed by the
dump's content (`sha256`), so identical files share their child rows. Addresses are UBIGINT,
times TIMESTAMP (UTC), sizes and counts integers; text is VARCHAR.
"""
import os
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

#: table -> ((column, DuckDB type), ...); `dumps` first. Order is the column order on disk.
TABLES: Dict[str, Tuple[Tuple[str, str], ...]] = {
    "dumps": (
        ("path", "VARCHAR"), ("sha256", "VARCHAR"), ("size", "UBIGINT"), ("status", "VARCHAR"),
        ("error", "VARCHAR"), ("container", "VARCHAR"), ("dump_type", "VARCHAR"),
        ("dump_type_code", "INTEGER"), ("arch", "VARCHAR"), ("build", "INTEGER"),
        ("kernel_version", "VARCHAR"), ("processors", "INTEGER"), ("crash_time", "TIMESTAMP"),
        ("uptime_seconds", "DOUBLE"), ("bugcheck_code", "UBIGINT"), ("bugcheck_name", "VARCHAR"),
        ("param1", "UBIGINT"), ("param2", "UBIGINT"), ("param3", "UBIGINT"), ("param4", "UBIGINT"),
        ("param1_meaning", "VARCHAR"), ("param2_meaning", "VARCHAR"),
        ("param3_meaning", "VARCHAR"), ("param4_meaning", "VARCHAR"),
        ("exception_code", "UBIGINT"), ("processor", "INTEGER"), ("process_name", "VARCHAR"),
        ("pid", "UBIGINT"), ("tid", "UBIGINT"), ("thread_address", "UBIGINT"),
        ("process_address", "UBIGINT"), ("fault_address", "UBIGINT"),
        ("fault_location", "VARCHAR"), ("fault_bytes", "VARCHAR"),
        ("fault_instruction", "VARCHAR"),       # H8 (issue 15): disassembled at fault_address
        ("blamed_module", "VARCHAR"),
        ("blamed_offset", "UBIGINT"), ("blamed_address", "UBIGINT"), ("blame_source", "VARCHAR"),
        ("bucket", "VARCHAR"), ("bucket_detail", "VARCHAR"), ("frame_count", "INTEGER"),
        ("layout", "VARCHAR"), ("notes", "VARCHAR"), ("elapsed_ms", "DOUBLE")),
    "drivers": (
        ("sha256", "VARCHAR"), ("idx", "INTEGER"), ("name", "VARCHAR"), ("base", "UBIGINT"),
        ("size", "UBIGINT"), ("end_address", "UBIGINT"), ("timestamp", "UBIGINT"),
        ("checksum", "UBIGINT")),
    "processes": (
        ("sha256", "VARCHAR"), ("address", "UBIGINT"), ("pid", "UBIGINT"), ("ppid", "UBIGINT"),
        ("name", "VARCHAR"), ("create_time", "TIMESTAMP"), ("found_by", "VARCHAR")),
    "threads": (
        ("sha256", "VARCHAR"), ("address", "UBIGINT"), ("tid", "UBIGINT"), ("pid", "UBIGINT"),
        ("state", "VARCHAR"), ("wait_reason", "VARCHAR"), ("start_address", "UBIGINT"),
        ("start_module", "VARCHAR"), ("crashing", "BOOLEAN")),
    "stack_frames": (
        ("sha256", "VARCHAR"), ("frame", "INTEGER"), ("source", "VARCHAR"),
        ("stack_address", "UBIGINT"), ("address", "UBIGINT"), ("module", "VARCHAR"),
        ("module_offset", "UBIGINT")),
    "handles": (
        ("sha256", "VARCHAR"), ("pid", "UBIGINT"), ("handle", "UBIGINT"), ("type", "VARCHAR"),
        ("name", "VARCHAR"), ("object", "UBIGINT"), ("access", "UBIGINT")),
}
#: uniqueness each table guarantees (a doubled row is an error, not a silent duplicate)
KEYS: Dict[str, Tuple[str, ...]] = {
    "dumps": ("path",), "drivers": ("sha256", "idx"), "stack_frames": ("sha256", "frame"),
}
CHILD_TABLES = tuple(name for name in TABLES if name != "dumps")
EXPORT_FORMATS = ("parquet", "jsonl", "csv")
_COPY_OPTIONS = {"parquet": "(FORMAT PARQUET)", "jsonl": "(FORMAT JSON)",
                 "csv": "(FORMAT CSV, HEADER)"}
_EXTENSIONS = {"parquet": ".parquet", "jsonl": ".jsonl", "csv": ".csv"}


def _columns(table: str) -> List[str]:
    return [name for name, _ in TABLES[table]]


class Store:
    """One open batch database (created on first use)."""

    def __init__(self, path: str, read_only: bool = False) -> None:
        import duckdb
        self.path = path
        self.con = duckdb.connect(path, read_only=read_only)
        if not read_only:
            for table, columns in TABLES.items():
                key = KEYS.get(table)
                body = ", ".join("%s %s" % (name, kind) for name, kind in columns)
                if key:
                    body += ", PRIMARY KEY (%s)" % ", ".join(key)
                self.con.execute("CREATE TABLE IF NOT EXISTS %s (%s)" % (table, body))
                # a database written before a column was added gains it (resume keeps working)
                for name, kind in columns:
                    self.con.execute("ALTER TABLE %s ADD COLUMN IF NOT EXISTS %s %s"
                                     % (table, name, kind))

    def close(self) -> None:
        self.con.close()

    # ---- what is held (for --resume and dedupe)
    def held(self) -> Dict[str, Optional[str]]:
        """path -> sha256 of every row of `dumps`."""
        return dict(self.con.execute("SELECT path, sha256 FROM dumps").fetchall())

    def analysed(self) -> Dict[str, str]:
        """sha256 -> a path whose row holds its record."""
        rows = self.con.execute("SELECT sha256, min(path) FROM dumps WHERE sha256 IS NOT NULL "
                                "GROUP BY sha256").fetchall()
        return {sha: path for sha, path in rows}

    # ---- writes
    def write(self, results: Sequence[Dict[str, Any]]) -> None:
        """Store finished results in one transaction (see `worker.run_task` for their shape).

        Each result is {"paths": [(path, size), ...], "sha256", "status", "error", "record",
        "elapsed_ms"} or {"paths", "sha256", "copy_from": path} (content already held).
        Rows of the same paths and child rows of the same sha256 are replaced."""
        if not results:
            return
        import numpy as np
        tables: Dict[str, List[Dict[str, Any]]] = {name: [] for name in TABLES}
        copies: List[Tuple[str, int, str]] = []
        replaced_shas = set()
        paths: List[str] = []
        for result in results:
            sha = result.get("sha256")
            if result.get("copy_from"):
                for path, size in result["paths"]:
                    copies.append((path, size, result["copy_from"]))
                    paths.append(path)
                continue
            record = result.get("record") or {}
            base = dict(record.get("dump") or {})
            base.update(sha256=sha, status=result["status"], error=result.get("error"),
                        elapsed_ms=result.get("elapsed_ms"))
            for path, size in result["paths"]:
                row = dict(base, path=path, size=size)
                tables["dumps"].append(row)
                paths.append(path)
            if sha is not None and result["status"] == "ok":
                replaced_shas.add(sha)
                for table in CHILD_TABLES:
                    for row in record.get(table) or []:
                        tables[table].append(dict(row, sha256=sha))
            elif sha is not None:
                replaced_shas.add(sha)
        con = self.con
        con.execute("BEGIN TRANSACTION")
        try:
            self._delete("dumps", "path", paths)
            for table in CHILD_TABLES:
                self._delete(table, "sha256", sorted(replaced_shas))
            for table, rows in tables.items():
                if not rows:
                    continue
                names = _columns(table)
                arrays = {name: np.array([row.get(name) for row in rows], dtype=object)
                          for name in names}
                con.register("batch_rows", arrays)
                try:
                    con.execute("INSERT INTO %s (%s) SELECT %s FROM batch_rows"
                                % (table, ", ".join(names), ", ".join(names)))
                finally:
                    con.unregister("batch_rows")
            for path, size, source in copies:
                names = [n for n in _columns("dumps") if n not in ("path", "size")]
                con.execute("INSERT INTO dumps (path, size, %s) SELECT ?, ?, %s FROM dumps "
                            "WHERE path = ?" % (", ".join(names), ", ".join(names)),
                            [path, size, source])
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise

    def _delete(self, table: str, column: str, values: Sequence[str]) -> None:
        for start in range(0, len(values), 1000):
            chunk = list(values[start:start + 1000])
            if chunk:
                self.con.execute("DELETE FROM %s WHERE %s IN (%s)"
                                 % (table, column, ", ".join("?" * len(chunk))), chunk)

    # ---- reading back
    def top_buckets(self, limit: int = 10) -> List[Dict[str, Any]]:
        rows = self.con.execute(
            "SELECT bucket, count(*) AS dumps, count(DISTINCT sha256) AS distinct_dumps, "
            "min(path) AS example FROM dumps WHERE status = 'ok' GROUP BY bucket "
            "ORDER BY dumps DESC, bucket LIMIT ?", [limit]).fetchall()
        return [{"bucket": b, "dumps": n, "distinct": d, "example": e} for b, n, d, e in rows]

    def counts(self) -> Dict[str, int]:
        rows = self.con.execute("SELECT status, count(*) FROM dumps GROUP BY status").fetchall()
        return {status: n for status, n in rows}

    def export(self, folder: str, fmt: str) -> List[str]:
        """Write every table to `folder/<table>.<ext>` with DuckDB's COPY; returns the paths."""
        if fmt not in EXPORT_FORMATS:
            raise ValueError("export format %r: use one of %s" % (fmt, ", ".join(EXPORT_FORMATS)))
        os.makedirs(folder, exist_ok=True)
        written = []
        for table in TABLES:
            target = os.path.join(folder, table + _EXTENSIONS[fmt])
            order = ", ".join(KEYS.get(table) or ("sha256",))
            self.con.execute("COPY (SELECT * FROM %s ORDER BY %s) TO '%s' %s"
                             % (table, order, target.replace("'", "''"), _COPY_OPTIONS[fmt]))
            written.append(target)
        return written


def iter_rows(store: Store, sql: str, params: Iterable[Any] = ()) -> List[Tuple[Any, ...]]:
    """Rows of a query (the report's small helper)."""
    return store.con.execute(sql, list(params)).fetchall()
