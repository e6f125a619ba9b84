"""Helpers of the batch tests: read a batch database back, find Chromium."""
import os
import shutil
from typing import Dict, List


def table_rows(db: str, table: str, exclude: tuple = ()) -> List[tuple]:
    """Every row of a table, sorted, without the columns named in `exclude`."""
    import duckdb
    con = duckdb.connect(db, read_only=True)
    try:
        columns = [r[0] for r in con.execute("DESCRIBE %s" % table).fetchall()
                   if r[0] not in exclude]
        rows = con.execute("SELECT %s FROM %s" % (", ".join(columns), table)).fetchall()
    finally:
        con.close()
    return sorted(rows, key=repr)


def query(db: str, sql: str, params: tuple = ()) -> List[tuple]:
    import duckdb
    con = duckdb.connect(db, read_only=True)
    try:
        return con.execute(sql, list(params)).fetchall()
    finally:
        con.close()


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    raise AssertionError("headless Chromium is needed (Debian: apt-get install chromium)")


def environment_without_proxies() -> Dict[str, str]:
    return {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
