"""Finishing a run: ``MLRun.finish``, ``status``, and ``with MLRun.create(...) as run:``."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, cast

from . import _create, _storage
from ._run_state import RunState
from .errors import FlushError

if TYPE_CHECKING:
    from types import TracebackType

    from .run import MLRun


class EndMethods(RunState):
    """Mixed into :class:`~ml_manager.MLRun`: ``finish``, ``status`` and the context manager."""

    def finish(self, *, timeout: float | None = None) -> None:
        """Finish the run: write what :meth:`log` buffered, record the status, drain the wandb queue, finish wandb.

        Idempotent.  Only the handle that created the run records a status; on a handle from :meth:`load`
        (another process joining the run), or in a process forked from the creator, it only writes what the
        handle buffered, so a worker finishing early cannot mark the whole run finished.

        Args:
            timeout: seconds to wait for the background wandb queue to drain (default ``wandb_drain_timeout``);
                what is still queued then is not sent (the local files have it), is counted in
                :attr:`wandb_stats` as dropped, and is reported in a warning on the ``ml_manager`` logger.

        Raises:
            FlushError: what :meth:`log` buffered could not be written; the run is not marked finished, the
                records stay buffered, and ``finish`` may be called again.
        """
        self._close("finished", timeout)

    @property
    def status(self) -> str | None:
        """``running``, ``finished`` or ``failed`` as last read or written by this handle."""
        status = self.meta.get("status")
        return status if isinstance(status, str) else None

    def _close(self, status: str, timeout: float | None = None) -> None:
        if self._channel is not None:  # every time: a log may have come after an earlier finish
            try:
                self._channel.close()
            except FlushError:
                if status == "finished":
                    raise  # the run is not finished: the records stay buffered, finish() may be called again
                # Failing anyway: the error that is on its way up matters more; the exit hooks retry.
        if self._finished:
            return
        self._finished = True
        if not self._owner or os.getpid() != self._pid:
            return
        try:
            self._record_status(status)
        finally:
            if self._sender is not None:
                self._sender.finish(exit_code=0 if status == "finished" else 1, timeout=timeout)

    def _record_status(self, status: str) -> None:
        """Write ``status`` and the time into ``_meta``: for the handle that speaks for the whole run."""
        finished_at = _create.now()

        def mark(document: dict[str, Any]) -> dict[str, Any]:
            meta = document.setdefault("_meta", {})
            meta["status"] = status
            meta["finished_at"] = finished_at
            return document

        document = _storage.update_file(
            self._paths,
            self._paths.config,
            mark,
            lock=self.lock,
            lock_timeout=self.lock_timeout,
            durable=self.durable,
        )
        self.meta = dict(document["_meta"])

    def __enter__(self) -> MLRun:
        return cast("MLRun", self)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._close("finished" if exc_type is None else "failed")
