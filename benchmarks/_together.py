"""Start worker processes that begin at the same instant, and collect what each reports."""

from __future__ import annotations

import multiprocessing
import time
from typing import Any


def run_together(target: Any, args: list[tuple[Any, ...]]) -> tuple[float, list[Any]]:
    """Run ``target(*a, barrier=..., out=...)`` for each ``a`` in its own spawned process.

    Every worker waits on ``barrier`` before its timed work and puts one list on ``out`` when done.  Returns the
    seconds from the common start to the last report, and every report's items in one list.
    """
    ctx = multiprocessing.get_context("spawn")
    barrier, out = ctx.Barrier(len(args) + 1), ctx.Queue()
    workers = [ctx.Process(target=target, args=a, kwargs={"barrier": barrier, "out": out}) for a in args]
    for worker in workers:
        worker.start()
    barrier.wait()
    start = time.perf_counter()
    items = [item for _ in workers for item in out.get()]
    elapsed = time.perf_counter() - start
    for worker in workers:
        worker.join()
    return elapsed, items
