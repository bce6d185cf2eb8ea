"""The process's writer thread: it commits every open :class:`~._channel.Channel` each flush interval.

One daemon thread per process, started by the first ``log``, ended when no handle has an open channel
(``finish``).  It wakes every flush interval, or sooner when a buffer fills up, and commits each channel with
something to write; a failed commit is kept by its channel and raised from its next ``log``.

Exit: every ordinary end of a process commits what is buffered, from two hooks: ``threading``'s own exit
hook (it runs in every ordinary exit, multiprocessing fork children included, where ``atexit`` does not run
before Python 3.13) and ``atexit`` (after non-daemon threads are joined, for what they logged last).  The
thread is a daemon: a commit stuck on a lock cannot keep the process alive beyond the exit hooks' own
deadlines.  After ``fork()`` the child drops the parent's buffers and starts its own thread on its first log.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
import weakref
from typing import TYPE_CHECKING, NamedTuple

from . import _log
from ._locking import resolve_option
from .errors import FlushError

if TYPE_CHECKING:
    from pathlib import Path

    from ._channel import Channel


FLUSH_INTERVAL_ENV = "ML_MANAGER_FLUSH_INTERVAL"
MAX_UNFLUSHED_ENV = "ML_MANAGER_MAX_UNFLUSHED"
DEFAULT_FLUSH_INTERVAL = 1.0
DEFAULT_MAX_UNFLUSHED = 100_000


def wait(condition: threading.Condition, timeout: float | None = None) -> None:
    """``condition.wait``, for a caller's thread that Ctrl-C (or a signal handler's exception) may interrupt.

    The condition must be on an ``RLock`` and be entered as ``with`` its lock, not the condition: entering a
    ``Condition`` runs Python code, and an interrupt landing just after it took the lock would leave the lock
    taken (the writer thread then waits for it forever); a lock's own ``with`` runs none.  And ``wait`` lets go
    of the lock first: interrupted right then, it returns without taking it back, and the ``with`` would fail to
    release it (a ``RuntimeError`` in place of the KeyboardInterrupt).  Here it is taken back first.
    """
    try:
        condition.wait(timeout)
    except BaseException:
        if not condition._is_owned():  # type: ignore[attr-defined]  # the RLock's owner check
            condition.acquire()
        raise


class LogStats(NamedTuple):
    """What became of the records one handle logged with :meth:`MLRun.log` in this process.

    Attributes:
        written: appended to the run's history (and merged into ``metrics.toml``, unless ``failures`` says
            that is still being retried).
        pending: buffered in memory, not yet in the history.
        flushes: commits that completed.
        failures: commits that failed (each is retried; the first of a series is raised from the next call).
    """

    written: int = 0
    pending: int = 0
    flushes: int = 0
    failures: int = 0


def resolve_flush_interval(value: float | None) -> float:
    """The flush interval: the explicit value, else ``ML_MANAGER_FLUSH_INTERVAL``, else 1 s.

    Raises:
        ValueError: not a finite number of seconds > 0.
    """
    return float(
        resolve_option(
            value,
            argument="flush_interval",
            env=FLUSH_INTERVAL_ENV,
            default=DEFAULT_FLUSH_INTERVAL,
            convert=float,
            valid=lambda seconds: isinstance(seconds, (int, float)) and 0 < seconds < float("inf"),
            expected="a finite number of seconds > 0",
        )
    )


def resolve_max_unflushed(value: int | None) -> int:
    """The most records a handle buffers: the explicit value, else ``ML_MANAGER_MAX_UNFLUSHED``, else 100,000.

    Raises:
        ValueError: not a positive int.
    """
    return int(
        resolve_option(
            value,
            argument="max_unflushed",
            env=MAX_UNFLUSHED_ENV,
            default=DEFAULT_MAX_UNFLUSHED,
            convert=int,
            valid=lambda records: isinstance(records, int) and records > 0,
            expected="a positive number of records",
        )
    )


class _Writer:
    """This process's writer thread and the open channels it commits."""

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        # Entered as ``with self.lock`` (see wait): the thread's channels, its state, and its sleep.
        self.lock = threading.RLock()
        self.cond = threading.Condition(self.lock)
        self.channels: list[Channel] = []
        # Every channel made in this process, open or not: the exit hooks write whatever any still holds.
        self.known: weakref.WeakSet[Channel] = weakref.WeakSet()
        self.thread: threading.Thread | None = None
        self.stopping = False
        self.hooked = False
        self.opening = threading.Lock()  # one channel per handle, however many threads log first at once

    def add(self, channel: Channel) -> bool:
        """Take part in the writer's rounds, starting the thread if needed; False if no thread can run."""
        with self.lock:
            if self.stopping:
                return False  # the exit hooks are writing: the caller writes for itself
            if channel not in self.channels:
                self.channels.append(channel)
                self.cond.notify_all()  # a finish waiting for the thread to end: it goes on instead
            if self.thread is None:
                self._hook()
                thread = threading.Thread(target=self._work, name="ml_manager-writer", daemon=True)
                try:
                    thread.start()
                except RuntimeError:  # interpreter shutdown
                    self.channels.remove(channel)
                    return False
                self.thread = thread
            return True

    def remove(self, channel: Channel) -> threading.Thread | None:
        """Leave the writer's rounds; returns the thread when no channel is left, for :meth:`wait_for_end`."""
        with self.lock:
            if channel in self.channels:
                self.channels.remove(channel)
            self.cond.notify_all()
            thread = self.thread
            if self.channels or thread is None or thread is threading.current_thread():
                return None
            return thread

    def wait_for_end(self, thread: threading.Thread) -> None:
        """Wait until ``thread`` ends, unless a handle started logging meanwhile (then it goes on for it)."""
        with self.lock:
            while self.thread is thread and not self.channels:
                wait(self.cond)
            if self.thread is thread:
                return
        thread.join()  # it has let go of everything and is returning

    def serves(self, channel: Channel) -> bool:
        """Whether the thread commits ``channel`` for others (False: the caller commits by itself)."""
        thread = self.thread
        return (
            thread is not None
            and not self.stopping
            and thread is not threading.current_thread()
            and channel in self.channels
        )

    def wake(self) -> None:
        with self.lock:
            self.cond.notify_all()

    def of_run(self, run_dir: Path) -> list[Channel]:
        """The open channels of one run in this process."""
        where = os.path.abspath(run_dir)
        with self.lock:
            return [channel for channel in self.channels if channel.run_dir == where]

    def _hook(self) -> None:
        if self.hooked:
            return
        self.hooked = True
        import atexit

        # threading's hook runs in every ordinary exit, multiprocessing fork children included, before the
        # non-daemon threads are joined; atexit runs after them, for what those threads logged last.
        register = getattr(threading, "_register_atexit", None)
        if register is not None:
            with contextlib.suppress(RuntimeError):  # shutdown has begun: atexit's turn is still to come
                register(_commit_all, False)
        atexit.register(_commit_all, True)

    def _work(self) -> None:
        while True:
            with self.lock:
                if self.channels:
                    # Until the interval is up, or sooner for a flush request or a crowded buffer: checked
                    # before each wait, so a request made before this thread first waited is not missed.
                    deadline = time.monotonic() + min(channel.interval for channel in self.channels)
                    while not self.stopping and self.channels and not any(c.asked() for c in self.channels):
                        remaining = deadline - time.monotonic()
                        if remaining <= 0:
                            break
                        self.cond.wait(remaining)
                if self.stopping or not self.channels:
                    self.thread = None
                    self.cond.notify_all()
                    return
                channels = [channel for channel in self.channels if channel.due()]
            for channel in channels:
                try:
                    channel.serve()
                except Exception:  # a bug must not stop the rounds: what is buffered is still written at exit
                    _log.warning("the background writer failed", exc_info=True)


writer = _Writer()


def _commit_all(last: bool) -> None:
    """The exit hooks: commit every channel of this process here; the last one stops the thread first."""
    with writer.lock:
        if last:
            writer.stopping = True
            writer.cond.notify_all()
        channels = list(writer.known)
    for channel in channels:
        if last:
            channel.stop()
        if not channel.has_work():
            continue
        try:
            channel.commit()
        except FlushError as exc:
            _log.warning("exiting with logged records not written: %s", exc)


def _after_fork_in_child() -> None:
    for channel in list(writer.known):
        channel.after_fork()
    known = writer.known
    writer._reset()
    writer.known = known


os.register_at_fork(after_in_child=_after_fork_in_child)
