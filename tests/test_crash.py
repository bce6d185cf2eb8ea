"""Writers killed with SIGKILL at every instant of the write path, while a reader reads without pause.

Proves DESIGN's invariants 1, 3 and 4: every acknowledged update is on disk; every read parses and shows a
state that really existed (a prefix of each writer's updates, and never a key from a temp file that was not
renamed into place); a killed writer never leaves the lock held; its temp files are removed by the next writer.
"""

from __future__ import annotations

import multiprocessing
import os
import random
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from ml_manager import MLProject, MLRun
from ml_manager._locking import LOCK_FILES, run_lock
from ml_manager._storage import read_toml

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

SPAWN = multiprocessing.get_context("spawn")
WRITER = Path(__file__).with_name("_crash_writer.py")
PLANNED = ["before-lock", "in-lock", "before-rename", "after-rename", "after-return"]
# Sized for CI; raise ML_MANAGER_CRASH_ROUNDS for a longer soak.
ROUNDS, WRITERS, CALLS = int(os.environ.get("ML_MANAGER_CRASH_ROUNDS", "6")), 4, 40
POISON = "poison_from_a_temp_file"


def _reader(base_dir: str, run_id: str, run_dir: str, stop: Any, results: Any) -> None:
    """Read the run every way a reader can, without pause, until told to stop."""
    reads, failures, not_prefix = 0, [], []
    seen: set[str] = set()
    metrics_file = Path(run_dir) / "metrics.toml"
    while not stop.is_set():
        try:
            raw = tomllib.loads(metrics_file.read_text()) if metrics_file.exists() else {}
            loaded = MLRun.load(run_id, base_dir).metrics
            frame = MLProject(base_dir).df
            for state in (raw, loaded):
                seen.update(state)
                not_prefix.extend(_gaps(state))
            seen.update(c for c in frame.columns if c == POISON)
            reads += 1
        except Exception as exc:  # any failure to read a whole file is what this test exists to catch
            failures.append(repr(exc))
    results.put((reads, failures[:5], not_prefix[:5], sorted(seen)))


def _gaps(metrics: dict[str, Any]) -> list[str]:
    by_writer: dict[str, set[int]] = {}
    for key in metrics:
        writer, _, index = key.rpartition("_")
        if index.isdigit():
            by_writer.setdefault(writer, set()).add(int(index))
    return [writer for writer, seen in by_writer.items() if seen != set(range(len(seen)))]


def _acked(ack_file: Path) -> list[int]:
    # A writer killed while appending leaves at most a partial last line: only whole lines count.
    text = ack_file.read_text() if ack_file.exists() else ""
    return [int(line) for line in text.split("\n")[:-1]]


def _temps(run_dir: Path) -> list[Path]:
    return [p for p in run_dir.iterdir() if p.name.endswith(".tmp")]


def _rounds(
    *,
    rng: random.Random,
    base_dir: Path,
    run: MLRun,
    lock: str,
    tmp_path: Path,
    acks: dict[str, Path],
    writers: list[subprocess.Popen[bytes]],
) -> tuple[int, int]:
    """Run the writer rounds; return how many writers were killed."""
    kills = 0
    for round_ in range(ROUNDS):
        del writers[:]
        for n in range(WRITERS + 1):
            name = f"r{round_}w{n}"
            acks[name] = tmp_path / f"{name}.acks"
            # Writers 0..WRITERS-1 kill themselves at a planned instant; the last one is killed from outside,
            # at a moment nobody chose (unless it finishes first).
            where = PLANNED[(round_ * WRITERS + n) % len(PLANNED)] if n < WRITERS else "never"
            args = [base_dir, run.run_id, name, CALLS, rng.randrange(CALLS), where, acks[name]]
            with (tmp_path / f"{name}.err").open("wb") as stderr:
                writer = subprocess.Popen([sys.executable, str(WRITER), *map(str, args)], stderr=stderr)
            writers.append(writer)
            # Reap each writer the moment it dies, as a launcher does: until then a killed process is a
            # zombie whose pid still looks alive, and a soft lock it held could not be reclaimed.
            threading.Thread(target=writer.wait, daemon=True).start()
        moment = rng.uniform(0.2, 1.5)
        if lock == "flock":
            # Not with the soft lock: a kill in the instant between creating run.soft.lock and writing the
            # holder's pid into it leaves a lock that no one can prove stale (a documented limit of soft
            # locks); the planned kills never land inside filelock's acquire.
            try:
                writers[-1].wait(timeout=moment)
            except subprocess.TimeoutExpired:
                writers[-1].kill()
        for n, writer in enumerate(writers):
            code = writer.wait(timeout=300)
            assert code in (0, -9), (tmp_path / f"r{round_}w{n}.err").read_text()
            assert code == -9 or n == WRITERS, f"r{round_}w{n} was not killed as planned"
            kills += code == -9
        # Nobody holds the lock any more: a fresh writer gets it without waiting.
        with run_lock(run.run_dir / LOCK_FILES[lock], timeout=0, kind=lock):  # type: ignore[index,arg-type]
            pass
        on_disk = read_toml(run.run_dir / "metrics.toml")
        lost = [f"{name}_{i}" for name, file in acks.items() for i in _acked(file) if f"{name}_{i}" not in on_disk]
        assert lost == [], f"acknowledged updates missing after round {round_}: {lost[:5]}"
    return kills


@pytest.mark.slow
@pytest.mark.parametrize("lock", ["flock", "soft"])
def test_sigkilled_writers_lose_nothing_acknowledged_and_readers_never_see_a_torn_file(
    base_dir: Path, tmp_path: Path, lock: str
) -> None:
    rng = random.Random(20261126)
    run = MLRun.create({"job": "crash"}, base_dir, "demo", lock=lock)  # type: ignore[arg-type]
    run.add_metrics({"start_0": 0})
    # A temp file that never became metrics.toml: no reader may ever see its content.
    (run.run_dir / ".metrics.toml.0123456789ab.tmp").write_text(f"{POISON} = 1\n")
    stop, results = SPAWN.Event(), SPAWN.Queue()
    reader = SPAWN.Process(
        target=_reader, args=(str(base_dir), run.run_id, str(run.run_dir), stop, results), daemon=True
    )
    reader.start()
    acks: dict[str, Path] = {}
    writers: list[subprocess.Popen[bytes]] = []
    try:
        kills = _rounds(rng=rng, base_dir=base_dir, run=run, lock=lock, tmp_path=tmp_path, acks=acks, writers=writers)
    finally:
        for writer in writers:
            if writer.poll() is None:
                writer.kill()
        stop.set()
    reads, failures, not_prefix, seen = results.get(timeout=120)
    reader.join(timeout=60)
    assert failures == [], failures
    assert not_prefix == [], not_prefix
    assert reads > 0
    final = read_toml(run.run_dir / "metrics.toml")
    assert POISON not in seen
    assert set(seen) <= set(final), "a reader saw keys that never reached metrics.toml"
    stranded = [Path(note.read_text()) for note in tmp_path.glob("*.stranded")]
    planned = sum(
        PLANNED[(r * WRITERS + n) % len(PLANNED)] == "before-rename" for r in range(ROUNDS) for n in range(WRITERS)
    )
    assert len(stranded) == planned, "the kills between the temp write and the rename did not all happen"
    # The next writer removes what killed writers left behind.
    run.add_metrics({"after_0": 0})
    assert _temps(run.run_dir) == []
    assert not any(path.exists() for path in stranded)
    print(
        f"\ncrash test ({lock}): {ROUNDS} rounds x {WRITERS + 1} writers x {CALLS} calls, {kills} SIGKILLs, "
        f"{sum(len(_acked(f)) for f in acks.values())} acknowledged updates, {reads} reads, lost 0, torn 0",
        file=sys.stderr,
    )
    run.finish()
