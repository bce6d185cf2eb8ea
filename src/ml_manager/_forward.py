"""A bounded background queue and the one thread that drains it into a sink.  Knows nothing about wandb.

The producer (the training loop) never waits: :meth:`Forwarder.submit` appends to a bounded queue, or, when
the queue is full, drops the item and counts it.  One daemon thread hands items to the sink in order; a sink
that raises is counted and reported once, a sink that stalls only delays the items behind it.
:meth:`Forwarder.close` drains with a deadline; so does interpreter exit.

After ``fork()`` the child's copy of every forwarder is inert: the thread did not survive the fork and the
queued items belong to the parent, so the child neither sends them again nor starts sending its own.
"""

from __future__ import annotations

import atexit
import os
import threading
import weakref
from collections import deque
from typing import TYPE_CHECKING, Any, NamedTuple

from . import _log

if TYPE_CHECKING:
    from collections.abc import Callable


class ForwarderStats(NamedTuple):
    """What happened to the items handed to a forwarder.

    Attributes:
        sent: delivered to the sink without error.
        dropped: never delivered: the queue was full, the forwarder was closed, or the drain deadline passed.
        failed: the sink raised.
        pending: queued or being delivered right now.
    """

    sent: int = 0
    dropped: int = 0
    failed: int = 0
    pending: int = 0


class Forwarder:
    """Deliver items to ``sink`` on a background thread, in order, without ever blocking the producer."""

    def __init__(self, sink: Callable[[Any], object], *, maxsize: int, exit_timeout: float, name: str) -> None:
        """
        Args:
            sink: called with each item, in order, on the forwarder's thread.
            maxsize: the most items queued at once; more are dropped and counted.
            exit_timeout: seconds to drain at interpreter exit if :meth:`close` was never called.
            name: the thread's name, and the prefix of what is logged.
        """
        if maxsize < 1:
            raise ValueError(f"the queue size must be at least 1, not {maxsize}")
        self._sink = sink
        self._maxsize = maxsize
        self.exit_timeout = exit_timeout
        self.name = name
        self._reset()
        _live.add(self)

    def _reset(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._items: deque[Any] = deque()
        self._thread: threading.Thread | None = None
        self._in_flight = False
        self._closed = False
        self._abandon = False
        self._sent = self._dropped = self._failed = 0
        self._reported: set[str] = set()

    # -- the producer's side ---------------------------------------------------------------------------------

    def submit(self, item: Any) -> bool:
        """Queue ``item`` for the sink; never blocks.

        Returns:
            False when the item was dropped: the queue is full (reported once, counted) or the forwarder is
            closed.
        """
        with self._cond:
            if self._closed:
                self._dropped += 1
                return False
            if len(self._items) >= self._maxsize:
                self._dropped += 1
                self._report_once(
                    "full", "%s: queue full (%d items); dropping new items and counting them", self.name, self._maxsize
                )
                return False
            self._items.append(item)
            if self._thread is None:
                _exit_drain.ensure_registered()
                # A daemon thread: a sink stalled for good must not keep the interpreter alive; exit drains
                # the queue with a deadline instead.
                self._thread = threading.Thread(target=self._work, name=self.name, daemon=True)
                self._thread.start()
            self._cond.notify()
            return True

    def close(self, timeout: float | None) -> bool:
        """Stop accepting items and wait up to ``timeout`` seconds for the queue to drain.

        Items still queued at the deadline are dropped and counted; an item the sink is still working on is
        counted when it returns.

        Returns:
            True if everything queued was handed to the sink in time (or nothing was queued).
        """
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join(timeout)
        with self._cond:
            drained = not self._items and not self._in_flight
            if not drained:
                self._abandon = True
                self._dropped += len(self._items)
                self._items.clear()
                self._cond.notify_all()
        return drained

    @property
    def stats(self) -> ForwarderStats:
        """The counters as of now."""
        with self._cond:
            pending = len(self._items) + self._in_flight
            return ForwarderStats(self._sent, self._dropped, self._failed, pending)

    @property
    def thread_alive(self) -> bool:
        """Whether the delivery thread is still running (it ends after :meth:`close`)."""
        thread = self._thread
        return thread is not None and thread.is_alive()

    # -- the thread's side -----------------------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            with self._cond:
                while not self._items and not self._closed:
                    self._cond.wait()
                if not self._items or self._abandon:
                    return
                item = self._items.popleft()
                self._in_flight = True
            try:
                self._sink(item)
            except Exception:
                with self._cond:
                    self._failed += 1
                    self._report_once(
                        "failed", "%s: delivery failed; counting further failures silently", self.name, exc_info=True
                    )
            else:
                with self._cond:
                    self._sent += 1
            finally:
                with self._cond:
                    self._in_flight = False

    def _report_once(self, what: str, message: str, *args: Any, exc_info: bool = False) -> None:
        if what not in self._reported:
            self._reported.add(what)
            _log.warning(message, *args, exc_info=exc_info)


_live: weakref.WeakSet[Forwarder] = weakref.WeakSet()


class _ExitDrain:
    """Drains every live forwarder at interpreter exit, each within its own deadline."""

    def __init__(self) -> None:
        self.guard = threading.Lock()
        self.registered = False

    def ensure_registered(self) -> None:
        # Registered when the first thread starts, so after wandb.init registered its own exit hook: atexit
        # runs hooks last-in first-out, and the queue must drain into wandb before wandb shuts down.
        with self.guard:
            if not self.registered:
                atexit.register(self.drain)
                self.registered = True

    @staticmethod
    def drain() -> None:
        for forwarder in list(_live):
            if not forwarder.close(forwarder.exit_timeout):
                _log.warning("%s: exiting with items not delivered: %s", forwarder.name, forwarder.stats)


_exit_drain = _ExitDrain()


def _inert_after_fork() -> None:
    _exit_drain.guard = threading.Lock()
    for forwarder in list(_live):
        forwarder._reset()
        forwarder._closed = True


os.register_at_fork(after_in_child=_inert_after_fork)
