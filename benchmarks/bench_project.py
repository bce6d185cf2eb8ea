"""Loading a project, importing the package, creating a run — each against a floor measured in the same run.

1. Loading 10,000 runs (two small TOML files each, warm page cache) with a cold ``MLProject``, against the
   floor "read + parse every file with the fastest TOML parser installed + build the frame".
2. Reloading the unchanged project (a new ``MLProject`` on the same directory), against ``stat`` of every
   file (after listing the directories).
3. ``import ml_manager`` against ``import wandb`` (fresh interpreters; the bare interpreter's start-up is
   subtracted from both).
4. ``MLRun.create`` with wandb disabled inside a git repository, against one ``git rev-parse HEAD``.

Usage: python benchmarks/bench_project.py [--runs N] [--repeats R]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd
import tomli_w

from ml_manager import MLProject, MLRun, _cache
from ml_manager._frame import flatten

try:
    import rtoml

    PARSER, parse = "rtoml", rtoml.loads
except ImportError:  # pragma: no cover - depends on the benchmark environment
    import tomllib

    PARSER, parse = "tomllib", tomllib.loads


def make_project(base: Path, runs: int) -> None:
    for i in range(runs):
        run_dir = base / f"p{i % 10}" / f"run{i:05d}"
        run_dir.mkdir(parents=True)
        config = {
            "lr": 10 ** -(i % 5),
            "batch_size": 2 ** (i % 7),
            "model": {"name": ["CNN", "BERT", "MLP"][i % 3], "layers": i % 12},
            "_wandb": {"id": run_dir.name, "project": f"p{i % 10}", "mode": "disabled"},
            "_meta": {"format_version": 1, "status": "finished", "hostname": "bench", "argv": ["train.py"]},
        }
        (run_dir / "config.toml").write_text(tomli_w.dumps(config))
        (run_dir / "metrics.toml").write_text(tomli_w.dumps({"accuracy": i / runs, "loss": 1 - i / runs, "epoch": i}))


def floor_parse(base: Path) -> float:
    start = time.perf_counter()
    rows = []
    for project in sorted(os.scandir(base), key=lambda e: e.name):
        for run in sorted(os.scandir(project.path), key=lambda e: e.name):
            config = parse(Path(run.path, "config.toml").read_text())
            metrics = parse(Path(run.path, "metrics.toml").read_text())
            rows.append({"run_id": run.name, "project_name": project.name, **flatten(config), **flatten(metrics)})
    pd.DataFrame.from_records(rows)
    return time.perf_counter() - start


def floor_stat(base: Path) -> float:
    start = time.perf_counter()
    for project in os.scandir(base):
        for run in os.scandir(project.path):
            os.stat(os.path.join(run.path, "config.toml"))
            os.stat(os.path.join(run.path, "metrics.toml"))
    return time.perf_counter() - start


def timed(call: Any) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def import_time(module: str) -> float:
    code = (
        f"import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"
        if module
        else "print(0)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(done.stdout)


def create_cost(repeats: int) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp)
        git = ["git", "-c", "user.name=b", "-c", "user.email=b@example.com", "-C", str(repo)]
        subprocess.run([*git, "init", "-q"], check=True)
        (repo / "train.py").write_text("pass\n")
        subprocess.run([*git, "add", "."], check=True)
        subprocess.run([*git, "commit", "-qm", "x"], check=True)
        cwd = os.getcwd()
        os.chdir(repo)
        try:
            ours, floor = [], []
            for _ in range(repeats):
                floor.append(
                    timed(lambda: subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, check=True))
                )
                start = time.perf_counter()
                run = MLRun.create({"lr": 0.1}, repo / "runs", "p", mode="disabled")
                ours.append(time.perf_counter() - start)
                run.finish()
        finally:
            os.chdir(cwd)
    return statistics.median(ours), statistics.median(floor)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    os.environ.setdefault("WANDB_SILENT", "true")
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        make_project(base, args.runs)
        time.sleep(_cache.SETTLE_NS / 1e9 + 0.5)  # let the files settle, as any project older than 2 s has
        floor_parse(base)  # warm the page cache
        cold, parsed, reload, stats = [], [], [], []
        for _ in range(args.repeats):
            _cache._caches.clear()
            parsed.append(floor_parse(base))
            cold.append(timed(lambda: MLProject(base)))
            stats.append(floor_stat(base))
            reload.append(timed(lambda: MLProject(base)))
    imports = {
        name: statistics.median(import_time(name) for _ in range(args.repeats)) for name in ("ml_manager", "wandb")
    }
    create, rev_parse = create_cost(max(args.repeats * 4, 20))

    rows = [
        ("load 10k runs / read+parse+frame floor", statistics.median(cold), statistics.median(parsed), 1.3),
        ("reload unchanged / stat-all floor", statistics.median(reload), statistics.median(stats), 2.0),
        ("import ml_manager / import wandb", imports["ml_manager"], imports["wandb"], 0.10),
        ("create (git repo) / git rev-parse HEAD", create, rev_parse, 3.0),
    ]
    print(f"{args.runs:,} runs, median of {args.repeats}; floor parser: {PARSER}")
    print(f"{'':42}{'ours s':>9}{'floor s':>9}{'ratio':>8}{'goal':>7}")
    for label, ours, floor, goal in rows:
        print(f"{label:42}{ours:9.4f}{floor:9.4f}{ours / floor:8.2f}{goal:7.2f}")


if __name__ == "__main__":
    main()
