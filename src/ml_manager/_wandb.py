"""Everything that talks to wandb.  wandb is imported here only, and only when a run starts.

wandb is best-effort: the local files are the record.  Nothing in this module lets a wandb failure raise into
the caller; failures become one warning or one log record.
"""

from __future__ import annotations

import netrc
import os
import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from . import _log
from ._document import deep_merge
from ._forward import Forwarder, ForwarderStats
from .errors import MLManagerWarning

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

    from ._history import Record

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


BACKGROUND_ENV = "ML_MANAGER_BACKGROUND_WANDB"
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("", "0", "false", "no", "off")


def resolve_background(background: bool | None) -> bool:
    """Whether to send to wandb in the background: ``background``, else ``ML_MANAGER_BACKGROUND_WANDB``.

    Raises:
        ValueError: the environment variable is neither true-ish nor false-ish.
    """
    if background is not None:
        return bool(background)
    raw = os.environ.get(BACKGROUND_ENV, "").strip().lower()
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise ValueError(f"{BACKGROUND_ENV}={raw!r}: use 1/true/yes/on or 0/false/no/off")


def has_credentials() -> bool:
    """Whether wandb could log in without asking: an API key in the environment, netrc, or this session."""
    if os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_IDENTITY_TOKEN_FILE"):
        return True
    from urllib.parse import urlparse

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
        # A disabled run records nothing, so wandb need not ask git (ml_manager records git itself).
        settings=wandb.Settings(disable_git=True) if mode == "disabled" else None,
    )


def update_config(run: Any, values: dict[str, Any]) -> None:
    """Merge ``values`` into a live wandb run's config; a failure is logged once, never raised."""
    try:
        run.config.update(values, allow_val_change=True)
    except Exception:
        _log.warning("wandb config update failed; config.toml holds the values", exc_info=True)


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


class WandbSender:
    """Hands ``add_metrics`` values to a wandb run: directly, or through a background :class:`Forwarder`.

    Either way a failing ``log`` is logged once and counted, never raised.  Only the process that started the
    wandb run talks to it: in a forked child (a DataLoader worker, say) every call is dropped and counted, so
    nothing is sent twice and the child never touches wandb's connection.
    """

    def __init__(self, run: Any, *, background: bool, queue_size: int, drain_timeout: float) -> None:
        self._run = run
        self._pid = os.getpid()
        self._counts = {"sent": 0, "dropped": 0, "failed": 0}
        self._closed = False
        self._reported = False
        self.drain_timeout = drain_timeout
        self._forwarder = (
            Forwarder(
                self._deliver,
                maxsize=queue_size,
                exit_timeout=drain_timeout,
                name=f"ml_manager-wandb-{_attr(run, 'id')}",
            )
            if background
            else None
        )

    def _deliver(self, item: tuple[dict[str, Any], int | None]) -> None:
        values, step = item
        if step is None:
            self._run.log(values)
        else:
            self._run.log(values, step=step)

    def log(self, values: dict[str, Any], step: int | None) -> None:
        """Send (or queue) one ``add_metrics`` call; never raises, never blocks on wandb in background mode."""
        self.log_many([(values, step)])

    def log_many(self, calls: Iterable[tuple[dict[str, Any], int | None]]) -> None:
        """:meth:`log` each of ``calls`` (``run.log``'s records, one call per step), in order."""
        if self._closed or os.getpid() != self._pid:
            self._counts["dropped"] += sum(1 for _ in calls)
            return
        for values, step in calls:
            self._send(values, step)

    def _send(self, values: dict[str, Any], step: int | None) -> None:
        if self._forwarder is not None:
            self._forwarder.submit((values, step))
            return
        try:
            self._deliver((values, step))
        except Exception:
            self._counts["failed"] += 1
            if not self._reported:
                self._reported = True
                _log.warning(
                    "wandb log failed; the local files still hold everything (further failures are counted, "
                    "not reported)",
                    exc_info=True,
                )
        else:
            self._counts["sent"] += 1

    def finish(self, *, exit_code: int, timeout: float | None) -> bool:
        """Drain the queue within ``timeout`` seconds (default: the drain timeout), then finish the wandb run.

        Returns:
            True if every queued call reached wandb before the deadline.
        """
        if self._closed or os.getpid() != self._pid:
            return True
        self._closed = True
        drained = True
        if self._forwarder is not None:
            drained = self._forwarder.close(self.drain_timeout if timeout is None else timeout)
            if not drained:
                _log.warning(
                    "wandb: %s; the deadline passed before the queue drained, the local files hold everything",
                    self.stats,
                )
        try:
            self._run.finish(exit_code=exit_code)
        except Exception:
            _log.warning("wandb finish failed; the local files still hold everything", exc_info=True)
        return drained

    @property
    def stats(self) -> ForwarderStats:
        """sent / dropped / failed / pending, whichever way the calls went."""
        if self._forwarder is None:
            return ForwarderStats(**self._counts)
        queued = self._forwarder.stats
        return ForwarderStats(queued.sent, queued.dropped + self._counts["dropped"], queued.failed, queued.pending)

    @property
    def thread_alive(self) -> bool:
        """Whether the background thread is still running."""
        return self._forwarder is not None and self._forwarder.thread_alive


def one_call_per_step(batch: list[Record]) -> Iterator[tuple[dict[str, Any], int | None]]:
    """One wandb call per step: consecutive records of the same step merged; records without a step alone.

    Merges into the records' own dicts: they were written already, and are dropped after this.
    """
    values: dict[str, Any] | None = None
    current: int | None = None
    for step, _, record in batch:
        if values is not None and step is not None and step == current:
            deep_merge(values, record)
            continue
        if values is not None:
            yield values, current
        values, current = record, step
    if values is not None:
        yield values, current
