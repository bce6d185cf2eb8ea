"""The write primitive: a failed write leaves the old bytes and no temp file; a good one replaces whole."""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from ml_manager import MLRun
from ml_manager._atomic import atomic_write

Snapshot = Callable[[Path], dict[str, bytes]]


def _temps(directory: Path) -> list[Path]:
    return [p for p in directory.iterdir() if p.name.endswith(".tmp")]


def test_atomic_write_creates_and_replaces(tmp_path: Path) -> None:
    target = tmp_path / "file.toml"
    atomic_write(target, b"one")
    atomic_write(target, b"two", durable=False)
    assert target.read_bytes() == b"two"
    assert _temps(tmp_path) == []


def test_new_files_get_the_usual_permissions(tmp_path: Path) -> None:
    umask = os.umask(0o022)
    try:
        atomic_write(tmp_path / "f", b"x")
    finally:
        os.umask(umask)
    assert (tmp_path / "f").stat().st_mode & 0o777 == 0o644


def _run_with_metrics(base_dir: Path) -> MLRun:
    run = MLRun.create({"lr": 0.1}, base_dir, "demo")
    run.add_metrics({"accuracy": 0.5})
    return run


def test_failing_replace_keeps_previous_metrics_and_leaves_no_temp(
    base_dir: Path, snapshot: Snapshot, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = _run_with_metrics(base_dir)
    before = snapshot(run.run_dir)

    def failing_replace(src: object, dst: object) -> None:
        raise OSError(errno.EXDEV, "Invalid cross-device link", src, None, dst)

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match=r"metrics\.toml"):
        run.add_metrics({"accuracy": 0.9})
    assert snapshot(run.run_dir) == before
    assert _temps(run.run_dir) == []
    monkeypatch.undo()
    run.add_metrics({"accuracy": 0.9})  # the fault is gone: the next call goes through
    assert MLRun.load(run.run_id, base_dir).metrics == {"accuracy": 0.9}


def test_failing_write_keeps_previous_metrics_and_leaves_no_temp(
    base_dir: Path, snapshot: Snapshot, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = _run_with_metrics(base_dir)
    before = snapshot(run.run_dir)
    real_write = os.write

    def disk_full_after_a_few_bytes(fd: int, data: bytes) -> int:
        if real_write(fd, bytes(data[:3])) and len(data) > 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        return 3

    monkeypatch.setattr(os, "write", disk_full_after_a_few_bytes)
    with pytest.raises(OSError, match=r"metrics\.toml") as caught:
        run.add_metrics({"accuracy": 0.9, "padding": "x" * 100})
    assert caught.value.errno == errno.ENOSPC
    monkeypatch.undo()
    assert snapshot(run.run_dir) == before
    assert _temps(run.run_dir) == []
    assert run.metrics == {"accuracy": 0.5}


def test_failing_fsync_keeps_previous_bytes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "f"
    atomic_write(target, b"old")

    def failing_fsync(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(OSError, match="Input/output error"):
        atomic_write(target, b"new")
    monkeypatch.undo()
    assert target.read_bytes() == b"old"
    assert _temps(tmp_path) == []


def test_an_interrupt_mid_write_also_cleans_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "f"
    atomic_write(target, b"old")

    def interrupted(fd: int, data: bytes) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "write", interrupted)
    with pytest.raises(KeyboardInterrupt):
        atomic_write(target, b"new")
    monkeypatch.undo()
    assert target.read_bytes() == b"old"
    assert _temps(tmp_path) == []
