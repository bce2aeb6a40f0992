"""Worker processes for the two jobs that outgrow one core: importing and preparing a payroll
of a million beneficiaries. Each worker takes a slice, writes its rows to a scratch SQLite file
and returns a small summary; the parent then moves the rows into the ledger set-wise, inside
its own transaction, so nothing is applied unless everything is.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import multiprocessing
from collections.abc import Callable, Iterator, Sequence
from typing import Any

__all__ = ["WorkerPool", "count_progress", "worker_pool"]

_counter: Any = None


def _init(counter: Any) -> None:
    global _counter
    _counter = counter


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
        workers, mp_context=context, initializer=_init, initargs=(counter,)
    ) as pool:
        yield WorkerPool(pool, counter)
