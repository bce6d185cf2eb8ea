"""torch.distributed, when the program uses it: which rank we are, and handing the run id to every rank.

torch is never imported here: only a program that already imported it (``"torch" in sys.modules``) can have
initialised a process group, and only then is it asked.
"""

from __future__ import annotations

import sys
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from collections.abc import Callable


class Ranks(NamedTuple):
    """This process's place in a distributed job."""

    rank: int
    world_size: int


# Set where one rank alone creates the run (a framework hook that runs on rank 0 only) and hands its id to the
# others by other means: ``MLRun.create`` then makes the run here, without the collective.
creating_alone: ContextVar[bool] = ContextVar("ml_manager_creating_alone", default=False)


def current() -> Ranks | None:
    """The rank and world size when a torch.distributed process group with more than one rank is up."""
    torch = sys.modules.get("torch")
    if torch is None:
        return None
    try:
        dist: Any = torch.distributed
        if not (dist.is_available() and dist.is_initialized()):
            return None
        ranks = Ranks(int(dist.get_rank()), int(dist.get_world_size()))
    except (AttributeError, RuntimeError):
        return None
    return ranks if ranks.world_size > 1 else None


def agree_on_run(make_run: Callable[[], str]) -> str:
    """Rank 0 calls ``make_run()`` and every rank returns the run id it made (a collective: all ranks call).

    If rank 0 fails, every rank raises, so no rank waits forever for a run that will never exist.

    Raises:
        RuntimeError: on the other ranks, when rank 0 failed (rank 0 re-raises its own error).
    """
    import torch.distributed as dist

    message: list[Any] = [None, None]
    if dist.get_rank() == 0:
        try:
            message = [make_run(), None]
        except BaseException as exc:
            message = [None, f"{type(exc).__name__}: {exc}"]
            dist.broadcast_object_list(message, src=0)
            raise
    dist.broadcast_object_list(message, src=0)
    run_id, error = message
    if error is not None:
        raise RuntimeError(f"rank 0 failed to create the run: {error}")
    return str(run_id)
