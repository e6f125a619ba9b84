"""Batch crash triage (`pykd-ext batch`, issue 13): many dumps in, one DuckDB database out.

One module per job: `inputs` (paths, globs, sha256 dedupe), `analyze` (one dump -> its crash
record), `bugcodes` (bug check names and parameter meanings, from Microsoft's reference),
`stackscan` (return-address candidates on a triage dump's saved stack), `blame` (the documented
blame rules and buckets), `store` (the DuckDB tables), `local` and `dask_runner` (where the
analyses run), `report` (the HTML report). duckdb, dask and the charting library are imported only
by the modules that need them, so `import pykd_ext` stays cheap and Python-3.9/WinDbg safe.
"""
