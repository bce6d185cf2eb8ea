"""Everything that talks to wandb.  wandb is imported here only, and only when a run starts.

wandb is best-effort: the local files are the record.  Nothing in this module lets a wandb failure raise into
the caller; failures become one warning or one log record.
"""

from __future__ import annotations

import logging
import netrc
import os
import sys
import warnings
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlparse

from .errors import MLManagerWarning

logger = logging.getLogger("ml_manager")

Mode = Literal["online", "offline", "disabled"]
MODES: tuple[Mode, ...] = ("online", "offline", "disabled")
# wandb's older spellings, still accepted by wandb itself.
_ALIASES = {"run": "online", "dryrun": "offline"}
_APP_URL = "https://wandb.ai"


def resolve_mode(mode: str | None) -> Mode:
    """The wandb mode asked for: ``mode``, else ``WANDB_MODE``, else ``online``.

    Raises:
        ValueError: the mode is not one wandb knows.
    """
    source = "mode"
    if mode is None:
        mode = os.environ.get("WANDB_MODE") or "online"
        source = "WANDB_MODE"
    resolved = _ALIASES.get(mode, mode)
    if resolved not in MODES:
        raise ValueError(f"{source}={mode!r} is not a wandb mode; use one of {', '.join(MODES)}")
    return resolved


def has_credentials() -> bool:
    """Whether wandb could log in without asking: an API key in the environment, netrc, or this session."""
    if os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_IDENTITY_TOKEN_FILE"):
        return True
    host = urlparse(os.environ.get("WANDB_BASE_URL") or "https://api.wandb.ai").hostname or "api.wandb.ai"
    netrc_path = Path(os.environ.get("NETRC") or Path.home() / ".netrc")
    try:
        entry = netrc.netrc(netrc_path).authenticators(host)
    except (OSError, netrc.NetrcParseError):
        entry = None
    if entry is not None and entry[2]:
        return True
    return _session_has_key(host)


def _session_has_key(host: str) -> bool:
    # A script may have called wandb.login(key=...) without writing netrc.  That state is wandb's private
    # business, so look only if wandb is already imported and treat any surprise as "no".
    if "wandb" not in sys.modules:
        return False
    try:
        from wandb.sdk.lib import wbauth

        return wbauth.session_credentials(host=f"https://{host}") is not None
    except Exception:
        return False


def start_run(
    *,
    run_id: str,
    project: str,
    entity: str | None,
    config: dict[str, Any],
    mode: Mode,
    run_dir: Path,
) -> tuple[Any | None, dict[str, Any]]:
    """Start the wandb run for a new ml_manager run.

    Online without credentials falls back to offline with one warning rather than prompting; a wandb that
    fails to start falls back to offline, then to no wandb at all, each with a warning.

    Returns:
        The wandb run (``None`` when none could be started) and the ``_wandb`` table for ``config.toml``.
    """
    if mode == "online" and not has_credentials():
        warnings.warn(
            "no wandb credentials found (WANDB_API_KEY or `wandb login`): logging to wandb offline; "
            f"the local record is complete, and `wandb sync {run_dir / 'wandb'}/offline-run-*` uploads it later",
            MLManagerWarning,
            stacklevel=3,
        )
        mode = "offline"
    run = None
    attempts: tuple[Mode, ...] = (mode, "offline") if mode == "online" else (mode,)
    for attempt in attempts:
        try:
            run = _init(run_id=run_id, project=project, entity=entity, config=config, mode=attempt, run_dir=run_dir)
            mode = attempt
            break
        except Exception as exc:
            warnings.warn(
                f"wandb.init failed in {attempt} mode ({type(exc).__name__}: {exc}); the run is still recorded locally",
                MLManagerWarning,
                stacklevel=3,
            )
    table: dict[str, Any] = {"id": run_id, "project": project, "mode": mode if run is not None else "disabled"}
    known_entity = entity or (_attr(run, "entity") if run is not None and mode == "online" else None)
    if known_entity:
        table["entity"] = known_entity
    url = _url(run, table)
    if url:
        table["url"] = url
    return run, table


def _init(*, run_id: str, project: str, entity: str | None, config: dict[str, Any], mode: Mode, run_dir: Path) -> Any:
    import wandb

    return wandb.init(
        id=run_id,
        project=project,
        entity=entity,
        config=config,
        mode=mode,
        # wandb's own files live inside the run directory, beside the files they describe.
        dir=str(run_dir),
        # Several ml_manager runs may be open in one process; never hand back or finish another one.
        reinit="create_new",
    )


def _attr(run: Any, name: str) -> str | None:
    try:
        value = getattr(run, name)
    except Exception:
        return None
    return value if isinstance(value, str) and value else None


def _url(run: Any | None, table: dict[str, Any]) -> str | None:
    if table["mode"] == "disabled":
        return None
    live = _attr(run, "url") if run is not None else None
    if live:
        return live
    return url_for(table)


def url_for(table: dict[str, Any]) -> str | None:
    """The wandb URL of a run from its ``_wandb`` table: the one recorded, else the one it gets once synced.

    ``None`` when wandb was disabled for the run, or when no entity is known (wandb picks the default entity
    only on the server, so the URL cannot be known offline).
    """
    if table.get("mode") == "disabled":
        return None
    url = table.get("url")
    if isinstance(url, str) and url:
        return url
    entity, project, run_id = table.get("entity"), table.get("project"), table.get("id")
    if not (entity and project and run_id):
        return None
    app = os.environ.get("WANDB_APP_URL") or _APP_URL
    return f"{app.rstrip('/')}/{entity}/{project}/runs/{run_id}"


class Reporter:
    """Reports a failing wandb call once per run, then counts the rest silently."""

    def __init__(self) -> None:
        self.failures = 0

    def call(self, what: str, func: Any, *args: Any, **kwargs: Any) -> bool:
        """Call ``func``; on any exception log it (the first time only) and return False."""
        try:
            func(*args, **kwargs)
        except Exception:
            self.failures += 1
            if self.failures == 1:
                logger.warning(
                    "wandb %s failed; the local files still hold everything (further failures are counted, "
                    "not reported)",
                    what,
                    exc_info=True,
                )
            return False
        return True
