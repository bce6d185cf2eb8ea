"""The waiting queue in front of a run's flock: first come, first served, robust to waiters that die or give up.

Real processes and real locks: the test holds the lock, starts waiters one by one (each observed in the queue's
``tail`` before the next starts), lets go, and reads the order in which they got the lock.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from ml_manager import _doctor, _queue
from ml_manager._locking import run_lock

if TYPE_CHECKING:
    import contextlib
    import threading
    from collections.abc import Callable

    HoldLock = Callable[[Path], contextlib.AbstractContextManager[threading.Event]]

CHILD = str(Path(__file__).with_name("_queue_child.py"))


def _tail(lock_file: Path) -> str:
    try:
        return (Path(str(lock_file) + _queue.QUEUE_SUFFIX) / _queue.TAIL_FILE).read_text().strip()
    except FileNotFoundError:
        return ""


def _wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 60
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.001)


def _queue_up(lock_file: Path, name: str, order: Path, *, timeout: float = 60) -> subprocess.Popen[bytes]:
    """Start a waiter and return once it is the queue's tail."""
    before = _tail(lock_file)
    child = subprocess.Popen([sys.executable, CHILD, str(lock_file), name, str(order), str(timeout)])
    _wait_until(lambda: _tail(lock_file) not in ("", before), f"{name} to queue up")
    return child


def test_waiters_get_the_lock_in_the_order_they_came(tmp_path: Path, lock_held_by_a_thread: HoldLock) -> None:
    lock_file, order = tmp_path / "run.lock", tmp_path / "order"
    names = [f"w{i}" for i in range(6)]
    with lock_held_by_a_thread(lock_file):
        children = [_queue_up(lock_file, name, order) for name in names]
    assert [child.wait(60) for child in children] == [0] * len(names)
    assert order.read_text().split() == names
    assert _tail(lock_file) == ""  # the last one out emptied the queue
    assert list(Path(str(lock_file) + _queue.QUEUE_SUFFIX).glob("*.node")) == []


def test_a_waiter_killed_in_the_queue_does_not_stop_the_others(tmp_path: Path, lock_held_by_a_thread: HoldLock) -> None:
    lock_file, order = tmp_path / "run.lock", tmp_path / "order"
    with lock_held_by_a_thread(lock_file):
        first = _queue_up(lock_file, "first", order)
        killed = _queue_up(lock_file, "killed", order)
        last = _queue_up(lock_file, "last", order)
        killed.send_signal(signal.SIGKILL)
        assert killed.wait(60) == -signal.SIGKILL
    assert first.wait(60) == 0
    assert last.wait(60) == 0
    assert order.read_text().split() == ["first", "last"]


def test_a_waiter_that_times_out_leaves_the_queue_working(tmp_path: Path, lock_held_by_a_thread: HoldLock) -> None:
    lock_file, order = tmp_path / "run.lock", tmp_path / "order"
    with lock_held_by_a_thread(lock_file):
        first = _queue_up(lock_file, "first", order)
        impatient = _queue_up(lock_file, "impatient", order, timeout=0.2)
        assert impatient.wait(60) == 3  # LockTimeoutError, while the lock is still held
        last = _queue_up(lock_file, "last", order)
    assert first.wait(60) == 0
    assert last.wait(60) == 0
    assert order.read_text().split() == ["first", "last"]
    assert _tail(lock_file) == ""


def _run_for_doctor(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A base directory with one finished run (enough for the doctor to look at), its lock file, an order file."""
    base_dir = tmp_path / "base"
    run_dir = base_dir / "p" / "r"
    run_dir.mkdir(parents=True)
    (run_dir / "config.toml").write_text('[_meta]\nstatus = "finished"\n[_wandb]\n')
    return base_dir, run_dir / "run.lock", tmp_path / "order"


def _age_queue_entries(lock_file: Path) -> list[Path]:
    nodes = list(Path(str(lock_file) + _queue.QUEUE_SUFFIX).glob("*" + _queue.NODE_SUFFIX))
    old = time.time() - 3600
    for node in nodes:
        os.utime(node, (old, old))
    return nodes


def test_doctor_removes_what_a_waiter_killed_at_the_end_of_the_queue_left(
    tmp_path: Path, lock_held_by_a_thread: HoldLock
) -> None:
    base_dir, lock_file, order = _run_for_doctor(tmp_path)
    with lock_held_by_a_thread(lock_file):
        first = _queue_up(lock_file, "first", order)
        second = _queue_up(lock_file, "second", order)
        killed = _queue_up(lock_file, "killed", order)
        killed.send_signal(signal.SIGKILL)
        killed.wait(60)
    assert (first.wait(60), second.wait(60)) == (0, 0)
    assert order.read_text().split() == ["first", "second"]
    # Nobody came after the killed waiter to clear its entry (and the one it was waiting for) away.
    assert _doctor.examine(base_dir) == []  # too recent to call stale
    assert _age_queue_entries(lock_file)
    problems = _doctor.examine(base_dir)
    assert [problem.kind for problem in problems] == ["stale-lock"]
    assert "queue" in problems[0].detail
    _doctor.fix(problems[0])
    assert list(Path(str(lock_file) + _queue.QUEUE_SUFFIX).glob("*.node")) == []
    assert _doctor.examine(base_dir) == []
    # The queue still works, and empties again.
    with run_lock(lock_file, 10):
        pass
    assert _tail(lock_file) == ""


def test_a_node_being_waited_on_is_not_stale(tmp_path: Path, lock_held_by_a_thread: HoldLock) -> None:
    base_dir, lock_file, order = _run_for_doctor(tmp_path)
    with lock_held_by_a_thread(lock_file):
        waiting = _queue_up(lock_file, "waiting", order)
        assert _age_queue_entries(lock_file)
        assert _doctor.examine(base_dir) == []  # its owner holds it: a live waiter
    assert waiting.wait(60) == 0


def test_a_queue_that_cannot_be_used_leaves_the_lock_working(tmp_path: Path, lock_held_by_a_thread: HoldLock) -> None:
    lock_file, order = tmp_path / "run.lock", tmp_path / "order"
    # Fault: something that is not a directory where the queue goes (as on a filesystem refusing its files).
    Path(str(lock_file) + _queue.QUEUE_SUFFIX).write_text("not a directory")
    with lock_held_by_a_thread(lock_file) as release:
        waiter = subprocess.Popen([sys.executable, CHILD, str(lock_file), "waiter", str(order), "60"])
        release.set()
    assert waiter.wait(60) == 0
    with run_lock(lock_file, 10):
        (tmp_path / "inside").touch()
    assert order.read_text().split() == ["waiter"]
    assert (tmp_path / "inside").exists()
