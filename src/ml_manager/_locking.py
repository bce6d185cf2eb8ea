"""One lock per run, shared by every thread of a process and every process on every machine writing it.

A ``threading.Lock`` per lock path excludes the other threads of this process first, so the file lock object
is only ever used by one thread at a time; the file lock excludes other processes.

Two kinds of lock, chosen per run when it is created and recorded in ``_meta.lock``, so that every writer of
the run, on every machine, takes the same one:

* ``"flock"``: ``filelock.FileLock``, the kernel's ``flock``.  Released by the OS when its holder dies,
  whatever killed it.  Excludes processes on other machines only where the filesystem sends it to the server
  (local disks trivially, NFS, CephFS, Lustre ``-o flock``).
* ``"soft"``: the lease lock of :mod:`_lease`, the exclusive creation of ``run.soft.lock``.  For filesystems
  shared between machines where ``flock`` may be node-local (FUSE mounts such as sshfs, SMB, Lustre
  ``localflock``, BeeGFS, GPFS, anything unknown).  A holder that died on this machine is known at once; one
  that died on another machine holds it for at most the lease.

``"auto"`` (the default) is the recorded kind of an existing run, and for a new run the kind its filesystem
calls for (:mod:`_fs`).
"""

from __future__ import annotations

import os
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

from ._queue import FairQueue
from .errors import LockTimeoutError

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping

    import filelock

    from ._lease import LeaseLock

    _FileLock: TypeAlias = filelock.BaseFileLock | LeaseLock

DEFAULT_LOCK_TIMEOUT = 60.0
LOCK_TIMEOUT_ENV = "ML_MANAGER_LOCK_TIMEOUT"
LOCK_KIND_ENV = "ML_MANAGER_LOCK"
LockKind = Literal["flock", "soft"]
LockChoice = Literal["auto", "flock", "soft"]
LOCK_KINDS: tuple[LockKind, ...] = ("flock", "soft")
LOCK_FILES: dict[LockKind, str] = {"flock": "run.lock", "soft": "run.soft.lock"}

# How often a waiting process retries a held lock.  filelock's default of 50 ms lets the holder win again
# and again under contention; a few milliseconds keeps waits short at negligible CPU cost.
_POLL_INTERVAL = 0.002
# Waiting processes queue up, first come, first served (see _queue); off only to measure what it buys.
FAIR_QUEUE = True


class _Registry:
    """The process's lock objects, one pair per lock path."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.guard = threading.Lock()
        self.locks: dict[str, tuple[threading.Lock, _FileLock, FairQueue | None]] = {}


_registry = _Registry()


def resolve_lock_timeout(timeout: float | None) -> float:
    """The lock timeout to use: the explicit value, else ``ML_MANAGER_LOCK_TIMEOUT``, else 60 s.

    Raises:
        ValueError: the value is not a finite, non-negative number of seconds.
    """
    return float(
        resolve_option(
            timeout,
            argument="lock_timeout",
            env=LOCK_TIMEOUT_ENV,
            default=DEFAULT_LOCK_TIMEOUT,
            convert=float,
            valid=lambda value: isinstance(value, (int, float)) and 0 <= value < float("inf"),
            expected="a finite number of seconds >= 0",
        )
    )


def resolve_option(
    value: Any,
    *,
    argument: str,
    env: str,
    default: Any,
    convert: Callable[[str], Any],
    valid: Callable[[Any], bool],
    expected: str,
) -> Any:
    """An option's value: the argument, else the environment variable ``env`` (unless empty), else ``default``.

    Raises:
        ValueError: the value (or the variable) is not what the option takes; the message names which.
    """
    source = argument
    if value is None:
        raw = os.environ.get(env)
        if not raw:
            return default
        source = env
        try:
            value = convert(raw)
        except ValueError:
            raise ValueError(f"{env}={raw!r} is not {expected}") from None
    if isinstance(value, bool) or not valid(value):
        raise ValueError(f"{source} must be {expected}, not {value!r}")
    return value


def check_lock_choice(kind: object) -> LockChoice | None:
    """``kind`` if it names a lock (``None`` for the default); checked before anything touches the disk.

    Raises:
        ValueError: it is not ``"auto"``, ``"flock"`` or ``"soft"``; or ``ML_MANAGER_LOCK`` is not.
    """
    if kind is None:
        raw = os.environ.get(LOCK_KIND_ENV)
        if raw and raw not in _CHOICES:
            raise ValueError(f"{LOCK_KIND_ENV}={raw!r} is not a lock kind; use 'auto', 'flock' or 'soft'")
        return None
    if kind not in _CHOICES:
        raise ValueError(f"lock={kind!r} is not a lock kind; use 'auto', 'flock' or 'soft'")
    return kind  # type: ignore[return-value]


_CHOICES = ("auto", *LOCK_KINDS)


def recorded_kind(meta: Mapping[str, Any]) -> object:
    """The kind a run's ``_meta`` records; for a run made before kinds were recorded, the one its writers used:
    ``ML_MANAGER_LOCK`` when it names a kind, else ``flock``."""
    recorded = meta.get("lock")
    if recorded is None:
        variable = os.environ.get(LOCK_KIND_ENV)
        recorded = variable if variable in LOCK_KINDS else "flock"
    return recorded


def resolve_lock_kind(kind: str | None, recorded: object = None, run_dir: Path | None = None) -> LockKind:
    """The lock kind a handle uses.

    ``kind`` when it names one; else (``None`` or ``"auto"``) the one the run recorded; else
    ``ML_MANAGER_LOCK`` when it names one; else what the filesystem of ``run_dir`` calls for (``flock``
    without a directory).

    Raises:
        ValueError: a kind, recorded kind or variable that is not a lock kind.
    """
    source, value = "lock", check_lock_choice(kind)
    if value in (None, "auto") and recorded is not None:
        source, value = "the run's _meta.lock", recorded  # type: ignore[assignment]
    if value is None:
        source, value = LOCK_KIND_ENV, os.environ.get(LOCK_KIND_ENV) or "auto"  # type: ignore[assignment]
    if value == "auto":
        from . import _fs

        return _fs.filesystem_of(run_dir).lock if run_dir is not None else "flock"
    for known in LOCK_KINDS:
        if value == known:
            return known
    raise ValueError(f"{source}={value!r} is not a lock kind; use 'flock' or 'soft'")


@contextmanager
def run_lock(lock_file: Path, timeout: float, kind: LockKind = "flock") -> Iterator[Callable[[], None]]:
    """Hold the lock at ``lock_file`` for the duration of the block.

    The block gets the fence: a function to call just before replacing a file, which raises
    :class:`LeaseLost` when the lock was broken while held (the soft lock, whose holder outlived its
    lease); for flock it does nothing.

    Args:
        lock_file: path of the lock file.  A flock file is created if missing and never deleted (deleting it
            while another process waits on it would let two processes in at once); a soft lock file exists
            exactly while the lock is held.
        timeout: seconds to wait in all, for the other threads and the other processes together.
        kind: ``"flock"`` or ``"soft"``.

    Raises:
        LockTimeoutError: the lock was not free within ``timeout``.
        OSError: the soft lock file cannot be created or read (the message names it).
    """
    thread_lock, file_lock, queue = _locks_for(lock_file, kind)
    if queue is not None and not queue.usable:
        queue = None
    deadline = time.monotonic() + timeout
    if not thread_lock.acquire(timeout=timeout):
        raise LockTimeoutError(str(lock_file), timeout)
    token = None
    try:
        try:
            # Straight to the lock when nobody is queued; else first come, first served (see _queue).
            if queue is None or not queue.empty() or not _try(file_lock):
                if queue is not None:
                    token = _join(queue, deadline)
                remaining = max(0.0, deadline - time.monotonic())
                file_lock.acquire(timeout=remaining, poll_interval=_POLL_INTERVAL)
        except TimeoutError as exc:  # filelock.Timeout, or the queue's
            if token is not None:
                queue.leave(token, done=False)  # type: ignore[union-attr]
            raise LockTimeoutError(str(lock_file), timeout) from exc
        try:
            yield getattr(file_lock, "check", _no_fence)
        finally:
            file_lock.release()
            if token is not None:
                _leave(queue, token)  # type: ignore[arg-type]
    finally:
        thread_lock.release()


class LeaseLost(Exception):
    """The soft lock was broken while held (its holder outlived the lease): the update is to be redone."""


def _no_fence() -> None:
    return


def _join(queue: FairQueue, deadline: float) -> str | None:
    """Queue up; ``None`` when the queue's files cannot be used here, and the lock alone decides."""
    try:
        return queue.join(deadline)
    except TimeoutError:
        raise
    except OSError:
        # The queue is only for fairness: a filesystem that refuses its files (flock, sockets) costs that,
        # never the write.  Not tried again in this process.
        queue.usable = False
        return None


def _leave(queue: FairQueue, token: str) -> None:
    try:
        queue.leave(token)
    except OSError:
        queue.usable = False


def _try(file_lock: _FileLock) -> bool:
    try:
        file_lock.acquire(timeout=0)
    except TimeoutError:
        return False
    return True


def _locks_for(lock_file: Path, kind: LockKind) -> tuple[threading.Lock, _FileLock, FairQueue | None]:
    import filelock  # imported on first use: importing ml_manager stays cheap for processes that only read

    key = os.path.abspath(lock_file)
    registry = _registry
    with registry.guard:
        entry = registry.locks.get(key)
        if entry is None:
            if kind == "soft":
                from ._lease import LeaseLock  # imported on first use, like filelock

                entry = (threading.Lock(), LeaseLock(key), None)
            else:
                queue = FairQueue(Path(key)) if FAIR_QUEUE else None
                entry = (threading.Lock(), filelock.FileLock(key, thread_local=False), queue)
            registry.locks[key] = entry
        return entry


def _forget_locks_after_fork() -> None:
    # A child forked while another thread held a lock would inherit it locked forever; the child starts
    # with fresh lock objects instead (its file locks are taken anew through its own descriptors), and closes
    # the queue descriptors it inherited, whose flocks are the parent's.
    for _, _, queue in _registry.locks.values():
        if queue is not None:
            queue.close_after_fork()
    _registry.reset()


os.register_at_fork(after_in_child=_forget_locks_after_fork)
