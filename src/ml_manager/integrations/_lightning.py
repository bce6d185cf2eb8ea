"""The Lightning logger, for both package names (``lightning.pytorch`` and the older ``pytorch_lightning``).

What Lightning calls on which rank (2.x): ``experiment`` is touched by every rank while the trainer sets up,
after the process group is up and before any hook logs, so the run is agreed on there; ``log_hyperparams``,
``log_metrics`` and ``finalize`` run on every rank; ``after_save_checkpoint`` on rank 0 only.  Under
``ddp_spawn`` and ``ddp_fork`` the ranks are children of the launching process, which only ever calls
``finalize("failed")`` (when a child raised): the proposed run id, made at construction and inherited or
pickled, tells that process which run to mark.
"""

from __future__ import annotations

import os
import weakref
from typing import TYPE_CHECKING, Any

from ml_manager import _document

from . import _common

if TYPE_CHECKING:
    from argparse import Namespace
    from collections.abc import Mapping

    from ml_manager.run import MLRun


class LoggerMixin:
    """The logger's behaviour; combined with each package's ``Logger`` base in its own module."""

    def __init__(
        self,
        base_dir: str | os.PathLike[str],
        project_name: str,
        *,
        entity: str | None = None,
        config: Mapping[str, Any] | None = None,
        run_id: str | None = None,
        **create_kwargs: Any,
    ) -> None:
        super().__init__()
        self._options = _common.RunOptions(
            base_dir, project_name, entity=entity, config=config, run_id=run_id, create_kwargs=create_kwargs
        )
        self._run: MLRun | None = None
        self._run_pid = 0
        self._rank = 0  # asked of torch.distributed once, with the run: it costs more than a log
        self._pending: dict[str, Any] = {}  # hyperparameters logged before the run could be made
        self._module: weakref.ReferenceType[Any] | None = None
        # Metric name -> written by rank 0 alone (reduced across ranks, or logged with rank_zero_only).
        self._rank_zero_keys: dict[str, bool] = {}

    # -- what Lightning asks of a logger -------------------------------------------------------------------

    @property
    def name(self) -> str:
        """The project: checkpoints go to ``save_dir/name/version/checkpoints``, inside the run."""
        return self._options.project_name

    @property
    def version(self) -> str:
        """The run id (so that ``ModelCheckpoint`` writes into ``base_dir/project_name/run_id/checkpoints``)."""
        if not self._has_run() and _common.rank_group_is_up():
            return self.experiment.run_id  # every rank reaches here together while the trainer sets up
        return self._run.run_id if self._run is not None and self._has_run() else self._options.run_id

    @property
    def save_dir(self) -> str:
        """The base directory."""
        return str(self._options.base_dir)

    @property
    def root_dir(self) -> str:
        """The project's directory."""
        return str(self._options.base_dir / self._options.project_name)

    @property
    def log_dir(self) -> str:
        """The run's directory."""
        return str(self._options.base_dir / self._options.project_name / self.version)

    @property
    def experiment(self) -> MLRun:
        """The run (an :class:`~ml_manager.MLRun`), the same one on every rank.

        Made the first time it is used in a process: under torch.distributed every rank must use it at the same
        point, which the trainer does while it sets up; rank 0 creates the run, the others join it.
        """
        if not self._has_run():
            if _common.group_expected():
                raise RuntimeError(
                    "MLManagerLogger.experiment is made while the trainer sets up, where every rank agrees on one "
                    "run; this process is one of several (WORLD_SIZE is set) and torch.distributed is not up yet. "
                    "Use it from a training hook; hyperparameters logged before fit are kept until then"
                )
            run = self._run = self._options.open(self._pending)
            self._pending = {}
            self._run_pid = os.getpid()
            self._rank = _common.rank()
            return run
        assert self._run is not None
        return self._run

    def log_hyperparams(self, params: dict[str, Any] | Namespace, *args: Any, **kwargs: Any) -> None:
        """Merge the hyperparameters into the run's config (rank 0 writes; every rank has the same).

        Called before training, with no run yet and no process group up, they are kept and become part of the
        config the run is created with, once every rank can agree on it.
        """
        config = _common.storable_config(params)
        if not config:
            return
        if not self._has_run() and not _common.rank_group_is_up():
            self._pending = _document.deep_merge(self._pending, config)
            return
        run = self.experiment
        if self._rank == 0:
            run.update_config(config)

    def _has_run(self) -> bool:
        return self._run is not None and self._run_pid == os.getpid()

    def log_graph(self, model: Any, input_array: Any = None) -> None:
        """Not drawn; the module is kept (weakly) to tell which logged values Lightning reduced across ranks."""
        try:
            self._module = weakref.ref(model)
        except TypeError:
            self._module = None

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        """Log one step's values through :meth:`MLRun.log`, signed with this rank.

        Values every rank holds alike (logged with ``sync_dist=True`` or ``rank_zero_only=True``, and the epoch)
        are written by rank 0 alone; the others (``sync_dist=False``, callbacks' per-device figures) by every
        rank, so that each rank's stay apart in the history.
        """
        run = self.experiment
        if self._rank == 0:
            values = dict(metrics)
        else:
            values = {key: value for key, value in metrics.items() if not self._rank_zero_only(key)}
        if values:
            run.log(values, step=step)

    def save(self) -> None:
        """Nothing to do: the run's background writer commits what was logged within its flush interval."""

    def finalize(self, status: str) -> None:
        """Write what every rank logged, then rank 0 records the run's end (``failed`` unless ``status`` is success).

        On success every rank calls this together: each writes its records, they meet at a barrier, and rank 0
        marks the run finished.  On failure no rank waits for the others (they may be gone).
        """
        if status == "finished":
            # Lightning's SLURM requeue handler, from a signal handler on every rank wherever it is: the job is
            # saved to go on later. Write what was logged; no barrier (it could pair with training's
            # collectives), no status.
            if self._has_run() and self._run is not None:
                self._run.flush()
            return
        failed = status != "success"
        run = self._run if self._has_run() else None
        if run is None:
            # The launching process of ddp_spawn/ddp_fork, told that a rank failed: the ranks made the run
            # under the id proposed here.
            if failed and (self._options.run_dir() / "config.toml").exists():
                run = self._options.join()
                if run.status == "running":
                    run._record_status("failed")
            return
        if failed:
            if self._rank == 0:
                _common.finish(run, "failed")
            else:
                run._close("failed")
            return
        try:
            run.flush()
        finally:
            _common.barrier()  # even after a failed write: the other ranks must not wait for this one
        if self._rank == 0:
            _common.finish(run, "finished")

    def __getstate__(self) -> dict[str, Any]:
        # Pickled into the ranks under ddp_spawn: the options only, never the run (its lock, threads, wandb).
        state = self.__dict__.copy()
        state.update(_run=None, _run_pid=0, _rank=0, _module=None, _rank_zero_keys={})
        return state

    # -- which values are the same on every rank -----------------------------------------------------------

    def _rank_zero_only(self, key: str) -> bool:
        known = self._rank_zero_keys.get(key)
        if known is None:
            known = self._rank_zero_keys[key] = self._same_on_every_rank(key)
        return known

    def _same_on_every_rank(self, key: str) -> bool:  # noqa: PLR0911 - one answer per kind of logged value
        """Whether Lightning reduced ``key`` across ranks, by what ``self.log`` recorded of it.

        Looked up once per key in the trainer's results of the loop running now (where the value being logged
        comes from).  A key not found there (a callback's) or anything unexpected counts as per-rank: written
        by every rank, so nothing is lost.
        """
        if key == "epoch":
            return True
        try:
            module = self._module() if self._module is not None else None
            trainer = getattr(module, "_trainer", None)
            results = getattr(trainer, "_results", None)
            for result in (results or {}).values():
                meta = result.meta
                # With several dataloaders Lightning adds the index to the name (as its own _forked_name does).
                suffix = ""
                if meta.add_dataloader_idx and meta.dataloader_idx is not None:
                    suffix = f"/dataloader_idx_{meta.dataloader_idx}"
                if key == meta.forked_name(False) + suffix and meta.on_epoch:
                    on_step = False
                elif key == meta.forked_name(True) + suffix and meta.on_step:
                    on_step = True
                else:
                    continue
                if meta.sync.rank_zero_only:
                    return True
                if result.is_tensor:
                    return bool(meta.sync.should)
                # A torchmetrics Metric: its epoch value is computed across ranks unless told otherwise.
                metric = result.value
                if on_step:
                    return bool(getattr(metric, "dist_sync_on_step", False))
                return bool(getattr(metric, "sync_on_compute", True))
        except Exception:
            return False
        return False
