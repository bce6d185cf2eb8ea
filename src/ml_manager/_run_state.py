"""The state every part of ``MLRun`` shares, declared once for the type checker; ``MLRun.__init__`` sets it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from pathlib import Path

    from . import _channel, _wandb
    from ._locking import LockKind
    from ._storage import RunPaths
    from .run import MLRun

RESERVED = ("_meta", "_wandb")  # top-level config keys: ml_manager's own tables


class RunState:
    """The attributes of a run handle, as ``MLRun.__init__`` in ``run.py`` sets them (see ``MLRun``'s docstring).

    The base of every part of ``MLRun`` (``_run_create``, ``_run_join``, ``_run_log``, ``_run_end``), so that each
    part is type-checked against the same attributes.
    """

    run_id: str
    project_name: str
    run_dir: Path
    config: dict[str, Any]
    metrics: dict[str, Any]
    meta: dict[str, Any]
    wandb_info: dict[str, Any]
    wandb_run: Any | None
    durable: bool
    lock: LockKind
    lock_timeout: float
    flush_interval: float
    max_unflushed: int
    _paths: RunPaths
    _owner: bool
    _pid: int
    _finished: bool
    _sender: _wandb.WandbSender | None
    _channel: _channel.Channel | None


def run_class(cls: type[RunState]) -> type[MLRun]:
    """``cls`` as what it is at run time: ``MLRun`` (or a subclass), which every part is mixed into."""
    return cast("type[MLRun]", cls)
