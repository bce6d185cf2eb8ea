"""The async twins of ``MLRun``'s blocking calls, for asyncio and trio (through anyio).

Each runs its blocking twin in a worker thread (``anyio.to_thread``): the event loop keeps running while the
call waits for the run's lock, the disk, or wandb.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any, TypeVar, cast

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from types import TracebackType

    from .run import MLRun

_T = TypeVar("_T")


class AsyncMethods:
    """Mixed into :class:`~ml_manager.MLRun`: ``create_async``, ``add_metrics_async``, ``async with`` and co."""

    @classmethod
    async def create_async(cls, *args: Any, **kwargs: Any) -> MLRun:
        """:meth:`create`, awaited without blocking the event loop (``wandb.init`` can take seconds).

        Example::

            async with await MLRun.create_async(config, "./checkpoints", "demo") as run:
                await run.add_metrics_async({"loss": 0.1}, step=1)
        """
        return await _in_thread(functools.partial(cast("type[MLRun]", cls).create, *args, **kwargs))

    @classmethod
    async def load_async(cls, *args: Any, **kwargs: Any) -> MLRun:
        """:meth:`load`, awaited without blocking the event loop."""
        return await _in_thread(functools.partial(cast("type[MLRun]", cls).load, *args, **kwargs))

    async def add_metrics_async(self, metrics_dict: Mapping[str, Any], *, step: int | None = None) -> None:
        """:meth:`add_metrics`, awaited without blocking the event loop, waiting for the lock included.

        Once it returns the values are on disk, exactly as with :meth:`add_metrics`.  If the awaiting task is
        cancelled, the write already started still completes (it is never left half-done) before the
        cancellation is delivered.
        """
        await _in_thread(functools.partial(_run(self).add_metrics, metrics_dict, step=step))

    async def flush_async(self, timeout: float | None = None) -> None:
        """:meth:`flush`, awaited without blocking the event loop (:meth:`log` itself never blocks)."""
        await _in_thread(functools.partial(_run(self).flush, timeout))

    async def finish_async(self, *, timeout: float | None = None) -> None:
        """:meth:`finish`, awaited without blocking the event loop while the wandb queue drains."""
        await _in_thread(functools.partial(_run(self).finish, timeout=timeout))

    async def __aenter__(self) -> MLRun:
        return _run(self)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await _in_thread(functools.partial(_run(self)._close, "finished" if exc_type is None else "failed"))


def _run(self: AsyncMethods) -> MLRun:
    return cast("MLRun", self)


async def _in_thread(call: Callable[[], _T]) -> _T:
    import anyio.to_thread

    return await anyio.to_thread.run_sync(call)
