"""``MLRun``: one experiment run, its local files and its wandb run.

``MLRun`` is put together from one part per concern, each a private module:

* ``_run_create.py``: :meth:`MLRun.create`, including the ranks' agreement on one run under torch.distributed;
* ``_run_join.py``: :meth:`MLRun.load`, :meth:`MLRun.attach`, :meth:`MLRun.export_env` and pickling;
* ``_run_log.py``: :meth:`MLRun.add_metrics`, ``update_config``, ``log``, ``flush``, ``log_stats``, ``history``;
* ``_run_end.py``: :meth:`MLRun.finish`, ``status`` and the context manager;
* ``_async.py``: the async twins (``create_async``, ``add_metrics_async``, ``async with``...);
* ``_run_state.py``: the attributes every part uses, which ``MLRun.__init__`` below sets.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from . import _channel, _wandb, _writer
from ._async import AsyncMethods
from ._forward import ForwarderStats
from ._run_create import CreateMethods
from ._run_end import EndMethods
from ._run_join import RUN_DIR_ENV, JoinMethods  # noqa: F401 - RUN_DIR_ENV stays importable from here
from ._run_log import LogMethods

if TYPE_CHECKING:
    from ._locking import LockKind
    from ._storage import RunPaths


class MLRun(CreateMethods, JoinMethods, LogMethods, EndMethods, AsyncMethods):
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

    @property
    def wandb_stats(self) -> ForwarderStats:
        """The calls forwarded to wandb so far: sent, dropped, failed, pending."""
        return self._sender.stats if self._sender is not None else ForwarderStats()

    def get_wandb_url(self) -> str | None:
        """The run's wandb URL.

        wandb's own URL when it has one; else, for an offline run with a known entity, the URL the run will
        have once synced (``https://wandb.ai/{entity}/{project}/runs/{run_id}``); else ``None`` (wandb
        disabled, or offline with no entity given).
        """
        return _wandb.url_for(self.wandb_info)

    def __repr__(self) -> str:
        return f"MLRun(run_id={self.run_id!r}, project_name={self.project_name!r}, run_dir={str(self.run_dir)!r})"


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
