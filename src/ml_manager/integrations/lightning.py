"""``MLManagerLogger``: a PyTorch Lightning logger with which every rank of a ``Trainer`` logs into ONE run.

Example::

    from ml_manager.integrations.lightning import MLManagerLogger

    logger = MLManagerLogger("./checkpoints", "my-project", config={"data": "cifar10"})
    trainer = lightning.pytorch.Trainer(logger=logger, strategy="ddp", devices=4)
    trainer.fit(model)

Importing this module imports ``lightning``; for the older ``pytorch_lightning`` package use
:mod:`ml_manager.integrations.pytorch_lightning`.
"""

from __future__ import annotations

from lightning.pytorch.loggers.logger import Logger

from ._lightning import LoggerMixin

__all__ = ["MLManagerLogger"]


class MLManagerLogger(LoggerMixin, Logger):
    """A Lightning ``Logger`` writing every rank's metrics into one ml_manager run.

    * **One run for all ranks**, agreed on while the trainer sets up (rank 0 creates it, with wandb; the
      others join it), under ``ddp``, ``ddp_spawn``, ``ddp_fork`` and ``torchrun`` alike.  The logger pickles
      without its run, so ``ddp_spawn`` works.
    * ``log_hyperparams`` merges into the run's config (``Namespace``, dataclasses and nested dicts are tables;
      values TOML cannot hold are stored as text, named in one warning).
    * ``log_metrics`` goes through :meth:`~ml_manager.MLRun.log` (about a microsecond; written in the
      background) signed with the rank.  Values that are the same on every rank (``sync_dist=True``,
      ``rank_zero_only=True``, the epoch) are written once, by rank 0; per-rank values (``sync_dist=False``,
      ``DeviceStatsMonitor``'s figures) by every rank, and stay apart in :meth:`~ml_manager.MLRun.history`.
    * ``finalize`` writes every rank's records, then rank 0 marks the run ``finished``, or ``failed`` when
      training raised or was interrupted.
    * ``version`` is the run id: ``ModelCheckpoint`` saves to ``base_dir/project_name/run_id/checkpoints``.

    Args:
        base_dir: the root of all projects.
        project_name: the run's project (also the wandb project).
        entity: the wandb entity.
        config: the run's config at creation; the trainer's hyperparameters are merged in.
        run_id: the run's id, or of an existing run to log into again; default a fresh one.
        **create_kwargs: any other option of :meth:`~ml_manager.MLRun.create` (``mode``, ``lock``,
            ``background_wandb``, ``flush_interval``, ...).

    Raises:
        ValueError: a bad ``project_name`` or ``run_id``.
        TypeError: an option ``MLRun.create`` does not take, or a ``config`` that is not a mapping.
    """
