"""Many processes and threads logging into one run: no lost updates, no torn reads."""

from __future__ import annotations

import multiprocessing
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from ml_manager import MLProject, MLRun
from ml_manager._storage import read_toml

if TYPE_CHECKING:
    from ml_manager._locking import LockKind

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

SPAWN = multiprocessing.get_context("spawn")
PROCESSES, THREADS, CALLS = 4, 4, 200


def _writer(base_dir: str, run_id: str, name: str, calls: int, barrier: Any) -> None:
    run = MLRun.load(run_id, base_dir)  # takes the lock kind the run recorded
    barrier.wait()
    for i in range(calls):
        run.add_metrics({f"{name}_{i}": i, "last_writer": name})


def _reader(base_dir: str, run_id: str, run_dir: str, stop: Any, results: Any) -> None:
    """Read the run every way a reader can until told to stop; report reads and any failure."""
    reads, failures, not_prefix = 0, [], []
    metrics_file = Path(run_dir) / "metrics.toml"
    while not stop.is_set():
        try:
            if metrics_file.exists():
                seen = tomllib.loads(metrics_file.read_text())
                not_prefix.extend(_gaps(seen))
            MLRun.load(run_id, base_dir)
            MLProject(base_dir)
            reads += 1
        except Exception as exc:  # any failure to read whole files is what this test exists to catch
            failures.append(repr(exc))
    results.put((reads, failures[:5], not_prefix[:5]))


def _gaps(metrics: dict[str, Any]) -> list[str]:
    """Writers log i = 0, 1, 2, ... in order, so a consistent state holds a prefix of each writer's keys."""
    by_writer: dict[str, set[int]] = {}
    for key in metrics:
        if key != "last_writer":
            writer, _, index = key.rpartition("_")
            by_writer.setdefault(writer, set()).add(int(index))
    return [writer for writer, seen in by_writer.items() if seen != set(range(len(seen)))]


@pytest.mark.slow
@pytest.mark.parametrize("lock", ["flock", "soft"])
def test_processes_and_threads_lose_nothing_and_readers_never_see_a_torn_file(base_dir: Path, lock: LockKind) -> None:
    run = MLRun.create({"job": "stress"}, base_dir, "demo", lock=lock)
    barrier = SPAWN.Barrier(PROCESSES + 1)
    stop, results = SPAWN.Event(), SPAWN.Queue()
    reader = SPAWN.Process(target=_reader, args=(str(base_dir), run.run_id, str(run.run_dir), stop, results))
    reader.start()
    writers = [
        SPAWN.Process(target=_writer, args=(str(base_dir), run.run_id, f"p{n}", CALLS, barrier))
        for n in range(PROCESSES)
    ]
    for process in writers:
        process.start()
    barrier.wait(timeout=120)
    threads = [
        threading.Thread(target=lambda n=n: [run.add_metrics({f"t{n}_{i}": i}) for i in range(CALLS)])
        for n in range(THREADS)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for process in writers:
        process.join(timeout=300)
        assert process.exitcode == 0
    stop.set()
    reads, failures, not_prefix = results.get(timeout=120)
    reader.join(timeout=60)

    on_disk = read_toml(run.run_dir / "metrics.toml")
    expected = {
        f"{w}_{i}"
        for w in [f"p{n}" for n in range(PROCESSES)] + [f"t{n}" for n in range(THREADS)]
        for i in range(CALLS)
    }
    missing = expected - set(on_disk)
    assert not missing, f"{len(missing)} of {len(expected)} updates lost, e.g. {sorted(missing)[:5]}"
    assert failures == [], failures
    assert not_prefix == [], not_prefix
    assert reads > 0
    # This handle's view after its last write already held every key it wrote, merged with others'.
    assert {f"t0_{i}" for i in range(CALLS)} <= set(run.metrics)
    # Every writer used the lock the run recorded, and only that one.
    unused = {"flock": "run.soft.lock", "soft": "run.lock"}[lock]
    assert not (run.run_dir / unused).exists()
    run.finish()
