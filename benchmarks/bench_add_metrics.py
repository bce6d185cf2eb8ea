"""Uncontended durable ``add_metrics`` of a 20-key dict against the same steps written out by hand.

Both sides run in the same process, interleaved round by round, on the same filesystem, so the ratio holds
even on a noisy machine.  The floors do exactly what the write protocol does and nothing else:

    lock -> read -> parse -> merge -> dump -> write temp -> fsync -> replace -> fsync dir -> unlock

``floor (filelock)`` takes the lock through filelock, as ml_manager does, and parses and dumps with tomllib and
tomli-w; ``floor (flock)`` is the leanest: a bare blocking ``fcntl.flock``, the least any cross-process lock
can cost, and the fastest parser and dumper installed (rtoml).  ``... + history`` also appends the call's
history record and fsyncs it, as ``add_metrics`` does since it keeps a per-step history: the floor of
everything ``add_metrics`` does.

Where MLflow is installed (never a dependency of the package: ``pip install mlflow-skinny`` to include it),
its file store logging the same 20 metrics with ``log_batch`` is measured too, as a peer.  It does not fsync,
so it is not a floor.

Usage: python benchmarks/bench_add_metrics.py [--calls N] [--rounds R] [--dir DIR]
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import filelock
import tomli_w

from ml_manager import MLRun

if TYPE_CHECKING:
    from collections.abc import Callable

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

KEYS = [f"metric_{i:02d}" for i in range(20)]


def payload(step: int) -> dict[str, float]:
    return {key: random.random() + step for key in KEYS}


def _replace_durably(target: Path, data: bytes) -> None:
    temp = target.with_name(f".{target.name}.bench.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temp, target)
    dir_fd = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _update(target: Path, metrics: dict[str, float], loads: Any = tomllib.loads, dumps: Any = tomli_w.dumps) -> None:
    try:
        current = loads(target.read_bytes().decode())
    except FileNotFoundError:
        current = {}
    current.update(metrics)
    _replace_durably(target, dumps(current).encode())


def floor_filelock(directory: Path) -> Callable[[dict[str, float]], None]:
    lock = filelock.FileLock(str(directory / "floor.lock"), thread_local=False)
    target = directory / "floor_filelock.toml"

    def call(metrics: dict[str, float]) -> None:
        with lock:
            _update(target, metrics)

    return call


def floor_filelock_history(directory: Path) -> Callable[[dict[str, float]], None]:
    return _with_history(floor_filelock(directory), directory / "floor_history.jsonl")


def floor_flock(directory: Path) -> Callable[[dict[str, float]], None]:
    import rtoml  # the fastest TOML parser and dumper installed (ml_manager depends on it)

    lock_path = directory / "flock.lock"
    target = directory / "floor_flock.toml"

    def call(metrics: dict[str, float]) -> None:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            _update(target, metrics, rtoml.loads, rtoml.dumps)
        finally:
            os.close(fd)  # closing the descriptor releases the flock

    return call


def _with_history(update: Callable[[dict[str, float]], None], history: Path) -> Callable[[dict[str, float]], None]:
    def call(metrics: dict[str, float]) -> None:
        update(metrics)
        line = json.dumps({"step": None, "time": time.time(), "writer": "floor", "metrics": metrics}) + "\n"
        fd = os.open(history, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
        try:
            os.write(fd, line.encode())
            os.fsync(fd)
        finally:
            os.close(fd)

    return call


def peer_mlflow(directory: Path) -> Callable[[dict[str, float]], None] | None:
    """MLflow's file store, where MLflow is installed."""
    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    try:
        from mlflow.entities import Metric
        from mlflow.tracking import MlflowClient
    except ImportError:
        return None
    client = MlflowClient(tracking_uri=(directory / "mlruns").as_uri())
    run_id = client.create_run(client.create_experiment("bench")).info.run_id
    step = iter(range(10**9))

    def call(metrics: dict[str, float]) -> None:
        now, at = int(time.time() * 1000), next(step)
        client.log_batch(run_id, metrics=[Metric(key, value, now, at) for key, value in metrics.items()])

    return call


def ours(directory: Path) -> Callable[[dict[str, float]], None]:
    run = MLRun.create({"bench": True}, directory, "bench", mode="disabled")
    return run.add_metrics


def ours_long(directory: Path) -> Callable[[dict[str, float]], None]:
    """A run whose metrics.toml already has 1,000 keys; each call logs 2 of them."""
    run = MLRun.create({"bench": True}, directory, "bench", mode="disabled")
    run.add_metrics({f"summary_{i:04d}": float(i) for i in range(1000)})

    def call(metrics: dict[str, float]) -> None:
        run.add_metrics({"metric_00": metrics["metric_00"], "metric_01": metrics["metric_01"]})

    return call


def per_call(call: Callable[[dict[str, float]], None], calls: int) -> float:
    """Median seconds per call over ``calls`` calls."""
    times = []
    for step in range(calls):
        metrics = payload(step)
        start = time.perf_counter()
        call(metrics)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200, help="calls per round and contender")
    parser.add_argument("--rounds", type=int, default=7, help="interleaved rounds")
    parser.add_argument("--dir", type=Path, default=None, help="where to write (default: a temp dir)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        directory = Path(tmp)
        contenders = {
            "ml_manager add_metrics": ours(directory),
            "floor (filelock)": floor_filelock(directory),
            "floor (filelock) + history": floor_filelock_history(directory),
            "floor (flock)": floor_flock(directory),
            "floor (flock) + history": _with_history(floor_flock(directory), directory / "flock_history.jsonl"),
            "ml_manager, 1000-key run, 2 keys": ours_long(directory),
        }
        mlflow = peer_mlflow(directory)
        if mlflow is not None:
            contenders["MLflow file store (peer)"] = mlflow
        for call in contenders.values():  # warm up: create the files, fill the page cache
            per_call(call, 10)
        results: dict[str, list[float]] = {name: [] for name in contenders}
        for _ in range(args.rounds):
            for name, call in random.sample(list(contenders.items()), len(contenders)):
                results[name].append(per_call(call, args.calls))

    base = statistics.median(results["floor (flock)"])
    print(f"add_metrics, 20 keys, durable, uncontended: median per call over {args.rounds} rounds x {args.calls} calls")
    print(f"{'':34}{'median ms':>10}{'min round':>11}{'max round':>11}{'x flock floor':>15}")
    for name, rounds in results.items():
        median = statistics.median(rounds)
        print(f"{name:34}{median * 1e3:10.3f}{min(rounds) * 1e3:11.3f}{max(rounds) * 1e3:11.3f}{median / base:15.2f}")
    mine = statistics.median(results["ml_manager add_metrics"])
    for floor in ("floor (filelock)", "floor (filelock) + history", "floor (flock) + history"):
        print(f"ml_manager / {floor} = {mine / statistics.median(results[floor]):.2f}")
    print(f"ml_manager / floor (flock) = {mine / base:.2f}   (goal <= 1.3)")
    if "MLflow file store (peer)" in results:
        print(f"ml_manager / MLflow file store = {mine / statistics.median(results['MLflow file store (peer)']):.2f}")
    else:
        print("MLflow is not installed: no peer figure (pip install mlflow-skinny to add it)")
    long = statistics.median(results["ml_manager, 1000-key run, 2 keys"])
    print(f"1000-key run, 2 keys / 20-key run, 20 keys = {long / mine:.2f}   (goal <= 2)")


if __name__ == "__main__":
    main()
