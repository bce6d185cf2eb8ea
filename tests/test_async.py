"""The async API under asyncio and trio: it never blocks the event loop and loses nothing."""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio
import pytest

from ml_manager import MLRun
from ml_manager._storage import read_toml

if TYPE_CHECKING:
    import threading
    from collections.abc import Callable
    from contextlib import AbstractContextManager
    from pathlib import Path

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def test_many_tasks_logging_into_one_run_lose_nothing(base_dir: Path) -> None:
    run = await MLRun.create_async({"job": "async"}, base_dir, "demo")
    tasks, calls = 40, 10

    async def task(n: int) -> None:
        for i in range(calls):
            await run.add_metrics_async({f"t{n}_{i}": i}, step=i)

    async with anyio.create_task_group() as group:
        for n in range(tasks):
            group.start_soon(task, n)
    await run.finish_async()
    on_disk = read_toml(run.run_dir / "metrics.toml")
    assert set(on_disk) == {f"t{n}_{i}" for n in range(tasks) for i in range(calls)}
    assert (await MLRun.load_async(run.run_id, base_dir)).meta["status"] == "finished"


async def test_tasks_log_without_awaiting_and_flush_async_writes_it_all(base_dir: Path) -> None:
    run = await MLRun.create_async({}, base_dir, "demo", flush_interval=3600)
    tasks, steps = 20, 50

    async def task(n: int) -> None:
        for step in range(steps):
            run.log({f"t{n}": step}, step=step)  # never blocks: no async twin needed
            await anyio.sleep(0)

    async with anyio.create_task_group() as group:
        for n in range(tasks):
            group.start_soon(task, n)
    assert run.log_stats.pending == tasks * steps
    await run.flush_async()
    assert run.log_stats.written == tasks * steps
    assert read_toml(run.run_dir / "metrics.toml") == {f"t{n}": steps - 1 for n in range(tasks)}
    await run.finish_async()


async def test_waiting_for_the_lock_does_not_hold_the_event_loop(
    base_dir: Path, lock_held_by_a_thread: Callable[[Path], AbstractContextManager[threading.Event]]
) -> None:
    run = MLRun.create({}, base_dir, "demo")
    with lock_held_by_a_thread(run.run_dir / "run.lock") as release:
        async with anyio.create_task_group() as group:
            group.start_soon(run.add_metrics_async, {"late": 1})
            # The write is waiting for the lock; this task still runs, and it alone can let the write through.
            # Were the loop blocked, it would never get here and the test would time out.
            for _ in range(10):
                await anyio.sleep(0)
            assert "late" not in run.metrics
            release.set()
    assert run.metrics == {"late": 1}
    run.finish()


async def test_async_context_manager_records_finished_and_failed(base_dir: Path) -> None:
    async with await MLRun.create_async({}, base_dir, "demo") as ok:
        await ok.add_metrics_async({"a": 1})
    assert MLRun.load(ok.run_id, base_dir).meta["status"] == "finished"
    with pytest.raises(RuntimeError, match="diverged"):
        async with await MLRun.create_async({}, base_dir, "demo") as bad:
            raise RuntimeError("diverged")
    assert MLRun.load(bad.run_id, base_dir).meta["status"] == "failed"


async def test_bad_values_raise_in_the_awaiting_task(base_dir: Path) -> None:
    run = await MLRun.create_async({}, base_dir, "demo")
    with pytest.raises(TypeError, match=r"metrics\['x'\]"):
        await run.add_metrics_async({"x": object()})
    await run.finish_async()
