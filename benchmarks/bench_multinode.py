"""Several nodes writing one run over sshfs: the locked update's cost, contended updates, per-step logging.

Two simulated nodes (``tests/_nodes.py``: each a mount and UTS namespace with its own host name and its own
sshfs mount of one export, served by a private sshd on this machine) write one run at the same path, with the
defaults: the soft lock, chosen by the filesystem.  Every figure is the median of the rounds; every ratio
compares two things measured in the same round.  Needs root, /dev/fuse, sshfs and sshd; without them it says
why on stderr and exits.

1. One process on a node, uncontended, each call timed: ``add_metrics`` of 5 floats on a run on the mount with
   the default lock (soft), against the same on a local directory with ``flock`` (the floor) and on the mount
   with ``lock="flock"`` forced (unsafe across nodes, but what the lock alone costs there); and the lock alone,
   acquired and released (``run_lock``), for the same three.  The six are interleaved in chunks of 10 calls, in
   a fresh order each chunk: median and p90.
2. 2 nodes x 2 processes, ``add_metrics`` of a new key each call, into one run on the mount: updates/s from the
   start signal until the last process has returned, and the keys in ``metrics.toml`` (read on the export)
   against the keys written.  The same 4 processes on a local directory with ``flock`` as the peer.
3. 2 nodes x 2 processes, ``run.log`` of N records each (2 floats, ``step=i``), then ``flush``: records/s from
   the start signal until the last ``flush`` has returned, and the records in the history (counted on the
   export) against those logged.  The same 4 processes on a local directory with ``flock`` as the peer.

In 2 and 3 every process writes one key or record before it reports ready, so that the figures are a running
job's and not each process's first-call costs (imports, opening files); those count in the totals checked,
not in the rates.  The two variants of each run in a random order each round.

Usage: python benchmarks/bench_multinode.py [--rounds R] [--calls C] [--updates U] [--records N]
"""

from __future__ import annotations

import argparse
import array
import contextlib
import itertools
import json
import math
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING

from _report import print_summary

from ml_manager import MLRun
from ml_manager._locking import LOCK_FILES, run_lock
from ml_manager._storage import read_toml

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

    from _nodes import Cluster, Node

HERE = Path(__file__).resolve().parent
# A child process imports this file and runs child(): python -c CHILD HERE MODE ARGS...
CHILD = "import sys; sys.path.insert(0, sys.argv[1]); from bench_multinode import child; child(sys.argv[2:])"
CHUNK = 10
WRITERS_PER_NODE = 2
SOFT_SSHFS, FLOCK_SSHFS, FLOCK_LOCAL = "sshfs, default (soft)", "sshfs, flock forced", "local, flock"
VARIANTS = (SOFT_SSHFS, FLOCK_SSHFS, FLOCK_LOCAL)
OPERATIONS = ("add_metrics", "lock alone")
SHARED, LOCAL = SOFT_SSHFS, FLOCK_LOCAL


# -- what runs on the nodes ---------------------------------------------------------------------------------------


def _five(i: int) -> dict[str, float]:
    x = 1.0 / (i + 1)
    return {"loss": x, "accuracy": 1.0 - x, "lr": 0.001 * x, "grad_norm": 2.0 * x, "throughput": 1000.0 + x}


def _timed(fn: Callable[[], object], took: array.array[int], n: int) -> None:
    clock = time.perf_counter_ns
    for _ in range(n):
        start = clock()
        fn()
        took.append(clock() - start)


def _lock_alone(run: MLRun) -> Callable[[], None]:
    lock_file = run.run_dir / LOCK_FILES[run.lock]

    def hold() -> None:
        with run_lock(lock_file, 60.0, run.lock):
            pass

    return hold


def _update(run: MLRun, steps: Iterator[int]) -> Callable[[], None]:
    def update() -> None:
        run.add_metrics(_five(next(steps)))

    return update


def _single(mount_base: str, local_base: str, calls: int, seed: int) -> None:
    """Figure 1: print the kinds and every call's nanoseconds, by operation and variant, as JSON."""
    runs = {
        SOFT_SSHFS: MLRun.create({}, mount_base, "single", mode="disabled"),
        FLOCK_SSHFS: MLRun.create({}, mount_base, "single", mode="disabled", lock="flock"),
        FLOCK_LOCAL: MLRun.create({}, local_base, "single", mode="disabled", lock="flock"),
    }
    steps = itertools.count(1)
    calls_of: dict[tuple[str, str], Callable[[], object]] = {}
    for name, run in runs.items():
        calls_of["add_metrics", name] = _update(run, steps)
        calls_of["lock alone", name] = _lock_alone(run)
    took = {key: array.array("q") for key in calls_of}
    for fn in calls_of.values():  # the first call of each opens files and imports: not a running job's
        fn()
    draw = random.Random(seed)
    keys = list(calls_of)
    for start in range(0, calls, CHUNK):
        for key in draw.sample(keys, len(keys)):
            _timed(calls_of[key], took[key], min(CHUNK, calls - start))
    for run in runs.values():
        run.finish()
    report = {"kinds": {name: run.lock for name, run in runs.items()}}
    print(json.dumps({**report, "took": {f"{op}|{name}": list(ns) for (op, name), ns in took.items()}}))


def _write(run_dir: str, name: str, count: int, mode: str) -> None:
    """Figures 2 and 3: one warm-up write, "ready", wait for the start line, write count times, "done"."""
    run = MLRun.attach(run_dir)
    if mode == "log":
        run.log({"loss": 1.0, "acc": 0.0}, step=0)
        run.flush()
    else:
        run.add_metrics({f"{name}-warm": 0})
    print("ready", flush=True)
    sys.stdin.readline()
    if mode == "log":
        log = run.log
        for i in range(1, count + 1):
            log({"loss": 1.0 / i, "acc": i / count}, step=i)
        run.flush()
    else:
        for i in range(count):
            run.add_metrics({f"{name}-{i}": i})
    print("done", flush=True)
    run.finish()


def child(argv: Sequence[str]) -> None:
    """A child process's entry point (see CHILD)."""
    mode, *rest = argv
    if mode == "create":
        base_dir, lock = rest
        run = MLRun.create({}, base_dir, "job", mode="disabled", lock="flock" if lock == "flock" else "auto")
        print(run.run_dir, run.lock)
        run.finish()
    elif mode == "single":
        _single(rest[0], rest[1], int(rest[2]), int(rest[3]))
    elif mode == "write":
        _write(rest[0], rest[1], int(rest[2]), rest[3])
    else:
        raise SystemExit(f"unknown mode {mode!r}")


# -- the parent ---------------------------------------------------------------------------------------------------


def _argv(*args: object) -> list[str]:
    return [sys.executable, "-c", CHILD, str(HERE), *map(str, args)]


def _on_export(cluster: Cluster, path: Path) -> Path:
    """The same directory as the server sees it; a local directory as it is."""
    return cluster.export / path.relative_to(cluster.mount) if path.is_relative_to(cluster.mount) else path


def _history_records(run_dir: Path) -> int:
    return sum(path.read_bytes().count(b"\n") for path in (run_dir / "history").glob("*.jsonl"))


def _expect(process: subprocess.Popen[str], err: IO[str], word: str, node: Node) -> None:
    assert process.stdout is not None
    line = process.stdout.readline().strip()
    if line != word:
        process.wait(timeout=60)
        err.seek(0)
        raise RuntimeError(
            f"a writer on {node.name} said {line!r}, not {word!r}, exit {process.returncode}:\n{err.read()}"
        )


@dataclass
class Job:
    rate: float  # updates or records per second, from the start signal to the last "done"
    found: int
    expected: int
    kind: str


def _job(cluster: Cluster, base_dir: Path, mode: str, count: int) -> Job:
    """2 nodes x 2 processes writing one run under base_dir, started together."""
    node_a = cluster.nodes[0]
    lock = "auto" if base_dir.is_relative_to(cluster.mount) else "flock"
    created = node_a.run(_argv("create", base_dir, lock)).stdout.split()
    run_dir, kind = Path(created[0]), created[1]
    writers: list[tuple[Node, subprocess.Popen[str], IO[str]]] = []
    with contextlib.ExitStack() as stack:
        for node in cluster.nodes:
            for w in range(WRITERS_PER_NODE):
                err: IO[str] = stack.enter_context(tempfile.TemporaryFile("w+"))
                argv = _argv("write", run_dir, f"{node.name}-w{w}", count, mode)
                process = node.popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err)
                writers.append((node, process, err))
        for node, process, err in writers:
            _expect(process, err, "ready", node)
        start = time.perf_counter()
        for _, process, _ in writers:
            assert process.stdin is not None
            process.stdin.write("go\n")
            process.stdin.flush()
        for node, process, err in writers:
            _expect(process, err, "done", node)
        elapsed = time.perf_counter() - start
        for node, process, err in writers:
            if process.wait(timeout=120) != 0 or os.fstat(err.fileno()).st_size:
                err.seek(0)
                print(f"{node.name} writer, exit {process.returncode}:\n{err.read()}", file=sys.stderr, flush=True)
    server_side = _on_export(cluster, run_dir)
    processes = len(writers)
    if mode == "log":
        found, expected = _history_records(server_side), processes * (count + 1)
    else:
        found = sum(1 for key in read_toml(server_side / "metrics.toml") if "-w" in key)
        expected = processes * (count + 1)
        records = _history_records(server_side)
        if records != expected:
            print(f"WARNING: add_metrics: the history holds {records} records, expected {expected}", flush=True)
    return Job(processes * count / elapsed, found, expected, kind)


@dataclass
class Results:
    single: list[dict[str, list[int]]] = field(default_factory=list)
    kinds: dict[str, str] = field(default_factory=dict)
    jobs: dict[tuple[str, str], list[Job]] = field(default_factory=dict)


def _round(cluster: Cluster, local: Path, args: argparse.Namespace, seed: int, results: Results) -> None:
    mount_base, local_base = cluster.mount / f"r{seed}", local / f"r{seed}"
    single = cluster.nodes[0].run(_argv("single", mount_base, local_base, args.calls, seed), timeout=600)
    if single.stderr:
        print(f"figure 1's process:\n{single.stderr}", file=sys.stderr, flush=True)
    report = json.loads(single.stdout)
    results.kinds = report["kinds"]
    results.single.append(report["took"])
    draw = random.Random(seed)
    for mode, count in (("add_metrics", args.updates), ("log", args.records)):
        for where in draw.sample([SHARED, LOCAL], 2):
            base = mount_base if where == SHARED else local_base
            results.jobs.setdefault((mode, where), []).append(_job(cluster, base / mode, mode, count))


# -- the report ---------------------------------------------------------------------------------------------------


def _percentile(ordered: Sequence[int], q: float) -> int:
    """Nearest rank: the value at or below which ``q`` of the (sorted) values lie."""
    return ordered[max(0, min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1))]


Row = tuple[str, str, str]  # figure, measured, peer


def _report_single(args: argparse.Namespace, results: Results) -> list[Row]:
    def per_round(op: str, name: str, q: float) -> list[float]:
        return [_percentile(sorted(took[f"{op}|{name}"]), q) / 1e6 for took in results.single]

    print(f"\n1. one process on a node, uncontended, {args.calls} calls of each, every call timed")
    print("   kinds recorded: " + ", ".join(f"{name}: {kind}" for name, kind in results.kinds.items()))
    print(f"{'':34}{'median ms':>10}{'p90 ms':>8}{'÷ local flock':>15}{'÷ sshfs flock':>15}")
    rows: list[Row] = []
    for op in OPERATIONS:
        medians = {name: per_round(op, name, 0.5) for name in VARIANTS}
        for name in VARIANTS:
            local = statistics.median(m / f for m, f in zip(medians[name], medians[FLOCK_LOCAL], strict=True))
            sshfs = statistics.median(m / f for m, f in zip(medians[name], medians[FLOCK_SSHFS], strict=True))
            median, p90 = statistics.median(medians[name]), statistics.median(per_round(op, name, 0.9))
            print(f"{f'{op}, {name}':34}{median:10.2f}{p90:8.2f}{local:15.2f}{sshfs:15.2f}")
        soft = medians[SOFT_SSHFS]
        ratio = statistics.median(s / f for s, f in zip(soft, medians[FLOCK_SSHFS], strict=True))
        floor = statistics.median(s / f for s, f in zip(soft, medians[FLOCK_LOCAL], strict=True))
        rows += [
            (f"{op}, sshfs, default (soft), median ms", f"{statistics.median(soft):.2f}", ""),
            (
                "  ÷ flock forced on sshfs",
                f"{ratio:.2f}",
                f"flock on sshfs: {statistics.median(medians[FLOCK_SSHFS]):.2f} ms",
            ),
            (
                "  ÷ local flock (the floor)",
                f"{floor:.2f}",
                f"local flock: {statistics.median(medians[FLOCK_LOCAL]):.2f} ms",
            ),
        ]
    print("   ratios: the median of the rounds' ratios of medians")
    return rows


def _report_jobs(args: argparse.Namespace, results: Results) -> list[Row]:
    nodes = f"2 nodes x {WRITERS_PER_NODE} processes"
    titles = {
        "add_metrics": (f"{args.updates} add_metrics each (a new key a call)", "updates/s", "keys in metrics.toml"),
        "log": (f"{args.records:,} log records each, then flush", "records/s", "history records"),
    }
    rows: list[Row] = []
    for number, (mode, (what, unit, found)) in enumerate(titles.items(), start=2):
        print(f"\n{number}. {nodes}, {what}, one run")
        print(f"{'':24}{'kind':>6}{unit:>12}{'expected':>10}{'found (fewest)':>16}{'lost (most)':>13}")
        rates = {}
        for where in (SHARED, LOCAL):
            jobs = results.jobs[mode, where]
            rates[where] = [job.rate for job in jobs]
            rate, lost = statistics.median(rates[where]), max(job.expected - job.found for job in jobs)
            fewest = min(job.found for job in jobs)
            print(f"{where:24}{jobs[0].kind:>6}{rate:12.0f}{jobs[0].expected:10}{fewest:16}{lost:13}")
        ratio = statistics.median(s / f for s, f in zip(rates[SHARED], rates[LOCAL], strict=True))
        lost_all = max(job.expected - job.found for job in results.jobs[mode, SHARED])
        print(f"   {found}; sshfs ÷ local, median of the rounds' ratios: {ratio:.3f}")
        rows += [
            (f"{mode}, {nodes}, sshfs, {unit}", f"{statistics.median(rates[SHARED]):.0f}", ""),
            (
                "  ÷ the same on a local directory",
                f"{ratio:.3f}",
                f"local flock: {statistics.median(rates[LOCAL]):.0f}",
            ),
            (f"  lost: {found}, sshfs (most of the rounds)", f"{lost_all}", "goal: 0"),
        ]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=100, help="figure 1: calls of each variant a round")
    parser.add_argument("--updates", type=int, default=100, help="figure 2: add_metrics per process")
    parser.add_argument("--records", type=int, default=20_000, help="figure 3: log records per process")
    args = parser.parse_args()
    sys.path.insert(0, str(HERE.parent / "tests"))
    from _nodes import cluster_unavailable, start_cluster

    reason = cluster_unavailable()
    if reason:
        print(f"skipped: {reason}", file=sys.stderr)
        return
    results = Results()
    with tempfile.TemporaryDirectory(prefix="bench-multinode-") as tmp, start_cluster(Path(tmp)) as cluster:
        local = Path(tmp) / "local"
        local.mkdir()
        for r in range(args.rounds):
            start = time.perf_counter()
            _round(cluster, local, args, r, results)
            print(f"round {r + 1}/{args.rounds}: {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
    print(f"2 simulated nodes, one sshfs export on this machine; medians of {args.rounds} rounds")
    rows = _report_single(args, results) + _report_jobs(args, results)
    print_summary(rows, args.rounds, "peer or goal")


if __name__ == "__main__":
    os.environ.setdefault("WANDB_SILENT", "true")
    main()
