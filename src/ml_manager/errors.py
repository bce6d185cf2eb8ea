"""Exceptions raised by ml_manager.

Every error derives from :class:`MLManagerError`, and each leaf also derives from the builtin that code
already catches (``TimeoutError``, ``LookupError``, ``ValueError``).  Errors keep their data as attributes
and their constructor arguments as ``args``, so they pickle across process boundaries intact.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence


class MLManagerError(Exception):
    """Base class of every error ml_manager raises on its own account."""


class LockTimeoutError(MLManagerError, TimeoutError):
    """The run's lock could not be taken within the timeout.

    Attributes:
        lock_file: path of the lock file.
        timeout: seconds waited.
    """

    def __init__(self, lock_file: str, timeout: float) -> None:
        super().__init__(lock_file, timeout)
        self.lock_file = lock_file
        self.timeout = timeout

    def __str__(self) -> str:
        return (
            f"could not lock {self.lock_file} within {self.timeout:g} s; another writer holds it "
            "(raise lock_timeout or ML_MANAGER_LOCK_TIMEOUT if writers legitimately wait this long)"
        )


class RunNotFoundError(MLManagerError, LookupError):
    """No run with this id exists where it was looked for.

    Attributes:
        run_id: the id asked for.
        where: the directory that was searched.
    """

    def __init__(self, run_id: str, where: str) -> None:
        super().__init__(run_id, where)
        self.run_id = run_id
        self.where = where

    def __str__(self) -> str:
        return f"no run {self.run_id!r} in {self.where}"


class AmbiguousRunError(MLManagerError, LookupError):
    """A run id exists in more than one project and no project name was given.

    Attributes:
        run_id: the id asked for.
        projects: the names of the projects that hold it, sorted.
    """

    def __init__(self, run_id: str, projects: Sequence[str]) -> None:
        super().__init__(run_id, tuple(projects))
        self.run_id = run_id
        self.projects = tuple(projects)

    def __str__(self) -> str:
        names = ", ".join(repr(p) for p in self.projects)
        return f"run {self.run_id!r} exists in several projects ({names}); pass project_name to choose"


class CorruptRunFileError(MLManagerError, ValueError):
    """A run file exists but cannot be read or parsed; ml_manager never overwrites it.

    Attributes:
        path: the file.
        reason: what was wrong with it.
    """

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(path, reason)
        self.path = path
        self.reason = reason

    def __str__(self) -> str:
        return f"cannot read {self.path}: {self.reason}"


class FlushError(MLManagerError, OSError):
    """Records logged with :meth:`MLRun.log` could not be written; they stay buffered and are retried.

    An ``OSError`` like the failures behind it (a full disk, an I/O error, a lock that timed out), with the
    failure as ``__cause__`` and its ``errno`` where it had one.

    Attributes:
        path: the file that could not be written (a history file or ``metrics.toml``), or the lock file.
        pending: records of the handle not yet in the history, kept in memory for the next flush.
        reason: what went wrong.
    """

    def __init__(self, path: str, pending: int, reason: str, errno: int | None = None) -> None:
        super().__init__(errno, reason, path)
        self.args = (path, pending, reason, errno)
        self.path = path
        self.pending = pending
        self.reason = reason

    def __reduce__(self) -> tuple[type[FlushError], tuple[str, int, str, int | None]]:
        return (type(self), (self.path, self.pending, self.reason, self.errno))

    def __str__(self) -> str:
        return (
            f"could not write logged records to {self.path}: {self.reason}; what was not written is kept in "
            f"memory and retried at the next flush ({self.pending} record(s) not yet in the history)"
        )


class MLManagerWarning(UserWarning):
    """Warnings ml_manager emits: wandb falling back to offline, a run skipped while loading a project."""


__all__ = [
    "AmbiguousRunError",
    "CorruptRunFileError",
    "FlushError",
    "LockTimeoutError",
    "MLManagerError",
    "MLManagerWarning",
    "RunNotFoundError",
]
