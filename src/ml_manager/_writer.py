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
from typing import TYPE_CHECKING

from . import _log
from .errors import FlushError

if TYPE_CHECKING:
    from pathlib import Path

    from ._channel import Channel


class _Writer:
    """This process's writer thread and the open channels it commits."""

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self.cond = threading.Condition(threading.Lock())
        self.channels: list[Channel] = []
        self.thread: threading.Thread | None = None
        self.stopping = False
        self.hooked = False

    def add(self, channel: Channel) -> bool:
        """Take part in the writer's rounds, starting the thread if needed; False if no thread can run."""
        with self.cond:
            if channel not in self.channels:
                self.channels.append(channel)
            if self.thread is None:
                if self.stopping:
                    return False
                self._hook()
                thread = threading.Thread(target=self._work, name="ml_manager-writer", daemon=True)
                try:
                    thread.start()
                except RuntimeError:  # interpreter shutdown
                    return False
                self.thread = thread
            return True

    def remove(self, channel: Channel) -> None:
        """Leave the writer's rounds; the last channel to leave waits for the thread to end."""
        with self.cond:
            if channel in self.channels:
                self.channels.remove(channel)
            thread = self.thread
            self.cond.notify_all()
            if self.channels or thread is None or thread is threading.current_thread():
                return
            while self.thread is thread and not self.channels:
                self.cond.wait()
            if self.thread is thread:
                return  # another handle started logging meanwhile: the thread goes on for it
        thread.join()  # it has let go of everything and is returning

    def wake(self) -> None:
        with self.cond:
            self.cond.notify_all()

    def of_run(self, run_dir: Path) -> list[Channel]:
        where = os.path.abspath(run_dir)
        with self.cond:
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
            with self.cond:
                if self.stopping or not self.channels:
                    self.thread = None
                    self.cond.notify_all()
                    return
                self.cond.wait(min(channel.interval for channel in self.channels))
                channels = [channel for channel in self.channels if channel.urgent or channel.has_work()]
            for channel in channels:
                try:
                    channel.commit(report=True)
                except FlushError:
                    pass  # kept, counted, and raised from the next log
                except Exception:  # a bug must not stop the rounds: what is buffered is still written at exit
                    _log.warning("the background writer failed", exc_info=True)


writer = _Writer()


def _commit_all(last: bool) -> None:
    """The exit hooks: commit every channel of this process; on the last one, stop the thread."""
    with writer.cond:
        channels = list(writer.channels)
        if last:
            writer.stopping = True
            writer.cond.notify_all()
    for channel in channels:
        try:
            channel.commit()
        except FlushError as exc:
            _log.warning("exiting with logged records not written: %s", exc)


def channels_of(run_dir: Path) -> list[Channel]:
    """The open channels of one run in this process."""
    return writer.of_run(run_dir)


def _after_fork_in_child() -> None:
    for channel in writer.channels:
        channel.after_fork()
    writer._reset()


os.register_at_fork(after_in_child=_after_fork_in_child)
