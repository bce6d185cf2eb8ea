"""What the framework integrations share: one run for every rank, hyperparameters as TOML, a status at exit."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import enum
import os
import threading
import warnings
from collections.abc import Mapping
from pathlib import Path, PurePath
from typing import Any

from ml_manager import _create, _dist, _document, _wandb
from ml_manager._locking import check_lock_choice, resolve_lock_timeout
from ml_manager._values import normalize_config
from ml_manager.errors import FlushError, MLManagerWarning
from ml_manager.run import MLRun

# The options of MLRun.create that MLRun.load takes too: a rank that joins a run writes as its creator does.
_JOIN_OPTIONS = ("durable", "lock", "lock_timeout", "flush_interval", "max_unflushed")


class RunOptions:
    """Where and how the integration's run is made: what every rank is given, picklable (no lock, no thread)."""

    def __init__(
        self,
        base_dir: str | os.PathLike[str],
        project_name: str,
        *,
        entity: str | None,
        config: Mapping[str, Any] | None,
        run_id: str | None,
        create_kwargs: dict[str, Any],
    ) -> None:
        _document.check_name(project_name, "project_name")
        if run_id is not None:
            _document.check_name(run_id, "run_id")
        unknown = sorted(set(create_kwargs) - _CREATE_OPTIONS)
        if unknown:
            raise TypeError(f"unexpected keyword argument {unknown[0]!r}; MLRun.create takes {sorted(_CREATE_OPTIONS)}")
        # What MLRun.create would refuse, refused now rather than when training starts.
        _wandb.resolve_mode(create_kwargs.get("mode"))
        check_lock_choice(create_kwargs.get("lock"))
        resolve_lock_timeout(create_kwargs.get("lock_timeout"))
        self.base_dir = Path(base_dir)
        self.project_name = project_name
        self.entity = entity
        self.config = storable_config(config or {}, what="config")
        # Proposed now, so that processes forked or spawned from this one agree on it with no collective; under
        # torch.distributed rank 0's proposal is the one every rank takes.
        self.run_id = run_id or _create.new_run_id()
        self.create_kwargs = create_kwargs

    def run_dir(self) -> Path:
        return self.base_dir / self.project_name / self.run_id

    def open(self, config: Mapping[str, Any] | None = None) -> MLRun:
        """ONE run for every rank: a collective under torch.distributed (every rank calls it at the same point).

        The run ``run_id`` names is joined when it exists already (a second ``fit`` of the same logger, a
        resumed run), else created by rank 0 with the constructor's config and ``config``.
        """
        exists = (self.run_dir() / "config.toml").exists()
        if _dist.current() is not None:
            import torch.distributed as dist

            message: list[Any] = [self.run_id, exists]
            dist.broadcast_object_list(message, src=0)
            self.run_id, exists = str(message[0]), bool(message[1])
        if exists:
            run = self.join()
            if config and rank() == 0:
                run.update_config(storable_config(config))  # what this job brings to the run it goes on with
            return run
        merged = _document.deep_merge(_document.copy_document(self.config), storable_config(config or {}))
        run = MLRun.create(
            merged, self.base_dir, self.project_name, self.entity, run_id=self.run_id, **self.create_kwargs
        )
        self.run_id = run.run_id
        return run

    def create_alone(self, config: Mapping[str, Any] | None = None) -> MLRun:
        """The run, made (or joined, when ``run_id`` names one) by this process alone, with no collective: for a
        hook that runs on rank 0 only."""
        if (self.run_dir() / "config.toml").exists():
            return self.join()
        merged = _document.deep_merge(_document.copy_document(self.config), storable_config(config or {}))
        token = _dist.creating_alone.set(True)
        try:
            return MLRun.create(
                merged, self.base_dir, self.project_name, self.entity, run_id=self.run_id, **self.create_kwargs
            )
        finally:
            _dist.creating_alone.reset(token)

    def join(self) -> MLRun:
        """A handle on the existing run ``run_id`` (no wandb), writing as its creator does."""
        options = {key: value for key, value in self.create_kwargs.items() if key in _JOIN_OPTIONS}
        return MLRun.load(self.run_id, self.base_dir, self.project_name, **options)


_CREATE_OPTIONS = frozenset(
    {
        "mode",
        "durable",
        "lock",
        "lock_timeout",
        "background_wandb",
        "wandb_queue_size",
        "wandb_drain_timeout",
        "flush_interval",
        "max_unflushed",
    }
)


def rank() -> int:
    """This process's rank by ``torch.distributed`` (0 without a process group); never the ``RANK`` variable."""
    ranks = _dist.current()
    return 0 if ranks is None else ranks.rank


def rank_group_is_up() -> bool:
    """Whether a torch.distributed process group of more than one rank is up in this process."""
    return _dist.current() is not None


def group_expected() -> bool:
    """Whether this process is one of several a launcher started (``WORLD_SIZE`` > 1: torchrun, Lightning's
    ``ddp``, ``accelerate launch``) while no process group is up yet: before that, no rank can know the run."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1")) > 1 and not rank_group_is_up()
    except ValueError:
        return False


def barrier() -> None:
    """Wait for every rank, when a process group is up."""
    if _dist.current() is not None:
        import torch.distributed as dist

        dist.barrier()


def finish(run: MLRun, status: str) -> None:
    """Record the run's end: the creator finishes it (wandb too); a joined handle, or a creator that already
    finished once (a second training into the same run), writes the status alone."""
    if run._owner and run._pid == os.getpid() and not run._finished:
        run._close(status)
        return
    try:
        run._close(status)  # writes and closes this handle's buffer; records nothing from such a handle
    except FlushError:
        if status == "finished":
            raise  # not finished: the records stay buffered
    run._record_status(status)


def storable_config(params: Any, what: str = "hyperparameters") -> dict[str, Any]:
    """Hyperparameters as a config TOML can hold: ``Namespace``, dataclasses and mappings (nested) as tables.

    A value TOML cannot hold (a module, a function, an object) becomes its ``str``; every such key is named in
    one warning.  ``None`` is kept (the config records it).
    """
    changed: list[str] = []
    if not isinstance(params, (Mapping, argparse.Namespace)) and not (
        dataclasses.is_dataclass(params) and not isinstance(params, type)
    ):
        raise TypeError(f"{what} must be a mapping, Namespace or dataclass, not {type(params).__name__}")
    table = _as_table(params, "", changed)
    if changed:
        warnings.warn(
            f"hyperparameters stored as text, which TOML cannot hold as they are: {', '.join(changed)}",
            MLManagerWarning,
            stacklevel=3,
        )
    return table


def _as_table(params: Any, where: str, changed: list[str]) -> dict[str, Any]:
    if isinstance(params, argparse.Namespace):
        params = vars(params)
    elif dataclasses.is_dataclass(params) and not isinstance(params, type):
        params = {field.name: getattr(params, field.name) for field in dataclasses.fields(params)}
    table: dict[str, Any] = {}
    for key, value in params.items():
        name = key if isinstance(key, str) else str(key)
        here = f"{where}.{name}" if where else name
        if isinstance(value, (Mapping, argparse.Namespace)) or (
            dataclasses.is_dataclass(value) and not isinstance(value, type)
        ):
            table[name] = _as_table(value, here, changed)
            continue
        # An enum (the Trainer's scheduler and optimizer names, say) is stored as its value.
        plain = value.value if isinstance(value, enum.Enum) else value
        table[name] = plain
        if plain is not None and not isinstance(plain, PurePath):
            try:
                normalize_config({name: plain})
            except (TypeError, ValueError):
                changed.append(here)
                table[name] = str(plain)
    return table


class ExitGuard:
    """Runs being trained that must not be left ``running`` when the process exits before training ended.

    A framework that has no hook for a failed training (the Trainer, an accelerate loop) leaves the run open
    when a step raises; the exception (or a ``sys.exit`` it became) then ends the process, and on the way out
    this marks the run ``failed``.  It hooks the exit the background writer hooks, which forked children run
    too.  A process killed by a signal runs no exit hook: ``ml-manager doctor`` reports such a run as
    ``crashed`` (and ``--fix`` marks it so).
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.runs: dict[int, MLRun] = {}
        self.hooked = False

    def watch(self, run: MLRun) -> None:
        """Mark ``run`` failed if the process exits before :meth:`release`."""
        with self.lock:
            self.runs[id(run)] = run
            if not self.hooked:
                self.hooked = True
                import atexit

                register = getattr(threading, "_register_atexit", None)
                if register is not None:
                    with contextlib.suppress(RuntimeError):
                        register(self.settle, False)
                atexit.register(self.settle, True)

    def release(self, run: MLRun) -> None:
        with self.lock:
            self.runs.pop(id(run), None)

    def settle(self, last: bool) -> None:
        """The exit hooks: threading's (before other threads are joined) and atexit's (``last``, after)."""
        import multiprocessing

        if not last and multiprocessing.parent_process() is None and _other_threads_alive():
            # Training may go on in another thread: atexit's turn comes after it ends.  (A multiprocessing
            # child runs no atexit hook: it settles now.)
            return
        with self.lock:
            runs, self.runs = list(self.runs.values()), {}
        for run in runs:
            if run._pid != os.getpid():
                continue  # a handle inherited through fork: the parent answers for it
            try:
                finish(run, "failed")
            except Exception as exc:  # exiting: say it, never raise
                warnings.warn(f"could not mark run {run.run_id} failed: {exc}", MLManagerWarning, stacklevel=1)


def _other_threads_alive() -> bool:
    main = threading.main_thread()
    return any(t.is_alive() and not t.daemon for t in threading.enumerate() if t is not main)


exit_guard = ExitGuard()


def _after_fork_in_child() -> None:
    exit_guard.lock = threading.Lock()
    exit_guard.runs = {}


os.register_at_fork(after_in_child=_after_fork_in_child)
