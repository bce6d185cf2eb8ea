"""``MLManagerCallback``: a Hugging Face ``Trainer`` callback with which every rank logs into ONE run.

Example::

    from ml_manager.integrations.transformers import MLManagerCallback

    trainer = Trainer(model, args, train_dataset=data, callbacks=[MLManagerCallback("./checkpoints", "my-project")])
    trainer.train()

It needs no ``report_to`` entry (the Trainer only accepts its own names there): pass it in ``callbacks``.
Importing this module imports ``transformers``.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from transformers import TrainerCallback

from . import _common

if TYPE_CHECKING:
    from transformers import TrainerControl, TrainerState, TrainingArguments

    from ml_manager.run import MLRun

__all__ = ["MLManagerCallback"]

# The TrainingArguments recorded in the run's config: what decides the result, not where files go.
_ARGUMENTS = (
    "learning_rate",
    "lr_scheduler_type",
    "warmup_steps",
    "warmup_ratio",
    "weight_decay",
    "optim",
    "adam_beta1",
    "adam_beta2",
    "adam_epsilon",
    "max_grad_norm",
    "num_train_epochs",
    "max_steps",
    "per_device_train_batch_size",
    "per_device_eval_batch_size",
    "gradient_accumulation_steps",
    "train_batch_size",
    "world_size",
    "seed",
    "data_seed",
    "fp16",
    "bf16",
    "label_smoothing_factor",
)
# The Trainer gathers what it logs across ranks (losses, learning rate, gradient norm, evaluation metrics), so
# those are the same on every rank; its timings are each rank's own.
_PER_RANK_SUFFIXES = ("_runtime", "_per_second", "_time")
_PER_RANK_PART = "_mem_"  # the memory tracker's figures (skip_memory_metrics=False), each process's own


class MLManagerCallback(TrainerCallback):
    """A ``TrainerCallback`` writing the Trainer's logs, from every rank, into one ml_manager run.

    * ``on_train_begin`` (every rank, together): ONE run for all ranks (rank 0 creates it, with wandb; the
      others join; ``run_id=`` of an existing run goes on with it), its config the ``TrainingArguments`` that
      decide the result (learning rate, batch sizes, epochs, seed, ...) and the model's config under
      ``model``.  With ``save_in_run`` the Trainer's ``output_dir`` becomes ``run_dir/checkpoints``, so
      checkpoints (and ``trainer.save_model()``) land in the run; with ``run_id=`` of an existing run it does
      so when the Trainer is made, so that ``resume_from_checkpoint=True`` finds the run's last checkpoint.
    * ``on_log`` / ``on_evaluate``: the values with ``step=state.global_step`` through
      :meth:`~ml_manager.MLRun.log`.  Values the Trainer gathered across ranks (loss, learning rate, gradient
      norm, evaluation metrics) are written once, by rank 0; each rank's timings (``*_runtime``,
      ``*_per_second``, ``*_time``) and memory figures by every rank, apart in the history.
    * ``on_save``: the checkpoint's path as ``checkpoint`` at that step (rank 0).
    * ``on_train_end``: every rank writes its records, then rank 0 marks the run finished.  A training that
      raises never reaches it: the run is then marked ``failed`` when the process exits.

    Args:
        base_dir: the root of all projects.
        project_name: the run's project (also the wandb project).
        entity: the wandb entity.
        config: more config for the run (merged over the Trainer's).
        run_id: the run's id, or of an existing run to log into again; default a fresh one.
        save_in_run: point the Trainer's ``output_dir`` into the run (default) or leave it as it is.
        **create_kwargs: any other option of :meth:`~ml_manager.MLRun.create`.

    Raises:
        ValueError: a bad ``project_name`` or ``run_id``.
        TypeError: an option ``MLRun.create`` does not take, or a ``config`` that is not a mapping.
    """

    def __init__(
        self,
        base_dir: str | os.PathLike[str],
        project_name: str,
        *,
        entity: str | None = None,
        config: dict[str, Any] | None = None,
        run_id: str | None = None,
        save_in_run: bool = True,
        **create_kwargs: Any,
    ) -> None:
        self._options = _common.RunOptions(
            base_dir, project_name, entity=entity, config=None, run_id=run_id, create_kwargs=create_kwargs
        )
        self._extra_config = _common.storable_config(config or {}, what="config")
        self._resuming = run_id is not None
        self.save_in_run = save_in_run
        self._run: MLRun | None = None
        self._run_pid = 0
        self._logged: tuple[int, frozenset[str]] = (-1, frozenset())

    @property
    def run(self) -> MLRun | None:
        """The run, once training began in this process; ``None`` before."""
        return self._run if self._run_pid == os.getpid() else None

    def on_init_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        """Resuming an existing run: point the Trainer's ``output_dir`` at the run's checkpoints."""
        # Going on with an existing run: its checkpoints are where the Trainer must look for one to resume from,
        # which it does before training begins.  (No collective here: a Trainer may be made on one rank alone.)
        if self.save_in_run and self._resuming and (self._options.run_dir() / "config.toml").exists():
            args.output_dir = str(self._options.run_dir() / "checkpoints")

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        """Every rank: agree on the run (rank 0 creates it with the arguments and the model's config)."""
        run = self.run
        if run is None:  # every rank begins training together: the run is agreed on here
            config = {name: getattr(args, name) for name in _ARGUMENTS if hasattr(args, name)}
            model_config = getattr(kwargs.get("model"), "config", None)
            if model_config is not None and hasattr(model_config, "to_dict"):
                config["model"] = model_config.to_dict()
            run = self._run = self._options.open({**config, **self._extra_config})
            self._run_pid = os.getpid()
        if self.save_in_run:
            args.output_dir = str(run.run_dir / "checkpoints")
        if _common.rank() == 0:
            _common.exit_guard.watch(run)  # training that never reaches on_train_end failed

    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        logs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """Write the Trainer's logged values at its global step (gathered ones by rank 0, timings by every rank)."""
        if logs:
            self._write(logs, state.global_step)
            self._logged = (state.global_step, frozenset(logs))

    def on_evaluate(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        metrics: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """Write the evaluation's metrics that ``on_log`` did not already write."""
        # The Trainer hands the evaluation's metrics to on_log first: write only what that did not.
        step, keys = self._logged
        fresh = {k: v for k, v in (metrics or {}).items() if step != state.global_step or k not in keys}
        if fresh:
            self._write(fresh, state.global_step)

    def on_save(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        """Rank 0: record the checkpoint's path in the history, at its step."""
        run = self.run
        if run is not None and _common.rank() == 0:
            path = os.path.join(str(args.output_dir), f"checkpoint-{state.global_step}")
            run.log({"checkpoint": path}, step=state.global_step)

    def on_train_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        """Every rank: flush its records and wait for the others; rank 0 then marks the run finished."""
        run = self.run
        if run is None:
            return
        try:
            run.flush()
        finally:
            _common.barrier()  # even after a failed write: the other ranks must not wait for this one
        if _common.rank() == 0:
            _common.finish(run, "finished")
            _common.exit_guard.release(run)

    def _write(self, logs: dict[str, Any], step: int) -> None:
        run = self.run
        if run is None:
            return  # logged before training began (a lone evaluate()): no run yet
        everything = _common.rank() == 0
        values = {}
        for key, value in logs.items():
            if not (everything or key.endswith(_PER_RANK_SUFFIXES) or _PER_RANK_PART in key):
                continue
            if hasattr(value, "item") and callable(value.item):  # a tensor or numpy scalar
                try:
                    value = value.item()  # noqa: PLW2901
                except (ValueError, RuntimeError):
                    continue  # more than one element: not one value
            if isinstance(value, (int, float, str)):
                values[key] = value
        if values:
            run.log(values, step=step)
