"""Reloading a project skips unchanged runs, and never serves a changed one stale."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import pytest

from ml_manager import MLProject, MLRun, _cache, _storage

if TYPE_CHECKING:
    from pathlib import Path


@pytest.fixture
def parses(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every config.toml the project parses (a thin recording wrapper around the real reader)."""
    seen: list[str] = []
    real = _storage.read_run_files

    def recording(run_dir: str) -> Any:
        seen.append(os.path.basename(run_dir))
        return real(run_dir)

    monkeypatch.setattr(_storage, "read_run_files", recording)
    return seen


def _runs(base_dir: Path, n: int) -> list[MLRun]:
    runs = []
    for i in range(n):
        run = MLRun.create({"i": i}, base_dir, "demo")
        run.add_metrics({"acc": i / 10})
        run.finish()
        runs.append(run)
    return runs


def test_reloading_an_unchanged_project_parses_nothing(
    base_dir: Path, parses: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_cache, "SETTLE_NS", -1)  # as if the files had been written long ago
    _runs(base_dir, 3)
    first = MLProject(base_dir)
    assert len(parses) == 3
    again = first.load_project()
    other = MLProject(base_dir).df  # a new project object on the same directory shares the cache
    assert len(parses) == 3
    assert again.equals(first.df)
    assert other.equals(first.df)
    again.loc[0, "acc"] = -1.0  # the caller's frame is its own: the cache is not touched
    assert MLProject(base_dir).df.loc[0, "acc"] != -1.0


def test_a_run_written_between_two_loads_is_read_again(
    base_dir: Path, parses: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_cache, "SETTLE_NS", -1)
    runs = _runs(base_dir, 3)
    project = MLProject(base_dir)
    MLRun.load(runs[1].run_id, base_dir).add_metrics({"acc": 0.99})
    parses.clear()
    df = project.load_project()
    assert parses == [runs[1].run_id]
    assert list(df["acc"]) == [0.0, 0.99, 0.2]


def test_a_new_and_a_removed_run_show_on_reload(base_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_cache, "SETTLE_NS", -1)
    runs = _runs(base_dir, 2)
    project = MLProject(base_dir)
    for path in runs[0].run_dir.iterdir():
        if path.is_file():
            path.unlink()
    third = _runs(base_dir, 1)[0]
    assert list(project.load_project()["run_id"]) == [runs[1].run_id, third.run_id]


def test_an_in_place_change_within_the_same_timestamp_tick_is_never_served_stale(base_dir: Path) -> None:
    run = _runs(base_dir, 1)[0]
    project = MLProject(base_dir)
    metrics = run.run_dir / "metrics.toml"
    before = os.stat(metrics)
    # Another program rewrites the file in place: same inode, same size, same modification time.
    with open(metrics, "r+b") as handle:
        changed = handle.read().replace(b"0.0", b"0.5")
        handle.seek(0)
        handle.write(changed)
    os.utime(metrics, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = os.stat(metrics)
    assert (after.st_ino, after.st_size, after.st_mtime_ns) == (before.st_ino, before.st_size, before.st_mtime_ns)
    assert list(project.load_project()["acc"]) == [0.5]
