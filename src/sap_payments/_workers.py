"""Worker processes for the two jobs that outgrow one core: importing and preparing a payroll
of a million beneficiaries. Each worker takes a slice, writes its rows to a scratch SQLite file
and returns a small summary; the parent then moves the rows into the ledger set-wise, inside
its own transaction, so nothing is applied unless everything is.

Workers die with their parent, even one killed by SIGKILL, which cannot clean up: on Linux the
kernel sends them SIGKILL when the parent dies (``PR_SET_PDEATHSIG``); elsewhere a watchdog
thread in each worker notices that its parent has gone. Without this, a killed import would
leave its workers (each holding a share of the roster in memory) blocked on their task pipe for
good. The scratch files they wrote are removed by the next run (``sap_payments._scratch``).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import ctypes
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

__all__ = ["WorkerPool", "count_progress", "worker_pool"]

_counter: Any = None


#: prctl(2) option: the signal this process gets when its parent dies (linux/prctl.h)
_PR_SET_PDEATHSIG = 1


def _init(counter: Any, parent: int) -> None:
    global _counter
    _counter = counter
    die_with_parent(parent)


def die_with_parent(parent: int) -> None:
    """In a worker: end this process as soon as ``parent`` (the pid of the process that started
    it) dies, however it dies."""
    if not _parent_death_signal():
        threading.Thread(
            target=_watch_parent, args=(parent,), name="sap-payments-watchdog", daemon=True
        ).start()
    if os.getppid() != parent:  # the parent died before the signal was asked for
        os._exit(1)


def _parent_death_signal() -> bool:
    """Ask the kernel for SIGKILL when the parent dies; False where prctl(2) does not exist."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return False
    return bool(prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0)


def _watch_parent(parent: int, interval: float = 0.5) -> None:
    """An orphan is handed to another parent (init, or a subreaper): then stop at once."""
    while os.getppid() == parent:
        time.sleep(interval)
    os._exit(1)


def count_progress(done: int) -> None:
    """In a worker: add ``done`` rows to the progress the parent shows."""
    if _counter is not None:
        with _counter.get_lock():
            _counter.value += done


class WorkerPool:
    def __init__(self, pool: concurrent.futures.ProcessPoolExecutor, counter: Any) -> None:
        self._pool = pool
        self._counter = counter

    def run(
        self,
        calls: Sequence[tuple[Callable[..., Any], tuple[Any, ...]]],
        progress: Callable[[int], None] | None = None,
        on_result: Callable[[int, Any], None] | None = None,
    ) -> list[Any]:
        """Run the calls on the workers; report progress while waiting; results in order.

        ``on_result(index, result)`` is called in this process as each call finishes, so the
        parent can take in one slice while the workers compute the next.
        """
        futures = [self._pool.submit(function, *args) for function, args in calls]
        index = {future: number for number, future in enumerate(futures)}
        pending = set(futures)
        while pending:
            done, pending = concurrent.futures.wait(
                pending, timeout=0.25, return_when=concurrent.futures.FIRST_COMPLETED
            )
            for future in done:
                result = future.result()  # a worker's error surfaces here, at once
                if on_result is not None:
                    on_result(index[future], result)
            if progress is not None:
                progress(self._counter.value)
        return [future.result() for future in futures]


@contextlib.contextmanager
def worker_pool(workers: int) -> Iterator[WorkerPool]:
    """Worker processes with a shared row counter for progress.

    fork where the platform has it: workers start at once and need no importable ``__main__``;
    they never touch the parent's SQLite connection. Elsewhere spawn (the calling script then
    needs the usual ``if __name__ == "__main__":`` guard).
    """
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
    counter = context.Value("q", 0)
    with concurrent.futures.ProcessPoolExecutor(
        workers, mp_context=context, initializer=_init, initargs=(counter, os.getpid())
    ) as pool:
        yield WorkerPool(pool, counter)
