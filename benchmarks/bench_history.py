"""The cost of the per-step history: one record against one metrics.toml update, and loading a long history.

1. Appending one history record (durable: write + fsync) against the ``metrics.toml`` read-merge-replace
   that the same ``add_metrics`` call does, both on a run with 20 metric keys, interleaved, in one process.
2. Loading a run with N history records (default 1,000,000, five metrics each, four writers) with
   ``run.history()``, against the floor of reading the files and ``json.loads`` of every line.

Usage: python benchmarks/bench_history.py [--records N] [--calls C] [--rounds R]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import time
from pathlib import Path

from ml_manager import MLRun, _history, _storage


def record_cost(directory: Path, calls: int, rounds: int) -> tuple[float, float]:
    run = MLRun.create({}, directory, "bench", mode="disabled")
    run.add_metrics({f"metric_{i:02d}": 0.0 for i in range(20)})
    update, append = [], []
    for _ in range(rounds):
        times_u, times_a = [], []
        for step in range(calls):
            values = {f"metric_{i:02d}": random.random() for i in range(20)}
            start = time.perf_counter()
            _storage.merge_metrics(run._paths, values, lock=run.lock, lock_timeout=60, durable=True)
            times_u.append(time.perf_counter() - start)
            record = {"step": step, "time": time.time(), "writer": "bench", "metrics": values}
            start = time.perf_counter()
            _history.append(run.run_dir, record, durable=True)
            times_a.append(time.perf_counter() - start)
        update.append(statistics.median(times_u))
        append.append(statistics.median(times_a))
    run.finish()
    return statistics.median(update), statistics.median(append)


def load_cost(directory: Path, records: int, repeats: int) -> tuple[float, float, int]:
    run = MLRun.create({}, directory, "bench", mode="disabled")
    history_dir = run.run_dir / "history"
    history_dir.mkdir()
    writers = 4
    for writer in range(writers):
        with (history_dir / f"bench-{writer}.jsonl").open("wb") as out:
            for step in range(writer, records, writers):
                metrics = {"loss": 1 / (step + 1), "acc": step / records, "lr": 1e-3, "grad": {"norm": 0.5}}
                out.write(
                    _history.encode({"step": step, "time": 1.7e9 + step, "writer": f"rank{writer}", "metrics": metrics})
                )
    ours, floor = [], []
    rows = 0
    for _ in range(repeats):
        start = time.perf_counter()
        parsed = [
            json.loads(line) for path in sorted(history_dir.glob("*.jsonl")) for line in path.read_bytes().splitlines()
        ]
        floor.append(time.perf_counter() - start)
        del parsed
        start = time.perf_counter()
        rows = len(run.history())
        ours.append(time.perf_counter() - start)
    run.finish()
    return statistics.median(ours), statistics.median(floor), rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        update, append = record_cost(Path(tmp), args.calls, args.rounds)
        print(f"one call, durable, median of {args.rounds} rounds x {args.calls} calls:")
        print(f"  metrics.toml update (20 keys)  {update * 1e3:8.3f} ms")
        print(f"  history record append          {append * 1e3:8.3f} ms   = {append / update:.2f} x the update")
        ours, floor, rows = load_cost(Path(tmp), args.records, args.repeats)
        print(f"loading {rows:,} history records (median of {args.repeats}):")
        print(f"  run.history()                  {ours:8.2f} s    = {ours / floor:.2f} x the floor")
        print(f"  floor: read + json.loads       {floor:8.2f} s")


if __name__ == "__main__":
    main()
