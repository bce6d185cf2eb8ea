"""The accelerate tracker with real accelerate: one process, and two CPU ranks under torchrun."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from _frameworks import need
from ml_manager import MLRun
from ml_manager.errors import MLManagerWarning

need("torch")
need("accelerate")

from ml_manager.integrations.accelerate import MLManagerTracker  # noqa: E402 - after the skip

pytestmark = pytest.mark.slow
EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "accelerate_loop.py"
STEPS = 20


def run_example(base_dir: Path, ranks: int, *options: str) -> subprocess.CompletedProcess[str]:
    torchrun = shutil.which("torchrun", path=os.path.dirname(sys.executable)) or shutil.which("torchrun")
    assert torchrun is not None, "torch is installed, so is its torchrun"
    return subprocess.run(
        [torchrun, "--standalone", f"--nproc_per_node={ranks}", str(EXAMPLE), "--base-dir", str(base_dir), *options],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
        env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "error::UserWarning"},
    )


def the_run(base_dir: Path) -> MLRun:
    runs = list((base_dir / "accelerate-demo").iterdir())
    assert len(runs) == 1, runs
    return MLRun.load(runs[0].name, base_dir, "accelerate-demo")


def test_two_ranks_log_into_one_run(base_dir: Path) -> None:
    done = run_example(base_dir, 2)
    assert done.returncode == 0, done.stderr[-4000:]
    run = the_run(base_dir)
    assert run.status == "finished"
    assert run.meta["world_size"] == 2
    assert run.config == {"data": "random", "lr": 0.05, "steps": STEPS}
    assert set(run.metrics) == {"loss", "rank_loss"}
    history = run.history()
    # accelerator.log: the main process alone, once a step; tracker.log: every rank, each its own.
    losses = history.dropna(subset=["loss"])
    assert sorted(losses["step"]) == list(range(STEPS))
    assert set(losses["writer"]) == {"rank0"}
    assert run.metrics["loss"] == losses.sort_values("step")["loss"].iloc[-1]  # the final value
    per_rank = history.dropna(subset=["rank_loss"])
    assert sorted(per_rank["writer"].value_counts().items()) == [("rank0", STEPS), ("rank1", STEPS)]
    assert f"run {run.run_id} (finished): {3 * STEPS} history records from 2 ranks" in done.stdout


def test_a_failing_loop_marks_the_run_failed(base_dir: Path) -> None:
    done = run_example(base_dir, 2, "--fail-at-step", "5")
    assert done.returncode != 0
    assert "a training step that fails" in done.stderr
    run = the_run(base_dir)
    assert run.status == "failed"
    assert sorted(run.history().dropna(subset=["loss"])["step"]) == list(range(5))


def test_one_process_without_torch_distributed(base_dir: Path) -> None:
    tracker = MLManagerTracker(base_dir, "solo", config={"data": "random"})
    tracker.start()
    with pytest.warns(MLManagerWarning, match="stored as text.*: fn"):
        tracker.store_init_configuration({"lr": 0.1, "fn": print, "scheduler": None})
    tracker.log({"loss": 0.5}, step=0)
    tracker.log({"loss": 0.25}, step=1)
    assert tracker.tracker is tracker.run
    tracker.finish()
    run = MLRun.load(tracker.run.run_id, base_dir, "solo")
    assert run.status == "finished"
    assert run.config == {"data": "random", "lr": 0.1, "fn": str(print), "scheduler": None}
    assert run.metrics == {"loss": 0.25}
    assert list(run.history()["step"]) == [0, 1]


def test_bad_options_are_refused_when_the_tracker_is_made(base_dir: Path) -> None:
    with pytest.raises(ValueError, match="project_name"):
        MLManagerTracker(base_dir, "a/b")
    with pytest.raises(TypeError, match="'lr'"):
        MLManagerTracker(base_dir, "p", lr=0.1)
    assert list(base_dir.iterdir()) == []


def test_a_tracker_given_the_id_of_an_existing_run_logs_into_it(base_dir: Path) -> None:
    first = MLManagerTracker(base_dir, "solo")
    first.start()
    first.log({"loss": 0.5}, step=0)
    first.finish()
    again = MLManagerTracker(base_dir, "solo", run_id=first.run.run_id)
    again.start()
    again.log({"loss": 0.25}, step=1)
    again.finish()
    run = MLRun.load(first.run.run_id, base_dir, "solo")
    assert run.status == "finished"
    assert list(run.history()["step"]) == [0, 1]


SCRIPT = """
import sys
from ml_manager.integrations.accelerate import MLManagerTracker

tracker = MLManagerTracker(sys.argv[1], "solo", run_id="r1")
tracker.start()
tracker.log({"loss": 0.5}, step=0)
if sys.argv[2] == "raise":
    raise RuntimeError("a training step that fails")
if sys.argv[2] == "exit":
    sys.exit(1)  # what launchers and CLI wrappers turn an exception into
if sys.argv[2] == "finish":
    tracker.finish()  # what end_training() calls
"""


@pytest.mark.parametrize(
    ("how", "status", "code"),
    [("finish", "finished", 0), ("raise", "failed", 1), ("exit", "failed", 1), ("end", "failed", 0)],
)
def test_the_status_a_process_leaves(base_dir: Path, how: str, status: str, code: int) -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(base_dir), how], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == code, done.stderr[-3000:]
    run = MLRun.load("r1", base_dir, "solo")
    assert run.status == status
    assert run.metrics == {"loss": 0.5}  # what was logged is written either way
