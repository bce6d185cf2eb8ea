"""Every I/O step of the write path failing, in a real child process, and a real full disk.

Each time: the caller gets a clear exception (what failed, which file), metrics.toml keeps its previous bytes,
no temp file remains, and the next call succeeds once the fault is gone.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from ml_manager import MLRun
from ml_manager._locking import run_lock
from ml_manager._storage import read_toml

if TYPE_CHECKING:
    import contextlib
    from collections.abc import Callable, Iterator

CHILD = Path(__file__).with_name("_fault_child.py")


def _child(base_dir: Path, run_id: str, fault: str, **env: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, str(CHILD), str(base_dir), run_id, fault],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def _temps(directory: Path) -> list[str]:
    return [p.name for p in directory.iterdir() if p.name.endswith(".tmp")]


@pytest.fixture
def run(base_dir: Path) -> Iterator[MLRun]:
    run = MLRun.create({"lr": 0.1}, base_dir, "demo")
    run.add_metrics({"accuracy": 0.5})
    yield run
    run.finish()


@pytest.mark.parametrize(
    ("fault", "err", "step"),
    [
        ("write-enospc", errno.ENOSPC, "while writing"),
        ("fsync-eio", errno.EIO, "while syncing (fsync)"),
        ("replace-eacces", errno.EACCES, "while replacing (os.replace)"),
        ("rlimit-fsize", errno.EFBIG, "while writing"),
    ],
)
def test_a_failing_io_step_names_step_and_file_and_changes_nothing(
    base_dir: Path, run: MLRun, fault: str, err: int, step: str
) -> None:
    metrics_file = run.run_dir / "metrics.toml"
    before = metrics_file.read_bytes()
    seen = _child(base_dir, run.run_id, fault)
    assert "OSError" in seen["classes"]
    assert seen["errno"] == err
    assert seen["filename"] == str(metrics_file)
    assert step in seen["message"]
    assert "metrics.toml" in seen["message"]
    assert metrics_file.read_bytes() == before
    assert _temps(run.run_dir) == []
    assert _child(base_dir, run.run_id, "none") == {"ok": True}
    assert read_toml(metrics_file)["accuracy"] == 0.99


def test_a_lock_that_times_out_names_the_lock_file_and_changes_nothing(base_dir: Path, run: MLRun) -> None:
    metrics_file = run.run_dir / "metrics.toml"
    before = metrics_file.read_bytes()
    with run_lock(run.run_dir / "run.lock", timeout=10):
        seen = _child(base_dir, run.run_id, "none", FAULT_LOCK_TIMEOUT="0.3")
    assert {"LockTimeoutError", "TimeoutError", "MLManagerError"} <= set(seen["classes"])
    assert seen["filename"] == str(run.run_dir / "run.lock")
    assert "run.lock" in seen["message"]
    assert metrics_file.read_bytes() == before
    assert _temps(run.run_dir) == []
    assert _child(base_dir, run.run_id, "none") == {"ok": True}


@pytest.mark.slow
def test_a_really_full_disk_changes_nothing_and_the_run_recovers(
    tmp_path: Path,
    small_tmpfs: Callable[[Path, str], contextlib.AbstractContextManager[Path]],
    fill_disk: Callable[[Path], Path],
) -> None:
    with small_tmpfs(tmp_path / "disk", "512k") as disk:
        run = MLRun.create({"lr": 0.1}, disk, "demo", mode="disabled")
        run.add_metrics({"accuracy": 0.5})
        metrics_file = run.run_dir / "metrics.toml"
        before = metrics_file.read_bytes()
        filler = fill_disk(disk)
        with pytest.raises(OSError, match=r"metrics\.toml") as caught:
            run.add_metrics({"accuracy": 0.9, "padding": "x" * 8192})
        assert caught.value.errno == errno.ENOSPC
        assert metrics_file.read_bytes() == before
        assert _temps(run.run_dir) == []
        filler.unlink()
        run.add_metrics({"accuracy": 0.9, "padding": "x" * 8192})
        assert MLRun.load(run.run_id, disk).metrics["accuracy"] == 0.9
        run.finish()
