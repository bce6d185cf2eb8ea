"""Why the history is one append-only file per writer: against one shared file appended under the run's lock.

W processes each append C durable records (write + fsync) at once, to (a) their own file, no lock, or (b) one
shared file, each append under an exclusive ``flock``.  Reports the wall time of the whole job and the median
and worst single append, medians over R rounds, in one run.

Usage: python benchmarks/bench_history_layout.py [--writers W] [--calls C] [--rounds R]
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from _together import run_together


def _writer(directory: str, layout: str, name: int, calls: int, *, barrier: Any, out: Any) -> None:
    path = Path(directory) / (f"w{name}.jsonl" if layout == "per-writer" else "shared.jsonl")
    lock_path = Path(directory) / "run.lock"
    waits = []
    barrier.wait()
    for step in range(calls):
        line = (
            json.dumps({"step": step, "time": time.time(), "writer": name, "metrics": {"loss": 0.5}}) + "\n"
        ).encode()
        start = time.perf_counter()
        lock_fd = os.open(lock_path, os.O_RDWR | os.O_CREAT) if layout == "shared" else -1
        if lock_fd >= 0:
            fcntl.flock(lock_fd, fcntl.LOCK_EX)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
        os.write(fd, line)
        os.fsync(fd)
        os.close(fd)
        if lock_fd >= 0:
            os.close(lock_fd)
        waits.append(time.perf_counter() - start)
    out.put(waits)


def job(layout: str, writers: int, calls: int) -> tuple[float, list[float]]:
    with tempfile.TemporaryDirectory() as tmp:
        elapsed, waits = run_together(_writer, [(tmp, layout, n, calls) for n in range(writers)])
    return elapsed, waits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writers", type=int, default=4)
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    results: dict[str, list[tuple[float, list[float]]]] = {"per-writer": [], "shared": []}
    for _ in range(args.rounds):
        for layout, rounds in results.items():
            rounds.append(job(layout, args.writers, args.calls))
    print(f"{args.writers} processes x {args.calls} durable history appends at once, median of {args.rounds} rounds")
    print(f"{'':28}{'job s':>8}{'median append ms':>18}{'worst append ms':>17}")
    for layout, rounds in results.items():
        elapsed = statistics.median(r[0] for r in rounds)
        median = statistics.median(statistics.median(r[1]) for r in rounds)
        worst = statistics.median(max(r[1]) for r in rounds)
        label = "one file per writer" if layout == "per-writer" else "one shared file + flock"
        print(f"{label:28}{elapsed:8.2f}{median * 1e3:18.3f}{worst * 1e3:17.3f}")


if __name__ == "__main__":
    main()
