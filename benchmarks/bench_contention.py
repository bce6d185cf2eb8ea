"""Contention: P processes x C calls of ``add_metrics`` on one run, at once.

Reports throughput and the distribution of single-call latency (which bounds the wait for the lock), for
ml_manager as shipped (waiters queue up first come, first served, then take the lock), for the lock alone
polled every 2 ms, and for the lock alone polled at filelock's default interval (50 ms), in one run, rounds
interleaved.

Usage: python benchmarks/bench_contention.py [--processes P] [--calls C] [--rounds R]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from typing import Any

from _together import run_together

from ml_manager import MLRun, _locking

VARIANTS = ("ml_manager as shipped", "no queue, polling every 2 ms", "filelock's default polling (50 ms)")


def _worker(run_dir: str, name: int, calls: int, variant: str, *, barrier: Any, out: Any) -> None:
    if variant != VARIANTS[0]:
        _locking.FAIR_QUEUE = False  # the lock alone, polled
    if variant == VARIANTS[2]:
        _locking._POLL_INTERVAL = 0.05  # what FileLock.acquire does by default
    run = MLRun.attach(run_dir)
    # One call before the start, so that the figures are the waits of a running job, not each process's
    # first-call costs (imports, opening files) paid while seven others compete for two cores.
    run.add_metrics({f"rank{name}": {"loss": 0.0, "step": -1}})
    latencies = []
    barrier.wait()
    for i in range(calls):
        start = time.perf_counter()
        # Each process logs its own few keys again and again, as training does: metrics.toml stays small.
        run.add_metrics({f"rank{name}": {"loss": 1 / (i + 1), "step": i}})
        latencies.append(time.perf_counter() - start)
    out.put(latencies)


def job(processes: int, calls: int, variant: str) -> tuple[float, list[float]]:
    with tempfile.TemporaryDirectory() as tmp:
        run = MLRun.create({}, tmp, "bench", mode="disabled")
        args = [(str(run.run_dir), n, calls, variant) for n in range(processes)]
        elapsed, latencies = run_together(_worker, args)
        run.finish()
    return processes * calls / elapsed, latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=8)
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    os.environ.setdefault("WANDB_SILENT", "true")
    results: dict[str, list[tuple[float, list[float]]]] = {name: [] for name in VARIANTS}
    for _ in range(args.rounds):
        for name in VARIANTS:
            results[name].append(job(args.processes, args.calls, name))
    print(f"{args.processes} processes x {args.calls} add_metrics on one run, median of {args.rounds} rounds")
    print(f"{'':36}{'calls/s':>9}{'p50 ms':>8}{'p99 ms':>8}{'max ms':>9}")
    for name, rounds in results.items():
        throughput = statistics.median(r[0] for r in rounds)
        p50 = statistics.median(statistics.quantiles(r[1], n=100)[49] for r in rounds)
        p99 = statistics.median(statistics.quantiles(r[1], n=100)[98] for r in rounds)
        worst = statistics.median(max(r[1]) for r in rounds)
        print(f"{name:36}{throughput:9.0f}{p50 * 1e3:8.1f}{p99 * 1e3:8.1f}{worst * 1e3:9.1f}")
    print("goals: p99 <= 20 ms, max <= 50 ms, throughput >= filelock's default")


if __name__ == "__main__":
    main()
