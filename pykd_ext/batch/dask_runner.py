"""Run batch tasks on an existing dask.distributed cluster; results stream back to the client.

Why Dask: when one machine is not enough, a fleet's dumps sit on a shared filesystem and a
cluster is already there. The client submits one task per distinct dump content (the same
`worker.run_task` the local pool runs, so the database is the same), consumes results with
`as_completed` as they finish, writes them itself (workers never touch the database), and
releases each future once stored, so client memory does not grow with the batch.

Failure isolation on a cluster:
- a worker process that dies mid-task: the scheduler re-runs its tasks elsewhere (each result
  still arrives once: no row lost or doubled); a dump that kills every worker that tries it ends
  as `KilledWorker` after the scheduler's allowed failures and becomes an error row;
- `timeout`: a Dask task cannot be killed from outside, so the analysis runs in a helper thread
  of the task and the task returns a "timed out" error row after `timeout` seconds (the thread
  is abandoned and finishes on its own; the worker slot is free again).
Workers need pykd-ext (with the batch extra) installed and the dump paths readable at the same
paths (see docs/batch.md).
"""
import threading
import time
from typing import Any, Dict, Iterator, List, Optional

from pykd_ext.batch.worker import error_result, run_task

#: key prefix of batch tasks on the cluster (dashboards show it)
KEY_PREFIX = "pykd-ext-batch"


def run_task_with_timeout(task: Dict[str, Any], timeout: Optional[float]) -> Dict[str, Any]:
    """`run_task` in a helper thread, given up after `timeout` seconds (see the docstring)."""
    if not timeout or timeout <= 0:
        return run_task(task)
    box: Dict[str, Any] = {}

    def target() -> None:
        box["result"] = run_task(task)

    started = time.perf_counter()
    thread = threading.Thread(target=target, name="pykd-ext-batch-task", daemon=True)
    thread.start()
    thread.join(timeout)
    if "result" in box:
        return box["result"]
    return error_result(task, "timed out after %g s (on a Dask worker; the analysis thread "
                              "was abandoned)" % timeout, (time.perf_counter() - started) * 1000)


def run_on_dask(address: Any, tasks: List[Dict[str, Any]],
                timeout: Optional[float] = None) -> Iterator[Dict[str, Any]]:
    """Submit `tasks` to the scheduler at `address` (or a `Client`); yield results as they come."""
    from distributed import Client, as_completed
    own = not isinstance(address, Client)
    client = Client(address) if own else address
    try:
        futures = {}
        for index, task in enumerate(tasks):
            key = "%s-%s-%d" % (KEY_PREFIX, task.get("sha256") or "input", index)
            future = client.submit(run_task_with_timeout, task, timeout, key=key, pure=False)
            futures[future.key] = (future, task)
        for future in as_completed([f for f, _ in futures.values()]):
            _, task = futures.pop(future.key)
            try:
                result = future.result()
            except Exception as err:                      # KilledWorker, CancelledError, ...
                name = type(err).__name__
                if name == "KilledWorker":
                    message = "worker process died while analysing (Dask KilledWorker)"
                else:
                    message = "task failed on the cluster: %s: %s" % (name, err)
                result = error_result(task, message)
            future.release()
            yield result
    finally:
        if own:
            client.close()
