"""First come, first served in front of a run's flock: a queue of waiting processes, built from flocks.

A lock that is polled (as ``filelock`` does) is unfair under contention: the process that just released it is
running and asks again at once, while the waiters are asleep between polls, so it wins again and again and a
waiter can starve for seconds.  The queue orders the waiters instead.  It is a queue of files, in
``run.lock.queue/`` beside the lock file:

* every waiter creates a *node* file named by a fresh token and holds a ``flock`` on it while it waits and
  while it holds the run's lock;
* ``tail`` names the last node; a newcomer, under a short ``flock`` on ``tail``, reads its predecessor there
  and writes its own token;
* a waiter waits until it can ``flock`` its predecessor's node: the predecessor let go of it, because it
  released the run's lock, gave up, or died (the kernel releases a dead process's flocks).  It then removes
  that node.

A waiter does not poll for that.  It leaves its token in its predecessor's node and sleeps on a datagram socket
named by its token (Linux's abstract socket namespace: no file, gone with the process); a predecessor that lets
go sends it one datagram.  The sleep is cut into short slices, each ending with a look at the predecessor's
flock, so a predecessor that died, or that cannot reach the socket (another host or network namespace, or a
system without abstract sockets), costs a slice at most, and the caller's deadline is kept.

The queue only decides the order.  Mutual exclusion stays with the run's flock, which the waiter at the head
still takes; so a waiter that gives up or dies in the middle of the queue, and so lets its successor move on
early, can never let two writers in at once.  Nothing the queue leaves behind is data: the node of a waiter
that gave up or died mid-queue is removed by ``ml-manager doctor --fix``.

When the queue is empty the lock is tried directly, so an uncontended writer pays for no queue files at all.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sys
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import socket
    from collections.abc import Iterator
    from pathlib import Path

QUEUE_SUFFIX = ".queue"
TAIL_FILE = "tail"
NODE_SUFFIX = ".node"
_RECORD = 32  # tail and node files hold one token, padded to this many bytes; blank for none
_SLICE = 0.01  # longest sleep between two looks at the predecessor's flock
_MAX_POLL = 0.0005  # without a wake-up socket: the longest sleep between two looks
_ABSTRACT = sys.platform.startswith("linux")


def _node(directory: str, token: str) -> str:
    return os.path.join(directory, token + NODE_SUFFIX)


def _address(token: str) -> str:
    return f"\0ml-manager-queue-{token}"


class FairQueue:
    """The waiting queue of one lock file, for this process."""

    def __init__(self, lock_file: Path) -> None:
        # Plain strings: this is on every contended acquire, where pathlib's overhead shows.
        self.directory = str(lock_file) + QUEUE_SUFFIX
        self._tail_fd: int | None = None
        self._node_fd: int | None = None
        self._sender: socket.socket | None = None

    def empty(self) -> bool:
        """Whether nobody is queued (read without the queue's lock: a hint, not a promise)."""
        return not os.pread(self._tail(), _RECORD, 0).strip()

    def join(self, deadline: float) -> str:
        """Queue up and wait for the predecessor to let go; returns this waiter's token.

        Raises:
            TimeoutError: the predecessor did not let go before ``deadline`` (``time.monotonic()``); this
                waiter has left the queue.
        """
        token = os.urandom(8).hex()
        node = _node(self.directory, token)
        self._node_fd = os.open(node, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
        fcntl.flock(self._node_fd, fcntl.LOCK_EX)  # a fresh file: nobody else has it yet
        inbox = _inbox(token)
        try:
            try:
                with self._tail_locked(deadline) as tail:
                    predecessor = os.pread(tail, _RECORD, 0).strip().decode()
                    os.pwrite(tail, token.encode().ljust(_RECORD), 0)
            except BaseException:
                os.unlink(node)
                os.close(self._node_fd)
                self._node_fd = None
                raise
            if predecessor:
                try:
                    _wait_for(_node(self.directory, predecessor), token, inbox, deadline)
                except BaseException:
                    self.leave(token)
                    raise
        finally:
            if inbox is not None:
                inbox.close()
        return token

    def leave(self, token: str) -> None:
        """Leave the queue: the successor, if any, is woken and moves on."""
        successor = ""
        try:
            with self._tail_locked(None) as tail:
                if os.pread(tail, _RECORD, 0).strip().decode() == token:
                    # Nobody came after: empty the queue and remove the node (else the successor removes it).
                    os.pwrite(tail, b" " * _RECORD, 0)
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(_node(self.directory, token))
                elif self._node_fd is not None:
                    successor = os.pread(self._node_fd, _RECORD, 0).strip().decode()
        finally:
            fd, self._node_fd = self._node_fd, None
            if fd is not None:
                os.close(fd)  # releases the node's flock
        if successor:
            self._wake(successor)

    def close_after_fork(self) -> None:
        """In a forked child: close the inherited descriptors, whose flocks belong to the parent."""
        for fd in (self._tail_fd, self._node_fd):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        if self._sender is not None:
            self._sender.close()
        self._tail_fd = self._node_fd = None
        self._sender = None

    def _wake(self, successor: str) -> None:
        if not _ABSTRACT:
            return
        import socket

        try:
            if self._sender is None:
                self._sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                self._sender.setblocking(False)
            self._sender.sendto(b"go", _address(successor))
        except OSError:
            pass  # not reachable (another host, a full buffer): it sees the flock at the end of its slice

    def _tail(self) -> int:
        if self._tail_fd is None:
            with contextlib.suppress(FileExistsError):
                os.mkdir(self.directory)
            fd = os.open(os.path.join(self.directory, TAIL_FILE), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
            self._tail_fd = fd
        return self._tail_fd

    @contextlib.contextmanager
    def _tail_locked(self, deadline: float | None) -> Iterator[int]:
        # Held for a read and a write of 32 bytes; polled, so that a holder stopped by a signal cannot make a
        # waiter overstay its deadline.
        tail = self._tail()
        interval = 0.00005
        while True:
            try:
                fcntl.flock(tail, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if deadline is not None and time.monotonic() > deadline:
                    raise TimeoutError from None
                time.sleep(interval)
                interval = min(interval * 2, _MAX_POLL)
        try:
            yield tail
        finally:
            fcntl.flock(tail, fcntl.LOCK_UN)


def _inbox(token: str) -> socket.socket | None:
    """A socket the predecessor can wake this waiter through, where the system has abstract sockets."""
    if not _ABSTRACT:
        return None
    import socket  # imported on first use: only a waiting writer needs it

    inbox = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        inbox.bind(_address(token))
    except OSError:
        inbox.close()
        return None
    return inbox


def _wait_for(node: str, token: str, inbox: socket.socket | None, deadline: float) -> None:
    """Wait until the predecessor's node is free (its owner let go or died), then remove it."""
    try:
        fd = os.open(node, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return  # removed already: its owner is long gone
    try:
        if inbox is not None:
            os.pwrite(fd, token.encode().ljust(_RECORD), 0)  # where to send the wake-up
        interval = 0.00005
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError from None
                if inbox is not None:
                    inbox.settimeout(min(remaining, _SLICE))
                    with contextlib.suppress(TimeoutError):
                        inbox.recv(16)
                else:
                    time.sleep(min(interval, remaining))
                    interval = min(interval * 1.5, _MAX_POLL)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(node)
    finally:
        os.close(fd)
