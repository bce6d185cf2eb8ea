"""MLRun with the background wandb queue: add_metrics never waits for wandb, and nothing is lost silently."""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
from typing import TYPE_CHECKING, Any

import pytest

from ml_manager import MLRun
from ml_manager._forward import ForwarderStats
from ml_manager._storage import read_toml

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path


class Recorder:
    """A thin wrapper around the real ``wandb_run.log``: records each call, may stall or fail first."""

    def __init__(self, real_log: Any, *, stall: bool = False, fail: bool = False) -> None:
        self.real_log = real_log
        self.calls: list[tuple[dict[str, Any], int | None]] = []
        self.started = threading.Event()
        self.release = threading.Event()
        if not stall:
            self.release.set()
        self.fail = fail

    def __call__(self, data: dict[str, Any], step: int | None = None, **kwargs: Any) -> None:
        self.started.set()
        assert self.release.wait(60), "the test never released wandb"
        if self.fail:
            raise ConnectionError("wandb backend unreachable")
        self.calls.append((data, step))
        self.real_log(data, step=step, **kwargs)


def _run(
    base_dir: Path, monkeypatch: pytest.MonkeyPatch, *, mode: str = "offline", stall: bool = False, **kwargs: Any
) -> tuple[MLRun, Recorder]:
    run = MLRun.create({"lr": 0.1}, base_dir, "demo", mode=mode, background_wandb=True, **kwargs)
    assert run.wandb_run is not None
    recorder = Recorder(run.wandb_run.log, stall=stall)
    monkeypatch.setattr(run.wandb_run, "log", recorder)
    return run, recorder


def _wandb_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("ml_manager-wandb")]


def test_every_step_reaches_wandb_in_order_and_finish_leaves_no_thread(
    base_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run, recorder = _run(base_dir, monkeypatch)
    for step in range(100):
        run.add_metrics({"loss": 1 / (step + 1), "step_seen": step}, step=step)
    run.finish()
    assert recorder.calls == [({"loss": 1 / (s + 1), "step_seen": s}, s) for s in range(100)]
    # sent counts the calls the real wandb run accepted without raising.
    assert run.wandb_stats == ForwarderStats(sent=100)
    assert _wandb_threads() == []
    assert read_toml(run.run_dir / "metrics.toml") == {"loss": 0.01, "step_seen": 99}


def test_a_log_that_raises_is_counted_reported_once_and_never_reaches_training(
    base_dir: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    run, recorder = _run(base_dir, monkeypatch)
    recorder.fail = True
    with caplog.at_level(logging.WARNING, logger="ml_manager"):
        for step in range(10):
            run.add_metrics({f"m{step}": step}, step=step)
        run.finish()
    assert run.wandb_stats == ForwarderStats(failed=10)
    assert len([r for r in caplog.records if "delivery failed" in r.getMessage()]) == 1
    assert read_toml(run.run_dir / "metrics.toml") == {f"m{i}": i for i in range(10)}


def test_a_stalled_log_never_blocks_add_metrics_and_finish_keeps_its_deadline(
    base_dir: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    run, recorder = _run(base_dir, monkeypatch, stall=True)
    for step in range(20):
        run.add_metrics({"loss": step}, step=step)  # returns although wandb has not taken a single call
    assert recorder.started.wait(60)
    assert run.wandb_stats.pending == 20
    with caplog.at_level(logging.WARNING, logger="ml_manager"):
        run.finish(timeout=0.1)
    assert "deadline passed" in caplog.text
    assert run.wandb_stats == ForwarderStats(dropped=19, pending=1)
    assert read_toml(run.run_dir / "config.toml")["_meta"]["status"] == "finished"
    assert MLRun.load(run.run_id, base_dir).metrics == {"loss": 19}
    recorder.release.set()
    for thread in _wandb_threads():
        thread.join(60)
    assert _wandb_threads() == []


def test_a_full_queue_drops_and_counts_while_the_local_record_stays_complete(
    base_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run, recorder = _run(base_dir, monkeypatch, stall=True, wandb_queue_size=5)
    run.add_metrics({"k0": 0})
    assert recorder.started.wait(60)
    for i in range(1, 11):
        run.add_metrics({f"k{i}": i})
    assert run.wandb_stats == ForwarderStats(dropped=5, pending=6)
    recorder.release.set()
    run.finish()
    assert run.wandb_stats == ForwarderStats(sent=6, dropped=5)
    assert [call[0] for call in recorder.calls] == [{f"k{i}": i} for i in range(6)]
    assert MLRun.load(run.run_id, base_dir).metrics == {f"k{i}": i for i in range(11)}


def test_the_environment_variable_turns_the_queue_on(base_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ML_MANAGER_BACKGROUND_WANDB", "1")
    run = MLRun.create({}, base_dir, "demo")
    run.add_metrics({"a": 1})
    assert [t.name for t in _wandb_threads()] == [f"ml_manager-wandb-{run.run_id}"]
    run.finish()
    assert _wandb_threads() == []
    monkeypatch.setenv("ML_MANAGER_BACKGROUND_WANDB", "sometimes")
    with pytest.raises(ValueError, match="ML_MANAGER_BACKGROUND_WANDB"):
        MLRun.create({}, base_dir, "demo")


def test_step_must_be_a_non_negative_int(base_dir: Path) -> None:
    run = MLRun.create({}, base_dir, "demo")
    for bad in (-1, 1.5, True, "3"):
        with pytest.raises(TypeError, match="step"):
            run.add_metrics({"a": 1}, step=bad)  # type: ignore[arg-type]
    assert not (run.run_dir / "metrics.toml").exists()
    run.finish()


@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_a_forked_child_logs_locally_and_never_sends_to_wandb(
    base_dir: Path, monkeypatch: pytest.MonkeyPatch, in_fork: Callable[[Callable[[], str]], str]
) -> None:
    run, recorder = _run(base_dir, monkeypatch, mode="disabled", stall=True)
    run.add_metrics({"parent": 0}, step=0)
    assert recorder.started.wait(60)  # the queue's thread is inside wandb's log while we fork

    def child() -> str:  # a DataLoader-style worker
        run.add_metrics({"child": 1})
        run.finish()  # a no-op in the child: the run and its wandb belong to the parent
        return f"{len(recorder.calls)} {run.wandb_stats.dropped}"

    report = in_fork(child)
    assert report == "0 1"
    assert read_toml(run.run_dir / "metrics.toml") == {"parent": 0, "child": 1}
    assert read_toml(run.run_dir / "config.toml")["_meta"]["status"] == "running"
    recorder.release.set()
    run.finish()
    assert recorder.calls == [({"parent": 0}, 0)]


EXIT_SCRIPT = """
import sys, threading, time
from ml_manager import MLRun

base_dir, mode, stall = sys.argv[1], sys.argv[2], sys.argv[3] == "stall"
run = MLRun.create({}, base_dir, "demo", mode=mode, background_wandb=True, wandb_drain_timeout=float(sys.argv[4]))
real_log, never = run.wandb_run.log, threading.Event()

def log(data, step=None):
    if stall:
        never.wait()
    time.sleep(0.005)  # a slow network
    try:
        real_log(data, step=step)
        outcome = "ok"
    except Exception as exc:
        outcome = type(exc).__name__
    with open(f"{base_dir}/sent.txt", "a") as out:
        out.write(f"{step} {outcome}\\n")

run.wandb_run.log = log
for step in range(30):
    run.add_metrics({"loss": step}, step=step)
print("returned", flush=True)
# no finish(): the interpreter exits with calls still queued
"""


def _exit_script(tmp_path: Path, mode: str, behaviour: str, drain_timeout: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", EXIT_SCRIPT, str(tmp_path), mode, behaviour, drain_timeout],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )


@pytest.mark.slow
def test_interpreter_exit_drains_the_queue_into_a_live_wandb_run(tmp_path: Path) -> None:
    done = _exit_script(tmp_path, "offline", "flow", "60")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "returned\n"
    assert (tmp_path / "sent.txt").read_text().splitlines() == [f"{step} ok" for step in range(30)]


@pytest.mark.slow
def test_interpreter_exit_with_a_stalled_wandb_gives_up_at_the_deadline(tmp_path: Path) -> None:
    done = _exit_script(tmp_path, "disabled", "stall", "0.2")
    assert done.returncode == 0, done.stderr
    assert "exiting with items not delivered" in done.stderr
    assert not (tmp_path / "sent.txt").exists()
