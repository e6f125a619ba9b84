"""The same batch on a real dask.distributed cluster (LocalCluster: worker processes, loopback).

Independent source: the local run (`local_db`) of the same inputs; the database written through
Dask must hold exactly the same rows, also when a worker process is killed in the middle of the
run (the scheduler re-runs its tasks: no row may be lost or doubled).
"""
import os
import signal
from typing import Any, Dict, Iterator, List

import pytest

from batch_helpers import table_rows
from pykd_ext.batch.run import BatchOptions, run_batch
from pykd_ext.batch.store import TABLES

EXCLUDE = {"dumps": ("elapsed_ms",)}


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    from distributed import LocalCluster
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                           dashboard_address=None, silence_logs=40)
    try:
        yield cluster
    finally:
        cluster.close()


def _assert_same_database(db: str, reference: str) -> None:
    for table in TABLES:
        exclude = EXCLUDE.get(table, ())
        assert table_rows(db, table, exclude) == table_rows(reference, table, exclude), table


@pytest.mark.slow
def test_dask_run_equals_local_run(cluster: Any, local_db: Dict[str, Any], tmp_path: Any) -> None:
    db = str(tmp_path / "dask.duckdb")
    stats = run_batch(local_db["paths"], BatchOptions(db=db, dask=cluster.scheduler_address,
                                                      timeout=120, progress=False))
    assert stats.analysed == local_db["stats"].analysed and not stats.interrupted
    _assert_same_database(db, local_db["db"])


@pytest.mark.slow
def test_worker_killed_mid_run_loses_and_doubles_nothing(cluster: Any, local_db: Dict[str, Any],
                                                          tmp_path: Any) -> None:
    from distributed import Client
    client = Client(cluster.scheduler_address)
    seen: List[int] = []
    killed: List[Dict[str, Any]] = []

    def kill_a_busy_worker(result: Dict[str, Any]) -> None:
        seen.append(1)
        if killed or len(seen) < 3:
            return
        processing = client.processing()
        busy = [address for address, keys in processing.items() if keys]
        pids = client.run(os.getpid)
        victim = busy[0] if busy else sorted(pids)[0]
        os.kill(pids[victim], signal.SIGKILL)
        killed.append({"worker": victim, "after": len(seen), "busy": len(processing[victim])})

    try:
        db = str(tmp_path / "dask-killed.duckdb")
        stats = run_batch(local_db["paths"], BatchOptions(db=db, dask=cluster.scheduler_address,
                                                          timeout=120, progress=False,
                                                          on_result=kill_a_busy_worker))
    finally:
        client.close()
    assert killed and killed[0]["after"] < stats.analysed and killed[0]["busy"] >= 1
    assert stats.analysed == local_db["stats"].analysed
    _assert_same_database(db, local_db["db"])
