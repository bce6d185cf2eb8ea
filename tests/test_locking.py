"""The run lock: finite, configurable timeouts and a clear error naming the lock file."""

from __future__ import annotations

import multiprocessing
import pickle
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from ml_manager import LockTimeoutError, MLRun
from ml_manager._locking import resolve_lock_timeout, run_lock

if TYPE_CHECKING:
    import threading
    from collections.abc import Callable
    from contextlib import AbstractContextManager

SPAWN = multiprocessing.get_context("spawn")


def _hold_lock(lock_file: str, held: Any, release: Any) -> None:
    with run_lock(Path(lock_file), timeout=30):
        held.set()
        release.wait(60)


def test_a_lock_held_by_another_process_times_out_naming_the_lock_file(base_dir: Path) -> None:
    run = MLRun.create({}, base_dir, "demo", lock_timeout=0.2)
    held, release = SPAWN.Event(), SPAWN.Event()
    holder = SPAWN.Process(target=_hold_lock, args=(str(run.run_dir / "run.lock"), held, release))
    holder.start()
    try:
        assert held.wait(60)
        with pytest.raises(LockTimeoutError, match=r"run\.lock") as caught:
            run.add_metrics({"accuracy": 0.9})
        assert isinstance(caught.value, TimeoutError)
        assert caught.value.lock_file == str(run.run_dir / "run.lock")
        assert not (run.run_dir / "metrics.toml").exists()
    finally:
        release.set()
        holder.join(60)
    run.add_metrics({"accuracy": 0.9})  # released: the same handle goes through
    assert run.metrics == {"accuracy": 0.9}
    run.finish()


def test_a_lock_held_by_another_thread_times_out_too(
    tmp_path: Path, lock_held_by_a_thread: Callable[[Path], AbstractContextManager[threading.Event]]
) -> None:
    lock_file = tmp_path / "run.lock"
    with lock_held_by_a_thread(lock_file), pytest.raises(LockTimeoutError), run_lock(lock_file, timeout=0.05):
        pass
    with run_lock(lock_file, timeout=0):
        pass


def test_lock_timeout_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch, base_dir: Path) -> None:
    monkeypatch.setenv("ML_MANAGER_LOCK_TIMEOUT", "2.5")
    assert resolve_lock_timeout(None) == 2.5
    assert resolve_lock_timeout(7) == 7.0
    assert MLRun.create({}, base_dir, "demo").lock_timeout == 2.5


@pytest.mark.parametrize("bad", ["soon", "-1", "inf", "nan"])
def test_a_bad_lock_timeout_in_the_environment_is_named(monkeypatch: pytest.MonkeyPatch, bad: str) -> None:
    monkeypatch.setenv("ML_MANAGER_LOCK_TIMEOUT", bad)
    with pytest.raises(ValueError, match="ML_MANAGER_LOCK_TIMEOUT"):
        resolve_lock_timeout(None)


def test_lock_timeout_error_pickles() -> None:
    error = LockTimeoutError("/runs/x/run.lock", 1.5)
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.lock_file, copy.timeout, str(copy)) == (error.lock_file, error.timeout, str(error))


def test_the_lock_kind_is_recorded_and_joiners_follow_it(base_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run = MLRun.create({}, base_dir, "demo", lock="soft")
    assert run.meta["lock"] == "soft"
    monkeypatch.setenv("ML_MANAGER_LOCK", "flock")  # the run's own record wins over the environment
    joined = MLRun.load(run.run_id, base_dir)
    assert joined.lock == "soft"
    joined.add_metrics({"a": 1})
    assert not (run.run_dir / "run.lock").exists()
    assert not (run.run_dir / "run.soft.lock").exists()  # a soft lock exists only while held
    assert MLRun.load(run.run_id, base_dir, lock="flock").lock == "flock"  # an explicit choice wins
    run.finish()


def test_the_lock_kind_comes_from_the_environment(base_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ML_MANAGER_LOCK", "soft")
    assert MLRun.create({}, base_dir, "demo").lock == "soft"
    monkeypatch.setenv("ML_MANAGER_LOCK", "posix")
    with pytest.raises(ValueError, match="ML_MANAGER_LOCK"):
        MLRun.create({}, base_dir, "demo")
    with pytest.raises(ValueError, match="'nfs'"):
        MLRun.create({}, base_dir, "demo", lock="nfs")  # type: ignore[arg-type]


def test_a_soft_lock_held_by_another_process_times_out_naming_it(base_dir: Path) -> None:
    run = MLRun.create({}, base_dir, "demo", lock="soft", lock_timeout=0.2)
    held, release = SPAWN.Event(), SPAWN.Event()
    holder = SPAWN.Process(target=_hold_soft_lock, args=(str(run.run_dir / "run.soft.lock"), held, release))
    holder.start()
    try:
        assert held.wait(60)
        with pytest.raises(LockTimeoutError, match=r"run\.soft\.lock"):
            run.add_metrics({"a": 1})
    finally:
        release.set()
        holder.join(60)
    run.add_metrics({"a": 1})
    run.finish()


def _hold_soft_lock(lock_file: str, held: Any, release: Any) -> None:
    with run_lock(Path(lock_file), timeout=30, kind="soft"):
        held.set()
        release.wait(60)
