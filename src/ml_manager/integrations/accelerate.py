"""``MLManagerTracker``: an accelerate tracker whose run every rank can log into.

Example::

    from ml_manager.integrations.accelerate import MLManagerTracker

    tracker = MLManagerTracker("./checkpoints", "my-project")
    accelerator = Accelerator(log_with=[tracker])
    accelerator.init_trackers("my-project", config={"lr": 1e-3})
    ...
    accelerator.log({"loss": loss.item()}, step=step)           # the main process (accelerate's rule)
    tracker.log({"rank_loss": local_loss.item()}, step=step)    # every rank: each signs its records
    ...
    tracker.run.flush()                                          # every rank's records on disk,
    accelerator.wait_for_everyone()                              # before the main process
    accelerator.end_training()                                   # marks the run finished

Importing this module imports ``accelerate``.
"""

from __future__ import annotations

import itertools
import os
from typing import TYPE_CHECKING, Any

from accelerate.tracking import GeneralTracker

from . import _common

if TYPE_CHECKING:
    from collections.abc import Mapping

    from ml_manager.run import MLRun

__all__ = ["MLManagerTracker"]

# The nth tracker a process makes for a project is the nth of every rank (they run the same program): its key
# in the process group's store, where the main process leaves the run's id (or why it has none) for the others.
_made: dict[str, itertools.count[int]] = {}
_FAILED = "\0"  # no run id holds a NUL


class MLManagerTracker(GeneralTracker):
    """An accelerate ``GeneralTracker`` writing into one ml_manager run, from the main process and any rank.

    accelerate calls a tracker on the main process only (``init_trackers``, ``log`` and ``end_training``):
    there it creates the run (with wandb) in ``start``, merges ``init_trackers``' config into the run's config
    and logs through :meth:`~ml_manager.MLRun.log`.  Any other rank may call :meth:`log` (or use :attr:`run`)
    directly on its own tracker: it joins the same run, whose id the main process leaves in the process
    group's store, and signs its records with its rank.  ``end_training`` marks the run finished (flush every
    rank and ``wait_for_everyone()`` first: accelerate calls no tracker of another rank at the end); a loop
    whose process exits without ``end_training`` (a step raised) leaves it ``failed``.

    Args:
        base_dir: the root of all projects.
        project_name: the run's project (also the wandb project).  ``init_trackers``' project name is not
            used: a tracker instance is already set up.
        entity: the wandb entity.
        config: the run's config at creation; ``init_trackers``' config is merged in.
        run_id: the run's id, or of an existing run to log into again; default a fresh one.
        **create_kwargs: any other option of :meth:`~ml_manager.MLRun.create`.

    Raises:
        ValueError: a bad ``project_name`` or ``run_id``.
        TypeError: an option ``MLRun.create`` does not take, or a ``config`` that is not a mapping.
    """

    name = "ml_manager"
    requires_logging_directory = False
    # The Accelerator decides which of its calls reach a tracker (the main process's); calls made on a tracker
    # directly work on every rank.
    main_process_only = False

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
        self._key = f"ml_manager/{project_name}/{next(_made.setdefault(project_name, itertools.count()))}"
        self._run: MLRun | None = None
        self._run_pid = 0

    @property
    def tracker(self) -> MLRun:
        """The run (what accelerate's ``get_tracker("ml_manager", unwrap=True)`` returns)."""
        return self.run

    @property
    def run(self) -> MLRun:
        """The run: created by the main process, joined by any other rank the first time it is used there.

        Raises:
            RuntimeError: on a rank other than the main one, when no process group's store is there to learn
                the run's id from, or the main process did not create the run within the store's timeout.
        """
        if self._run is None or self._run_pid != os.getpid():
            self._run = self._open()
            self._run_pid = os.getpid()
        return self._run

    def _open(self) -> MLRun:
        if _common.group_expected():
            raise RuntimeError(
                "MLManagerTracker is used before torch.distributed is initialised (WORLD_SIZE is set): make the "
                "Accelerator first, so that every rank can find the main process's run"
            )
        store = _store()
        if _common.rank() == 0:
            try:
                run = self._options.create_alone()
            except BaseException as exc:
                if store is not None:  # the other ranks raise at once instead of waiting for the store's timeout
                    store.set(self._key, f"{_FAILED}{type(exc).__name__}: {exc}")
                raise
            _common.exit_guard.watch(run)
            if store is not None:
                store.set(self._key, run.run_id)
            return run
        if store is None:
            raise RuntimeError("no torch.distributed store to learn the run's id from; pass run_id= on every rank")
        answer = bytes(store.get(self._key)).decode()  # waits for the main process
        if answer.startswith(_FAILED):
            raise RuntimeError(f"the main process failed to create the run: {answer.removeprefix(_FAILED)}")
        self._options.run_id = answer
        return self._options.join()

    def start(self) -> None:
        """Create the run (``init_trackers`` calls this on the main process)."""
        _ = self.run

    def store_init_configuration(self, values: dict[str, Any]) -> None:
        """Merge ``init_trackers``' config into the run's config (values TOML cannot hold become text)."""
        config = _common.storable_config(values)
        if config:
            self.run.update_config(config)

    def log(self, values: dict[str, Any], step: int | None = None, **kwargs: Any) -> None:
        """Log one step's values through :meth:`MLRun.log`, signed with this process's rank."""
        self.run.log(values, step=step)

    def finish(self) -> None:
        """Write what this process logged; on the main process, mark the run finished (``end_training``)."""
        run = self._run if self._run_pid == os.getpid() else None
        if run is None:
            return
        if _common.rank() == 0:
            _common.finish(run, "finished")
            _common.exit_guard.release(run)
        else:
            run.flush()


def _store() -> Any:
    """The default process group's store, when a process group of more than one rank is up."""
    if not _common.rank_group_is_up():
        return None
    from torch.distributed import distributed_c10d

    return distributed_c10d._get_default_store()
