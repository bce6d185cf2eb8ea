"""Per-step logging: the buffer of one run handle, and the commit that writes it.

``MLRun.log`` checks its values on the caller's thread and appends one record to its handle's
:class:`Channel`: a ``deque`` append, no lock, no I/O.  A commit (by the process's writer thread, see
:mod:`._writer`, or by ``flush``) writes:

1. every buffered record to this process's history file in one append (one fsync when durable);
2. the latest value of every key to ``metrics.toml``, under the run's lock, in one atomic replace;
3. the records to wandb, one ``log`` per step, through the run's existing sender.

So a process takes the run's lock once per commit, however often it logs.  Failures keep the records: what
could not be appended is appended at the next commit, what could not be merged is merged then, and the error
is raised once from the next ``log`` (and from any ``flush``/``finish`` that cannot complete).  Memory is
bounded: past ``max_unflushed`` records ``log`` waits for the writer (or raises, while commits fail).
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
import weakref
from collections import deque
from typing import TYPE_CHECKING, Any

from . import _document, _history, _log, _storage
from ._wandb import one_call_per_step
from ._writer import LogStats, wait, writer
from .errors import FlushError

if TYPE_CHECKING:
    from ._locking import LockKind
    from ._storage import RunPaths
    from ._wandb import WandbSender

_now = time.time
# A buffer this full (of its bound) wakes the writer before the interval is up.
_EARLY = 0.1


class Channel:
    """The records one run handle logged in this process, on their way to disk."""

    def __init__(
        self,
        paths: RunPaths,
        *,
        durable: bool,
        lock: LockKind,
        lock_timeout: float,
        interval: float,
        limit: int,
        sender: WandbSender | None,
        owner: Any,
    ) -> None:
        self.paths = paths
        self.run_dir = os.path.abspath(paths.run_dir)
        self.durable = durable
        self.lock = lock
        self.lock_timeout = lock_timeout
        self.interval = interval
        self.limit = limit
        self.early = max(1, int(limit * _EARLY))
        self.sender = sender
        _import_what_a_commit_needs()
        # The handle, to update its ``metrics`` after a merge; weak, so a dropped handle's records still go.
        self._owner = weakref.ref(owner)
        self._reset()
        writer.known.add(self)
        # Signed now, while the process group that gives the rank is up: the last commit may come after it
        # was destroyed, at exit.
        self.signature: str | None = _history.writer_name()

    def _reset(self) -> None:
        self.records: deque[_history.Record] = deque()
        self.commit_lock = threading.Lock()  # held by whoever writes: the writer thread, or an exit hook
        self.state = threading.Lock()  # guards ready, unreported and joining or leaving the writer's rounds
        # Flush requests and what became of them; log calls waiting for room in the buffer.  Entered as ``with``
        # their locks, and waited on through _writer.wait: a caller's wait may be cut by Ctrl-C.
        self.done_lock, self.room_lock = threading.RLock(), threading.RLock()
        self.done = threading.Condition(self.done_lock)
        self.room = threading.Condition(self.room_lock)
        self.unwritten: list[_history.Record] = []  # taken from ``records``; the history append failed
        self.unmerged: dict[str, Any] = {}  # in the history; the metrics.toml merge failed
        self.written = self.flushes = self.failures = 0
        self.failure: FlushError | None = None  # the current series of failed commits
        self.unreported: FlushError | None = None  # raised once from the next log
        self.requested = self.served = 0  # flush requests made, and served by a commit
        self.served_error: FlushError | None = None
        self.urgent = False
        # False while the next put must first do something: join the writer's rounds, raise an error.
        self.ready = False

    # -- the caller's side ---------------------------------------------------------------------------------

    def put(self, step: int | None, values: dict[str, Any]) -> None:
        """Buffer one record (already checked).  Blocks only when the buffer is at its bound.

        Raises:
            FlushError: an earlier commit failed (raised once, this record kept), or the buffer is full while
                commits fail (this record not kept).
        """
        if not self.ready:
            self._put_first(step, values)
            return
        records = self.records
        if len(records) >= self.early:
            self._crowded()
        records.append((step, _now(), values))

    def _put_first(self, step: int | None, values: dict[str, Any]) -> None:
        """``put`` when something must happen first: join the writer's rounds, report a failure."""
        if len(self.records) >= self.early:
            self._crowded()
        with self.state:
            error, self.unreported = self.unreported, None
            self.ready = writer.add(self)
            self.records.append((step, _now(), values))
            alone = not self.ready
        if alone:
            self.commit()  # no writer thread can run (the exit hooks are writing): write it now
        if error is not None:
            raise error

    def _crowded(self) -> None:
        # While writes fail, the writer retries at its interval, not at every call: no retry storm.
        if not self.urgent and self.failure is None:
            self.urgent = True
            writer.wake()
        with self.room_lock:
            while len(self.records) + len(self.unwritten) >= self.limit:
                if self.failure is not None:
                    raise self._error(self.failure.reason, self.failure.path, self.failure.errno, self.failure)
                if not writer.serves(self):
                    break
                wait(self.room, self.interval)
            else:
                return
        self.commit()  # nobody else makes room: write it here

    @property
    def pending(self) -> int:
        return len(self.records) + len(self.unwritten)

    def has_work(self) -> bool:
        return bool(self.records or self.unwritten or self.unmerged)

    def busy(self) -> bool:
        """Something to write, or a commit under way (between taking records and merging them, say)."""
        return self.has_work() or self.commit_lock.locked()

    def stats(self) -> LogStats:
        return LogStats(self.written, self.pending, self.flushes, self.failures)

    def flush(self, timeout: float | None = None) -> None:
        """Have everything buffered so far written, and wait for it.

        The writer thread does the writing; the caller only waits, so an exception that interrupts the wait
        (Ctrl-C, a signal handler's ``sys.exit``) can never leave a write half-done.  Without a writer
        thread (an exit hook is writing, or the channel left the rounds) the caller writes itself.

        Raises:
            FlushError: the commit failed, or ``timeout`` passed before it was done; what was not written
                stays buffered.
        """
        if not writer.serves(self):
            self.commit(timeout=timeout)
            return
        deadline = None if timeout is None else time.monotonic() + timeout
        with self.done_lock:
            self.requested += 1
            ticket = self.requested
        writer.wake()
        with self.done_lock:
            while self.served < ticket:
                if not writer.serves(self):
                    break
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise self._error(f"not written within {timeout:g} s; the writer goes on trying", self.run_dir)
                wait(self.done, remaining)
            else:
                error = self.served_error
                if error is not None:
                    raise self._error(error.reason, error.path, error.errno, error.__cause__)
                return
        self.commit(timeout=timeout)  # the writer stopped meanwhile (exit): write it here

    # -- committing ------------------------------------------------------------------------------------------

    def asked(self) -> bool:
        """Whether a flush waits for the writer, or the buffer is filling up."""
        return self.urgent or self.requested > self.served

    def due(self) -> bool:
        """Whether the writer's round should commit this channel."""
        return self.asked() or self.has_work()

    def serve(self) -> None:
        """The writer thread's commit: it answers the flush requests made before it started."""
        with self.done_lock:
            target = self.requested
            waited_for = target > self.served
        try:
            self.commit(report=not waited_for)
        except FlushError as exc:
            error: FlushError | None = exc
        else:
            error = None
        with self.done_lock:
            self.served = max(self.served, target)
            self.served_error = error
            self.done.notify_all()

    def commit(self, *, timeout: float | None = None, report: bool = False) -> None:
        """Write everything buffered so far: history, then ``metrics.toml``, then wandb.

        Args:
            timeout: seconds to wait in all, for a commit in progress and for the run's lock; default the
                lock timeout.
            report: nobody waits for this commit: a failure is kept to be raised from the next ``log``.

        Raises:
            FlushError: something could not be written; it stays buffered for the next commit.
        """
        limit = self.lock_timeout if timeout is None else timeout
        deadline = time.monotonic() + limit
        if not self.commit_lock.acquire(timeout=limit):
            raise self._error(f"another flush of this run was still running after {limit:g} s", self.run_dir)
        try:
            if not report:
                # The caller sees this commit's outcome: an earlier failure it heals, or raises anew, needs
                # no second report from the next log.
                with self.state:
                    self.unreported = None
            self._commit(max(0.0, deadline - time.monotonic()), report)
        finally:
            self.commit_lock.release()

    def _commit(self, lock_timeout: float, report: bool) -> None:
        records = self.records
        taken = len(records)
        if taken:
            self.unwritten.extend([records.popleft() for _ in range(taken)])
        self.urgent = False
        batch = self.unwritten
        try:
            if batch:
                _history.append_lines(
                    self.paths.run_dir, _history.encode_batch(batch, self._signature()), durable=self.durable
                )
                for _, _, values in batch:  # before the batch leaves ``unwritten``: never nothing to do
                    _document.deep_merge(self.unmerged, values)
                self.unwritten = []
                self.written += len(batch)
                with self.room_lock:
                    self.room.notify_all()
            if self.unmerged:
                _storage.merge_metrics(
                    self.paths,
                    self.unmerged,
                    lock=self.lock,
                    lock_timeout=lock_timeout,
                    durable=self.durable,
                    written=self._keep_metrics,
                )
                self.unmerged = {}
        except Exception as exc:
            self._failed(exc, report)
        else:
            self.failure = None
            self.flushes += 1
        finally:
            if batch and not self.unwritten and self.sender is not None:
                self.sender.log_many(one_call_per_step(batch))

    def _failed(self, exc: Exception, report: bool) -> None:
        path = getattr(exc, "filename", None) or getattr(exc, "lock_file", None) or getattr(exc, "path", None)
        errno = getattr(exc, "errno", None)
        errno = errno if isinstance(errno, int) else None
        # An OSError's strerror already says which step failed; its filename is the error's path.
        reason = exc.strerror if isinstance(exc, OSError) and errno is not None and exc.strerror else str(exc)
        error = self._error(reason, str(path or self.run_dir), errno, exc)
        with self.state:
            if self.failure is None:
                _log.warning("%s (further failures are counted in run.log_stats until a flush succeeds)", error)
                if report:
                    self.unreported = error
                    self.ready = False
            self.failure = error
            self.failures += 1  # last: whoever sees the count sees the error ready to be raised
        with self.room_lock:
            self.room.notify_all()
        raise error from exc

    def _error(
        self, reason: str, path: str, errno: int | None = None, cause: BaseException | None = None
    ) -> FlushError:
        error = FlushError(path, self.pending, reason, errno)
        error.__cause__ = cause
        return error

    def close(self, timeout: float | None = None) -> None:
        """Write what is buffered and leave the writer's rounds (a later ``log`` joins them again).

        Raises:
            FlushError: the commit failed; the channel stays in the rounds, so the writer and the exit hooks
                retry.
        """
        with self.state:
            self.ready = False  # a log from now on goes through _put_first
        self.flush(timeout)
        with self.state:
            thread = writer.remove(self)
            if self.records:  # a log on another thread came in meanwhile: stay for it
                self.ready = writer.add(self)
                thread = None
        if thread is not None:
            writer.wait_for_end(thread)

    def stop(self) -> None:
        """The last exit hook: the writer thread is stopping; logs and flushes from now on write by themselves."""
        with self.state:
            self.ready = False
        with self.done_lock:
            self.done.notify_all()
        with self.room_lock:
            self.room.notify_all()

    def _keep_metrics(self, document: dict[str, Any]) -> None:
        owner = self._owner()
        if owner is not None:
            owner.metrics = document

    def _signature(self) -> str:
        if self.signature is None:
            self.signature = _history.writer_name()
        return self.signature

    def after_fork(self) -> None:
        """In a forked child: the buffered records are the parent's to write; start empty, signed anew."""
        self._reset()
        self.signature = None


def _import_what_a_commit_needs() -> None:
    # The first commit may be an exit hook's, when an import can fail: some filelock releases bring in
    # concurrent.futures, which registers an exit hook of its own, refused once the interpreter is shutting
    # down.  A handle first used that late gets the failure from its commit, as a FlushError.
    with contextlib.suppress(RuntimeError):
        import filelock  # noqa: F401
    import orjson  # noqa: F401
