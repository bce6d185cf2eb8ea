"""First come, first served in front of a run's flock: a queue of waiting processes, built from flocks.

A lock that is polled (as ``filelock`` does) is unfair under contention: the process that just released it is
running and asks again at once, while the waiters are asleep between polls, so it wins again and again and a
waiter can starve for seconds.  The queue orders the waiters instead.  It is a queue of files, in
``run.lock.queue/`` beside the lock file:

* every waiter creates a *node* file named by a fresh token and holds a ``flock`` on it while it waits and
  while it holds the run's lock;
* ``tail`` names the last node; a newcomer, under a short ``flock`` on ``tail``, reads its predecessor there,
  records it in its own node, and writes its own token to ``tail``;
* a waiter waits until it can ``flock`` its predecessor's node, which happens when the predecessor lets go of
  it (the kernel lets go for a process that dies), then removes that node.  A predecessor that had its turn
  marked its node done; one that gave up or died while waiting did not, and the waiter then waits for the
  node that one was waiting for, so the order of everyone else is kept.

A waiter does not poll for that.  It leaves its token in its predecessor's node and sleeps on a datagram socket
named by its token (Linux's abstract socket namespace: no file, gone with the process); a predecessor that lets
go sends it one datagram.  The sleep is cut into short slices, each ending with a look at the predecessor's
flock, so a predecessor that died, or that cannot reach the socket (another host or network namespace, or a
system without abstract sockets), costs a slice at most, and the caller's deadline is kept.

The queue only decides the order.  Mutual exclusion stays with the run's flock, which the waiter at the head
still takes: whatever happens to the queue (a waiter killed between two of its steps, a queue file removed by
hand), two writers can never be in at once.  Nothing the queue leaves behind is data: the node of a waiter
that died mid-queue is removed by ``ml-manager doctor --fix``.

When the queue is empty the lock is tried directly, so an uncontended writer pays for no queue files at all.
"""

from __future__ import annotations

import contextlib
import fcntl
import math
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
_RECORD = 32  # a token, padded to this many bytes; blank for none
# A node file: the token of the waiter behind (to wake), of the waiter ahead, and "d" once it had its turn.
_SUCC, _PRED, _DONE = 0, _RECORD, 2 * _RECORD
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
        self._tail_path = os.path.join(self.directory, TAIL_FILE)
        self._node_fd: int | None = None
        self.usable = True  # False once its files failed here: the lock alone then decides the order

    def empty(self) -> bool:
        """Whether nobody is queued (read without the queue's lock: a hint, not a promise)."""
        # An empty queue is an empty tail file: one stat, no descriptor kept open (a process may write to
        # thousands of runs).
        try:
            return os.stat(self._tail_path).st_size == 0
        except FileNotFoundError:
            return True
        except OSError:
            self.usable = False
            return True

    def join(self, deadline: float) -> str:
        """Queue up and wait for the waiters ahead to let go; returns this waiter's token.

        Raises:
            TimeoutError: the waiters ahead did not let go before ``deadline`` (``time.monotonic()``); this
                waiter has left the queue.
        """
        with contextlib.suppress(FileExistsError):
            os.mkdir(self.directory)
        token = os.urandom(8).hex()
        node = _node(self.directory, token)
        self._node_fd = fd = os.open(node, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
        fcntl.flock(fd, fcntl.LOCK_EX)  # a fresh file: nobody else has it yet
        inbox = _inbox(token)
        try:
            try:
                with self._tail_locked(deadline) as tail:
                    predecessor = os.pread(tail, _RECORD, 0).strip().decode()
                    # Who is ahead, recorded before anyone can see this node: should this waiter give up or
                    # die, its successor waits for that one instead.
                    os.pwrite(fd, predecessor.encode().ljust(_RECORD), _PRED)
                    _set_tail(tail, token.encode())
            except BaseException:
                os.unlink(node)
                os.close(fd)
                self._node_fd = None
                raise
            try:
                self._wait_for(predecessor, token, inbox, deadline)
            except BaseException:
                self.leave(token, done=False)
                raise
        finally:
            if inbox is not None:
                inbox.close()
        return token

    def leave(self, token: str, *, done: bool = True) -> None:
        """Leave the queue; the successor, if any, is woken.

        Args:
            token: what :meth:`join` returned.
            done: this waiter had its turn.  ``False`` when it gives up: its successor then waits for the
                waiter that was ahead of it.
        """
        fd, self._node_fd = self._node_fd, None
        successor = ""
        try:
            if fd is not None and done:
                os.pwrite(fd, b"d", _DONE)
            with self._tail_locked(None) as tail:
                if os.pread(tail, _RECORD, 0).strip().decode() == token:
                    # Nobody came after: the queue ends with whoever was ahead (nobody, once done), and this
                    # node is removed here (else the successor removes it).
                    ahead = b"" if done or fd is None else os.pread(fd, _RECORD, _PRED).strip()
                    _set_tail(tail, ahead)
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(_node(self.directory, token))
                elif fd is not None:
                    successor = os.pread(fd, _RECORD, _SUCC).strip().decode()
        finally:
            if fd is not None:
                os.close(fd)  # releases the node's flock
        if successor:
            self._wake(successor)

    def _wait_for(self, predecessor: str, token: str, inbox: socket.socket | None, deadline: float) -> None:
        """Wait until the waiter ahead has had its turn, skipping any that gave up or died while waiting."""
        ahead = predecessor
        while ahead:
            if self._node_fd is not None:
                os.pwrite(self._node_fd, ahead.encode().ljust(_RECORD), _PRED)
            node = _node(self.directory, ahead)
            try:
                fd = os.open(node, os.O_RDWR | os.O_CLOEXEC)
            except FileNotFoundError:
                return  # removed already: it had its turn long ago
            try:
                if inbox is not None:
                    os.pwrite(fd, token.encode().ljust(_RECORD), _SUCC)  # where to send the wake-up
                _take_flock(fd, deadline, inbox)
                record = os.pread(fd, _DONE + 1, 0)
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(node)
            finally:
                os.close(fd)
            if record[_DONE : _DONE + 1] == b"d":
                return
            # It let go without its turn (gave up, or died): wait for the one it was waiting for.
            ahead = record[_PRED : _PRED + _RECORD].strip().decode()

    def close_after_fork(self) -> None:
        """In a forked child: close the inherited descriptors, whose flocks belong to the parent."""
        if self._node_fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._node_fd)
        self._node_fd = None

    def _wake(self, successor: str) -> None:
        if not _ABSTRACT:
            return
        import socket

        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sender:
                sender.setblocking(False)
                sender.sendto(b"go", _address(successor))
        except OSError:
            pass  # not reachable (another host, a full buffer): it sees the flock at the end of its slice

    @contextlib.contextmanager
    def _tail_locked(self, deadline: float | None) -> Iterator[int]:
        # Held for a read and a write of 32 bytes; polled, so that a holder stopped by a signal cannot make a
        # waiter overstay its deadline.
        tail = os.open(self._tail_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
        try:
            _take_flock(tail, deadline)
            yield tail
        finally:
            os.close(tail)  # releases the flock


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


def _set_tail(tail: int, token: bytes) -> None:
    """Write the last waiter's token to ``tail``; no token empties the file (what :meth:`empty` looks at)."""
    if token:
        os.pwrite(tail, token.ljust(_RECORD), 0)
    else:
        os.ftruncate(tail, 0)


def _take_flock(fd: int, deadline: float | None, inbox: socket.socket | None = None) -> None:
    """Take the flock on ``fd`` by ``deadline`` (``None``: no limit): asleep on ``inbox`` in slices, else
    polling.

    Raises:
        TimeoutError: the deadline passed first.
    """
    interval = 0.00005
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            remaining = math.inf if deadline is None else deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError from None
            if inbox is not None:
                inbox.settimeout(min(remaining, _SLICE))
                with contextlib.suppress(TimeoutError):
                    inbox.recv(16)
            else:
                time.sleep(min(interval, remaining))
                interval = min(interval * 1.5, _MAX_POLL)
