"""Run batch tasks on this machine: a pool of worker processes with a watchdog.

Why not `concurrent.futures.ProcessPoolExecutor`: it cannot stop one task. A dump that makes a
reader loop, or a worker that dies (a crash in a C extension, the memory cap), would stall or
break the whole pool. Here each worker has its own pipe; the parent knows which task each one
runs and since when, so it
- kills a worker whose task exceeds `timeout` and reports "timed out after N s" for that task;
- reports "worker process died (exit code N)" when a worker exits while holding a task;
- starts a fresh worker in either case, and the batch goes on.
Workers are spawned (not forked: the parent holds a DuckDB connection and threads), ignore
Ctrl-C (the parent stops them), optionally cap their address space (`memory_limit_mb`, POSIX),
and are replaced after `recycle_after` tasks so no cache can grow with the number of dumps.
Results are yielded as they arrive; nothing is kept, so the parent's memory does not grow either.
"""
import multiprocessing
import os
import signal
import time
from multiprocessing.connection import wait
from typing import Any, Dict, Iterable, Iterator, List, Optional

from pykd_ext.batch.worker import error_result, run_task

#: a worker is replaced after this many tasks (layout caches stay per build; this bounds the rest)
RECYCLE_AFTER = 2000
#: what a worker sends once its interpreter has started and imported the readers: the time-out
#: clock of its first task starts then (start-up is not the dump's fault)
READY = "ready"
_POLL_SECONDS = 0.5


def _worker_main(conn: Any, memory_limit_mb: Optional[int]) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if memory_limit_mb:
        try:
            import resource
            limit = int(memory_limit_mb) * 1024 * 1024
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        except (ImportError, ValueError, OSError):
            pass                                       # not POSIX: the timeout still applies
    from pykd_ext.batch import analyze  # noqa: F401  (imported before the first task's clock)
    conn.send(READY)
    while True:
        try:
            task = conn.recv()
        except (EOFError, OSError):
            return
        if task is None:
            return
        conn.send(run_task(task))


class _Worker:
    def __init__(self, context: Any, memory_limit_mb: Optional[int]) -> None:
        self.conn, child = context.Pipe()
        self.process = context.Process(target=_worker_main, args=(child, memory_limit_mb),
                                       daemon=True)
        self.process.start()
        child.close()
        self.task: Optional[Dict[str, Any]] = None
        self.started = 0.0
        self.done = 0
        self.ready = False

    def give(self, task: Dict[str, Any]) -> None:
        self.task = task
        self.started = time.monotonic()
        self.conn.send(task)

    def stop(self, kill: bool = False) -> None:
        if kill:
            self.process.kill()
        else:
            try:
                self.conn.send(None)
            except (OSError, ValueError):
                pass
        self.process.join(2 if not kill else None)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()
        self.conn.close()


def _exit_text(process: Any) -> str:
    code = process.exitcode
    if code is not None and code < 0:
        try:
            return "killed by signal %s" % signal.Signals(-code).name
        except ValueError:
            return "killed by signal %d" % -code
    return "exit code %s" % code


class LocalPool:
    """`for result in LocalPool(jobs=2, timeout=60).run(tasks): ...`"""

    def __init__(self, jobs: int = 1, timeout: Optional[float] = None,
                 memory_limit_mb: Optional[int] = None, recycle_after: int = RECYCLE_AFTER) -> None:
        self.jobs = max(1, int(jobs))
        self.timeout = timeout if timeout and timeout > 0 else None
        self.memory_limit_mb = memory_limit_mb
        self.recycle_after = recycle_after
        self.context = multiprocessing.get_context("spawn")

    def run(self, tasks: Iterable[Dict[str, Any]]) -> Iterator[Dict[str, Any]]:
        pending = iter(tasks)
        exhausted = False
        workers: List[_Worker] = []
        try:
            while True:
                # hand out work, starting workers as long as there is work for them
                for worker in workers:
                    if worker.task is None and not exhausted:
                        task = next(pending, None)
                        if task is None:
                            exhausted = True
                        else:
                            worker.give(task)
                while not exhausted and len(workers) < self.jobs:
                    task = next(pending, None)
                    if task is None:
                        exhausted = True
                        break
                    worker = _Worker(self.context, self.memory_limit_mb)
                    workers.append(worker)
                    worker.give(task)
                busy = [w for w in workers if w.task is not None]
                if not busy:
                    return
                waits = [w.conn for w in busy] + [w.process.sentinel for w in busy]
                wait(waits, timeout=self._next_deadline(busy))
                now = time.monotonic()
                for worker in list(busy):
                    result = None
                    replace = False
                    if worker.conn.poll():
                        try:
                            result = worker.conn.recv()
                            if result == READY:
                                worker.ready = True
                                worker.started = time.monotonic()
                                continue
                            worker.done += 1
                            worker.task = None
                            replace = worker.done >= self.recycle_after
                        except (EOFError, OSError):
                            result = None               # the worker is gone: reap it
                            worker.process.join(5)
                    if result is None and not worker.process.is_alive():
                        worker.process.join()
                        result = error_result(worker.task or {},
                                              "worker process died (%s) while analysing"
                                              % _exit_text(worker.process))
                        replace = True
                    elif result is None and self.timeout is not None and worker.ready \
                            and now - worker.started > self.timeout:
                        result = error_result(worker.task or {}, "timed out after %g s (worker "
                                              "stopped)" % self.timeout, self.timeout * 1000)
                        worker.stop(kill=True)
                        workers.remove(worker)
                        yield result
                        continue
                    if result is None:
                        continue
                    if replace:
                        worker.task = None
                        worker.stop(kill=not worker.process.is_alive())
                        workers.remove(worker)
                    yield result
        finally:
            for worker in workers:
                worker.stop(kill=worker.task is not None)

    def _next_deadline(self, busy: List[_Worker]) -> float:
        if self.timeout is None:
            return _POLL_SECONDS * 4
        now = time.monotonic()
        ready = [w for w in busy if w.ready]
        if not ready:
            return _POLL_SECONDS
        left = min(w.started + self.timeout - now for w in ready)
        return max(0.01, min(left, _POLL_SECONDS * 4))


def default_jobs() -> int:
    """Worker processes when --jobs is not given: one per CPU this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)
