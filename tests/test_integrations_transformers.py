"""The Trainer callback on the real Hugging Face Trainer: one process, and two CPU ranks with gloo."""

from __future__ import annotations

from pathlib import Path

import pytest

from _frameworks import need, run_job
from ml_manager import MLRun

need("torch")
need("transformers")
need("accelerate")

pytestmark = pytest.mark.slow
HERE = Path(__file__).resolve().parent
STEPS = 6  # the example's default: evaluated and saved every 2 steps


def train(base_dir: Path, ranks: int, *options: str, fails: bool = False) -> None:
    """Train in a fresh interpreter (see _child_setup)."""
    run_job("_hf_child.py", str(ranks), "--base-dir", str(base_dir), *options, fails=fails)


def the_run(base_dir: Path) -> MLRun:
    runs = list((base_dir / "hf-demo").iterdir())
    assert len(runs) == 1, runs
    return MLRun.load(runs[0].name, base_dir, "hf-demo")


def check_run(run: MLRun, ranks: int) -> None:
    assert run.status == "finished"
    # The arguments that decide the result, the model's config, and the caller's own.
    assert run.config["learning_rate"] == 1e-3
    assert run.config["max_steps"] == STEPS
    assert run.config["per_device_train_batch_size"] == 4
    assert run.config["seed"] == 0
    assert run.config["world_size"] == ranks
    assert run.config["lr_scheduler_type"] == "linear"
    assert run.config["model"]["hidden_size"] == 16
    assert run.config["data"] == "random tokens"
    assert {"loss", "eval_loss", "train_loss", "train_runtime", "checkpoint"} <= set(run.metrics)
    history = run.history()
    assert (
        set(history["writer"]) == {f"rank{r}" for r in range(ranks)} if ranks > 1 else len(set(history["writer"])) == 1
    )
    # Gathered values once per step; timings from every rank.
    losses = history.dropna(subset=["loss"])
    assert sorted(losses["step"]) == list(range(1, STEPS + 1))
    evaluations = history.dropna(subset=["eval_loss"])
    assert sorted(evaluations["step"]) == [2, 4, 6]
    assert len(history.dropna(subset=["eval_runtime"])) == 3 * ranks
    assert len(history.dropna(subset=["train_runtime"])) == ranks
    # Checkpoints inside the run, their paths recorded at their steps.
    saved = history.dropna(subset=["checkpoint"])
    assert sorted(saved["step"]) == [2, 4, 6]
    checkpoints = run.run_dir / "checkpoints"
    assert sorted(path.name for path in checkpoints.iterdir()) == ["checkpoint-2", "checkpoint-4", "checkpoint-6"]
    assert run.metrics["checkpoint"] == str(checkpoints / "checkpoint-6")


def test_one_process(base_dir: Path) -> None:
    train(base_dir, 1)
    check_run(the_run(base_dir), ranks=1)


def test_two_ranks_log_into_one_run(base_dir: Path) -> None:
    train(base_dir, 2)
    run = the_run(base_dir)
    assert run.meta["world_size"] == 2
    check_run(run, ranks=2)


def test_a_failing_training_step_marks_the_run_failed(base_dir: Path) -> None:
    train(base_dir, 2, "--fail-at-step", "3", fails=True)
    run = the_run(base_dir)
    assert run.status == "failed"
    assert sorted(run.history().dropna(subset=["loss"])["step"]) == [1, 2, 3]


def test_training_resumes_from_the_runs_last_checkpoint(base_dir: Path) -> None:
    train(base_dir, 1)
    run_id = the_run(base_dir).run_id
    train(base_dir, 1, "--run-id", run_id, "--resume", "--steps", "8")
    run = the_run(base_dir)
    assert run.run_id == run_id
    assert run.status == "finished"
    # Steps 1-6 from the first training, 7-8 from the second, which went on from checkpoint-6.
    assert sorted(run.history().dropna(subset=["loss"])["step"]) == list(range(1, 9))
    assert (run.run_dir / "checkpoints" / "checkpoint-8").is_dir()
