"""``ml-manager doctor``: crashed, corrupt and half-created runs, stale temp and lock files — found and repaired."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from ml_manager import MLProject, MLRun, _doctor, _history
from ml_manager._atomic import _TEMP_NAME

if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

HOUR = 3600.0

TRAINING = textwrap.dedent(
    """
    import sys
    from ml_manager import MLRun

    run = MLRun.create({"lr": 0.1}, sys.argv[1], "demo")
    step = 0
    while True:
        run.add_metrics({"loss": 1 / (step + 1), "step_seen": step}, step=step)
        if step == 3:
            print(run.run_id, flush=True)  # the parent kills us from here on, mid-training
        step += 1
    """
)


def doctor(base_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ml_manager", "doctor", str(base_dir), *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _killed_mid_training(base_dir: Path) -> MLRun:
    child = subprocess.Popen([sys.executable, "-c", TRAINING, str(base_dir)], stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    with child.stdout:
        run_id = child.stdout.readline().strip()
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert child.returncode == -signal.SIGKILL
    return MLRun.load(run_id, base_dir)


def _age(path: Path, seconds: float) -> None:
    old = time.time() - seconds
    os.utime(path, (old, old))


def _finished(base_dir: Path, project: str, metrics: dict[str, float]) -> MLRun:
    run = MLRun.create({"lr": 1}, base_dir, project)
    run.add_metrics(metrics)
    run.finish()
    return run


def test_doctor_finds_and_fixes_a_killed_run_a_corrupt_file_and_a_stale_temp(
    base_dir: Path, snapshot: Callable[[Path], dict[str, bytes]]
) -> None:
    killed = _killed_mid_training(base_dir)
    assert killed.status == "running"
    corrupt = _finished(base_dir, "demo", {"accuracy": 0.5})
    corrupt.add_metrics({"accuracy": 0.75, "epoch": 2})  # the state a rebuild must reproduce
    want = MLRun.load(corrupt.run_id, base_dir).metrics
    corrupt_bytes = b"accuracy = [0.7"
    (corrupt.run_dir / "metrics.toml").write_bytes(corrupt_bytes)
    healthy = _finished(base_dir, "other", {"accuracy": 0.9})
    temp = healthy.run_dir / ".metrics.toml.0123456789ab.tmp"
    temp.write_bytes(b"half a write")
    _age(temp, HOUR)
    before = snapshot(base_dir)

    found = doctor(base_dir)
    assert found.returncode == 1
    lines = found.stdout.splitlines()
    assert any(line.startswith("crashed") and killed.run_id in line and "is gone" in line for line in lines)
    assert any(line.startswith("corrupt") and corrupt.run_id in line and "metrics.toml" in line for line in lines)
    assert any(line.startswith("stale-temp") and healthy.run_id in line for line in lines)
    assert len(lines) == 3
    assert "3 problem(s) found (3 fixable" in found.stderr
    assert snapshot(base_dir) == before  # looking changes nothing

    fixed = doctor(base_dir, "--fix")
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert fixed.stdout.count("fixed:") == 3

    assert MLRun.load(killed.run_id, base_dir).status == "crashed"
    assert "crash_detected_at" in MLRun.load(killed.run_id, base_dir).meta
    assert MLRun.load(corrupt.run_id, base_dir).metrics == want
    assert (corrupt.run_dir / "metrics.toml.corrupt").read_bytes() == corrupt_bytes
    assert not temp.exists()
    after = snapshot(base_dir)
    lost = set(before) - set(after)
    # Temp files, and nothing else, are gone (the killed writer may have stranded one of its own, too young
    # to report, which the next locked write of its run removed).
    assert str(temp.relative_to(base_dir)) in lost
    assert all(_TEMP_NAME.fullmatch(Path(name).name) for name in lost), lost
    project = MLProject(base_dir)
    assert project.skipped == []
    assert sorted(project.df["_meta.status"]) == ["crashed", "finished", "finished"]

    again = doctor(base_dir)
    assert again.returncode == 0
    assert again.stdout == ""
    assert "no problems found" in again.stderr


def test_a_corrupt_config_is_reported_and_left_untouched(
    base_dir: Path, snapshot: Callable[[Path], dict[str, bytes]]
) -> None:
    run = _finished(base_dir, "demo", {"accuracy": 0.5})
    (run.run_dir / "config.toml").write_text("lr = ")
    before = snapshot(base_dir)
    done = doctor(base_dir, "--fix")
    assert done.returncode == 1
    assert "cannot be rebuilt" in done.stdout
    assert snapshot(base_dir) == before


def test_a_corrupt_metrics_file_without_history_is_set_aside(base_dir: Path) -> None:
    run = _finished(base_dir, "demo", {"accuracy": 0.5})
    for record_file in (run.run_dir / _history.HISTORY_DIR).iterdir():
        record_file.unlink()
    (run.run_dir / "metrics.toml").write_bytes(b"")
    assert doctor(base_dir, "--fix").returncode == 0
    assert MLRun.load(run.run_id, base_dir).metrics == {}
    assert (run.run_dir / "metrics.toml.corrupt").read_bytes() == b""


def test_a_live_run_and_a_fresh_temp_are_not_problems(base_dir: Path) -> None:
    run = MLRun.create({"lr": 1}, base_dir, "demo")  # running, in this very process
    (run.run_dir / ".metrics.toml.0123456789ab.tmp").write_bytes(b"being written right now")
    assert _doctor.examine(base_dir) == []
    run.finish()


def test_a_half_created_run_is_reported_never_removed(base_dir: Path) -> None:
    half = base_dir / "demo" / "abcd1234"
    (half / "wandb").mkdir(parents=True)
    _age(half, HOUR)
    done = doctor(base_dir, "--fix")
    assert done.returncode == 1
    assert "half-created" in done.stdout
    assert (half / "wandb").is_dir()


def test_a_run_from_another_host_is_crashed_only_after_a_quiet_time(base_dir: Path) -> None:
    run = MLRun.create({"lr": 1}, base_dir, "demo")
    run.add_metrics({"loss": 1.0})
    config = run.run_dir / "config.toml"
    config.write_text(config.read_text().replace(f'hostname = "{_history.HOST}"', 'hostname = "elsewhere"'))
    assert _doctor.examine(base_dir) == []  # its files changed just now
    history = run.run_dir / "history"
    for path in [config, run.run_dir / "metrics.toml", history, *history.iterdir()]:
        _age(path, 25 * HOUR)
    problems = _doctor.examine(base_dir)
    assert [problem.kind for problem in problems] == ["crashed"]
    assert "elsewhere" in problems[0].detail
    assert _doctor.examine(base_dir, stale_after=48 * HOUR) == []
    run._finished = True  # its real owner is "elsewhere": this handle must not finish it


def test_a_soft_lock_whose_holder_was_killed_is_found_and_removed(base_dir: Path) -> None:
    run = _finished(base_dir, "demo", {"accuracy": 0.5})
    lock_file = run.run_dir / "run.soft.lock"
    command = [sys.executable, "-c", _HOLD_THE_LOCK, str(lock_file)]
    with subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) as holder:
        assert holder.stdout is not None
        assert holder.stdout.readline() == "held\n"
        assert _doctor.examine(base_dir) == []  # alive: a writer in the middle of an update
        holder.kill()
    problems = _doctor.examine(base_dir)
    assert [problem.kind for problem in problems] == ["stale-lock"]
    assert f"pid {holder.pid}" in problems[0].detail
    assert doctor(base_dir, "--fix").returncode == 0
    assert not lock_file.exists()


_HOLD_THE_LOCK = """
import sys
from pathlib import Path
from ml_manager._locking import run_lock
with run_lock(Path(sys.argv[1]), 10, "soft"):
    print("held", flush=True)
    sys.stdin.read()
"""


def test_a_soft_lock_of_another_machine_is_reported_once_held_for_a_minute(base_dir: Path) -> None:
    run = _finished(base_dir, "demo", {"accuracy": 0.5})
    lock_file = run.run_dir / "run.soft.lock"
    lock_file.write_text("ml_manager lock\ntoken=00\nhost=node-b\npid=1\nstart=1\nmachine=another/pid:[1]\n")
    assert _doctor.examine(base_dir) == []
    _age(lock_file, HOUR)
    problems = _doctor.examine(base_dir)
    assert [problem.kind for problem in problems] == ["stale-lock"]
    assert "pid 1 on node-b" in problems[0].detail
    assert doctor(base_dir, "--fix").returncode == 0
    assert not lock_file.exists()


def test_a_reused_pid_does_not_keep_a_dead_run_alive(base_dir: Path) -> None:
    # The run records this live process's pid, with a creation time long before this process started: the
    # pid must have been reused, so the run's own process is gone.
    run = MLRun.create({"lr": 1}, base_dir, "demo")
    config = run.run_dir / "config.toml"
    text = config.read_text()
    created = next(line for line in text.splitlines() if line.startswith("created_at"))
    config.write_text(text.replace(created, "created_at = 2000-01-01 00:00:00+00:00"))
    if _doctor._process_start(os.getpid()) is None:
        pytest.skip("process start times are not available here")
    problems = _doctor.examine(base_dir)
    assert [problem.kind for problem in problems] == ["crashed"]
    run._finished = True


def test_an_empty_soft_lock_left_for_a_minute_is_removed(base_dir: Path) -> None:
    # What a writer killed between creating the soft lock file and writing its record leaves behind.
    run = _finished(base_dir, "demo", {"accuracy": 0.5})
    lock_file = run.run_dir / "run.soft.lock"
    lock_file.write_bytes(b"")
    assert _doctor.examine(base_dir) == []  # it may be a writer between those two steps right now
    _age(lock_file, HOUR)
    assert [problem.kind for problem in _doctor.examine(base_dir)] == ["stale-lock"]
    assert doctor(base_dir, "--fix").returncode == 0
    assert not lock_file.exists()


def test_a_real_soft_lock_of_a_live_writer_is_left_alone(base_dir: Path) -> None:
    run = MLRun.create({"lr": 1}, base_dir, "demo", lock="soft")
    from ml_manager._locking import run_lock

    with run_lock(run.run_dir / "run.soft.lock", 10, "soft"):
        _age(run.run_dir / "run.soft.lock", HOUR)
        assert _doctor.examine(base_dir) == []
    run.finish()


def test_a_foreign_config_is_reported_as_not_a_run(base_dir: Path) -> None:
    foreign = base_dir / "demo" / "notes"
    foreign.mkdir(parents=True)
    (foreign / "config.toml").write_text('title = "someone else\'s file"\n')
    problems = _doctor.examine(base_dir)
    assert [(problem.kind, problem.fixable) for problem in problems] == [("corrupt", False)]
    assert "not an ml_manager run" in problems[0].detail


def test_a_foreign_soft_lock_on_a_read_only_filesystem_is_left_unjudged(tmp_path: Path, small_tmpfs: Any) -> None:
    # Its age comes from a probe file created beside it, by the filesystem's clock: where none can be created,
    # doctor cannot tell, and says nothing rather than fail or guess with this machine's clock.
    with small_tmpfs(tmp_path / "ro", "1m") as base:
        run = _finished(base, "demo", {"accuracy": 0.5})
        lock_file = run.run_dir / "run.soft.lock"
        lock_file.write_text("ml_manager lock\ntoken=00\nhost=node-b\npid=1\nstart=1\nmachine=another/pid:[1]\n")
        _age(lock_file, HOUR)
        subprocess.run(["mount", "-o", "remount,ro", str(base)], check=True)
        assert [problem.kind for problem in _doctor.examine(base)] == []
