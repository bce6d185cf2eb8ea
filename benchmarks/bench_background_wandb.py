"""Time a training loop spends in ``add_metrics``, with wandb offline or slow, with and without the queue.

Each configuration runs the same loop of N steps (a 10-key ``add_metrics`` per step, durable) and is reported
as a ratio against the same loop with wandb disabled, measured in the same run, configurations interleaved
round by round.  "slow wandb" is a wandb run whose ``log`` takes 20 ms (an injected delay, as a congested
network does), on top of wandb's own disabled-mode ``log``.

Usage: python benchmarks/bench_background_wandb.py [--steps N] [--rounds R]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from ml_manager import MLRun

CONFIGS = {
    # name: (wandb mode, background queue, injected delay per log call)
    "wandb disabled (baseline)": ("disabled", False, 0.0),
    "offline wandb, direct": ("offline", False, 0.0),
    "offline wandb, background queue": ("offline", True, 0.0),
    "slow wandb (20 ms), direct": ("disabled", False, 0.020),
    "slow wandb (20 ms), background queue": ("disabled", True, 0.020),
}


def one_loop(base_dir: Path, mode: str, background: bool, delay: float, steps: int) -> tuple[float, float]:
    """Seconds spent in add_metrics over the loop, and seconds finish() took (draining the queue)."""
    run = MLRun.create({"bench": True}, base_dir, "bench", mode=mode, background_wandb=background)
    if delay and run.wandb_run is not None:
        real_log = run.wandb_run.log

        def slow_log(data: dict[str, Any], step: int | None = None, **kwargs: Any) -> None:
            time.sleep(delay)
            real_log(data, step=step, **kwargs)

        run.wandb_run.log = slow_log
    spent = 0.0
    for step in range(steps):
        metrics = {f"metric_{k}": random.random() for k in range(10)}
        start = time.perf_counter()
        run.add_metrics(metrics, step=step)
        spent += time.perf_counter() - start
    start = time.perf_counter()
    run.finish(timeout=600)
    return spent, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    os.environ.setdefault("WANDB_SILENT", "true")

    loop: dict[str, list[float]] = {name: [] for name in CONFIGS}
    finish: dict[str, list[float]] = {name: [] for name in CONFIGS}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.rounds):
            for name in random.sample(list(CONFIGS), len(CONFIGS)):
                spent, finishing = one_loop(Path(tmp), *CONFIGS[name], args.steps)
                loop[name].append(spent)
                finish[name].append(finishing)

    base = statistics.median(loop["wandb disabled (baseline)"])
    print(f"time in add_metrics over a {args.steps}-step loop, median of {args.rounds} interleaved rounds")
    print(f"{'':40}{'loop s':>9}{'x baseline':>12}{'finish() s':>12}")
    for name in CONFIGS:
        median = statistics.median(loop[name])
        print(f"{name:40}{median:9.3f}{median / base:12.2f}{statistics.median(finish[name]):12.3f}")


if __name__ == "__main__":
    main()
