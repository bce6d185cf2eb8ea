"""``MLRun``: one experiment run, its local files and its wandb run."""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import _channel, _create, _dist, _fs, _history, _storage, _wandb, _writer
from ._async import AsyncMethods
from ._forward import ForwarderStats
from ._locking import (
    LockChoice,
    LockKind,
    check_lock_choice,
    recorded_kind,
    resolve_lock_kind,
    resolve_lock_timeout,
)
from ._storage import RunPaths
from ._values import check_step, metrics_snapshot, normalize_config, normalize_metrics, restore_config
from ._writer import LogStats
from .errors import FlushError, RunNotFoundError

if TYPE_CHECKING:
    from types import TracebackType

    import pandas as pd

_RESERVED = ("_meta", "_wandb")


class MLRun(AsyncMethods):
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
        wandb_stats: what happened to the calls forwarded to wandb (sent, dropped, failed, pending).
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
        sender: _wandb.WandbSender | None = None,
        flush_interval: float = _writer.DEFAULT_FLUSH_INTERVAL,
        max_unflushed: int = _writer.DEFAULT_MAX_UNFLUSHED,
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
        self._pid = os.getpid()
        self._finished = False
        self._sender = sender
        self.flush_interval = flush_interval
        self.max_unflushed = max_unflushed
        self._channel: _channel.Channel | None = None  # what log() buffered, opened by the first log()

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
        return cls.load(
            agreed, base_dir, project_name, durable=durable, lock=lock_choice, lock_timeout=timeout, **logging
        )

    @classmethod
    def _start(cls, *, logging: dict[str, Any], **create: Any) -> MLRun:
        """Create the run here, in this process (see :func:`_create.start_run`)."""
        return cls(**_create.start_run(**create), **logging)

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
            flush_interval, max_unflushed: as for :meth:`create`, for this handle's :meth:`log`.

        Returns:
            A run without a wandb connection (``wandb_run`` is ``None``).

        Raises:
            RunNotFoundError: no such run.
            AmbiguousRunError: ``project_name`` is ``None`` and several projects hold ``run_id``.
            CorruptRunFileError: ``config.toml`` or ``metrics.toml`` cannot be read or parsed, or
                ``metrics.toml`` exists without ``config.toml``.
        """
        _storage.check_name(run_id, "run_id")
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
            durable, lock, lock_timeout, flush_interval, max_unflushed: as for :meth:`load`.

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
        return cls(
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

    # -- logging -------------------------------------------------------------------------------------------

    def add_metrics(self, metrics_dict: Mapping[str, Any], *, step: int | None = None) -> None:
        """Merge metrics into ``metrics.toml`` now, then log them to wandb: for final or occasional values.

        The values are checked before any I/O; the run's lock is held only while ``metrics.toml`` is read,
        merged and atomically replaced.  Once this returns the values are on disk (fsynced when durable) and
        ``self.metrics`` is the merged state just written, other writers' keys included.  What this handle
        buffered with :meth:`log` is written first, so the two keep their order.  A wandb failure is logged
        once and never raised; with ``background_wandb`` the wandb call happens on a background thread and
        this returns without waiting for it.

        Args:
            metrics_dict: metric names to values; nested dicts merge key by key with what is on disk.
            step: passed to ``wandb_run.log(..., step=step)``; a non-negative int.

        Raises:
            TypeError: a key or value TOML cannot hold (the message names its key path); nothing is written.
            ValueError: a value TOML cannot hold (an int beyond 64 bits, invalid text); nothing is written.
            LockTimeoutError: the run's lock was not free within ``lock_timeout``.
            CorruptRunFileError: ``metrics.toml`` is corrupt; it is left as it is, never overwritten.
            FlushError: what :meth:`log` buffered could not be written first.
        """
        check_step(step)
        values = normalize_metrics(metrics_dict)
        self._commit_buffered()
        _storage.merge_metrics(
            self._paths,
            values,
            lock=self.lock,
            lock_timeout=self.lock_timeout,
            durable=self.durable,
            written=self._keep_metrics,
        )
        if not values:
            return  # nothing was written: no history record, nothing for wandb
        record = {"step": step, "time": time.time(), "writer": _history.writer_name(), "metrics": values}
        _history.append(self.run_dir, record, durable=self.durable)
        if self._sender is not None:
            self._sender.log(values, step)

    def update_config(self, config_dict: Mapping[str, Any]) -> None:
        """Merge keys into the run's config (``config.toml``), for hyperparameters known only after ``create``.

        Nested dicts merge key by key with what is on disk; any other value replaces the stored one.  The
        values are checked before any I/O, as for :meth:`create` (``None``, tuples and paths round-trip); the
        merge happens under the run's lock, so handles in other processes may update the config at once.
        ``self.config`` becomes the merged config.  A handle with a live wandb run updates its config too
        (a wandb failure is logged, never raised).

        Args:
            config_dict: keys and values to merge; ``_meta`` and ``_wandb`` are reserved.

        Raises:
            TypeError: a key or value TOML cannot hold (the message names its key path); nothing is written.
            ValueError: a reserved key, or a value TOML cannot hold; nothing is written.
            LockTimeoutError: the run's lock was not free within ``lock_timeout``.
            CorruptRunFileError: ``config.toml`` cannot be parsed; it is left as it is.
        """
        if not isinstance(config_dict, Mapping):
            raise TypeError(f"config must be a mapping, not {type(config_dict).__name__}")
        reserved = [key for key in _RESERVED if key in config_dict]
        if reserved:
            raise ValueError(f"config key {reserved[0]!r} is reserved for ml_manager's own table")
        normalize_config(config_dict)  # every error before any I/O
        config_file = self._paths.config
        merged: dict[str, Any] = {}

        def merge(document: dict[str, Any]) -> dict[str, Any]:
            meta, wandb_info = _storage.split_config(document, config_file)
            config = restore_config(document, meta.get("python_types"))
            stored, python_types = normalize_config(_storage.deep_merge(config, config_dict))
            if python_types:
                meta["python_types"] = python_types
            else:
                meta.pop("python_types", None)
            merged.clear()
            merged.update(restore_config(_storage.copy_document(stored), python_types))
            return {**stored, "_wandb": wandb_info, "_meta": meta}

        document = _storage.update_file(
            self._paths, config_file, merge, lock=self.lock, lock_timeout=self.lock_timeout, durable=self.durable
        )
        self.config = merged
        self.meta = dict(document["_meta"])
        if self.wandb_run is not None and os.getpid() == self._pid:
            # The merged values of the keys given: wandb's update replaces a nested table as a whole.
            _wandb.update_config(self.wandb_run, {key: merged[key] for key in config_dict if key in merged})

    def _keep_metrics(self, document: dict[str, Any]) -> None:
        # Under the run's lock: threads sharing this handle leave it the latest write, not the latest return.
        self.metrics = document

    def log(self, metrics_dict: Mapping[str, Any], *, step: int | None = None) -> None:
        """Log one step's metrics: checked now, written by a background thread within ``flush_interval``.

        Costs the caller about a microsecond: no lock, no disk, no wandb.  This process's writer thread
        appends every buffered record to the run's history in one write, merges the latest value of each key
        into ``metrics.toml`` under the run's lock, and sends the records to wandb, one call per step.  Any
        thread may call it; :meth:`flush`, :meth:`finish` and every ordinary exit of the process write what
        is buffered.

        Example::

            for step, batch in enumerate(loader):
                run.log({"loss": loss.item(), "lr": scheduler.get_last_lr()[0]}, step=step)

        Args:
            metrics_dict: metric names to values, as for :meth:`add_metrics`.
            step: the training step, a non-negative int; recorded in the history and passed to wandb.

        Raises:
            TypeError: a key, value or step that cannot be recorded (the message names its key path);
                nothing of this call is kept.
            ValueError: a value TOML cannot hold; nothing of this call is kept.
            FlushError: an earlier flush of this handle's records failed (raised once; the records, this
                call's included, are kept and retried), or ``max_unflushed`` records are buffered while flushes
                keep failing (this call's record is not kept).
        """
        if step is not None and (type(step) is not int or step < 0):
            check_step(step)
        channel = self._channel
        if channel is None:
            channel = self._open_channel()
        channel.put(step, metrics_snapshot(metrics_dict))

    def flush(self, timeout: float | None = None) -> None:
        """Write everything this process logged to the run with :meth:`log` so far, and wait for it.

        Returns once it is in the history and ``metrics.toml`` (fsynced when durable), and queued for wandb.
        The process's writer thread does the writing and this call waits for it, so an exception that
        interrupts the wait (Ctrl-C, a signal handler's ``sys.exit``) never leaves a write half-done.

        Args:
            timeout: seconds to wait at most; default until the writer is done (its wait for the run's lock
                is bounded by ``lock_timeout``).

        Raises:
            FlushError: something could not be written (naming the file and the cause), or ``timeout``
                passed first; what was not written stays buffered and is retried.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        for channel in _writer.writer.of_run(self.run_dir):
            channel.flush(None if deadline is None else max(0.0, deadline - time.monotonic()))

    @property
    def log_stats(self) -> LogStats:
        """What became of this handle's :meth:`log` records: written, pending, flushes, failures."""
        return self._channel.stats() if self._channel is not None else LogStats()

    def _open_channel(self) -> _channel.Channel:
        with _writer.writer.opening:
            if self._channel is None:
                self._channel = _channel.Channel(
                    self._paths,
                    durable=self.durable,
                    lock=self.lock,
                    lock_timeout=self.lock_timeout,
                    interval=self.flush_interval,
                    limit=self.max_unflushed,
                    sender=self._sender,
                    owner=self,
                )
            return self._channel

    def _commit_buffered(self) -> None:
        channel = self._channel
        if channel is not None and channel.busy():
            channel.flush()

    def history(self) -> pd.DataFrame:
        """Every ``add_metrics`` and ``log`` call of every writer of this run, one row each, oldest first.

        A wide table: ``step`` (``<NA>`` where none was given), ``time`` (UTC), ``writer`` (``rank{n}`` under
        torch.distributed, else ``{host}:{pid}``), then one column per metric, flattened with ``.`` and empty
        where a call did not log it.  What this handle buffered is written first; other processes' records
        appear once their writer flushed them (within their ``flush_interval``).  A record cut short by a
        writer killed mid-append is skipped.
        """
        from ._frame import history_frame

        self._commit_buffered()
        return history_frame([({}, {}, _history.read(self.run_dir))])

    @property
    def wandb_stats(self) -> ForwarderStats:
        """The calls forwarded to wandb so far: sent, dropped, failed, pending."""
        return self._sender.stats if self._sender is not None else ForwarderStats()

    # -- finishing -----------------------------------------------------------------------------------------

    def finish(self, *, timeout: float | None = None) -> None:
        """Finish the run: write what :meth:`log` buffered, record the status, drain the wandb queue, finish wandb.

        Idempotent.  Only the handle that created the run records a status; on a handle from :meth:`load`
        (another process joining the run), or in a process forked from the creator, it only writes what the
        handle buffered, so a worker finishing early cannot mark the whole run finished.

        Args:
            timeout: seconds to wait for the background wandb queue to drain (default ``wandb_drain_timeout``);
                what is still queued then is not sent (the local files have it), is counted in
                :attr:`wandb_stats` as dropped, and is reported in a warning on the ``ml_manager`` logger.

        Raises:
            FlushError: what :meth:`log` buffered could not be written; the run is not marked finished, the
                records stay buffered, and ``finish`` may be called again.
        """
        self._close("finished", timeout)

    @property
    def status(self) -> str | None:
        """``running``, ``finished`` or ``failed`` as last read or written by this handle."""
        status = self.meta.get("status")
        return status if isinstance(status, str) else None

    def _close(self, status: str, timeout: float | None = None) -> None:
        if self._channel is not None:  # every time: a log may have come after an earlier finish
            try:
                self._channel.close()
            except FlushError:
                if status == "finished":
                    raise  # the run is not finished: the records stay buffered, finish() may be called again
                # Failing anyway: the error that is on its way up matters more; the exit hooks retry.
        if self._finished:
            return
        self._finished = True
        if not self._owner or os.getpid() != self._pid:
            return
        try:
            self._record_status(status)
        finally:
            if self._sender is not None:
                self._sender.finish(exit_code=0 if status == "finished" else 1, timeout=timeout)

    def _record_status(self, status: str) -> None:
        """Write ``status`` and the time into ``_meta``: for the handle that speaks for the whole run."""
        finished_at = _create.now()

        def mark(document: dict[str, Any]) -> dict[str, Any]:
            meta = document.setdefault("_meta", {})
            meta["status"] = status
            meta["finished_at"] = finished_at
            return document

        document = _storage.update_file(
            self._paths,
            self._paths.config,
            mark,
            lock=self.lock,
            lock_timeout=self.lock_timeout,
            durable=self.durable,
        )
        self.meta = dict(document["_meta"])

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


RUN_DIR_ENV = "ML_MANAGER_RUN_DIR"


def _attach_pickled(  # noqa: PLR0917 - pickle calls it positionally
    run_dir: str,
    durable: bool,
    lock: LockKind,
    lock_timeout: float,
    flush_interval: float = _writer.DEFAULT_FLUSH_INTERVAL,
    max_unflushed: int = _writer.DEFAULT_MAX_UNFLUSHED,
) -> MLRun:
    return MLRun.attach(
        run_dir,
        durable=durable,
        lock=lock,
        lock_timeout=lock_timeout,
        flush_interval=flush_interval,
        max_unflushed=max_unflushed,
    )
