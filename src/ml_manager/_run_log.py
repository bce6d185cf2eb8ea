"""Logging into a run: ``MLRun.add_metrics``, ``update_config``, ``log``, ``flush``, ``log_stats``, ``history``."""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from . import _channel, _document, _history, _storage, _wandb, _writer
from ._run_state import RESERVED, RunState
from ._values import check_step, metrics_snapshot, normalize_config, normalize_metrics, restore_config
from ._writer import LogStats

if TYPE_CHECKING:
    import pandas as pd


class LogMethods(RunState):
    """Mixed into :class:`~ml_manager.MLRun`: everything that writes metrics or config into a run."""

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
        reserved = [key for key in RESERVED if key in config_dict]
        if reserved:
            raise ValueError(f"config key {reserved[0]!r} is reserved for ml_manager's own table")
        normalize_config(config_dict)  # every error before any I/O
        config_file = self._paths.config
        merged: dict[str, Any] = {}

        def merge(document: dict[str, Any]) -> dict[str, Any]:
            meta, wandb_info = _storage.split_config(document, config_file)
            config = restore_config(document, meta.get("python_types"))
            stored, python_types = normalize_config(_document.deep_merge(config, config_dict))
            if python_types:
                meta["python_types"] = python_types
            else:
                meta.pop("python_types", None)
            merged.clear()
            merged.update(restore_config(_document.copy_document(stored), python_types))
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
