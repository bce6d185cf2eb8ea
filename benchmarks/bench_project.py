"""Loading a project, importing the package, creating a run — each against a floor measured in the same run.

In this process, ``--runs`` (default 10,000) small runs, warm page cache, no cache file:

1. Loading them with a cold ``MLProject`` (``cache=False``, nothing in memory), against the floor "read + parse
   every file with the fastest TOML parser installed + build the frame".
2. Reloading the unchanged project (a new ``MLProject`` on the same directory, same process), against ``stat``
   of every file (after listing the directories).

In fresh processes, ``--big`` (default 100,000) realistic runs in 10 projects (a 20-key config with nested
tables, lists, a bool and an int-or-float ``lr``; ``_wandb`` and ``_meta`` tables as ``MLRun.create`` writes
them; 3 metrics), warm page cache.  Every time is measured inside the child from its first line (imports
included; only the interpreter's own start-up is not) and the child's wall time is shown beside it; the ratio
uses the inside times:

3. First load, ``MLProject(base).df`` with an empty cache directory (a new ``ML_MANAGER_CACHE_DIR`` each
   round), against a by-hand floor: list the directories, read both files, parse with rtoml, flatten with
   ``ml_manager._frame.flatten``, ``pandas.DataFrame.from_records``.
4. Again, nothing changed: ``MLProject(base).df`` with the cache file of an earlier load (made once the files
   had settled), against listing the directories and ``os.stat`` of both files of every run.
5. After a change: on a copy of the project, 20 runs' ``metrics.toml`` rewritten (temporary file +
   ``os.replace``), 5 runs removed and 5 added (different runs each round; the previous round's changes are
   settled and cached first), then ``MLProject(copy).df`` at once — the 25 new files are younger than
   ``_cache.SETTLE_NS``, so parsed and not cached — against ``stat`` of every file of the copy.
6. ``ml-manager ls BASE --limit 5 --format csv`` with the cache warm: the console script's wall time, against
   ``2 x stat-all + 1 s`` (the stat-all of 4 by its child's wall time), shown in the floor column; goal ratio 1.

Then, once more in fresh interpreters or in this process:

7. ``import ml_manager`` against ``import wandb`` (fresh interpreters; the bare interpreter's start-up is
   subtracted from both).
8. ``MLRun.create`` with wandb disabled inside a git repository, against one ``git rev-parse HEAD``.

Every figure is the median of ``--repeats`` rounds; each round measures ours and its floor back to back.

Usage: python benchmarks/bench_project.py [--runs N] [--big N] [--big-dir PATH] [--repeats R]
(``--runs 0`` skips 1-2, ``--big 0`` skips 3-6; ``--big-dir`` keeps the generated big project there and
reuses it when the directory is not empty.)
"""

from __future__ import annotations

import argparse
import datetime
import math
import os
import random
import shutil
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

SETTLE_S = _cache.SETTLE_NS / 1e9 + 0.5  # files older than this are cached by a load


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


# -- the big project ----------------------------------------------------------------------------------------------

_ID_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"
_START = datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc)


def big_run_id(rng: random.Random) -> str:
    return "".join(rng.choice(_ID_ALPHABET) for _ in range(8))


def big_config(i: int, project: str, run_id: str, rng: random.Random) -> dict[str, Any]:
    """A run's ``config.toml`` as ``MLRun.create`` and ``finish`` leave it: 20 config keys, ``_wandb``, ``_meta``."""
    created = _START + datetime.timedelta(seconds=i * 37, microseconds=rng.randrange(1_000_000))
    status = rng.choices(["finished", "crashed", "running"], [95, 3, 2])[0]
    meta: dict[str, Any] = {
        "format_version": 1,
        "created_at": created,
        "status": status,
        "lock": "flock",
        "git_commit": f"{rng.getrandbits(160):040x}",
        "git_dirty": rng.random() < 0.2,
        "git_branch": rng.choice(["main", "dev", "exp/bigger-model"]),
        "hostname": f"gpu-node-{i % 16:02d}",
        "pid": 1000 + rng.randrange(60_000),
        "argv": ["train.py", "--config", f"configs/{project}.yaml", f"--seed={i % 1000}"],
        "python": "3.11.9",
        "ml_manager": "0.1.0",
    }
    if status != "running":
        meta["finished_at"] = created + datetime.timedelta(seconds=rng.randrange(60, 86_400), microseconds=i % 997)
    return {
        "lr": 1 if i % 50 == 0 else rng.choice([1e-2, 3e-3, 1e-3, 3e-4, 1e-4]),  # an int in some runs
        "batch_size": 2 ** (4 + i % 5),
        "epochs": rng.choice([10, 20, 50, 100]),
        "seed": i % 1000,
        "dropout": round(rng.random() * 0.5, 3),
        "weight_decay": rng.choice([0.0, 1e-5, 1e-4, 1e-2]),
        "grad_clip": rng.choice([0.5, 1.0, 5.0]),
        "use_amp": i % 3 != 0,
        "dataset": rng.choice(["cifar10", "cifar100", "imagenet-1k", "wikitext-103"]),
        "tags": rng.sample(["baseline", "ablation", "sweep", "long", "debug", "final"], k=1 + i % 3),
        "model": {
            "name": ["CNN", "BERT", "MLP", "ViT"][i % 4],
            "layers": 2 + i % 22,
            "hidden": 2 ** (6 + i % 5),
            "activation": rng.choice(["relu", "gelu", "silu"]),
        },
        "optimizer": {
            "name": rng.choice(["adam", "adamw", "sgd"]),
            "betas": [0.9, rng.choice([0.98, 0.99, 0.999])],
            "eps": 1e-8,
        },
        "scheduler": {"name": rng.choice(["cosine", "linear", "constant"]), "warmup_steps": 100 * (i % 20)},
        "data": {"num_workers": rng.choice([2, 4, 8])},
        "_wandb": {"id": run_id, "project": project, "mode": "offline"},
        "_meta": meta,
    }


def big_metrics(rng: random.Random) -> dict[str, Any]:
    return {"accuracy": rng.random(), "loss": rng.random() * 3, "epoch": rng.randrange(1, 101)}


def write_run(run_dir: Path, i: int, rng: random.Random) -> None:
    run_dir.mkdir(parents=True)
    config = big_config(i, run_dir.parent.name, run_dir.name, rng)
    (run_dir / "config.toml").write_text(tomli_w.dumps(config), encoding="utf-8")
    (run_dir / "metrics.toml").write_text(tomli_w.dumps(big_metrics(rng)), encoding="utf-8")


def make_big_project(base: Path, runs: int) -> None:
    """``runs`` realistic runs in 10 projects."""
    rng = random.Random(0)
    for i in range(runs):
        write_run(base / f"project{i % 10}" / big_run_id(rng), i, rng)


def count_runs(base: Path) -> int:
    return sum(1 for project in os.scandir(base) for run in os.scandir(project.path) if run.is_dir())


# Code of the fresh processes: each prints the seconds since its first line and the number of runs it saw.
OURS = """\
from time import perf_counter; T0 = perf_counter()
import sys
from ml_manager import MLProject
n = len(MLProject(sys.argv[1]).df)
print(perf_counter() - T0, n)
"""

FLOOR_PARSE = """\
from time import perf_counter; T0 = perf_counter()
import os, sys
import pandas as pd
import rtoml
from ml_manager._frame import flatten
rows = []
for project in sorted(os.scandir(sys.argv[1]), key=lambda e: e.name):
    for run in sorted(os.scandir(project.path), key=lambda e: e.name):
        with open(os.path.join(run.path, "config.toml"), encoding="utf-8") as f:
            config = rtoml.loads(f.read())
        with open(os.path.join(run.path, "metrics.toml"), encoding="utf-8") as f:
            metrics = rtoml.loads(f.read())
        rows.append({"run_id": run.name, "project_name": project.name, **flatten(config), **flatten(metrics)})
n = len(pd.DataFrame.from_records(rows))
print(perf_counter() - T0, n)
"""

FLOOR_STAT = """\
from time import perf_counter; T0 = perf_counter()
import os, sys
n = 0
for project in os.scandir(sys.argv[1]):
    for run in os.scandir(project.path):
        os.stat(os.path.join(run.path, "config.toml"))
        os.stat(os.path.join(run.path, "metrics.toml"))
        n += 1
print(perf_counter() - T0, n)
"""


class Children:
    """Runs the fresh processes; keeps what looked wrong (a row count off, anything on stderr) to report."""

    def __init__(self) -> None:
        self.odd: list[str] = []

    def env(self, cache_dir: Path) -> dict[str, str]:
        env = {**os.environ, "ML_MANAGER_CACHE_DIR": str(cache_dir)}
        env.pop("ML_MANAGER_NO_CACHE", None)
        return env

    def note(self, message: str) -> None:
        if message not in self.odd:
            self.odd.append(message)

    def timed(self, code: str, base: Path, cache_dir: Path, expected: int | None = None) -> tuple[float, float]:
        """``(seconds inside the child, wall seconds of the child)``."""
        start = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-c", code, str(base)],
            check=False,
            capture_output=True,
            text=True,
            env=self.env(cache_dir),
        )
        wall = time.perf_counter() - start
        if done.returncode:
            raise RuntimeError(f"child failed ({done.returncode}):\n{done.stderr}")
        if done.stderr.strip():
            self.note(f"stderr of a child: {done.stderr.strip().splitlines()[-1]}")
        inside, rows = done.stdout.split()
        if expected is not None and int(rows) != expected:
            self.note(f"a child saw {rows} runs in {base}, expected {expected}")
        return float(inside), wall

    def ls(self, base: Path, cache_dir: Path) -> float:
        command = [
            str(Path(sys.executable).with_name("ml-manager")),
            "ls",
            str(base),
            "--limit",
            "5",
            "--format",
            "csv",
        ]
        start = time.perf_counter()
        done = subprocess.run(
            command, check=False, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=self.env(cache_dir)
        )
        wall = time.perf_counter() - start
        if done.returncode or done.stderr.strip():
            self.note(f"ml-manager ls exited {done.returncode}: {done.stderr.strip()[-300:]}")
        return wall


class Churn:
    """Each round, on the copy: 20 runs' metrics rewritten, 5 runs removed, 5 added — never the same run twice."""

    def __init__(self, base: Path) -> None:
        runs = sorted(Path(project.path, run.name) for project in os.scandir(base) for run in os.scandir(project.path))
        self.base = base
        self.order = random.Random(1).sample(runs, len(runs))
        self.round = 0
        self.rng = random.Random(2)
        self.changed_at = 0.0

    def apply(self) -> None:
        picked = self.order[self.round * 25 : self.round * 25 + 25]
        if len(picked) < 25:
            raise SystemExit("--big is too small for this many --repeats (25 runs are changed per round)")
        for run_dir in picked[:20]:
            temporary = run_dir / f".metrics.toml.{os.getpid()}.tmp"
            temporary.write_text(tomli_w.dumps(big_metrics(self.rng)), encoding="utf-8")
            os.replace(temporary, run_dir / "metrics.toml")
        for run_dir in picked[20:]:
            shutil.rmtree(run_dir)
        for k in range(5):
            write_run(self.base / f"project{k * 2}" / f"new{self.round:03d}{k}", 10**6 + k, self.rng)
        self.round += 1
        self.changed_at = time.monotonic()


def big_case(args: argparse.Namespace, children: Children) -> list[tuple[str, float, float, float, float, str]]:
    with tempfile.TemporaryDirectory(prefix="bench_project_") as tmp:
        work = Path(tmp)
        base = Path(args.big_dir) if args.big_dir else work / "base"
        base.mkdir(parents=True, exist_ok=True)
        if any(base.iterdir()):
            print(f"reusing {base}: {count_runs(base):,} runs")
        else:
            start = time.perf_counter()
            make_big_project(base, args.big)
            print(f"generated {args.big:,} runs in {base} in {time.perf_counter() - start:.1f} s")
        runs = count_runs(base)
        if runs != args.big:
            children.note(f"{base} holds {runs:,} runs, not --big {args.big:,}: measured with {runs:,}")
        copy = work / "copy"
        start = time.perf_counter()
        shutil.copytree(base, copy)
        print(f"copied them for the change figure in {time.perf_counter() - start:.1f} s")
        time.sleep(SETTLE_S)  # let the files settle (the copy's, and the base's if just generated)

        warm, copy_cache = work / "cache-warm", work / "cache-copy"
        children.timed(FLOOR_PARSE, base, warm)  # warm the page cache
        children.timed(FLOOR_PARSE, copy, copy_cache)
        children.timed(OURS, base, warm, runs)  # the cache the "again" and `ls` figures start from
        churn = Churn(copy)
        figures: dict[str, list[float]] = {
            name: []
            for name in (
                "first",
                "first_wall",
                "parse",
                "parse_wall",
                "again",
                "again_wall",
                "stat",
                "stat_wall",
                "change",
                "change_wall",
                "stat_copy",
                "stat_copy_wall",
                "ls",
            )
        }

        def record(name: str, times: tuple[float, float]) -> None:
            figures[name].append(times[0])
            figures[f"{name}_wall"].append(times[1])

        for round_ in range(args.repeats):
            empty = Path(tempfile.mkdtemp(dir=work, prefix="cache-empty-"))
            first = [
                lambda empty=empty: record("first", children.timed(OURS, base, empty, runs)),
                lambda empty=empty: record("parse", children.timed(FLOOR_PARSE, base, empty, runs)),
            ]
            again = [
                lambda: record("again", children.timed(OURS, base, warm, runs)),
                lambda: record("stat", children.timed(FLOOR_STAT, base, warm, runs)),
            ]
            for step in (first if round_ % 2 else first[::-1]) + (again if round_ % 2 else again[::-1]):
                step()
            shutil.rmtree(empty)
            figures["ls"].append(children.ls(base, warm))

            time.sleep(max(0.0, churn.changed_at + SETTLE_S - time.monotonic()))
            children.timed(OURS, copy, copy_cache, runs)  # the previous round's changes, settled and cached
            churn.apply()
            record("change", children.timed(OURS, copy, copy_cache, runs))
            record("stat_copy", children.timed(FLOOR_STAT, copy, copy_cache, runs))

        for name, where in (("project", warm), ("changed copy", copy_cache)):
            files = sorted((where / "projects").iterdir())
            size = sum(file.stat().st_size for file in files)
            sizes = ", ".join(f"{file.suffix} {file.stat().st_size / 1e6:.2f} MB" for file in files)
            print(f"cache of the {name}: {size / 1e6:.1f} MB, {size / runs:.0f} bytes a run ({sizes})")

    m = {name: statistics.median(values) for name, values in figures.items()}
    k = f"{runs / 1000:g}k"
    ls_goal = 2 * m["stat_wall"] + 1
    return [
        (
            f"{k} first load, empty cache / by-hand floor",
            m["first"],
            m["parse"],
            m["first_wall"],
            m["parse_wall"],
            "1.30",
        ),
        (f"{k} again, unchanged / stat-all", m["again"], m["stat"], m["again_wall"], m["stat_wall"], "1.50"),
        (
            f"{k} 20 rewritten, 5 rm, 5 new / stat-all",
            m["change"],
            m["stat_copy"],
            m["change_wall"],
            m["stat_copy_wall"],
            "2.00",
        ),
        (f"{k} ml-manager ls -n 5 / (2 x stat + 1 s)", m["ls"], ls_goal, m["ls"], m["stat_wall"], "1.00"),
    ]


# -- in this process ----------------------------------------------------------------------------------------------


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


def small_case(args: argparse.Namespace) -> list[tuple[str, float, float, float, float, str]]:
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        make_project(base, args.runs)
        time.sleep(SETTLE_S)  # let the files settle, as any project older than 2 s has
        floor_parse(base)  # warm the page cache
        cold, parsed, reload, stats = [], [], [], []
        for _ in range(args.repeats):
            _cache.forget()  # nothing in memory; cache=False: no cache file either
            parsed.append(floor_parse(base))
            cold.append(timed(lambda: MLProject(base, cache=False)))
            stats.append(floor_stat(base))
            reload.append(timed(lambda: MLProject(base, cache=False)))
    k = f"{args.runs / 1000:g}k"
    nan = float("nan")
    return [
        (
            f"{k} load, in process / read+parse+frame",
            statistics.median(cold),
            statistics.median(parsed),
            nan,
            nan,
            "1.30",
        ),
        (
            f"{k} reload unchanged, in process / stat-all",
            statistics.median(reload),
            statistics.median(stats),
            nan,
            nan,
            "2.00",
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10_000, help="runs of the in-process figures (0: skip them)")
    parser.add_argument("--big", type=int, default=100_000, help="runs of the fresh-process figures (0: skip them)")
    parser.add_argument("--big-dir", help="keep the big project here: generated if empty, else reused as it is")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    os.environ.setdefault("WANDB_SILENT", "true")
    children = Children()
    rows = []
    with tempfile.TemporaryDirectory() as cache:
        os.environ["ML_MANAGER_CACHE_DIR"] = cache  # nothing of this script lands in the user's cache directory
        if args.runs:
            rows += small_case(args)
        if args.big:
            rows += big_case(args, children)
        imports = {
            name: statistics.median(import_time(name) for _ in range(args.repeats)) for name in ("ml_manager", "wandb")
        }
        create, rev_parse = create_cost(max(args.repeats * 4, 20))
    nan = float("nan")
    rows += [
        ("import ml_manager / import wandb", imports["ml_manager"], imports["wandb"], nan, nan, "0.10"),
        ("create (git repo) / git rev-parse HEAD", create, rev_parse, nan, nan, "3.00"),
    ]

    print(f"median of {args.repeats}; floor parser: {PARSER}; wall: the child process's, seen from here")
    print(f"{'':46}{'ours s':>9}{'floor s':>9}{'ratio':>8}{'goal':>8}{'ours wall':>11}{'floor wall':>11}")
    for label, ours, floor, ours_wall, floor_wall, goal in rows:
        walls = f"{ours_wall:11.3f}{floor_wall:11.3f}" if not math.isnan(ours_wall) else ""
        print(f"{label:46}{ours:9.4f}{floor:9.4f}{ours / floor:8.2f}{goal:>8}{walls}")
    for message in children.odd:
        print(f"note: {message}")


if __name__ == "__main__":
    main()
