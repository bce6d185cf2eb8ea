"""Per-step logging with ``MLRun.log``: the caller's cost, throughput to disk, a training loop's slowdown, memory.

Every figure is printed next to its goal, as the median of the rounds; variants are interleaved within a
round, each in a fresh process where another library's threads could otherwise linger into later figures.

1. One process, back-to-back ``run.log`` calls of 5 floats (durable run, default flush interval), every call
   timed: median and p99.  The same 5-metric call to the peers, each in its own process: wandb's ``log`` in
   offline mode, TensorBoard's ``SummaryWriter`` (5 ``add_scalar``) and MLflow's ``log_metrics`` with
   ``synchronous=False`` on a file store, the last two only where installed.
2. 8 spawned processes log 20,000 records each into one run, then ``flush``: records/s from the common start
   until the last process has all of its records on disk; the same 8 processes with ``add_metrics`` (200
   calls each) for comparison.  The run's history is counted after each round.
3. A training loop of 0.5 ms steps that logs 5 metrics a step (its final ``flush`` included) against the same
   loop without logging, each twice a round in the order A B B A, with two kinds of step.  A pure-Python busy
   wait until a deadline holds the GIL, the worst case for the writer thread (it hides a pause of the loop
   shorter than what is left of its step, but the writer's turns with the GIL last up to the 5 ms switch
   interval, ten steps; a fixed amount of Python work instead would show them whole, but its own duration
   drifts by 10-15% from one loop to the next on a shared machine, which swamps a 3% figure).  A numpy matmul
   on one BLAS thread releases it (a BLAS team spread over every core slows down many times over whenever one
   core is busy elsewhere, which would swamp the figure too).
4. The caller's latency in figure 2's processes (each times every one of its ``log`` calls): p50, p99, max.
5. Memory while the writer is stalled (a stub blocks the history append) and one thread logs past
   ``max_unflushed``: records buffered, bytes traced by tracemalloc, RSS growth (in a second, untraced
   process: tracemalloc's own bookkeeping would swell it), bytes per record.

Usage: python benchmarks/bench_log.py [--rounds R] [--quick]
"""

from __future__ import annotations

import argparse
import array
import functools
import math
import multiprocessing
import os
import random
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from _report import print_summary
from _together import run_together

from ml_manager import MLRun

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from pathlib import Path

T = TypeVar("T")
NAMES = ("loss", "accuracy", "lr", "grad_norm", "throughput")
PEERS = ("wandb.log (offline)", "TensorBoard add_scalar x 5", "MLflow log_metrics (async)")


@dataclass(frozen=True)
class Sizes:
    calls: int = 50_000  # figure 1, ml_manager
    peer_calls: int = 3_000  # figure 1, each peer: they cost hundreds of µs a call
    processes: int = 8
    records: int = 20_000  # figures 2 and 4, per process
    add_metrics_calls: int = 200  # figure 2's comparison, per process: a few ms a call
    steps: int = 4_000  # figure 3
    step_seconds: float = 0.0005
    max_unflushed: int = 100_000  # figure 5: the documented default
    memory_records: int = 150_000


QUICK = Sizes(
    calls=10_000,
    peer_calls=500,
    records=4_000,
    add_metrics_calls=50,
    steps=1_000,
    max_unflushed=20_000,
    memory_records=30_000,
)


def _five(i: int, suffix: str = "") -> dict[str, float]:
    x = 1.0 / (i + 1)
    values = (x, 1.0 - x, 0.001 * x, 2.0 * x, 1000.0 + x)
    return {name + suffix: value for name, value in zip(NAMES, values, strict=True)}


def _percentile(ordered: Sequence[int], q: float) -> int:
    """Nearest rank: the value at or below which ``q`` of the (sorted) values lie."""
    return ordered[max(0, min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1))]


def _fresh(fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` in a new spawned process: no thread or import of an earlier figure runs alongside."""
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(fn, *args).result()


def _history_records(run_dir: Path) -> int:
    return sum(path.read_bytes().count(b"\n") for path in (run_dir / "history").glob("*.jsonl"))


# -- 1. one caller, against the peers ----------------------------------------------------------------------------


def _time_calls(log: Callable[..., object], calls: int) -> array.array[int]:
    """Nanoseconds of each ``log(values, step=i)``; step 0 was the caller's warm-up."""
    took = array.array("q", bytes(8 * calls))
    clock = time.perf_counter_ns
    for i in range(calls):
        values = _five(i + 1)
        start = clock()
        log(values, step=i + 1)
        took[i] = clock() - start
    return took


def _ml_manager_caller(calls: int) -> array.array[int]:
    with tempfile.TemporaryDirectory() as tmp:
        run = MLRun.create({}, tmp, "bench", mode="disabled")
        # The first log opens the buffer and starts the writer thread: a once-per-run cost, not a step's.
        run.log(_five(0), step=0)
        run.flush()
        took = _time_calls(run.log, calls)
        run.finish()
        if run.log_stats.written != calls + 1:
            print(f"WARNING: ml_manager wrote {run.log_stats.written} of {calls + 1} records", flush=True)
    return took


def _wandb_caller(calls: int) -> array.array[int]:
    import wandb

    options: dict[str, Any] = {"disable_git": True}
    if "x_disable_stats" in getattr(wandb.Settings, "model_fields", {}):
        options["x_disable_stats"] = True
    with tempfile.TemporaryDirectory() as tmp:
        wandb_run = wandb.init(mode="offline", dir=tmp, project="bench", settings=wandb.Settings(**options))
        wandb_run.log(_five(0), step=0)
        took = _time_calls(wandb_run.log, calls)
        wandb_run.finish()
    return took


def _tensorboard_caller(calls: int) -> array.array[int] | None:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        writer = SummaryWriter(log_dir=tmp)

        def log(values: dict[str, float], step: int) -> None:
            for name, value in values.items():
                writer.add_scalar(name, value, step)

        log(_five(0), step=0)
        took = _time_calls(log, calls)
        writer.close()
    return took


def _mlflow_caller(calls: int) -> array.array[int] | None:
    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")  # no network, no extra thread in the figure
    try:
        import mlflow
    except ImportError:
        return None
    import logging
    import warnings

    logging.getLogger("mlflow").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", module="mlflow")
    with tempfile.TemporaryDirectory() as tmp:
        mlflow.set_tracking_uri("file:" + tmp)
        mlflow.set_experiment("bench")
        with mlflow.start_run():
            log = functools.partial(mlflow.log_metrics, synchronous=False)
            log(_five(0), step=0)
            took = _time_calls(log, calls)
    return took


# -- 2 and 4. many processes into one run --------------------------------------------------------------------------


def _job_worker(run_dir: str, n: int, calls: int, how: str, *, barrier: Any, out: Any) -> None:
    run = MLRun.attach(run_dir)
    suffix = f"_w{n}"  # each process its own keys, as ranks logging their own shard's figures
    if how == "add_metrics":
        run.add_metrics(_five(0, suffix), step=0)
        barrier.wait()
        for i in range(1, calls + 1):
            run.add_metrics(_five(i, suffix), step=i)
        out.put([])
        return
    # One record written before the start, so that the figures are a running job's, not each process's
    # first-call costs (opening the buffer, the writer thread, the history file).
    run.log(_five(0, suffix), step=0)
    run.flush()
    took = array.array("q", bytes(8 * calls))
    clock = time.perf_counter_ns
    barrier.wait()
    for i in range(calls):
        values = _five(i + 1, suffix)
        start = clock()
        run.log(values, step=i + 1)
        took[i] = clock() - start
    run.flush()
    out.put([took])


def _job(sizes: Sizes, how: str) -> tuple[float, list[array.array[int]]]:
    """Records/s from the common start until every process has its records on disk, and the log timings."""
    calls = sizes.records if how == "log" else sizes.add_metrics_calls
    with tempfile.TemporaryDirectory() as tmp:
        run = MLRun.create({}, tmp, "bench", mode="disabled")
        args = [(str(run.run_dir), n, calls, how) for n in range(sizes.processes)]
        elapsed, reports = run_together(_job_worker, args)
        expected, found = sizes.processes * (calls + 1), _history_records(run.run_dir)
        if found != expected:
            print(f"WARNING: {how}: the history holds {found} records, expected {expected}", flush=True)
        run.finish()
    return sizes.processes * calls / elapsed, reports


# -- 3. a training loop -------------------------------------------------------------------------------------------


def _one_blas_thread() -> None:
    """Before numpy is imported: one BLAS thread, whichever library numpy was built with."""
    for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[name] = "1"


def _calibrate_matmul(seconds: float) -> int:
    """The smallest square float64 matmul that takes ``seconds`` or more (median of 21), or 0 without numpy."""
    _one_blas_thread()
    try:
        import numpy as np
    except ImportError:
        return 0
    for n in range(16, 4097, 8):
        a, b, c = np.ones((n, n)), np.ones((n, n)), np.empty((n, n))
        took = []
        for _ in range(21):
            start = time.perf_counter()
            np.matmul(a, b, out=c)
            took.append(time.perf_counter() - start)
        if statistics.median(took) >= seconds:
            return n
    return 0


def _deadline_step(seconds: float) -> Callable[[], None]:
    clock = time.perf_counter

    def step() -> None:
        end = clock() + seconds
        while clock() < end:
            pass

    return step


def _matmul_step(n: int) -> Callable[[], None]:
    import numpy as np

    a, b, c = np.ones((n, n)), np.ones((n, n)), np.empty((n, n))
    return functools.partial(np.matmul, a, b, out=c)


def _loop(step: Callable[[], None], steps: int, run: MLRun | None) -> float:
    start = time.perf_counter()
    if run is None:
        for _ in range(steps):
            step()
    else:
        log = run.log
        for i in range(steps):
            step()
            log(_five(i), step=i)
        run.flush()
    return time.perf_counter() - start


def _loops(steps: int, step_seconds: float, matmul_n: int, seed: int) -> dict[tuple[str, bool], float]:
    """Seconds of each loop variant, (step kind, logged), each the sum of two loops."""
    _one_blas_thread()
    kinds = {"deadline": _deadline_step(step_seconds)}
    if matmul_n:
        kinds["matmul"] = _matmul_step(matmul_n)
    # Each kind's loops as A B B A (which of logged and bare comes first drawn at random), so that a machine
    # drifting faster or slower over those seconds moves both alike.
    draw = random.Random(seed)
    order = []
    for kind in draw.sample(list(kinds), len(kinds)):
        first = draw.random() < 0.5
        order += [(kind, first), (kind, not first), (kind, not first), (kind, first)]
    seconds = dict.fromkeys(order, 0.0)
    with tempfile.TemporaryDirectory() as tmp:
        # The process's first commit imports the encoders and opens files: paid once per process, not per loop.
        run = MLRun.create({}, tmp, "bench", mode="disabled")
        run.log(_five(0), step=0)
        run.finish()
        for kind, logged in order:
            run = MLRun.create({}, tmp, "bench", mode="disabled")
            seconds[kind, logged] += _loop(kinds[kind], steps, run if logged else None)
            run.finish()
    return seconds


# -- 5. memory with the writer stalled ----------------------------------------------------------------------------


def _rss_bytes() -> int:
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # the peak: only grows, like the buffer


def _memory_probe(limit: int, total: int, trace: bool) -> dict[str, float]:
    import gc
    import tracemalloc

    from ml_manager import _history

    release = threading.Event()
    append_lines = _history.append_lines

    def stalled(*args: Any, **kwargs: Any) -> None:
        release.wait()
        append_lines(*args, **kwargs)

    # A disk that stops answering: the writer's first append never returns until released.
    _history.append_lines = stalled
    with tempfile.TemporaryDirectory() as tmp:
        run = MLRun.create({}, tmp, "bench", mode="disabled", max_unflushed=limit)
        gc.collect()
        if trace:
            tracemalloc.start()
        traced_before, rss_before = tracemalloc.get_traced_memory()[0], _rss_bytes()

        def produce() -> None:
            for i in range(total):
                run.log(_five(i), step=i)

        producer = threading.Thread(target=produce, daemon=True)
        producer.start()
        deadline, last, steady = time.monotonic() + 300, -1, 0
        while time.monotonic() < deadline and steady < 10:  # 10 polls, 0.1 s, at the bound without growth
            time.sleep(0.01)
            pending = run.log_stats.pending
            steady = steady + 1 if pending >= limit and pending == last else 0
            last = pending
        buffered = run.log_stats.pending
        traced = tracemalloc.get_traced_memory()[0] - traced_before
        rss = _rss_bytes() - rss_before
        blocked = producer.is_alive()
        tracemalloc.stop()
        release.set()
        producer.join()
        run.flush()
        written, on_disk = run.log_stats.written, _history_records(run.run_dir)
        run.finish()
    return {
        "buffered": buffered,
        "bytes": traced if trace else rss,
        "blocked": blocked,
        "written": written,
        "on_disk": on_disk,
    }


# -- the rounds ---------------------------------------------------------------------------------------------------


@dataclass
class Results:
    caller: list[array.array[int]]
    peers: dict[str, list[array.array[int]]]
    throughput: dict[str, list[float]]
    contention: list[list[int]]  # every log call of the round's processes, sorted
    loops: list[dict[tuple[str, bool], float]]
    memory: list[dict[str, dict[str, float]]]


def _round(sizes: Sizes, matmul_n: int, seed: int, results: Results) -> None:
    callers: list[tuple[str, Callable[[int], array.array[int] | None], int]] = [
        ("ml_manager", _ml_manager_caller, sizes.calls),
        (PEERS[0], _wandb_caller, sizes.peer_calls),
        (PEERS[1], _tensorboard_caller, sizes.peer_calls),
        (PEERS[2], _mlflow_caller, sizes.peer_calls),
    ]
    for name, fn, calls in random.sample(callers, len(callers)):
        took = _fresh(fn, calls)
        if name == "ml_manager" and took is not None:
            results.caller.append(took)
        elif took is not None:
            results.peers[name].append(took)
    for how in random.sample(["log", "add_metrics"], 2):
        throughput, reports = _job(sizes, how)
        results.throughput[how].append(throughput)
        if how == "log":
            results.contention.append(sorted(ns for took in reports for ns in took))
    results.loops.append(_fresh(_loops, sizes.steps, sizes.step_seconds, matmul_n, seed))
    probes = {}
    for probe in random.sample(["tracemalloc", "RSS"], 2):
        probes[probe] = _fresh(_memory_probe, sizes.max_unflushed, sizes.memory_records, probe == "tracemalloc")
    results.memory.append(probes)


Row = tuple[str, str, str]  # figure, measured, goal


def _us(ns: float) -> str:
    return f"{ns / 1e3:.2f}"


def _report_callers(sizes: Sizes, results: Results) -> list[Row]:
    ordered = [sorted(took) for took in results.caller]
    median = statistics.median(_percentile(took, 0.5) for took in ordered)
    p99 = statistics.median(_percentile(took, 0.99) for took in ordered)
    print("\n1. one caller, 5 metrics a call, every call timed")
    print(f"{'':34}{'calls':>8}{'median us':>11}{'p99 us':>9}{'log ÷ this':>12}")
    print(f"{'ml_manager run.log (durable)':34}{sizes.calls:8}{_us(median):>11}{_us(p99):>9}")
    rows = [("log, caller median µs", _us(median), "≤ 5"), ("log, caller p99 µs", _us(p99), "≤ 50")]
    for name in PEERS:
        goal = "≤ 0.02" if name == PEERS[0] else ""
        if not results.peers[name]:
            print(f"{name:34}{'not installed':>20}")
            rows.append((f"log ÷ {name}", "not installed", goal))
            continue
        peer = statistics.median(_percentile(sorted(took), 0.5) for took in results.peers[name])
        print(f"{name:34}{sizes.peer_calls:8}{_us(peer):>11}{'':9}{median / peer:12.4f}")
        rows.append((f"log ÷ {name}, medians", f"{median / peer:.4f}", goal))
    return rows


def _report_jobs(sizes: Sizes, results: Results) -> list[Row]:
    jobs = {how: statistics.median(values) for how, values in results.throughput.items()}
    ratio = jobs["log"] / jobs["add_metrics"]
    print(f"\n2. {sizes.processes} processes into one run, durable, until all is on disk")
    print(f"{'':44}{'records/s':>11}")
    print(f"{f'log, {sizes.records:,} records each, then flush':44}{jobs['log']:11.0f}")
    print(f"{f'add_metrics, {sizes.add_metrics_calls} calls each':44}{jobs['add_metrics']:11.0f}")
    print(f"{'log ÷ add_metrics':44}{ratio:11.1f}")
    return [
        (f"{sizes.processes} x {sizes.records:,} log to disk, records/s", f"{jobs['log']:.0f}", "≥ 50,000"),
        ("  ÷ the same job with add_metrics", f"{ratio:.1f}", ""),
    ]


def _report_loops(sizes: Sizes, matmul_n: int, results: Results) -> list[Row]:
    ms = f"{sizes.step_seconds * 1e3:g} ms"
    loops = 2 * sizes.steps  # steps in the two loops of a variant
    print(f"\n3. a loop of {sizes.steps:,} steps, 5 metrics logged a step, the final flush included")
    print(f"{'':50}{'ms/step, no log':>16}{'logged':>8}{'ratio':>8}")
    labels = {
        "deadline": f"{ms}: Python busy wait (holds the GIL)",
        "matmul": f"{ms}: {matmul_n}x{matmul_n} matmul, 1 thread (frees the GIL)",
    }
    rows = []
    for kind, label in labels.items():
        if kind == "matmul" and not matmul_n:
            print(f"{'numpy matmul (releases the GIL)':50}{'numpy not installed':>27}")
            continue
        bare = statistics.median(loop[kind, False] for loop in results.loops)
        logged = statistics.median(loop[kind, True] for loop in results.loops)
        ratio = statistics.median(loop[kind, True] / loop[kind, False] for loop in results.loops)
        print(f"{label:50}{bare * 1e3 / loops:16.3f}{logged * 1e3 / loops:8.3f}{ratio:8.3f}")
        rows.append((f"loop, {label}: logged ÷ not", f"{ratio:.3f}", "≤ 1.03"))
    print("   ratio: the median of the rounds' logged ÷ not logged, in one process, loops ordered A B B A")
    return rows


def _report_contention(sizes: Sizes, results: Results) -> list[Row]:
    p50, p99, worst = (
        statistics.median(_percentile(calls, q) for calls in results.contention) for q in (0.5, 0.99, 1.0)
    )
    print(f"\n4. caller latency of figure 2's {sizes.processes} x {sizes.records:,} log calls (each one timed)")
    print(f"   p50 {_us(p50)} us, p99 {_us(p99)} us, max {_us(worst)} us")
    return [
        (f"log under {sizes.processes}-way contention, p99 µs", _us(p99), "≤ 100"),
        ("  p50 µs / max µs", f"{_us(p50)} / {_us(worst)}", ""),
    ]


def _report_memory(sizes: Sizes, results: Results) -> list[Row]:
    traced = [probes["tracemalloc"] for probes in results.memory]
    untraced = [probes["RSS"] for probes in results.memory]
    buffered = statistics.median(p["buffered"] for p in traced + untraced)
    traced_bytes = statistics.median(p["bytes"] for p in traced)
    rss_bytes = statistics.median(p["bytes"] for p in untraced)
    per_record = statistics.median(p["bytes"] / p["buffered"] for p in traced)
    rss_per_record = statistics.median(p["bytes"] / p["buffered"] for p in untraced)
    print(f"\n5. the writer stalled, {sizes.memory_records:,} records logged, max_unflushed={sizes.max_unflushed:,}")
    print(f"   records buffered when log blocked: {buffered:,.0f} (bound: ≤ {sizes.max_unflushed:,} records)")
    print(f"   traced by tracemalloc: {traced_bytes / 2**20:.1f} MiB, {per_record:.0f} bytes/record")
    print(f"   RSS growth, untraced:  {rss_bytes / 2**20:.1f} MiB, {rss_per_record:.0f} bytes/record")
    for p in traced + untraced:
        if not p["blocked"] or p["written"] != sizes.memory_records or p["on_disk"] != sizes.memory_records:
            print(f"WARNING: a memory probe ended with {p}")
    return [
        ("records buffered with the writer stalled", f"{buffered:,.0f}", f"≤ {sizes.max_unflushed:,}"),
        ("  bytes per 5-float record (tracemalloc / RSS)", f"{per_record:.0f} / {rss_per_record:.0f}", ""),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="smaller counts, for a quick look")
    args = parser.parse_args()
    os.environ.setdefault("WANDB_SILENT", "true")
    sizes = QUICK if args.quick else Sizes()
    matmul_n = _fresh(_calibrate_matmul, sizes.step_seconds)
    results = Results([], {name: [] for name in PEERS}, {"log": [], "add_metrics": []}, [], [], [])
    for r in range(args.rounds):
        start = time.perf_counter()
        _round(sizes, matmul_n, r, results)
        print(f"round {r + 1}/{args.rounds}: {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
    print(f"medians of {args.rounds} rounds")
    rows = _report_callers(sizes, results) + _report_jobs(sizes, results)
    rows += _report_loops(sizes, matmul_n, results) + _report_contention(sizes, results)
    rows += _report_memory(sizes, results)
    print_summary(rows, args.rounds)


if __name__ == "__main__":
    main()
