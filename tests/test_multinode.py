"""One run written from two "nodes": two sshfs mounts of one export, each in its own mount and UTS namespace.

Each mount is its own kernel superblock with its own caches, as two machines mounting one export are; on it
``flock`` is node-local (``test_nodes.py`` proves that of the harness).  Every test uses the defaults unless it
says otherwise: the point is that a user who passes nothing loses nothing.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from ml_manager import MLRun
from ml_manager._history import read as read_history
from ml_manager._storage import read_toml

if TYPE_CHECKING:
    import subprocess

    from _nodes import Cluster, Node

CHILD = Path(__file__).with_name("_node_child.py")
EXAMPLE = Path(__file__).parent.parent / "examples" / "ddp_train.py"
pytestmark = pytest.mark.slow


def _child(*args: object) -> list[str]:
    return [sys.executable, str(CHILD), *map(str, args)]


def _create(cluster: Cluster, *lock: str) -> Path:
    node_a = cluster.nodes[0]
    run_dir = node_a.run(_child("create", cluster.mount / "ck", "demo", *lock)).stdout.strip()
    return Path(run_dir)


def _on_export(cluster: Cluster, run_dir: Path) -> Path:
    """The same directory as the server sees it."""
    return cluster.export / run_dir.relative_to(cluster.mount)


@pytest.mark.parametrize("mode", ["add_metrics", "log"])
def test_two_nodes_two_writers_each_lose_nothing_with_the_defaults(cluster: Cluster, mode: str) -> None:
    run_dir = _create(cluster)
    writers = [
        node.popen(_child("write", run_dir, f"{node.name}-w{w}", 100, mode), stdout=-1, stderr=-1)
        for node in cluster.nodes
        for w in range(2)
    ]
    for writer in writers:
        _, err = writer.communicate(timeout=240)
        assert writer.returncode == 0, err
        assert "Traceback" not in err
    server_side = _on_export(cluster, run_dir)
    meta = read_toml(server_side / "config.toml")["_meta"]
    assert meta["lock"] == "soft"  # chosen by the filesystem: fuse.sshfs
    metrics = read_toml(server_side / "metrics.toml")
    expected = {f"{node.name}-w{w}-{i}": i for node in cluster.nodes for w in range(2) for i in range(100)}
    assert len(metrics) == 400
    assert metrics == expected
    records = read_history(server_side)
    assert len(records) == 400
    by_file = sorted(path.name.split("-")[1] for path in (server_side / "history").iterdir())
    assert by_file == ["a", "a", "b", "b"]  # {host}-{pid}.jsonl: each node's host name
    assert not list(server_side.glob("run.soft.lock*"))


def test_a_writer_killed_on_one_node_holding_the_lock_costs_the_other_node_the_lease(cluster: Cluster) -> None:
    node_a, node_b = cluster.nodes
    lease = {"ML_MANAGER_LOCK_LEASE": "2"}
    run_dir = _create(cluster)
    holder = node_b.popen(_child("hold", run_dir, "b", 20), env=lease, stdin=-1, stdout=-1, stderr=-1)
    assert holder.stdout is not None
    acknowledged = [holder.stdout.readline().strip() for _ in range(20)]
    assert holder.stdout.readline() == "held\n"
    os.killpg(holder.pid, signal.SIGKILL)  # the node's writer dies holding the lock
    holder.wait()
    server_side = _on_export(cluster, run_dir)
    assert (server_side / "run.soft.lock").exists()

    writers = [
        node_a.popen(_child("write", run_dir, f"a{w}", 30, "add_metrics"), env=lease, stderr=-1) for w in range(2)
    ]
    for writer in writers:
        _, err = writer.communicate(timeout=240)
        assert writer.returncode == 0, err
    metrics = read_toml(server_side / "metrics.toml")
    assert set(acknowledged) <= set(metrics)
    assert {f"a{w}-{i}" for w in range(2) for i in range(30)} <= set(metrics)
    assert len(metrics) == 80
    assert not (server_side / "run.soft.lock").exists()  # broken by node A's writers once the lease ran out

    doctor = _doctor(node_a, cluster.mount / "ck")
    assert f"fuse.sshfs at {cluster.mount}: 1 run(s) with the soft lock" in doctor.stderr
    # The lock is gone; the run is still marked running by its creator on node A, which has exited.
    (problem,) = doctor.stdout.splitlines()
    assert problem.startswith(f"crashed       demo/{run_dir.name}: marked running, but its process")


def test_doctor_on_another_node_reports_a_dead_holders_lock(cluster: Cluster) -> None:
    node_a, node_b = cluster.nodes
    run_dir = _create(cluster)
    holder = node_b.popen(_child("hold", run_dir, "b", 1), stdin=-1, stdout=-1, stderr=-1)
    assert holder.stdout is not None
    assert holder.stdout.readline() == "b-0\n"
    assert holder.stdout.readline() == "held\n"
    doctor = _doctor(node_a, cluster.mount / "ck")
    assert "stale-lock" not in doctor.stdout  # held a moment ago: a writer mid-update, not a problem
    os.killpg(holder.pid, signal.SIGKILL)
    holder.wait()
    # On node B itself the holder is known dead at once (same machine): doctor there finds and removes it.
    doctor = _doctor(node_b, "--fix", cluster.mount / "ck")
    assert "stale-lock" in doctor.stdout
    assert "node-b" in doctor.stdout
    assert not (_on_export(cluster, run_dir) / "run.soft.lock").exists()


def test_a_run_keeps_the_lock_kind_it_was_created_with_on_every_node(cluster: Cluster) -> None:
    node_a, node_b = cluster.nodes
    chosen = _create(cluster)
    forced = _create(cluster, "flock")
    assert node_b.run(_child("kind", chosen)).stdout.strip() == "soft"
    assert node_b.run(_child("kind", chosen), env={"ML_MANAGER_LOCK": "flock"}).stdout.strip() == "soft"
    assert node_b.run(_child("kind", forced)).stdout.strip() == "flock"
    doctor = _doctor(node_a, cluster.mount / "ck")
    assert doctor.returncode != 0
    unsafe = [line for line in doctor.stdout.splitlines() if line.startswith("unsafe-lock")]
    assert len(unsafe) == 1
    assert forced.name in unsafe[0]
    assert "fuse.sshfs" in unsafe[0]


def test_readers_on_the_other_node_see_whole_versions_never_a_missing_or_cut_file(cluster: Cluster) -> None:
    # A writer on node A replaces metrics.toml with one more key each time while a reader on node A holds it
    # open (FUSE then replaces in two steps, and the file is missing in between) and a reader on node B reads.
    node_a, node_b = cluster.nodes
    run_dir = _create(cluster)
    node_a.run(_child("write", run_dir, "k", 1, "add_metrics"))
    writer = node_a.popen(_child("write", run_dir, "k", 150, "add_metrics"), stderr=-1)
    readers = [node.popen(_child("read", run_dir, 300), stdout=-1, stderr=-1) for node in (node_a, node_b)]
    for reader in readers:
        out, err = reader.communicate(timeout=240)
        assert reader.returncode == 0, err
        counts = [int(count) for count in out.split()]
        assert len(counts) == 300
        assert all(1 <= count <= 150 for count in counts)
    _, err = writer.communicate(timeout=240)
    assert writer.returncode == 0, err


def test_torchrun_across_two_nodes_gives_one_run_with_every_rank(cluster: Cluster) -> None:
    pytest.importorskip("torch")
    torchrun = shutil.which("torchrun", path=os.path.dirname(sys.executable)) or shutil.which("torchrun")
    if torchrun is None:
        pytest.skip("torchrun is not on PATH")
    base_dir = cluster.mount / "ck"
    port = _free_port()
    launches = [
        node.popen(
            [
                torchrun,
                "--nnodes=2",
                f"--node_rank={rank}",
                "--nproc_per_node=2",
                f"--rdzv-endpoint=127.0.0.1:{port}",
                EXAMPLE,
                "--base-dir",
                base_dir,
                "--epochs",
                "1",
            ],
            env={"WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1"},
            stdout=-1,
            stderr=-1,
        )
        for rank, node in enumerate(cluster.nodes)
    ]
    outputs = [launch.communicate(timeout=400) for launch in launches]
    for launch, (_, err) in zip(launches, outputs, strict=True):
        assert launch.returncode == 0, err[-3000:]
    assert "40 history records from 4 ranks" in outputs[0][0]
    (run_dir,) = (cluster.export / "ck" / "ddp-demo").iterdir()
    run = MLRun.load(run_dir.name, cluster.export / "ck", "ddp-demo")
    assert run.meta["lock"] == "soft"
    assert run.meta["hostname"] == "node-a"
    assert run.meta["world_size"] == 4
    history = run.history()
    assert sorted(history["writer"].unique()) == ["rank0", "rank1", "rank2", "rank3"]
    assert len(history) == 40
    hosts = sorted(path.name.split("-")[1] for path in (run_dir / "history").iterdir())
    assert hosts == ["a", "a", "b", "b"]
    assert {f"rank{rank}" for rank in range(4)} <= set(run.metrics)


def _doctor(node: Node, *args: object) -> subprocess.CompletedProcess[str]:
    return node.run([sys.executable, "-m", "ml_manager", "doctor", *map(str, args)], check=False)


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
