"""The lock for a run on a filesystem shared between machines, where ``flock`` may exclude nobody.

Why each choice, from what two sshfs mounts of one export (two "nodes") showed and what NFS, Lustre, CephFS
and SMB document:

* **Exclusive creation of the lock file** (``O_CREAT | O_EXCL``) is the one primitive the server decides on
  nearly every shared filesystem (NFSv3+, Lustre, CephFS, GPFS, BeeGFS, SMB, sshfs).  Not ``flock``: node-local
  on FUSE mounts, silently.  Not hard-link counting: sshfs and SMB report a link count of 1.  Not a lock
  directory with an owner file inside: FUSE can leave the owner file behind as ``.fuse_hidden*`` and the
  directory cannot be removed.  The holder writes a record into the file: a random token, host, pid, the
  process's start time and the machine's identity (boot id, pid namespace and host name).
* **Busy is what the filesystem actually answers**: ``EEXIST``, and on sshfs ``EPERM`` (SFTP has no "exists"
  status, so a lost race comes back as a generic failure).  A failed create is followed by opening the lock
  file to read its record: a file that is there means busy; a file that is not means try again at once.  The
  open also makes sshfs forget a lock file it still believes exists (it caches names for 20 s): a hand-over
  from one node to another takes milliseconds, not 20 s.  ``EPERM`` while the file keeps not existing is the
  full disk, quota or read-only mount that sftp reports the same way, and is raised.
* **A dead holder on this machine** (same boot, pid namespace and host name) is known at once: its pid is gone or
  belongs to a newer process.  **A dead holder on another machine** cannot be proven dead; it is presumed dead
  once its record has not changed for the lease (``ML_MANAGER_LOCK_LEASE``, default 30 s) as measured by the
  waiter's own monotonic clock.  No timestamps of two machines are ever compared (sshfs stamps ``utime`` with the
  client's clock, in whole seconds), only the record's content, so clock offsets do not matter.  A holder never
  needs to renew: a locked update takes milliseconds, so a record unchanged for the lease means a holder that
  died or stopped.  What a process saw of a holder is kept between its attempts, so the lease runs out even
  for callers that each wait less than it.  A crashed node therefore blocks the others for at most the lease.
* **Breaking** renames the lock file aside (atomic on the server), reads what it took, and removes it.  If it
  took a record other than the one judged stale (a new holder got in between), that holder is displaced, not
  fooled: see the fence.
* **Fencing.**  A holder that stopped past its lease (SIGSTOP, a frozen VM) may find its lock broken and
  taken.  Before every replace the holder reads the lock file and checks the record is still its own; if it is
  not, the write is abandoned and the whole update redone under the lock.  What no check can close is the time
  between that check and the server executing the rename (a pause between the two calls, or a rename queued in
  the client): a holder paused exactly there for longer than the lease can still replace ``metrics.toml`` with
  a version lacking the newer holder's update (or ``config.toml`` with an older status).  The records
  themselves are never at risk: every writer appends them to its own history file, which needs no lock, so
  ``run.history()`` has them and the next update of the same keys puts them back in ``metrics.toml``.
  Closing the window would need a conditional publish (generation-numbered files created exclusively) in
  place of the ``metrics.toml`` that the on-disk format promises.
* **Releasing** checks that the record is still its own before removing the file, so a holder whose lock was
  broken does not remove its successor's; the check and the removal are two steps, so this too narrows a
  window (one opened only by a holder that outlived its lease) rather than closing it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import time

from . import _fs, _log
from ._atomic import write_all
from ._locking import LeaseLost

DEFAULT_LEASE = 30.0
LEASE_ENV = "ML_MANAGER_LOCK_LEASE"
_MAGIC = b"ml_manager lock\n"
# How long the create may be refused while no lock file exists before the refusal is believed.
_REFUSED_FOR = 2.0
_RECORD_LIMIT = 4096


def resolve_lease() -> float:
    """The lease: ``ML_MANAGER_LOCK_LEASE`` seconds, else 30.

    Raises:
        ValueError: the variable is not a positive number of seconds.
    """
    raw = os.environ.get(LEASE_ENV)
    if not raw:
        return DEFAULT_LEASE
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not 0 < value < float("inf"):
        raise ValueError(f"{LEASE_ENV}={raw!r} is not a positive, finite number of seconds")
    return value


class LeaseLock:
    """One lock file; ``acquire``/``release`` as ``filelock``'s locks, plus :meth:`check` for the fence.

    Not thread-safe: the caller serialises the threads of its process (see ``_locking``).
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._record: bytes | None = None
        # The holder's record as first seen, and when (this process's monotonic clock).
        self._watched: tuple[bytes, float] | None = None

    def acquire(self, timeout: float, poll_interval: float = 0.005) -> None:
        """Take the lock, waiting at most ``timeout`` seconds.

        What this process saw of the holder is kept between calls, so that a holder's lease runs out even for
        callers that each wait less than the lease.

        Raises:
            TimeoutError: another holder kept it.
            OSError: the lock file cannot be created (the message names it), or its record cannot be read.
        """
        deadline = time.monotonic() + timeout
        lease = resolve_lease()
        refused_since: float | None = None
        record = _new_record()
        absent = 0
        while True:
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except OSError as exc:
                if exc.errno not in (errno.EEXIST, errno.EPERM):
                    raise OSError(exc.errno, f"{exc.strerror} while creating the lock file", self.path) from exc
                holder = read_record(self.path)
                now = time.monotonic()
                if holder is None:
                    self._watched = None
                    if exc.errno == errno.EPERM:
                        refused_since = now if refused_since is None else refused_since
                        if now - refused_since > _REFUSED_FOR:
                            message = "refused (EPERM) while creating the lock file, which does not exist"
                            raise PermissionError(errno.EPERM, message, self.path) from exc
                    if now >= deadline:
                        raise TimeoutError(self.path) from None
                    absent += 1
                    if absent > 1:  # released in between: try again at once, then without spinning
                        time.sleep(min(poll_interval, max(0.0, deadline - now)))
                    continue
                refused_since, absent = None, 0
                if self._broke(holder, now, lease):
                    continue
                if now >= deadline:
                    raise TimeoutError(self.path) from None
                # Jittered, so that waiters on several machines do not poll in step.
                time.sleep(min(poll_interval * (0.5 + os.urandom(1)[0] / 255), max(0.0, deadline - now)))
                continue
            try:
                try:
                    write_all(fd, record)
                finally:
                    os.close(fd)  # a network filesystem may report a full disk only here
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(self.path)
                raise
            self._record, self._watched = record, None
            return

    def _broke(self, holder: bytes, now: float, lease: float) -> bool:
        """Break the lock if its holder is dead or its lease ran out; whether it was broken."""
        if self._watched is None or self._watched[0] != holder:
            self._watched = (holder, now)
        dead = holder_gone(holder)
        if dead or now - self._watched[1] >= lease:
            self._watched = None
            self._break(holder, dead or f"its record unchanged for {lease:g} s")
            return True
        return False

    def release(self) -> None:
        """Let go: remove the lock file, unless it is no longer this holder's (broken while held)."""
        record, self._record = self._record, None
        if record is not None and read_record(self.path) == record:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)

    def check(self) -> None:
        """The fence: raise :class:`LeaseLost` unless the lock file still holds this holder's record."""
        if self._record is None or read_record(self.path) != self._record:
            raise LeaseLost(self.path)

    def _break(self, stale: bytes, why: str) -> None:
        if remove_if(self.path, stale):
            _log.warning("ml_manager: broke the lock %s of %s: %s", self.path, describe(stale), why)


def remove_if(path: str, stale: bytes) -> bool:
    """Break the lock at ``path`` judged stale on ``stale``; whether what was removed was that record.

    The lock file is renamed aside (atomic on the server), then what it held is read and removed.  A holder
    that took the lock between the judgement and the rename is displaced: its fence fails and it redoes its
    update.
    """
    aside = f"{path}.break.{os.urandom(6).hex()}"
    try:
        os.rename(path, aside)
    except FileNotFoundError:
        return False  # released, or broken by another waiter
    try:
        taken = read_record(aside)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(aside)
    return taken == stale


def describe(record: bytes) -> str:
    """Who holds a lock, from its record: ``pid 123 on host-a``."""
    fields = _fields(record)
    if not fields:
        return "an unreadable holder"
    return f"pid {fields.get('pid', '?')} on {fields.get('host', '?')}"


def held_here(record: bytes) -> bool:
    """Whether ``record`` is a holder's on this machine that is alive."""
    fields = _fields(record)
    return bool(fields) and fields.get("machine") == _machine() != "?" and holder_gone(record) is None


def age_on_server(path: str) -> float | None:
    """Seconds since the lock file at ``path`` was created, by the server's clock; ``None`` if it is gone, or
    no probe can be created beside it (a read-only or full filesystem).

    Both times are stamped by the filesystem that holds it: the lock file's, and that of a probe file created
    beside it now.  No clock of this machine is compared with another's.
    """
    probe = f"{path}.probe.{os.urandom(6).hex()}"
    try:
        created = os.stat(path).st_mtime
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError:
        return None
    try:
        now = os.fstat(fd).st_mtime
    finally:
        os.close(fd)
        os.unlink(probe)
    return now - created


def read_record(path: str) -> bytes | None:
    """The record in the lock file at ``path``, or ``None`` when there is no lock file."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        if exc.errno == errno.ESTALE:  # replaced on the server since this machine last looked: gone
            return None
        raise
    try:
        # The size the server has: a record rewritten by another machine is never read cut at a stale one.
        _fs.server_size(fd)
        return os.read(fd, _RECORD_LIMIT)
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ESTALE):  # removed on the server since it was opened: gone
            return None
        raise
    finally:
        os.close(fd)


def _new_record() -> bytes:
    host = os.uname().nodename if hasattr(os, "uname") else "localhost"
    pid = os.getpid()
    lines = [
        f"token={os.urandom(8).hex()}",
        f"host={host}",
        f"pid={pid}",
        f"start={_start_time(pid)}",
        f"machine={_machine()}",
    ]
    return _MAGIC + "\n".join(lines).encode("utf-8", "replace") + b"\n"


def _fields(record: bytes) -> dict[str, str]:
    if not record.startswith(_MAGIC):
        return {}
    text = record[len(_MAGIC) :].decode("utf-8", "replace")
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


def holder_gone(record: bytes) -> str | None:
    """Why the holder of ``record`` is known dead (it ran on this machine), or ``None``."""
    fields = _fields(record)
    if not fields or fields.get("machine") != _machine() or _machine() == "?":
        return None  # another machine's (or unreadable): only the lease can tell
    try:
        pid = int(fields["pid"])
    except (KeyError, ValueError):
        return None
    return None if pid == os.getpid() else _gone(pid, fields.get("start"))


def _gone(pid: int, recorded_start: str | None) -> str | None:
    """Why process ``pid`` of this machine, started at ``recorded_start``, is known gone; ``None`` if not."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return f"its process {pid} on this machine is gone"
    except PermissionError:
        pass  # another user's: it exists
    state = process_state(pid)
    if state is None:
        return None  # alive, and /proc tells no more (hidden, or not Linux)
    if state[0] == "Z":
        return f"its process {pid} on this machine is gone (not yet reaped)"
    if recorded_start not in (None, "None", state[1]):
        return f"its process {pid} on this machine is gone (the pid now belongs to a newer process)"
    return None


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot, or ``None`` when /proc does not tell."""
    state = process_state(pid)
    return None if state is None else state[1]


def process_state(pid: int) -> tuple[str, str] | None:
    """A process's state letter and start time (clock ticks since boot), or ``None`` when /proc does not tell."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as file:
            stat = file.read()
    except OSError:
        return None
    fields = stat[stat.rfind(b")") + 2 :].split()
    return fields[0].decode(), fields[19].decode()


_identity: list[str] = []


def _machine() -> str:
    """This kernel, pid namespace and host name: a pid names the same process exactly where this matches.

    The host name too, so that containers sharing a kernel but not a name count as other machines: their
    holders are then judged by the lease, which is slower but never wrong.
    """
    if not _identity:
        try:
            with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as file:
                boot = file.read().strip()
            _identity.append(f"{boot}/{os.readlink('/proc/self/ns/pid')}/{os.uname().nodename}")
        except OSError:
            _identity.append("?")
    return _identity[0]
