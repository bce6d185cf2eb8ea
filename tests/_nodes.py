"""Simulated cluster nodes on one machine that share one directory over sshfs.

A private sshd serves a directory, the export. Each node is a long-lived process in its own mount, UTS and PID
namespaces: its hostname is the node's name and it mounts the export with sshfs at the same path as every other
node, so the mount exists only inside that node. Commands run on a node through nsenter (mount and UTS).
Stopping the cluster kills everything still running on its nodes, unmounts, and stops sshd.
Needs root and /dev/fuse, and: apt-get install openssh-server openssh-client sshfs fuse3 util-linux.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import shutil
import signal
import socket
import string
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping, Sequence

    StrPath = str | os.PathLike[str]

START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
POLL_INTERVAL = 0.01
PORT_ATTEMPTS = 5
SYSTEM_PATH = os.pathsep.join(("/usr/sbin", "/sbin", "/usr/bin", "/bin"))
TOOLS = ("sshd", "ssh", "ssh-keygen", "sshfs", "fusermount3", "unshare", "nsenter", "hostname", "sh", "stat", "setpriv")
APT_PACKAGES = "openssh-server openssh-client sshfs fuse3 util-linux hostname coreutils"


class ClusterError(RuntimeError):
    """The simulated cluster could not be started."""


class NodeCommandError(subprocess.CalledProcessError):
    """A command on a node exited with a non-zero status; the message carries its output."""

    def __str__(self) -> str:
        return f"{super().__str__()}\n--- stdout ---\n{_text(self.stdout)}\n--- stderr ---\n{_text(self.stderr)}"


class NodeCommandTimeout(subprocess.TimeoutExpired):
    """A command on a node did not finish in time; the message carries its output so far."""

    def __str__(self) -> str:
        return f"{super().__str__()}\n--- stdout ---\n{_text(self.stdout)}\n--- stderr ---\n{_text(self.stderr)}"


@dataclass
class Node:
    """One simulated machine.

    name is its hostname; pid is the process that holds its mount and UTS namespaces (the unshare whose child
    runs sshfs), which ``nsenter --target`` enters. Commands run on the node see the export at the cluster's
    mount; their PIDs are the host's. Start Python on a node with sys.executable.
    """

    name: str
    pid: int
    _started: list[tuple[subprocess.Popen[Any], bool]] = field(default_factory=list, init=False, repr=False)
    _mount_namespace: str = field(default="", init=False, repr=False)

    def command(self, argv: Sequence[StrPath], *, cwd: StrPath | None = None) -> list[str]:
        """argv as run on this node; it starts in cwd, by default the caller's working directory."""
        wd = os.fspath(cwd) if cwd is not None else os.getcwd()
        enter = [_tools()["nsenter"], f"--target={self.pid}", "--mount", "--uts", f"--wd={wd}", "--"]
        return [*enter, *(os.fspath(arg) for arg in argv)]

    def run(
        self,
        argv: Sequence[StrPath],
        *,
        env: Mapping[str, str] | None = None,
        timeout: float | None = 120,
        check: bool = True,
        input: str | None = None,
        cwd: StrPath | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run argv on this node to completion, as text with stdout and stderr captured; env adds to os.environ."""
        command = self.command(argv, cwd=cwd)
        try:
            result = subprocess.run(
                command, env=_environ(env), timeout=timeout, input=input, capture_output=True, text=True, check=False
            )
        except subprocess.TimeoutExpired as exc:
            raise NodeCommandTimeout(exc.cmd, exc.timeout, output=exc.output, stderr=exc.stderr) from None
        if check and result.returncode != 0:
            raise NodeCommandError(result.returncode, command, output=result.stdout, stderr=result.stderr)
        return result

    def popen(
        self, argv: Sequence[StrPath], *, env: Mapping[str, str] | None = None, **kwargs: Any
    ) -> subprocess.Popen[str]:
        """Start argv on this node (text mode, in a new session); it is killed when the cluster stops."""
        cwd = kwargs.pop("cwd", None)
        kwargs.setdefault("text", True)
        kwargs.setdefault("start_new_session", True)
        process = subprocess.Popen(self.command(argv, cwd=cwd), env=_environ(env), **kwargs)
        self._started.append((process, bool(kwargs["start_new_session"])))
        return cast("subprocess.Popen[str]", process)

    def _kill_started(self) -> None:
        for process, own_session in self._started:
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    if own_session:
                        os.killpg(process.pid, signal.SIGKILL)
                    else:
                        process.kill()
            for stream in (process.stdin, process.stdout, process.stderr):
                if stream is not None:
                    stream.close()
            process.wait()


@dataclass
class Cluster:
    """Nodes that all see export at mount; directory holds the keys, the configuration and the logs."""

    export: Path
    mount: Path
    nodes: list[Node]
    port: int
    directory: Path


def cluster_unavailable() -> str | None:
    """Why this machine cannot run a simulated cluster, or None if it can."""
    return _unavailable()


def require_cluster() -> None:
    """Skip the calling test where no cluster can run here, naming why; fail instead under
    ``ML_MANAGER_REQUIRE_NODES`` (CI sets it: there the multi-node tests must run)."""
    import pytest

    reason = cluster_unavailable()
    if reason:
        if os.environ.get("ML_MANAGER_REQUIRE_NODES"):
            pytest.fail(f"the multi-node tests must run here: {reason}")
        pytest.skip(reason)


@functools.cache
def _unavailable() -> str | None:
    if not sys.platform.startswith("linux"):
        return "simulated nodes need Linux namespaces"
    if os.geteuid() != 0:
        return "simulated nodes need root (mount namespaces, FUSE mounts, a private sshd)"
    try:
        os.close(os.open("/dev/fuse", os.O_RDWR))
    except OSError as exc:
        return f"/dev/fuse is not usable: {exc}"
    try:
        _tools()
    except ClusterError as exc:
        return str(exc)
    try:
        with tempfile.TemporaryDirectory(prefix="ml_manager-nodes-") as tmp, start_cluster(Path(tmp), nodes=1):
            pass
    except (ClusterError, OSError, subprocess.SubprocessError) as exc:
        return f"a simulated cluster does not start here: {exc}"
    return None


@contextlib.contextmanager
def start_cluster(tmp_path: Path, nodes: int = 2, *, sshfs_options: Sequence[str] = ()) -> Iterator[Cluster]:
    """Start sshd and the nodes (node-a, node-b, ...) under tmp_path; stop them all on exit.

    sshfs_options are extra ``-o`` options for every node's sshfs (say ``cache=no``); by default sshfs caches
    as it does out of the box. The cluster lives as long as the thread that started it: its processes are
    killed when that thread ends.
    """
    if not 1 <= nodes <= len(string.ascii_lowercase):
        raise ValueError(f"nodes must be between 1 and {len(string.ascii_lowercase)}, not {nodes}")
    tools = _tools()
    directory = Path(tempfile.mkdtemp(prefix="cluster-", dir=tmp_path)).resolve()
    export, mount = directory / "export", directory / "mnt"
    export.mkdir()
    mount.mkdir()
    deadline = time.monotonic() + START_TIMEOUT
    with contextlib.ExitStack() as stack:
        key = _keygen(directory / "client_key")
        sshd, port = _start_sshd(directory, key, deadline)
        stack.callback(_stop, sshd, 0)
        started = []
        for name in (f"node-{letter}" for letter in string.ascii_lowercase[:nodes]):
            process = _daemon(
                [
                    *(tools["unshare"], "--mount", "--uts", "--pid", "--fork", "--kill-child"),
                    *("--propagation", "private", "--"),
                    *(tools["sh"], "-c", '"$1" "$2" && shift 2 && exec "$@"', "sh", tools["hostname"], name),
                    *(tools["sshfs"], "-f", "-F", "/dev/null", "-p", str(port)),
                    *("-o", f"ssh_command={tools['ssh']}", "-o", f"IdentityFile={key}"),
                    *("-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes", "-o", "LogLevel=ERROR"),
                    *("-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null"),
                    *("-o", "GlobalKnownHostsFile=/dev/null"),
                    *(arg for option in sshfs_options for arg in ("-o", option)),
                    *(f"root@127.0.0.1:{export}", str(mount)),
                ],
                log := directory / f"{name}.log",
            )
            node = Node(name, process.pid)
            stack.callback(_stop_node, node, process, mount)
            started.append((node, process, log))
        for node, process, log in started:
            _wait_mounted(node, process, mount, log, deadline)
        yield Cluster(export, mount, [node for node, _, _ in started], port, directory)


@functools.cache
def _tools() -> dict[str, str]:
    found = {name: shutil.which(name) or shutil.which(name, path=SYSTEM_PATH) for name in TOOLS}
    missing = sorted(name for name, path in found.items() if path is None)
    if missing:
        raise ClusterError(f"missing programs: {', '.join(missing)} (apt-get install {APT_PACKAGES})")
    return {name: cast("str", path) for name, path in found.items()}


def _daemon(argv: list[str], log: Path) -> subprocess.Popen[bytes]:
    """Start argv in a new session, output to log, killed if the thread that started it ends."""
    with log.open("wb") as out:
        return subprocess.Popen(
            [_tools()["setpriv"], "--pdeathsig", "KILL", "--", *argv],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _keygen(path: Path) -> Path:
    subprocess.run(
        [_tools()["ssh-keygen"], "-q", "-N", "", "-t", "ed25519", "-f", str(path)],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        check=True,
        timeout=STOP_TIMEOUT,
    )
    return path


def _start_sshd(directory: Path, client_key: Path, deadline: float) -> tuple[subprocess.Popen[bytes], int]:
    """Start sshd in its own PID namespace, so that stopping it ends every connection it forked."""
    host_key = _keygen(directory / "host_key")
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    config, log = directory / "sshd_config", directory / "sshd.log"
    tools = _tools()
    argv = [tools["unshare"], "--pid", "--fork", "--kill-child", "--", tools["sshd"], "-D", "-e", "-f", str(config)]
    for _ in range(PORT_ATTEMPTS):
        port = _free_port()
        config.write_text(
            f"Port {port}\n"
            "ListenAddress 127.0.0.1\n"
            f'HostKey "{host_key}"\n'
            f'PidFile "{directory / "sshd.pid"}"\n'
            f'AuthorizedKeysFile "{client_key}.pub"\n'
            "PermitRootLogin prohibit-password\n"
            "PubkeyAuthentication yes\n"
            "PasswordAuthentication no\n"
            "KbdInteractiveAuthentication no\n"
            "StrictModes no\n"
            "UsePAM no\n"
            "PrintMotd no\n"
            "Subsystem sftp internal-sftp\n"
        )
        process = _daemon(argv, log)
        try:
            listening = _wait_listening(process, port, log, deadline)
        except BaseException:
            _stop(process, 0)
            raise
        if listening:
            return process, port
        _stop(process, 0)
        if "Address already in use" not in log.read_text(errors="replace"):
            raise ClusterError(f"sshd exited with status {process.returncode}:\n{_tail(log)}")
    raise ClusterError(f"sshd found no free port in {PORT_ATTEMPTS} attempts:\n{_tail(log)}")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_listening(process: subprocess.Popen[bytes], port: int, log: Path, deadline: float) -> bool:
    """True once this sshd accepts connections on port, False if it exited."""
    banner = f"Server listening on 127.0.0.1 port {port}."
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        if banner in log.read_text(errors="replace"):
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                sock.settimeout(1)
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    return True
        time.sleep(POLL_INTERVAL)
    raise ClusterError(f"sshd did not listen on port {port} within {START_TIMEOUT} s:\n{_tail(log)}")


def _wait_mounted(node: Node, process: subprocess.Popen[bytes], mount: Path, log: Path, deadline: float) -> None:
    """Wait until the node has sshfs mounted on mount and serving: sshfs mounts first and connects after."""
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ClusterError(f"{node.name} exited with status {process.returncode}:\n{_tail(log)}")
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            if _fstype(Path(f"/proc/{process.pid}/mountinfo"), mount) == "fuse.sshfs":
                node._mount_namespace = os.readlink(f"/proc/{process.pid}/ns/mnt")
                break
        time.sleep(POLL_INTERVAL)
    else:
        raise ClusterError(f"{node.name} did not mount {mount} within {START_TIMEOUT} s:\n{_tail(log)}")
    try:
        node.run([_tools()["stat"], "-c", "%d", mount], timeout=max(deadline - time.monotonic(), 1), cwd="/")
    except (NodeCommandError, NodeCommandTimeout) as exc:
        raise ClusterError(f"{node.name} mounted {mount} but does not serve it: {exc}\n{_tail(log)}") from None


def _fstype(mountinfo: Path, mount: Path) -> str | None:
    """The type of the filesystem mounted last on mount, as listed in a mountinfo file."""
    fstype = None
    for line in mountinfo.read_text().splitlines():
        fields = line.split(" ")
        if _unescape(fields[4]) == str(mount):
            fstype = fields[fields.index("-") + 1]
    return fstype


def _unescape(path: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda match: chr(int(match[1], 8)), path)


def _stop_node(node: Node, process: subprocess.Popen[bytes], mount: Path) -> None:
    """Kill everything running on the node, unmount, and end the node; unmount lazily if the mount stays busy."""
    node._kill_started()
    _kill_namespace(node._mount_namespace, process.pid)
    if process.poll() is None:
        if _fusermount(node, "-u", mount):
            _stop(process, STOP_TIMEOUT)
            return
        _fusermount(node, "-u", "-z", mount)
    _stop(process, 0)


def _fusermount(node: Node, *args: StrPath) -> bool:
    try:
        done = subprocess.run(
            node.command([_tools()["fusermount3"], *args], cwd="/"),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=STOP_TIMEOUT,
            check=False,
        )
    except (subprocess.SubprocessError, OSError):
        return False
    return done.returncode == 0


def _kill_namespace(namespace: str, node_group: int) -> None:
    """SIGKILL every process in the mount namespace except the node's own, and wait until they have exited."""
    if not namespace:
        return
    victims = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        pid = int(entry)
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/{pid}/ns/mnt") == namespace and os.getpgid(pid) != node_group:
                os.kill(pid, signal.SIGKILL)
                victims.append(pid)
    deadline = time.monotonic() + STOP_TIMEOUT
    while victims and time.monotonic() < deadline:
        victims = [pid for pid in victims if _running(pid)]
        if victims:
            time.sleep(POLL_INTERVAL)


def _running(pid: int) -> bool:
    """Whether pid exists and has not exited (a zombie has exited)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def _stop(process: subprocess.Popen[bytes], grace: float) -> None:
    """Wait up to grace seconds for process to end, then terminate and finally kill its process group."""
    for sig in (None, signal.SIGTERM, signal.SIGKILL):
        if sig is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(grace if sig is None else STOP_TIMEOUT)
            return


def _environ(env: Mapping[str, str] | None) -> dict[str, str] | None:
    return None if env is None else {**os.environ, **env}


def _tail(log: Path, lines: int = 40) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError as exc:
        return f"(no log: {exc})"


def _text(output: str | bytes | None) -> str:
    if output is None:
        return ""
    return output.decode(errors="replace") if isinstance(output, bytes) else output
