"""Joining an existing run: ``MLRun.load``, ``attach``, ``export_env``, and pickling a handle."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import _create, _document, _fs, _storage, _writer
from ._locking import check_lock_choice, recorded_kind, resolve_lock_kind, resolve_lock_timeout
from ._run_state import RunState, run_class
from ._storage import RunPaths
from ._values import restore_config
from .errors import RunNotFoundError

if TYPE_CHECKING:
    from ._locking import LockChoice
    from .run import MLRun

RUN_DIR_ENV = "ML_MANAGER_RUN_DIR"


class JoinMethods(RunState):
    """Mixed into :class:`~ml_manager.MLRun`: ``load``, ``attach``, ``export_env`` and ``__reduce__``."""

    @classmethod
    def load(
        cls,
        run_id: str,
        base_dir: str | os.PathLike[str],
        project_name: str | None = None,
        *,
        durable: bool = True,
        lock: LockChoice | None = None,
        lock_timeout: float | None = None,
        flush_interval: float | None = None,
        max_unflushed: int | None = None,
    ) -> MLRun:
        """Load a run from its files, to read it or to log into it from another process.

        Args:
            run_id: the run's id.
            base_dir: the root of all projects.
            project_name: the run's project; when ``None`` every project under ``base_dir`` is searched.
            durable: as for :meth:`create`, for this handle's writes.
            lock: the lock kind for this handle's writes; default (and ``"auto"``) the one the run recorded at
                creation, which every writer of the run must use.
            lock_timeout: as for :meth:`create`, for this handle's writes.
            flush_interval: as for :meth:`create`, for this handle's :meth:`log`.
            max_unflushed: as for :meth:`create`, for this handle's :meth:`log`.

        Returns:
            A run without a wandb connection (``wandb_run`` is ``None``).

        Raises:
            RunNotFoundError: no such run.
            AmbiguousRunError: ``project_name`` is ``None`` and several projects hold ``run_id``.
            CorruptRunFileError: ``config.toml`` or ``metrics.toml`` cannot be read or parsed, or
                ``metrics.toml`` exists without ``config.toml``.
        """
        _document.check_name(run_id, "run_id")
        check_lock_choice(lock)
        timeout = resolve_lock_timeout(lock_timeout)
        interval = _writer.resolve_flush_interval(flush_interval)
        most = _writer.resolve_max_unflushed(max_unflushed)
        if project_name is None:
            project_name = _create.find_project(run_id, Path(base_dir))
        paths = RunPaths.of(base_dir, project_name, run_id)
        _fs.forget()
        try:
            document, metrics, _ = _storage.read_run_files(str(paths.run_dir))
        except FileNotFoundError:
            raise RunNotFoundError(run_id, str(paths.run_dir.parent)) from None
        return cls._from_documents(
            paths,
            project_name,
            document,
            metrics,
            durable=durable,
            lock=lock,
            lock_timeout=timeout,
            flush_interval=interval,
            max_unflushed=most,
        )

    @classmethod
    def attach(
        cls,
        run_dir: str | os.PathLike[str] | None = None,
        *,
        durable: bool = True,
        lock: LockChoice | None = None,
        lock_timeout: float | None = None,
        flush_interval: float | None = None,
        max_unflushed: int | None = None,
    ) -> MLRun:
        """Join a run from a worker process, by its directory.

        The hand-off for ``multiprocessing``, ``concurrent.futures`` and job arrays: the parent passes
        ``run.run_dir`` (or the run itself: an ``MLRun`` pickles as a reference to its directory), or calls
        :meth:`export_env` before starting the workers, and each worker calls ``MLRun.attach()``.

        Args:
            run_dir: ``base_dir/project_name/run_id``; default ``ML_MANAGER_RUN_DIR``.
            durable: as for :meth:`load`.
            lock: as for :meth:`load`.
            lock_timeout: as for :meth:`load`.
            flush_interval: as for :meth:`load`.
            max_unflushed: as for :meth:`load`.

        Returns:
            A handle without wandb, like :meth:`load`'s.

        Raises:
            RunNotFoundError: no run there, or neither ``run_dir`` nor ``ML_MANAGER_RUN_DIR`` was given.
        """
        if run_dir is None:
            run_dir = os.environ.get(RUN_DIR_ENV)
            if not run_dir:
                raise RunNotFoundError("(none given)", f"the {RUN_DIR_ENV} environment variable, which is not set")
        path = Path(run_dir)
        return cls.load(
            path.name,
            path.parent.parent,
            path.parent.name,
            durable=durable,
            lock=lock,
            lock_timeout=lock_timeout,
            flush_interval=flush_interval,
            max_unflushed=max_unflushed,
        )

    def export_env(self) -> dict[str, str]:
        """Set ``ML_MANAGER_RUN_DIR`` to this run in ``os.environ``, so child processes can :meth:`attach`.

        Returns:
            The variable and its value, to pass on explicitly (a job script, ``subprocess`` ``env=``).
        """
        os.environ[RUN_DIR_ENV] = str(self.run_dir.absolute())
        return {RUN_DIR_ENV: os.environ[RUN_DIR_ENV]}

    def __reduce__(self) -> tuple[Any, ...]:
        # Crossing a process boundary, a handle becomes a joiner of the same run: never a copy of the wandb
        # connection or of the creator's right to finish the run.
        from .run import _attach_pickled

        options = (self.durable, self.lock, self.lock_timeout, self.flush_interval, self.max_unflushed)
        return (_attach_pickled, (str(self.run_dir.absolute()), *options))

    @classmethod
    def _from_documents(
        cls,
        paths: RunPaths,
        project_name: str,
        config_document: dict[str, Any],
        metrics: dict[str, Any],
        *,
        durable: bool = True,
        lock: LockChoice | None = None,
        lock_timeout: float,
        flush_interval: float = _writer.DEFAULT_FLUSH_INTERVAL,
        max_unflushed: int = _writer.DEFAULT_MAX_UNFLUSHED,
    ) -> MLRun:
        """A loaded run from parsed ``config.toml`` and ``metrics.toml`` documents.

        Raises:
            CorruptRunFileError: the config has no ``[_meta]`` table (it is not an ml_manager run's), or
                ``_meta``/``_wandb`` are not tables.
        """
        meta, wandb_info = _storage.split_config(config_document, paths.config)
        return run_class(cls)(
            paths=paths,
            project_name=project_name,
            config=restore_config(config_document, meta.get("python_types")),
            metrics=metrics,
            meta=meta,
            wandb_info=wandb_info,
            wandb_run=None,
            durable=durable,
            lock=resolve_lock_kind(lock, recorded_kind(meta)),
            lock_timeout=lock_timeout,
            owner=False,
            flush_interval=flush_interval,
            max_unflushed=max_unflushed,
        )
