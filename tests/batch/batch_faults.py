"""A fault-injecting analysis for the worker-isolation tests (run inside spawned workers).

`analyze(path)` behaves like the real one, except for files whose name says otherwise:
`*crash-worker*` kills its worker process, `*hang*` sleeps far past any test timeout.
"""
import os
import time
from typing import Any, Sequence


def analyze(path: str, with_tables: Sequence[str] = ()) -> Any:
    name = os.path.basename(path)
    if "crash-worker" in name:
        os._exit(7)
    if "hang" in name:
        time.sleep(600)
    from pykd_ext.batch.analyze import analyze_dump
    return analyze_dump(path, with_tables)
