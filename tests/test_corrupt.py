"""Corrupt run files: named in the error, skipped and reported by MLProject, never overwritten."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ml_manager import CorruptRunFileError, MLProject, MLRun, _storage
from ml_manager.errors import MLManagerWarning

Snapshot = Callable[[Path], dict[str, bytes]]


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] + b"\n[unclosed")


def _garbage(path: Path) -> None:
    path.write_bytes(os.urandom(64) + b"\xff\xfe")


def _empty(path: Path) -> None:
    path.write_bytes(b"")


def _directory(path: Path) -> None:
    path.unlink()
    path.mkdir()


def _not_ours(path: Path) -> None:
    path.write_text('title = "someone else\'s TOML"\n')


CORRUPTIONS = {"truncated": _truncate, "garbage": _garbage, "empty": _empty, "directory": _directory}


@pytest.fixture
def runs(base_dir: Path) -> tuple[MLRun, MLRun]:
    made = []
    for accuracy in (0.5, 0.6):
        run = MLRun.create({"lr": 0.1, "model": {"name": "CNN"}}, base_dir, "demo")
        run.add_metrics({"accuracy": accuracy, "epoch": 3})
        run.finish()
        made.append(run)
    return made[0], made[1]


@pytest.mark.parametrize("file", ["config.toml", "metrics.toml"])
@pytest.mark.parametrize("corruption", sorted(CORRUPTIONS))
def test_load_names_the_corrupt_file_and_project_skips_and_reports_it(
    base_dir: Path, runs: tuple[MLRun, MLRun], file: str, corruption: str
) -> None:
    broken, good = runs
    CORRUPTIONS[corruption](broken.run_dir / file)
    with pytest.raises(CorruptRunFileError) as caught:
        MLRun.load(broken.run_id, base_dir)
    assert caught.value.path == str(broken.run_dir / file)
    assert file in str(caught.value)
    with pytest.warns(MLManagerWarning, match=broken.run_id):
        project = MLProject(base_dir)
    assert list(project.df["run_id"]) == [good.run_id]
    assert [e.path for e in project.skipped] == [str(broken.run_dir / file)]


def test_a_config_that_is_not_an_ml_manager_config_is_corrupt(base_dir: Path, runs: tuple[MLRun, MLRun]) -> None:
    _not_ours(runs[0].run_dir / "config.toml")
    with pytest.raises(CorruptRunFileError, match=r"_meta"):
        MLRun.load(runs[0].run_id, base_dir)


def test_metrics_without_config_is_corrupt_not_missing(base_dir: Path, runs: tuple[MLRun, MLRun]) -> None:
    broken, good = runs
    (broken.run_dir / "config.toml").unlink()
    with pytest.raises(CorruptRunFileError, match=r"config\.toml"):
        MLRun.load(broken.run_id, base_dir)
    with pytest.warns(MLManagerWarning, match="missing, though metrics.toml exists"):
        project = MLProject(base_dir)
    assert list(project.df["run_id"]) == [good.run_id]


def test_permission_denied_is_reported_as_corrupt(
    base_dir: Path, runs: tuple[MLRun, MLRun], monkeypatch: pytest.MonkeyPatch
) -> None:
    broken, good = runs
    metrics_file = broken.run_dir / "metrics.toml"
    metrics_file.chmod(0)
    try:
        metrics_file.read_bytes()
    except PermissionError:
        pass  # a real permission error, as an unprivileged user sees it
    else:
        # root reads anything: inject the error the kernel gives everyone else, for this file only.
        def denied(file: Any, *args: Any, **kwargs: Any) -> Any:
            if Path(file) == metrics_file:
                raise PermissionError(13, "Permission denied", str(file))
            return open(file, *args, **kwargs)

        monkeypatch.setattr(_storage, "open", denied, raising=False)
    with pytest.raises(CorruptRunFileError, match="Permission denied") as caught:
        MLRun.load(broken.run_id, base_dir)
    assert caught.value.path == str(metrics_file)
    with pytest.warns(MLManagerWarning, match="Permission denied"):
        project = MLProject(base_dir)
    assert list(project.df["run_id"]) == [good.run_id]


@pytest.mark.parametrize("corruption", ["truncated", "garbage", "empty"])
def test_add_metrics_refuses_to_overwrite_a_corrupt_metrics_file(
    base_dir: Path, runs: tuple[MLRun, MLRun], snapshot: Snapshot, corruption: str
) -> None:
    broken = runs[0]
    writer = MLRun.load(broken.run_id, base_dir)
    CORRUPTIONS[corruption](broken.run_dir / "metrics.toml")
    before = snapshot(broken.run_dir)
    with pytest.raises(CorruptRunFileError, match=r"metrics\.toml"):
        writer.add_metrics({"accuracy": 0.9})
    assert snapshot(broken.run_dir) == before


def test_finish_refuses_to_overwrite_a_corrupt_config(base_dir: Path, snapshot: Snapshot) -> None:
    run = MLRun.create({"lr": 0.1}, base_dir, "demo")
    run.add_metrics({"accuracy": 0.5})  # the lock file exists from here on
    _truncate(run.run_dir / "config.toml")
    before = snapshot(run.run_dir)
    with pytest.raises(CorruptRunFileError, match=r"config\.toml"):
        run.finish()
    assert snapshot(run.run_dir) == before


def test_add_metrics_of_nothing_writes_nothing(base_dir: Path, snapshot: Snapshot) -> None:
    run = MLRun.create({"lr": 0.1}, base_dir, "demo")
    before = snapshot(run.run_dir)
    run.add_metrics({})
    assert snapshot(run.run_dir) == before
    assert MLRun.load(run.run_id, base_dir).metrics == {}
    run.finish()
