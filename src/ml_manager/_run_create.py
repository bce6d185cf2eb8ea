"""``MLRun.create``: a new run, and under ``torch.distributed`` the ranks' agreement on one run."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import _create, _dist, _document, _wandb, _writer
from ._locking import check_lock_choice, resolve_lock_timeout
from ._run_state import RESERVED, RunState, run_class
from ._values import normalize_config

if TYPE_CHECKING:
    import os

    from ._locking import LockChoice
    from .run import MLRun


class CreateMethods(RunState):
    """Mixed into :class:`~ml_manager.MLRun`: ``create``."""

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
        lock: LockChoice | None = None,
        lock_timeout: float | None = None,
        background_wandb: bool | None = None,
        wandb_queue_size: int = 10_000,
        wandb_drain_timeout: float = 30.0,
        flush_interval: float | None = None,
        max_unflushed: int | None = None,
    ) -> MLRun:
        """Start a new run: create its directory, write ``config.toml``, start wandb.

        Everything is validated before anything touches the disk.  Online mode without credentials logs to
        wandb offline instead, with one warning; a failing wandb never stops the run.

        Under ``torch.distributed`` with more than one rank, every rank calls ``create`` with the same
        arguments and gets a handle to ONE run: rank 0 creates it (directory, ``config.toml`` with ``rank`` and
        ``world_size`` in ``_meta``, ``wandb.init``), the other ranks receive its id through a collective and
        attach to it without wandb.

        Args:
            config: the run's hyperparameters; nested dicts become TOML tables.  ``None``, tuples and paths
                round-trip exactly; the top-level keys ``_meta`` and ``_wandb`` are reserved.
            base_dir: the root of all projects.
            project_name: the project, also the wandb project; one path component.
            entity: the wandb entity (user or team); ``None`` for wandb's default.
            mode: ``"online"``, ``"offline"`` or ``"disabled"``; default ``WANDB_MODE``, else online.
            run_id: the id to use (one path component); default a fresh 8-character id.
            durable: fsync every write so an acknowledged write survives a power loss (default).
            lock: ``"auto"`` (default), ``"flock"`` or ``"soft"``; default ``ML_MANAGER_LOCK``, else ``"auto"``:
                ``flock`` on local disks and NFS, the soft lock (exclusive creation of a lock file, with a
                lease) where ``flock`` may not reach other machines (FUSE mounts such as sshfs, SMB, Lustre
                without ``-o flock``, BeeGFS, GPFS, anything unknown).  The kind chosen is recorded in
                ``_meta.lock`` so that every writer of the run, on every machine, uses it.
            lock_timeout: seconds to wait for the run's lock; default ``ML_MANAGER_LOCK_TIMEOUT``, else 60.
            background_wandb: send to wandb from a background thread, so that ``add_metrics`` returns as soon as
                the local write is done; default ``ML_MANAGER_BACKGROUND_WANDB`` (``1``/``true``), else off.
            wandb_queue_size: the most calls waiting for wandb at once in the background; further calls are
                not sent to wandb (the local record has them) and are counted as dropped.
            wandb_drain_timeout: seconds :meth:`finish`, and interpreter exit, wait for the queue to drain.
            flush_interval: the most seconds a record from :meth:`log` waits in memory before the background
                writer commits it; default ``ML_MANAGER_FLUSH_INTERVAL``, else 1.
            max_unflushed: the most records :meth:`log` keeps in memory before it waits for the writer;
                default ``ML_MANAGER_MAX_UNFLUSHED``, else 100,000.

        Returns:
            The run, with ``wandb_run`` set (unless wandb could not start at all).

        Raises:
            TypeError: a config key or value TOML cannot hold (the message names its key path).
            ValueError: a bad name, mode or timeout, or a reserved config key.
            FileExistsError: ``run_id`` was given and that run already exists.
        """
        _document.check_name(project_name, "project_name")
        if run_id is not None:
            _document.check_name(run_id, "run_id")
        if not isinstance(config, Mapping):
            raise TypeError(f"config must be a mapping, not {type(config).__name__}")
        reserved = [key for key in RESERVED if key in config]
        if reserved:
            raise ValueError(f"config key {reserved[0]!r} is reserved for ml_manager's own table")
        stored_config, python_types = normalize_config(config)
        wandb_mode = _wandb.resolve_mode(mode)
        background = _wandb.resolve_background(background_wandb)
        if isinstance(wandb_queue_size, bool) or not isinstance(wandb_queue_size, int) or wandb_queue_size < 1:
            raise ValueError(f"wandb_queue_size must be a positive int, not {wandb_queue_size!r}")
        if not 0 <= wandb_drain_timeout < float("inf"):
            raise ValueError(
                f"wandb_drain_timeout must be a finite number of seconds >= 0, not {wandb_drain_timeout!r}"
            )
        lock_choice = check_lock_choice(lock)
        timeout = resolve_lock_timeout(lock_timeout)
        logging: dict[str, Any] = {
            "flush_interval": _writer.resolve_flush_interval(flush_interval),
            "max_unflushed": _writer.resolve_max_unflushed(max_unflushed),
        }
        start = functools.partial(
            cls._start,
            config=config,
            stored_config=stored_config,
            python_types=python_types,
            project_dir=Path(base_dir) / project_name,
            entity=entity,
            wandb_mode=wandb_mode,
            run_id=run_id,
            durable=durable,
            lock=lock_choice,
            lock_timeout=timeout,
            sender_options={
                "background": background,
                "queue_size": wandb_queue_size,
                "drain_timeout": wandb_drain_timeout,
            },
            logging=logging,
        )
        ranks = _dist.current()
        if ranks is None or _dist.creating_alone.get():
            return start(ranks=ranks)
        # Every rank calls create identically: rank 0 makes the run, the others attach to it.
        made: list[MLRun] = []

        def make_on_rank_0() -> str:
            made.append(start(ranks=ranks))
            return made[0].run_id

        agreed = _dist.agree_on_run(make_on_rank_0)
        if made:
            return made[0]
        return run_class(cls).load(
            agreed, base_dir, project_name, durable=durable, lock=lock_choice, lock_timeout=timeout, **logging
        )

    @classmethod
    def _start(cls, *, logging: dict[str, Any], **create: Any) -> MLRun:
        """Create the run here, in this process (see :func:`_create.start_run`)."""
        return run_class(cls)(**_create.start_run(**create), **logging)
