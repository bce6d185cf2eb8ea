"""``MLRun``: one experiment run, its local files and its wandb run."""

from __future__ import annotations

import datetime
import os
import platform
import secrets
import socket
import string
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import _storage, _wandb
from ._git import git_info
from ._locking import LockKind, resolve_lock_kind, resolve_lock_timeout
from ._storage import RunPaths
from ._values import normalize_config, normalize_metrics, restore_config
from .errors import AmbiguousRunError, CorruptRunFileError, RunNotFoundError

if TYPE_CHECKING:
    from types import TracebackType

_ID_ALPHABET = string.ascii_lowercase + string.digits
_RESERVED = ("_meta", "_wandb")


def _new_run_id() -> str:
    # wandb's own id shape: 8 characters of [a-z0-9].
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(8))


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def _text(arg: str) -> str:
    # Arguments that were not valid UTF-8 arrive as surrogate escapes, which TOML cannot hold.
    return arg.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _version() -> str:
    from . import __version__

    return __version__


class MLRun:
    """One experiment run: ``config.toml`` and ``metrics.toml`` under ``base_dir/project_name/run_id``.

    Create a run with :meth:`create` (which starts wandb) or attach to an existing one with :meth:`load`
    (which does not).  Any number of handles, in any processes and threads, may call :meth:`add_metrics` on
    the same run at once: each call is merged into ``metrics.toml`` under the run's lock.

    Example::

        with MLRun.create({"lr": 1e-3}, "./checkpoints", "demo") as run:
            run.add_metrics({"accuracy": 0.92})
        print(MLRun.load(run.run_id, "./checkpoints").metrics)

    Attributes:
        run_id: the run's id, also its wandb id and its directory name.
        project_name: the project (directory) the run belongs to.
        run_dir: ``base_dir/project_name/run_id``.
        config: the config as passed to :meth:`create` (without the ``_meta`` and ``_wandb`` tables).
        metrics: the merged content of ``metrics.toml`` as of this handle's last write or load.
        meta: the ``_meta`` table: git commit, host, status, times, versions.
        wandb_info: the ``_wandb`` table: id, project, entity, mode, url.
        wandb_run: the live wandb run for a handle from :meth:`create`; ``None`` for a loaded run.
    """

    def __init__(
        self,
        *,
        paths: RunPaths,
        project_name: str,
        config: dict[str, Any],
        metrics: dict[str, Any],
        meta: dict[str, Any],
        wandb_info: dict[str, Any],
        wandb_run: Any | None,
        durable: bool,
        lock: LockKind,
        lock_timeout: float,
        owner: bool,
    ) -> None:
        self._paths = paths
        self.run_id = paths.run_dir.name
        self.project_name = project_name
        self.run_dir = paths.run_dir
        self.config = config
        self.metrics = metrics
        self.meta = meta
        self.wandb_info = wandb_info
        self.wandb_run = wandb_run
        self.durable = durable
        self.lock = lock
        self.lock_timeout = lock_timeout
        # Only the handle that created the run records its final status.
        self._owner = owner
        self._finished = False
        self._wandb = _wandb.Reporter()

    # -- creating and loading ------------------------------------------------------------------------------

    @classmethod
    def create(
        cls,
        config: Mapping[str, Any],
        base_dir: str | os.PathLike[str],
        project_name: str,
        entity: str | None = None,
        *,
        mode: str | None = None,
        run_id: str | None = None,
        durable: bool = True,
        lock: LockKind | None = None,
        lock_timeout: float | None = None,
    ) -> MLRun:
        """Start a new run: create its directory, write ``config.toml``, start wandb.

        Everything is validated before anything touches the disk.  Online mode without credentials logs to
        wandb offline instead, with one warning; a failing wandb never stops the run.

        Args:
            config: the run's hyperparameters; nested dicts become TOML tables.  ``None``, tuples and paths
                round-trip exactly; the top-level keys ``_meta`` and ``_wandb`` are reserved.
            base_dir: the root of all projects.
            project_name: the project, also the wandb project; one path component.
            entity: the wandb entity (user or team); ``None`` for wandb's default.
            mode: ``"online"``, ``"offline"`` or ``"disabled"``; default ``WANDB_MODE``, else online.
            run_id: the id to use (one path component); default a fresh 8-character id.
            durable: fsync every write so an acknowledged write survives a power loss (default).
            lock: ``"flock"`` (default) or ``"soft"`` for filesystems without ``flock``; default
                ``ML_MANAGER_LOCK``.  Recorded in ``_meta.lock`` so that every writer of the run uses it.
            lock_timeout: seconds to wait for the run's lock; default ``ML_MANAGER_LOCK_TIMEOUT``, else 60.

        Returns:
            The run, with ``wandb_run`` set (unless wandb could not start at all).

        Raises:
            TypeError: a config key or value TOML cannot hold (the message names its key path).
            ValueError: a bad name, mode or timeout, or a reserved config key.
            FileExistsError: ``run_id`` was given and that run already exists.
        """
        _storage.check_name(project_name, "project_name")
        if run_id is not None:
            _storage.check_name(run_id, "run_id")
        if not isinstance(config, Mapping):
            raise TypeError(f"config must be a mapping, not {type(config).__name__}")
        reserved = [key for key in _RESERVED if key in config]
        if reserved:
            raise ValueError(f"config key {reserved[0]!r} is reserved for ml_manager's own table")
        stored_config, python_types = normalize_config(config)
        wandb_mode = _wandb.resolve_mode(mode)
        lock_kind = resolve_lock_kind(lock)
        timeout = resolve_lock_timeout(lock_timeout)

        paths = cls._make_run_dir(Path(base_dir) / project_name, run_id)
        meta: dict[str, Any] = {
            "format_version": _storage.FORMAT_VERSION,
            "created_at": _now(),
            "status": "running",
            "lock": lock_kind,
            **git_info(),
            "hostname": socket.gethostname(),
            "pid": os.getpid(),
            "argv": [_text(arg) for arg in sys.argv],
            "python": platform.python_version(),
            "ml_manager": _version(),
        }
        if python_types:
            meta["python_types"] = python_types
        wandb_run, wandb_info = _wandb.start_run(
            run_id=paths.run_dir.name,
            project=project_name,
            entity=entity,
            config=dict(config),
            mode=wandb_mode,
            run_dir=paths.run_dir,
        )
        document = {**stored_config, "_wandb": wandb_info, "_meta": meta}
        _storage.write_toml(paths.config, document, durable=durable)
        return cls(
            paths=paths,
            project_name=project_name,
            config=restore_config(_storage.deep_merge({}, stored_config), python_types),
            metrics={},
            meta=meta,
            wandb_info=wandb_info,
            wandb_run=wandb_run,
            durable=durable,
            lock=lock_kind,
            lock_timeout=timeout,
            owner=True,
        )

    @staticmethod
    def _make_run_dir(project_dir: Path, run_id: str | None) -> RunPaths:
        project_dir.mkdir(parents=True, exist_ok=True)
        if run_id is not None:
            (project_dir / run_id).mkdir()
            return RunPaths(project_dir / run_id)
        while True:
            candidate = project_dir / _new_run_id()
            try:
                candidate.mkdir()
            except FileExistsError:
                continue
            return RunPaths(candidate)

    @classmethod
    def load(
        cls,
        run_id: str,
        base_dir: str | os.PathLike[str],
        project_name: str | None = None,
        *,
        durable: bool = True,
        lock: LockKind | None = None,
        lock_timeout: float | None = None,
    ) -> MLRun:
        """Load a run from its files, to read it or to log into it from another process.

        Args:
            run_id: the run's id.
            base_dir: the root of all projects.
            project_name: the run's project; when ``None`` every project under ``base_dir`` is searched.
            durable: as for :meth:`create`, for this handle's writes.
            lock: the lock kind for this handle's writes; default the one the run recorded at creation.
            lock_timeout: as for :meth:`create`, for this handle's writes.

        Returns:
            A run without a wandb connection (``wandb_run`` is ``None``).

        Raises:
            RunNotFoundError: no such run.
            AmbiguousRunError: ``project_name`` is ``None`` and several projects hold ``run_id``.
            CorruptRunFileError: ``config.toml`` or ``metrics.toml`` cannot be read or parsed, or
                ``metrics.toml`` exists without ``config.toml``.
        """
        _storage.check_name(run_id, "run_id")
        timeout = resolve_lock_timeout(lock_timeout)
        if project_name is None:
            project_name = find_project(run_id, Path(base_dir))
        paths = RunPaths.of(base_dir, project_name, run_id)
        try:
            document = _storage.read_config(paths)
        except FileNotFoundError:
            raise RunNotFoundError(run_id, str(paths.run_dir.parent)) from None
        return cls._from_documents(
            paths,
            project_name,
            document,
            _storage.read_toml_or_empty(paths.metrics),
            durable=durable,
            lock=lock,
            lock_timeout=timeout,
        )

    @classmethod
    def _from_documents(
        cls,
        paths: RunPaths,
        project_name: str,
        config_document: dict[str, Any],
        metrics: dict[str, Any],
        *,
        durable: bool = True,
        lock: LockKind | None = None,
        lock_timeout: float,
    ) -> MLRun:
        """A loaded run from parsed ``config.toml`` and ``metrics.toml`` documents.

        Raises:
            CorruptRunFileError: the config has no ``[_meta]`` table (it is not an ml_manager run's), or
                ``_meta``/``_wandb`` are not tables.
        """
        meta = config_document.pop("_meta", None)
        wandb_info = config_document.pop("_wandb", {})
        if not isinstance(meta, dict) or not isinstance(wandb_info, dict):
            raise CorruptRunFileError(str(paths.config), "no [_meta] and [_wandb] tables: not an ml_manager run")
        return cls(
            paths=paths,
            project_name=project_name,
            config=restore_config(config_document, meta.get("python_types")),
            metrics=metrics,
            meta=meta,
            wandb_info=wandb_info,
            wandb_run=None,
            durable=durable,
            lock=resolve_lock_kind(lock, meta.get("lock")),
            lock_timeout=lock_timeout,
            owner=False,
        )

    # -- logging -------------------------------------------------------------------------------------------

    def add_metrics(self, metrics_dict: Mapping[str, Any]) -> None:
        """Merge metrics into ``metrics.toml``, then log them to wandb.

        The values are checked before any I/O; the run's lock is held only while ``metrics.toml`` is read,
        merged and atomically replaced.  Once this returns the values are on disk (fsynced when durable) and
        ``self.metrics`` is the merged state just written, other writers' keys included.  A wandb failure is
        logged once and never raised.

        Args:
            metrics_dict: metric names to values; nested dicts merge key by key with what is on disk.

        Raises:
            TypeError: a key or value TOML cannot hold (the message names its key path); nothing is written.
            ValueError: a value TOML cannot hold (an int beyond 64 bits, invalid text); nothing is written.
            LockTimeoutError: the run's lock was not free within ``lock_timeout``.
            CorruptRunFileError: ``metrics.toml`` is corrupt; it is left as it is, never overwritten.
        """
        values = normalize_metrics(metrics_dict)
        self.metrics = _storage.merge_metrics(
            self._paths, values, lock=self.lock, lock_timeout=self.lock_timeout, durable=self.durable
        )
        if self.wandb_run is not None and not self._finished:
            self._wandb.call("log", self.wandb_run.log, values)

    # -- finishing -----------------------------------------------------------------------------------------

    def finish(self) -> None:
        """Finish the run: record its status in ``config.toml`` and finish the wandb run.

        Idempotent.  Only the handle that created the run records a status; on a handle from :meth:`load`
        (another process joining the run) it does nothing, so a worker finishing early cannot mark the whole
        run finished.
        """
        self._close("finished")

    @property
    def status(self) -> str | None:
        """``running``, ``finished`` or ``failed`` as last read or written by this handle."""
        status = self.meta.get("status")
        return status if isinstance(status, str) else None

    def _close(self, status: str) -> None:
        if self._finished:
            return
        self._finished = True
        if not self._owner:
            return
        finished_at = _now()

        def mark(document: dict[str, Any]) -> dict[str, Any]:
            meta = document.setdefault("_meta", {})
            meta["status"] = status
            meta["finished_at"] = finished_at
            return document

        try:
            document = _storage.update_file(
                self._paths,
                self._paths.config,
                mark,
                lock=self.lock,
                lock_timeout=self.lock_timeout,
                durable=self.durable,
            )
            self.meta = dict(document["_meta"])
        finally:
            if self.wandb_run is not None:
                self._wandb.call("finish", self.wandb_run.finish, exit_code=0 if status == "finished" else 1)

    def __enter__(self) -> MLRun:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._close("finished" if exc_type is None else "failed")

    # -- wandb ---------------------------------------------------------------------------------------------

    def get_wandb_url(self) -> str | None:
        """The run's wandb URL.

        wandb's own URL when it has one; else, for an offline run with a known entity, the URL the run will
        have once synced (``https://wandb.ai/{entity}/{project}/runs/{run_id}``); else ``None`` (wandb
        disabled, or offline with no entity given).
        """
        return _wandb.url_for(self.wandb_info)

    def __repr__(self) -> str:
        return f"MLRun(run_id={self.run_id!r}, project_name={self.project_name!r}, run_dir={str(self.run_dir)!r})"


def find_project(run_id: str, base_dir: Path) -> str:
    """The one project under ``base_dir`` holding run ``run_id``.

    Raises:
        RunNotFoundError: none does.
        AmbiguousRunError: several do.
    """
    try:
        projects = sorted(entry.name for entry in os.scandir(base_dir) if entry.is_dir())
    except FileNotFoundError:
        raise RunNotFoundError(run_id, str(base_dir)) from None
    holders = [name for name in projects if _storage.RunPaths(base_dir / name / run_id).has_files()]
    if not holders:
        raise RunNotFoundError(run_id, str(base_dir))
    if len(holders) > 1:
        raise AmbiguousRunError(run_id, holders)
    return holders[0]
