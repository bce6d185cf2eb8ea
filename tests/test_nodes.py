"""The simulated cluster is real: separate hostnames, one filesystem shared over sshfs, node-local flock."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from typing import TYPE_CHECKING

from _nodes import require_cluster, start_cluster

if TYPE_CHECKING:
    from pathlib import Path

    from _nodes import Cluster

MOUNT_INFO = """
import json, os, sys
mount = sys.argv[1]
fstypes = [line.split(" - ")[1].split()[0] for line in open("/proc/self/mountinfo") if line.split()[4] == mount]
print(json.dumps({"fstype": fstypes[-1] if fstypes else None, "dev": os.stat(mount).st_dev}))
"""

HOLD_FLOCK = """
import fcntl, sys
with open(sys.argv[1], "a") as file:
    fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
    print("held", flush=True)
    sys.stdin.readline()
"""

TRY_FLOCK = """
import fcntl, sys
with open(sys.argv[1], "a") as file:
    try:
        fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        print("blocked")
    else:
        print("acquired")
"""

SLEEPER = ["sh", "-c", "echo up; exec sleep 600"]


def test_two_nodes_have_different_hostnames(cluster: Cluster) -> None:
    hostnames = [node.run(["hostname"]).stdout.strip() for node in cluster.nodes]
    assert hostnames == [node.name for node in cluster.nodes] == ["node-a", "node-b"]
    seen_by_python = [
        node.run([sys.executable, "-c", "import socket; print(socket.gethostname())"]).stdout.strip()
        for node in cluster.nodes
    ]
    assert seen_by_python == hostnames
    assert socket.gethostname() not in hostnames


def test_a_file_written_on_one_node_is_read_on_another_and_lands_in_the_export(cluster: Cluster) -> None:
    node_a, node_b = cluster.nodes
    path = cluster.mount / "runs" / "hello.txt"
    write = "import pathlib, sys; p = pathlib.Path(sys.argv[1]); p.parent.mkdir(); p.write_text(sys.argv[2])"
    node_a.run([sys.executable, "-c", write, path, "written on node-a"])
    assert node_b.run(["cat", path]).stdout == "written on node-a"
    assert (cluster.export / "runs" / "hello.txt").read_text() == "written on node-a"
    assert not path.exists()


def test_each_node_mounts_sshfs_at_the_same_path_with_its_own_device(cluster: Cluster) -> None:
    seen = [json.loads(node.run([sys.executable, "-c", MOUNT_INFO, cluster.mount]).stdout) for node in cluster.nodes]
    assert [mount["fstype"] for mount in seen] == ["fuse.sshfs", "fuse.sshfs"]
    devices = {mount["dev"] for mount in seen}
    assert len(devices) == 2
    assert os.stat(cluster.mount).st_dev not in devices
    assert os.stat(cluster.export).st_dev not in devices


def test_flock_is_node_local(cluster: Cluster) -> None:
    node_a, node_b = cluster.nodes
    lock_file = cluster.mount / "run.lock"
    with node_a.popen(
        [sys.executable, "-c", HOLD_FLOCK, lock_file], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    ) as holder:
        assert holder.stdin is not None
        assert holder.stdout is not None
        assert holder.stdout.readline() == "held\n"
        assert node_b.run([sys.executable, "-c", TRY_FLOCK, lock_file]).stdout == "acquired\n"
        assert node_a.run([sys.executable, "-c", TRY_FLOCK, lock_file]).stdout == "blocked\n"
        holder.stdin.close()
        assert holder.wait(60) == 0
    assert node_a.run([sys.executable, "-c", TRY_FLOCK, lock_file]).stdout == "acquired\n"
    assert (cluster.export / "run.lock").exists()


def test_stopping_the_cluster_ends_everything_running_on_its_nodes(tmp_path: Path) -> None:
    require_cluster()
    with start_cluster(tmp_path) as started:
        node_a, node_b = started.nodes
        tracked = node_a.popen(["sh", "-c", "echo up; exec sleep 600"], stdout=subprocess.PIPE, cwd=started.mount)
        untracked = subprocess.Popen(
            node_b.command(["sh", "-c", "echo up; exec sleep 600"], cwd=started.mount),
            stdout=subprocess.PIPE,
            text=True,
        )
        assert tracked.stdout is not None
        assert untracked.stdout is not None
        assert tracked.stdout.readline() == untracked.stdout.readline() == "up\n"
        node_pids = [node.pid for node in started.nodes]
    assert tracked.returncode == -9
    with untracked:
        assert untracked.wait(60) == -9
    for pid in node_pids:
        assert not os.path.exists(f"/proc/{pid}")
