"""Hermetic tests: every test gets its own directories and a wandb that cannot reach the network."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import threading
from typing import TYPE_CHECKING

import pytest

from _nodes import require_cluster, start_cluster
from ml_manager._locking import run_lock

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

    from _nodes import Cluster


@pytest.fixture(autouse=True)
def _hermetic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    home = tmp_path / "home"
    home.mkdir()
    for name in (
        "WANDB_API_KEY",
        "WANDB_IDENTITY_TOKEN_FILE",
        "WANDB_BASE_URL",
        "ML_MANAGER_LOCK_TIMEOUT",
        "ML_MANAGER_LOCK",
        "ML_MANAGER_LOCK_LEASE",
        "ML_MANAGER_BACKGROUND_WANDB",
        "ML_MANAGER_FLUSH_INTERVAL",
        "ML_MANAGER_MAX_UNFLUSHED",
        "ML_MANAGER_CACHE_DIR",
        "ML_MANAGER_NO_CACHE",
        "XDG_CACHE_HOME",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(home))  # the project cache goes to home/.cache/ml_manager
    monkeypatch.setenv("NETRC", str(home / ".netrc"))
    # Disabled unless a test asks for offline: wandb stays in-process and fast.
    monkeypatch.setenv("WANDB_MODE", "disabled")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb-dir"))
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(home / ".config" / "wandb"))
    monkeypatch.setenv("WANDB_CACHE_DIR", str(home / ".cache" / "wandb"))
    monkeypatch.setenv("WANDB_DATA_DIR", str(home / ".local" / "wandb"))
    return


@pytest.fixture(autouse=True)
def _no_thread_left_behind() -> Iterator[None]:
    """Every background thread the library starts must have ended when the test ends."""
    yield
    left = [t.name for t in threading.enumerate() if t.name.startswith("ml_manager") and t.is_alive()]
    assert left == [], f"threads left running: {left}"


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    """Two simulated machines, node-a and node-b, sharing one directory over sshfs (see ``_nodes``).

    Skips where this machine cannot make them (naming why), unless ``ML_MANAGER_REQUIRE_NODES`` is set, as CI
    sets it: there it fails.
    """
    require_cluster()
    with start_cluster(tmp_path) as started:
        yield started


@pytest.fixture
def base_dir(tmp_path: Path) -> Path:
    """An empty base directory for runs."""
    path = tmp_path / "checkpoints"
    path.mkdir()
    return path


@contextlib.contextmanager
def _lock_held_by_a_thread(lock_file: Path) -> Iterator[threading.Event]:
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with run_lock(lock_file, timeout=30):
            held.set()
            release.wait(60)

    thread = threading.Thread(target=hold)
    thread.start()
    try:
        assert held.wait(60)
        yield release
    finally:
        release.set()
        thread.join()


@pytest.fixture
def lock_held_by_a_thread() -> Callable[[Path], contextlib.AbstractContextManager[threading.Event]]:
    """Hold a run lock on another thread for the block; set the yielded event to release it earlier."""
    return _lock_held_by_a_thread


def _in_fork(child: Callable[[], str]) -> str:
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.write(write_end, child().encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end) as pipe:
        report = pipe.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    return report


@pytest.fixture
def in_fork() -> Callable[[Callable[[], str]], str]:
    """Run a function in a forked child; return what it returned (a report string) once the child exited 0."""
    return _in_fork


def _snapshot(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


@pytest.fixture
def snapshot() -> Callable[[Path], dict[str, bytes]]:
    """Every file under a directory with its bytes, to prove that nothing changed."""
    return _snapshot


@contextlib.contextmanager
def _small_tmpfs(where: Path, size: str) -> Iterator[Path]:
    where.mkdir()
    if shutil.which("mount") is None:
        pytest.skip("no mount command on this machine")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip() or done.returncode}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


@pytest.fixture
def small_tmpfs() -> Callable[[Path, str], contextlib.AbstractContextManager[Path]]:
    """Mount a tmpfs of the given size (a real disk that fills up) for the block; skips where mounting fails."""
    return _small_tmpfs


def _fill_disk(directory: Path) -> Path:
    """Fill the filesystem: write until the kernel says ENOSPC; returns the file to remove to free it."""
    filler = directory / "filler.bin"
    with filler.open("wb", buffering=0) as handle:
        chunk = b"\0" * 4096
        with contextlib.suppress(OSError):
            while True:
                handle.write(chunk)
    return filler


@pytest.fixture
def fill_disk() -> Callable[[Path], Path]:
    """Fill the filesystem holding a directory (a small tmpfs, say) to the last byte."""
    return _fill_disk
