"""Per-step history: every add_metrics call recorded with its step, time and writer, across processes."""

from __future__ import annotations

import logging
import multiprocessing
import os
import pickle
import subprocess
import sys
from typing import TYPE_CHECKING

import pandas as pd
import pytest

from ml_manager import MLProject, MLRun
from ml_manager._history import writer_file

if TYPE_CHECKING:
    from pathlib import Path

SPAWN = multiprocessing.get_context("spawn")


def test_each_call_is_one_record_with_step_time_and_writer(base_dir: Path) -> None:
    run = MLRun.create({}, base_dir, "demo")
    for step in range(5):
        run.add_metrics({"loss": 1 / (step + 1), "eval": {"acc": step / 10}}, step=step)
    run.add_metrics({"note": "no step"})
    history = run.history()
    assert list(history.columns[:3]) == ["step", "time", "writer"]
    assert list(history["step"].iloc[:5]) == [0, 1, 2, 3, 4]
    assert pd.isna(history["step"].iloc[5])
    assert list(history["eval.acc"].iloc[:5]) == [0.0, 0.1, 0.2, 0.3, 0.4]
    assert history["time"].is_monotonic_increasing
    assert str(history["time"].dt.tz) == "UTC"
    assert set(history["writer"]) == {f"{os.uname().nodename}:{os.getpid()}"}
    run.finish()


def test_a_run_without_history_gives_an_empty_frame(base_dir: Path) -> None:
    run = MLRun.create({}, base_dir, "demo")
    assert run.history().empty
    assert list(run.history().columns) == ["step", "time", "writer"]
    run.finish()


def test_metric_names_that_clash_with_history_columns_keep_their_values(base_dir: Path) -> None:
    run = MLRun.create({}, base_dir, "demo")
    run.add_metrics({"step": 99, "writer": "mine"}, step=1)
    row = run.history().iloc[0]
    assert (row["step"], row["metrics.step"], row["metrics.writer"]) == (1, 99, "mine")
    run.finish()


def test_a_partial_record_left_by_a_killed_writer_is_skipped_and_ended(
    base_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    run = MLRun.create({}, base_dir, "demo")
    torn = writer_file(run.run_dir)
    torn.parent.mkdir()
    torn.write_bytes(b'{"step":0,"time":1.0,"writer":"x","metrics":{"loss":0.5}}\n{"step":1,"time":2.0,"wri')
    with caplog.at_level(logging.WARNING, logger="ml_manager"):
        run.add_metrics({"loss": 0.25}, step=2)
        history = run.history()
    assert list(history["step"]) == [0, 2]
    assert "skipped 1 partial" in caplog.text
    assert torn.read_bytes().count(b"\n") == 3  # the torn line was ended before the new record
    run.finish()


KILLED_WRITER = """
import os, signal, sys
from ml_manager import MLRun

run = MLRun.attach(sys.argv[1])
real_write = os.write

def write(fd, data):
    if bytes(data[:8]) == b'{"step":' and b'"step":3' in bytes(data):
        real_write(fd, bytes(data[: len(data) // 2]))  # half a record reaches the file, then the writer dies
        os.kill(os.getpid(), signal.SIGKILL)
    return real_write(fd, data)

os.write = write
for step in range(5):
    run.add_metrics({"loss": step}, step=step)
"""


@pytest.mark.slow
def test_the_history_of_a_writer_killed_mid_append_still_loads(base_dir: Path) -> None:
    run = MLRun.create({}, base_dir, "demo")
    done = subprocess.run([sys.executable, "-c", KILLED_WRITER, str(run.run_dir)], check=False, timeout=120)
    assert done.returncode == -9
    history = run.history()
    assert list(history["step"]) == [0, 1, 2]
    assert MLRun.load(run.run_id, base_dir).metrics == {"loss": 3}  # metrics.toml was written before the kill
    run.finish()


def _log_from_worker(run: MLRun, worker: int, steps: int) -> str:
    for step in range(steps):
        run.add_metrics({f"w{worker}": step}, step=step)
    return f"{run.run_id} {run.wandb_run is None}"


@pytest.mark.slow
def test_eight_pool_workers_log_into_one_run(base_dir: Path) -> None:
    run = MLRun.create({"job": "pool"}, base_dir, "demo", mode="offline")
    steps = 25
    with SPAWN.Pool(8) as pool:
        replies = pool.starmap(_log_from_worker, [(run, w, steps) for w in range(8)])
    assert replies == [f"{run.run_id} True"] * 8  # the same run, and no worker got a wandb connection
    history = run.history()
    assert len(history) == 8 * steps
    assert history["writer"].nunique() == 8
    for w in range(8):
        assert list(history[f"w{w}"].dropna().astype(int)) == list(range(steps))
    assert MLRun.load(run.run_id, base_dir).metrics == {f"w{w}": steps - 1 for w in range(8)}
    run.finish()


def test_a_pickled_run_is_a_joiner_of_the_same_run(base_dir: Path) -> None:
    run = MLRun.create({"a": 1}, base_dir, "demo", lock="soft")
    copy = pickle.loads(pickle.dumps(run))
    assert (copy.run_dir, copy.config, copy.lock, copy.wandb_run) == (run.run_dir.absolute(), {"a": 1}, "soft", None)
    copy.finish()  # a joiner cannot finish the run
    assert MLRun.load(run.run_id, base_dir).meta["status"] == "running"
    run.finish()


def test_export_env_lets_a_child_process_attach(base_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run = MLRun.create({}, base_dir, "demo")
    monkeypatch.delenv("ML_MANAGER_RUN_DIR", raising=False)
    exported = run.export_env()
    assert os.environ["ML_MANAGER_RUN_DIR"] == exported["ML_MANAGER_RUN_DIR"]
    code = "from ml_manager import MLRun; r = MLRun.attach(); r.add_metrics({'child': 1}); print(r.run_id)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert done.stdout.strip() == run.run_id
    assert MLRun.load(run.run_id, base_dir).metrics == {"child": 1}
    run.finish()


def test_attach_without_a_run_says_what_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ML_MANAGER_RUN_DIR", raising=False)
    with pytest.raises(LookupError, match="ML_MANAGER_RUN_DIR"):
        MLRun.attach()


def test_project_history_joins_each_record_with_its_config(base_dir: Path) -> None:
    for lr in (0.1, 0.01):
        run = MLRun.create({"lr": lr, "model": {"name": "cnn"}}, base_dir, "demo")
        for step in range(3):
            run.add_metrics({"loss": lr * (3 - step), "lr": lr / (step + 1)}, step=step)
        run.finish()
    history = MLProject(base_dir).history()
    assert len(history) == 6
    assert list(history.columns[:2]) == ["run_id", "project_name"]
    assert set(history["model.name"]) == {"cnn"}
    # "lr" is both a config key and a metric: the metric keeps the name, the config moves.
    assert sorted(set(history["config.lr"])) == [0.01, 0.1]
    assert list(history[history["config.lr"] == 0.1]["lr"]) == [0.1, 0.05, 0.1 / 3]
    assert len(MLProject(base_dir).history("`model.name` == 'cnn'")) == 6
