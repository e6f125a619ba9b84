"""The unit of batch work: analyse one dump content, never raise, return a picklable result.

Why one function for every runner: the local process pool and Dask workers run exactly this, so
a database written on a cluster equals the one written locally. Every failure becomes data: a
file the readers refuse gives its one-line reason (`status="error"`), a bug in an analysis is
reported the same way (with its exception type) and the batch goes on. Crashes and time-outs of
the worker itself are the runner's to report (`local`, `dask_runner`).

A task is {"sha256", "paths": [(path, size), ...], "with": [...], "analyze": "module:function"}
(the default analysis is `pykd_ext.batch.analyze:analyze_dump`; tests name another to inject
faults into worker processes).
"""
import importlib
import time
from typing import Any, Callable, Dict, List, Optional

DEFAULT_ANALYZE = "pykd_ext.batch.analyze:analyze_dump"

_LOADED: Dict[str, Callable[..., Any]] = {}


def _function(spec: str) -> Callable[..., Any]:
    found = _LOADED.get(spec)
    if found is None:
        module, name = spec.split(":")
        found = getattr(importlib.import_module(module), name)
        _LOADED[spec] = found
    return found


def error_result(task: Dict[str, Any], message: str, elapsed_ms: Optional[float] = None) -> Dict[str, Any]:
    return {"sha256": task.get("sha256"), "paths": list(task.get("paths") or []),
            "status": "error", "error": " ".join(str(message).split()), "record": None,
            "elapsed_ms": elapsed_ms}


def run_task(task: Dict[str, Any]) -> Dict[str, Any]:
    """Analyse the first path of the task (all its paths hold the same bytes)."""
    from pykd_ext.errors import PykdExtError
    start = time.perf_counter()
    paths: List[Any] = list(task.get("paths") or [])
    try:
        analyze = _function(task.get("analyze") or DEFAULT_ANALYZE)
        record = analyze(paths[0][0], task.get("with") or ())
    except PykdExtError as err:
        return error_result(task, err.message, (time.perf_counter() - start) * 1000)
    except MemoryError:
        return error_result(task, "out of memory while analysing", (time.perf_counter() - start) * 1000)
    except RecursionError:
        return error_result(task, "internal error: recursion too deep", (time.perf_counter() - start) * 1000)
    except Exception as err:                       # a bug: reported as data, the batch goes on
        return error_result(task, "internal error: %s: %s" % (type(err).__name__, err),
                            (time.perf_counter() - start) * 1000)
    return {"sha256": task.get("sha256"), "paths": paths, "status": "ok", "error": None,
            "record": record, "elapsed_ms": (time.perf_counter() - start) * 1000}
