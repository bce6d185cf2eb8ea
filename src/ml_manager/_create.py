"""Making a run on disk (its directory, wandb, ``config.toml``) and finding an existing one by id."""

from __future__ import annotations

import datetime
import os
import string
import sys
from typing import TYPE_CHECKING, Any

from . import _document, _history, _storage, _wandb
from ._git import start_git_info
from ._locking import resolve_lock_kind
from ._storage import RunPaths
from ._values import restore_config
from .errors import AmbiguousRunError, RunNotFoundError

if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path

    from . import _dist
    from ._locking import LockChoice

_ID_ALPHABET = string.ascii_lowercase + string.digits


def new_run_id() -> str:
    """A fresh id in wandb's own shape: 8 characters of ``[a-z0-9]``."""
    import secrets  # imported on first use, like everything only MLRun.create needs

    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(8))


def now() -> datetime.datetime:
    """The time, in UTC."""
    return datetime.datetime.now(datetime.timezone.utc)


def _text(arg: str) -> str:
    # Arguments that were not valid UTF-8 arrive as surrogate escapes, which TOML cannot hold.
    return arg.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _version() -> str:
    from . import __version__

    return __version__


def start_run(
    *,
    config: Mapping[str, Any],
    stored_config: dict[str, Any],
    python_types: list[dict[str, Any]],
    project_dir: Path,
    entity: str | None,
    wandb_mode: _wandb.Mode,
    run_id: str | None,
    durable: bool,
    lock: LockChoice | None,
    lock_timeout: float,
    sender_options: dict[str, Any],
    ranks: _dist.Ranks | None,
) -> dict[str, Any]:
    """Create the run here, in this process: directory, wandb, ``config.toml``.

    Returns:
        The keyword arguments of the ``MLRun`` that owns it.
    """
    project_name = project_dir.name
    created_at = now()
    git_info = start_git_info()  # git runs while wandb starts
    try:
        paths = make_run_dir(project_dir, run_id)
        lock_kind = resolve_lock_kind(lock, run_dir=paths.run_dir)
        wandb_run, wandb_info = _wandb.start_run(
            run_id=paths.run_dir.name,
            project=project_name,
            entity=entity,
            config=dict(config),
            mode=wandb_mode,
            run_dir=paths.run_dir,
        )
    finally:
        git = git_info()
    meta: dict[str, Any] = {
        "format_version": _storage.FORMAT_VERSION,
        "created_at": created_at,
        "status": "running",
        "lock": lock_kind,
        **git,
        "hostname": _history.HOST,
        "pid": os.getpid(),
        "argv": [_text(arg) for arg in sys.argv],
        "python": ".".join(map(str, sys.version_info[:3])),
        "ml_manager": _version(),
    }
    if python_types:
        meta["python_types"] = python_types
    if ranks is not None:
        meta["rank"], meta["world_size"] = ranks.rank, ranks.world_size
    document = {**stored_config, "_wandb": wandb_info, "_meta": meta}
    _storage.write_toml(paths.config, document, durable=durable)
    return {
        "paths": paths,
        "project_name": project_name,
        "config": restore_config(_document.copy_document(stored_config), python_types),
        "metrics": {},
        "meta": meta,
        "wandb_info": wandb_info,
        "wandb_run": wandb_run,
        "durable": durable,
        "lock": lock_kind,
        "lock_timeout": lock_timeout,
        "owner": True,
        "sender": None if wandb_run is None else _wandb.WandbSender(wandb_run, **sender_options),
    }


def make_run_dir(project_dir: Path, run_id: str | None) -> RunPaths:
    """Create the run's directory: ``run_id``'s (which must not exist yet), else a fresh id's."""
    project_dir.mkdir(parents=True, exist_ok=True)
    if run_id is not None:
        (project_dir / run_id).mkdir()
        return RunPaths(project_dir / run_id)
    while True:
        candidate = project_dir / new_run_id()
        try:
            candidate.mkdir()
        except FileExistsError:
            continue
        return RunPaths(candidate)


def find_project(run_id: str, base_dir: Path) -> str:
    """The one project under ``base_dir`` holding run ``run_id``.

    Raises:
        RunNotFoundError: none does.
        AmbiguousRunError: several do.
    """
    try:
        projects = sorted(entry.name for entry in os.scandir(base_dir) if entry.is_dir())
    except FileNotFoundError:
        raise RunNotFoundError(run_id, str(base_dir)) from None
    holders = [name for name in projects if RunPaths(base_dir / name / run_id).has_files()]
    if not holders:
        raise RunNotFoundError(run_id, str(base_dir))
    if len(holders) > 1:
        raise AmbiguousRunError(run_id, holders)
    return holders[0]
