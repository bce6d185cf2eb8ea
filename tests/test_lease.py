"""The soft lock on one machine: dead holders, foreign holders and their lease, the fence, the choice of kind.

Across machines (two sshfs mounts of one export) see ``test_multinode.py``.
"""

from __future__ import annotations

import errno
import logging
import os
import subprocess
import sys
from typing import TYPE_CHECKING

import pytest

from ml_manager import LockTimeoutError, MLProject, MLRun, _fs, _lease
from ml_manager._locking import resolve_lock_kind, run_lock
from ml_manager._storage import RunPaths, merge_metrics, read_toml, update_file

if TYPE_CHECKING:
    from pathlib import Path
    from typing import Any

FOREIGN = b"ml_manager lock\ntoken=feed\nhost=node-b\npid=4242\nstart=1\nmachine=another-machine/pid:[1]\n"

_HOLD = """
import sys
from pathlib import Path
from ml_manager._locking import run_lock
with run_lock(Path(sys.argv[1]), 10, "soft"):
    print("held", flush=True)
    sys.stdin.read()
"""


def test_a_holder_killed_on_this_machine_is_replaced_at_once(
    base_dir: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ML_MANAGER_LOCK_LEASE", "3600")  # only the pid check can free it in time
    run = MLRun.create({}, base_dir, "demo", lock="soft", lock_timeout=60)
    lock_file = run.run_dir / "run.soft.lock"
    command = [sys.executable, "-c", _HOLD, str(lock_file)]
    with subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) as holder:
        assert holder.stdout is not None
        assert holder.stdout.readline() == "held\n"
        holder.kill()
    with caplog.at_level(logging.WARNING, logger="ml_manager"):
        run.add_metrics({"a": 1})
    assert f"pid {holder.pid} on" in caplog.text
    assert "is gone" in caplog.text
    assert read_toml(run.run_dir / "metrics.toml") == {"a": 1}
    assert not lock_file.exists()
    run.finish()


def test_a_holder_on_another_machine_is_presumed_dead_after_the_lease(
    base_dir: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = MLRun.create({}, base_dir, "demo", lock="soft", lock_timeout=60)
    (run.run_dir / "run.soft.lock").write_bytes(FOREIGN)
    monkeypatch.setenv("ML_MANAGER_LOCK_LEASE", "0.2")
    with caplog.at_level(logging.WARNING, logger="ml_manager"):
        run.add_metrics({"a": 1})
    assert "pid 4242 on node-b" in caplog.text
    assert "unchanged for 0.2 s" in caplog.text
    assert read_toml(run.run_dir / "metrics.toml") == {"a": 1}
    run.finish()


def test_a_holder_on_another_machine_within_its_lease_keeps_the_lock(base_dir: Path) -> None:
    run = MLRun.create({}, base_dir, "demo", lock="soft", lock_timeout=0.3)
    (run.run_dir / "run.soft.lock").write_bytes(FOREIGN)
    with pytest.raises(Exception, match=r"run\.soft\.lock"):
        run.add_metrics({"a": 1})
    assert (run.run_dir / "run.soft.lock").read_bytes() == FOREIGN
    assert not (run.run_dir / "metrics.toml").exists()
    run._finished = True  # the lock is another machine's: this handle cannot write its status


def test_a_holder_whose_lock_was_broken_redoes_its_update_instead_of_clobbering(
    base_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The holder stops past its lease; meanwhile another machine breaks its lock, takes it, and writes its own
    # update.  When the holder goes on, its fence finds the lock no longer its own: it must not replace the
    # file with what it merged before, but redo the update on the newer file.
    monkeypatch.setenv("ML_MANAGER_LOCK_LEASE", "0.2")
    run = MLRun.create({}, base_dir, "demo", lock="soft", lock_timeout=60)
    paths = RunPaths(run.run_dir)
    merge_metrics(paths, {"first": 1}, lock="soft", lock_timeout=10, durable=True)
    calls: list[dict[str, Any]] = []

    def change(current: dict[str, Any]) -> dict[str, Any]:
        calls.append(dict(current))
        if len(calls) == 1:
            lock_file = paths.lock("soft")
            lock_file.unlink()  # broken by the other machine...
            lock_file.write_bytes(FOREIGN)  # ...which holds it now and writes its update
            (run.run_dir / "metrics.toml").write_text("first = 1\nnewer = 2\n")
        return {**current, "mine": 3}

    update_file(paths, paths.metrics, change, lock="soft", lock_timeout=60, durable=True)
    assert calls == [{"first": 1}, {"first": 1, "newer": 2}]
    assert read_toml(paths.metrics) == {"first": 1, "newer": 2, "mine": 3}
    assert [path.name for path in run.run_dir.iterdir() if path.name.endswith(".tmp")] == []
    run.finish()


def test_a_lock_released_after_it_was_broken_leaves_the_new_holders_file(base_dir: Path) -> None:
    lock_file = base_dir / "run.soft.lock"
    with run_lock(lock_file, 10, "soft"):
        lock_file.unlink()
        lock_file.write_bytes(FOREIGN)
    assert lock_file.read_bytes() == FOREIGN


def test_the_lock_file_names_its_holder(base_dir: Path) -> None:
    lock_file = base_dir / "run.soft.lock"
    with run_lock(lock_file, 10, "soft"):
        record = lock_file.read_bytes()
        assert _lease.held_here(record)
        assert _lease.describe(record).startswith("pid ")
    assert not lock_file.exists()


@pytest.mark.parametrize("value", ["0", "-1", "soon", "inf"])
def test_a_bad_lease_is_refused_naming_the_variable(
    base_dir: Path, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("ML_MANAGER_LOCK_LEASE", value)
    with pytest.raises(ValueError, match="ML_MANAGER_LOCK_LEASE"), run_lock(base_dir / "run.soft.lock", 1, "soft"):
        pass


# -- the choice of kind ---------------------------------------------------------------------------------------


def test_auto_records_flock_on_a_local_disk(base_dir: Path) -> None:
    run = MLRun.create({}, base_dir, "demo")
    assert _fs.filesystem_of(base_dir).lock == "flock"
    assert run.lock == "flock"
    assert read_toml(run.run_dir / "config.toml")["_meta"]["lock"] == "flock"
    run.finish()


def test_a_recorded_kind_wins_over_auto_and_the_variable(base_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run = MLRun.create({}, base_dir, "demo", lock="soft")
    monkeypatch.setenv("ML_MANAGER_LOCK", "flock")
    assert MLRun.load(run.run_id, base_dir, "demo").lock == "soft"
    assert MLRun.load(run.run_id, base_dir, "demo", lock="auto").lock == "soft"
    assert MLRun.attach(run.run_dir).lock == "soft"
    run.finish()


def test_a_run_made_before_kinds_were_recorded_keeps_what_its_writers_used(
    base_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = MLRun.create({}, base_dir, "demo", lock="soft")
    run.finish()
    config = run.run_dir / "config.toml"
    config.write_text(config.read_text().replace('lock = "soft"\n', ""))
    assert "lock" not in read_toml(config)["_meta"]
    assert MLRun.load(run.run_id, base_dir, "demo").lock == "flock"  # never the filesystem's pick
    monkeypatch.setenv("ML_MANAGER_LOCK", "soft")  # what those writers were told
    assert MLRun.load(run.run_id, base_dir, "demo").lock == "soft"
    monkeypatch.setenv("ML_MANAGER_LOCK", "auto")
    assert MLRun.load(run.run_id, base_dir, "demo").lock == "flock"


@pytest.mark.parametrize("lock", ["nfs", "", "FLOCK"])
def test_an_unknown_lock_kind_is_refused_before_anything_is_written(base_dir: Path, lock: str) -> None:
    with pytest.raises(ValueError, match=f"lock={lock!r} is not a lock kind"):
        MLRun.create({}, base_dir, "demo", lock=lock)  # type: ignore[arg-type]
    assert list(base_dir.iterdir()) == []


def test_an_unknown_lock_kind_in_the_variable_is_refused_naming_it(
    base_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ML_MANAGER_LOCK", "nfs")
    with pytest.raises(ValueError, match="ML_MANAGER_LOCK='nfs'"):
        MLRun.create({}, base_dir, "demo")
    assert list(base_dir.iterdir()) == []


@pytest.mark.parametrize(
    ("kind", "options", "lock"),
    [
        ("ext4", "rw,relatime", "flock"),
        ("xfs", "rw", "flock"),
        ("tmpfs", "rw", "flock"),
        ("nfs4", "rw,vers=4.2,local_lock=none", "flock"),
        ("nfs", "rw,vers=3,local_lock=none", "flock"),
        ("nfs", "rw,vers=3,nolock", "soft"),
        ("nfs4", "rw,vers=4.1,local_lock=flock", "soft"),
        ("lustre", "rw,flock", "flock"),
        ("lustre", "rw,localflock", "soft"),
        ("lustre", "rw", "soft"),
        ("ceph", "rw,name=admin", "flock"),
        ("fuse.ceph-fuse", "rw", "flock"),
        ("gpfs", "rw", "soft"),
        ("beegfs", "rw,cfgFile=/etc/beegfs/beegfs-client.conf", "soft"),
        ("cifs", "rw,vers=3.1.1", "soft"),
        ("smb3", "rw", "soft"),
        ("fuse.sshfs", "rw,user_id=0", "soft"),
        ("fuse.gcsfuse", "rw", "soft"),
        ("9p", "rw", "soft"),
    ],
)
def test_auto_picks_the_lock_each_filesystem_needs(kind: str, options: str, lock: str) -> None:
    filesystem = _fs.Filesystem(kind, "/shared", "server:/export", frozenset(options.split(",")))
    assert filesystem.lock == lock
    assert kind in filesystem.why


def test_object_store_mounts_are_flagged_unsupported() -> None:
    assert _fs.Filesystem("fuse.gcsfuse", "/b", "bucket", frozenset()).unsupported
    assert _fs.Filesystem("fuse", "/b", "mountpoint-s3", frozenset()).unsupported
    assert _fs.Filesystem("fuse.sshfs", "/b", "host:/x", frozenset()).unsupported is None


def test_the_mount_table_is_read_for_a_real_tmpfs(tmp_path: Path, small_tmpfs: Any) -> None:
    with small_tmpfs(tmp_path / "with space", "1m") as mount:  # the table escapes the space
        (mount / "runs").mkdir()
        filesystem = _fs.filesystem_of(mount / "runs")
        assert (filesystem.type, filesystem.mount_point, filesystem.lock) == ("tmpfs", str(mount), "flock")
        assert not _fs.is_shared(mount)
        assert resolve_lock_kind(None, None, mount / "runs") == "flock"


def test_server_size_is_the_files_size(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"x" * 12345)
    with path.open("rb") as file:
        assert _fs.server_size(file.fileno()) == 12345


def test_a_project_loads_from_a_base_dir_whose_runs_use_either_kind(base_dir: Path) -> None:
    for lock in ("flock", "soft"):
        run = MLRun.create({"kind": lock}, base_dir, "demo", lock=lock)
        run.add_metrics({"a": 1})
        run.finish()
    frame = MLProject(base_dir).load_project()
    assert sorted(zip(frame["kind"], frame["_meta.lock"], frame["a"], strict=True)) == [
        ("flock", "flock", 1),
        ("soft", "soft", 1),
    ]


def test_a_create_refused_while_no_lock_file_exists_is_raised_naming_the_lock_file(
    base_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # sshfs answers a full disk, a quota or a read-only export with the same EPERM as a lost race: once the
    # lock file is seen not to exist, again and again, the refusal is the filesystem's and must be raised, not
    # waited out until the timeout.
    lock_file = base_dir / "run.soft.lock"
    real_open = os.open

    def refusing_open(path: Any, flags: int, mode: int = 0o777, **kwargs: Any) -> int:
        if os.fspath(path) == str(lock_file) and flags & os.O_EXCL:
            raise PermissionError(errno.EPERM, "Operation not permitted", os.fspath(path))
        return real_open(path, flags, mode, **kwargs)

    monkeypatch.setattr(os, "open", refusing_open)
    with pytest.raises(PermissionError, match="does not exist") as raised, run_lock(lock_file, 600, "soft"):
        pass
    monkeypatch.undo()
    assert raised.value.filename == str(lock_file)
    assert not lock_file.exists()


def test_a_create_refused_by_the_filesystem_names_the_lock_file(tmp_path: Path, small_tmpfs: Any) -> None:
    with small_tmpfs(tmp_path / "ro", "1m") as mount:
        (mount / "run").mkdir()
        subprocess.run(["mount", "-o", "remount,ro", str(mount)], check=True)
        lock_file = mount / "run" / "run.soft.lock"
        with pytest.raises(OSError, match="while creating the lock file") as raised, run_lock(lock_file, 5, "soft"):
            pass
        assert raised.value.filename == str(lock_file)


def test_a_dead_holders_lease_runs_out_for_callers_that_each_wait_less_than_it(
    base_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ML_MANAGER_LOCK_LEASE", "0.5")
    run = MLRun.create({}, base_dir, "demo", lock="soft", lock_timeout=0.1)
    (run.run_dir / "run.soft.lock").write_bytes(FOREIGN)
    timeouts = 0
    while True:
        try:
            run.add_metrics({"a": 1})
        except LockTimeoutError:
            timeouts += 1
            assert timeouts < 100, "the lease never ran out"
            continue
        break
    assert timeouts >= 1
    assert read_toml(run.run_dir / "metrics.toml") == {"a": 1}
    run.finish()


def test_a_lock_that_keeps_being_lost_ends_in_a_timeout_not_a_loop(base_dir: Path) -> None:
    run = MLRun.create({}, base_dir, "demo", lock="soft")
    paths = RunPaths(run.run_dir)
    attempts = []

    def change(current: dict[str, Any]) -> dict[str, Any]:
        attempts.append(1)
        paths.lock("soft").unlink()  # broken under every attempt: the fence never passes
        return {**current, "a": 1}

    with pytest.raises(LockTimeoutError):
        update_file(paths, paths.metrics, change, lock="soft", lock_timeout=0.3, durable=True)
    assert len(attempts) > 1
    assert not paths.metrics.exists()
    run.finish()


def test_a_live_holder_whose_proc_entry_is_hidden_is_not_taken_for_dead(
    base_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # /proc mounted hidepid=2 shows no other user's processes: existing is all that can be told of them.
    monkeypatch.setenv("ML_MANAGER_LOCK_LEASE", "3600")
    monkeypatch.setattr(_lease, "process_state", lambda pid: None)
    lock_file = base_dir / "run.soft.lock"
    command = [sys.executable, "-c", _HOLD, str(lock_file)]
    with subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) as holder:
        assert holder.stdout is not None
        assert holder.stdout.readline() == "held\n"
        record = lock_file.read_bytes()
        with pytest.raises(LockTimeoutError), run_lock(lock_file, 0.2, "soft"):
            pass
        assert lock_file.read_bytes() == record
        holder.kill()
    with run_lock(lock_file, 10, "soft"):  # gone now: the pid no longer exists
        assert lock_file.read_bytes() != record
