"""Which filesystem a run directory is on, and what that means for its lock and its reads.

Two questions decide how a run is written safely, and the filesystem type answers both:

* **Does ``flock`` exclude processes on other machines?**  On local filesystems there are no other machines;
  NFS sends ``flock`` to the server as a lock of the whole file (unless mounted ``local_lock=flock|all`` or
  ``nolock``); CephFS, JuiceFS and Lustre mounted ``-o flock`` keep it coherent cluster-wide.  Everywhere else it
  may be node-local, silently: every FUSE filesystem without lock operations (sshfs, gcsfuse, s3fs, ...),
  Lustre ``localflock``, BeeGFS without global locks (a client setting no mount table shows), SMB before Linux
  5.5, and GPFS, whose documentation does not promise it.  There the run needs the lease lock (:mod:`_lease`).
* **Can a read return a stale size?**  A FUSE mount keeps a file's size in the kernel for a while and cuts a
  read at it: a file another machine rewrote a moment ago reads as a prefix of itself, which for a file that
  grows line by line parses as an older, valid-looking version.  On those mounts a reader asks the server for
  the size (``statx`` with ``AT_STATX_FORCE_SYNC``) after opening, before reading.

The type comes from the mount table (``/proc/self/mountinfo``), matched to the path's device, because every
FUSE filesystem reports the same ``statfs`` magic and only the table names the subtype (``fuse.sshfs``).  A
type alone cannot prove that a lock works across machines, so this is an allow-list: what is not known to be
coherent gets the lock that works everywhere that exclusive creation is atomic.
"""

from __future__ import annotations

import os
import struct
import sys
from typing import Any, Literal, NamedTuple

Kind = Literal["flock", "soft"]

# Filesystems that only this machine writes to: flock is all the locking there is to do.
_LOCAL = frozenset(
    {
        "ext2",
        "ext3",
        "ext4",
        "xfs",
        "btrfs",
        "bcachefs",
        "zfs",
        "f2fs",
        "jfs",
        "reiserfs",
        "nilfs2",
        "tmpfs",
        "ramfs",
        "overlay",
        "vfat",
        "msdos",
        "exfat",
        "ntfs",
        "ntfs3",
        "hfs",
        "hfsplus",
        "apfs",
    }
)
# Cluster filesystems whose flock the server (or its lock manager) decides, for every client.
_COHERENT_FLOCK = frozenset({"ceph", "fuse.ceph-fuse", "fuse.juicefs"})
# FUSE mounts of object stores: no atomic rename and no exclusive create, so no lock and no atomic write work.
_OBJECT_STORES = frozenset({"fuse.gcsfuse", "fuse.s3fs", "fuse.mountpoint-s3", "fuse.rclone", "fuse.goofys"})


class Filesystem(NamedTuple):
    """A mount, as the mount table describes it."""

    type: str
    """``ext4``, ``nfs4``, ``fuse.sshfs``, ... ``unknown`` when there is no mount table to read (not Linux),
    ``unlisted`` when the table does not list the path's mount."""
    mount_point: str
    source: str
    options: frozenset[str]
    """The mount's options and the filesystem's own (``local_lock=none``, ``flock``, ...)."""

    @property
    def lock(self) -> Kind:
        """The lock kind ``lock="auto"`` picks for a run here."""
        return self._decide()[0]

    @property
    def why(self) -> str:
        """One sentence on why that kind."""
        return self._decide()[1]

    @property
    def caches_sizes(self) -> bool:
        """Whether a read may be cut at a stale size, so that readers must ask the server for it first."""
        return self.type.startswith("fuse") or self.type == "unlisted"

    @property
    def unsupported(self) -> str | None:
        """Why no lock or atomic write can work here (an object store), or ``None``."""
        if self.type in _OBJECT_STORES or (self.type == "fuse" and "mountpoint-s3" in self.source):
            return f"{self.type} mounts an object store: it has no atomic rename and no exclusive create"
        return None

    def _decide(self) -> tuple[Kind, str]:  # noqa: PLR0911 - one answer per family of filesystems
        kind, options = self.type, self.options
        if kind in _LOCAL:
            return "flock", f"{kind} is a local filesystem"
        if kind in ("nfs", "nfs4"):
            local = {"local_lock=flock", "local_lock=all", "nolock"} & options
            if local:
                return "soft", f"{kind} mounted with {min(local)}: flock stays on this machine"
            return "flock", f"{kind} sends flock to the server"
        if kind == "lustre":
            if "flock" in options and "localflock" not in options:
                return "flock", "lustre mounted with flock: coherent on every client"
            return "soft", "lustre without the flock mount option: flock is node-local or refused"
        if kind in _COHERENT_FLOCK:
            return "flock", f"{kind} keeps flock coherent across clients"
        if kind == "unknown":
            return "flock", "no mount table on this platform: flock, which is right on a local disk"
        if kind == "unlisted":
            return "soft", "its mount is not in the mount table: the lock that works on any filesystem"
        if kind.startswith("fuse"):
            return "soft", f"{kind} (FUSE) keeps flock on this machine"
        return "soft", f"{kind}: flock is not known to work across machines there"


def filesystem_of(path: str | os.PathLike[str]) -> Filesystem:
    """The mount holding ``path`` (which must exist), read from the mount table now.

    Matched by mount id where the kernel gives it (``statx``, Linux 5.8+: right for btrfs subvolumes, whose
    device number is not the table's), else by device number and the longest mount point holding the path.
    Not cached: device numbers and mount ids are reused once a filesystem is unmounted, so a long-lived
    process must not keep an answer (see :func:`remembered` for one pass over many runs).

    Raises:
        OSError: ``path`` cannot be examined.
    """
    return _lookup(os.path.realpath(path), os.stat(path).st_dev, _mount_id(path))


def caches_sizes(device: int, path: str | os.PathLike[str]) -> bool:
    """:attr:`Filesystem.caches_sizes` of the filesystem of ``device`` (``path``'s); one dict lookup once known."""
    found = _by_device.get(device) or _remember(device, path)
    return found is None or found.caches_sizes  # cannot tell: the safe answer


def is_shared(path: str | os.PathLike[str]) -> bool:
    """Whether other machines may write to ``path``'s filesystem (anything not known to be a local disk)."""
    found = remembered(path)
    return found is not None and found.type not in _LOCAL and found.type != "unknown"


def remembered(path: str | os.PathLike[str]) -> Filesystem | None:
    """:func:`filesystem_of`, remembered per device number until :func:`forget`; ``None`` if it cannot tell.

    Every project load, run load and doctor pass calls :func:`forget` first: a filesystem mounted where
    another was, reusing its device number, is then not taken for it.
    """
    try:
        device = os.stat(path).st_dev
    except OSError:
        return None
    return _by_device.get(device) or _remember(device, path)


def forget() -> None:
    """Drop what :func:`remembered` remembers."""
    _by_device.clear()


def _remember(device: int, path: str | os.PathLike[str]) -> Filesystem | None:
    try:
        found = filesystem_of(path)
    except OSError:
        return None
    _by_device[device] = found
    return found


_by_device: dict[int, Filesystem] = {}


def _lookup(real_path: str, device: int, mount_id: int | None) -> Filesystem:
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as table:
            lines = table.read().splitlines()
    except OSError:
        return Filesystem("unknown", "/", "", frozenset())
    wanted = f"{os.major(device)}:{os.minor(device)}"
    best: Filesystem | None = None
    for line in lines:
        # id parent major:minor root mount-point mount-options [optional fields...] - type source super-options
        fields = line.split(" ")
        if len(fields) < 10 or "-" not in fields[6:]:
            continue
        if (fields[0] != str(mount_id)) if mount_id is not None else (fields[2] != wanted):
            continue
        dash = fields.index("-", 6)
        mount_point = _unescape(fields[4])
        if mount_id is None and not _contains(mount_point, real_path):
            continue
        if best is None or len(mount_point) > len(best.mount_point):
            options = frozenset(fields[5].split(",")) | frozenset(fields[dash + 3].split(","))
            best = Filesystem(fields[dash + 1], mount_point, _unescape(fields[dash + 2]), options)
    # A mount table that does not list the path's mount: nothing is known, and the lock must work anyway.
    return best or Filesystem("unlisted", "/", "", frozenset())


def _contains(mount_point: str, path: str) -> bool:
    return mount_point in ("/", path) or path.startswith(mount_point + "/")


def _unescape(field: str) -> str:
    # The mount table writes space, tab, newline and backslash as octal escapes.
    if "\\" not in field:
        return field
    return field.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n").replace("\\134", "\\")


# -- what the server has ---------------------------------------------------------------------------------

_AT_FDCWD = -100
_AT_EMPTY_PATH = 0x1000
_AT_STATX_FORCE_SYNC = 0x2000
_STATX_SIZE = 0x200
_STATX_MTIME = 0x40
_STATX_CTIME = 0x80
_STATX_MNT_ID = 0x1000
# struct statx: u32 mask, u32 blksize, u64 attributes, u32 nlink, uid, gid, u16 mode, spare, u64 ino, size, ...
_STX_SIZE = 40
_STX_CTIME = 96  # then atime 64, btime 80 before it; each a (s64 seconds, u32 nanoseconds, pad)
_STX_MTIME = 112
_STX_MNT_ID = 144


def _load_statx() -> Any:
    if not sys.platform.startswith("linux"):
        return None
    import ctypes  # on first use: most processes never read from a FUSE mount

    try:
        function = ctypes.CDLL(None, use_errno=True).statx
    except (OSError, AttributeError):  # a C library older than glibc 2.28, or without statx
        return None
    function.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_uint, ctypes.c_void_p)
    function.restype = ctypes.c_int
    return function


_statx: Any = ...


def _call_statx(fd: int, path: bytes, flags: int, mask: int) -> bytes | None:
    """The raw ``struct statx``; ``None`` where the C library has no ``statx``."""
    global _statx  # noqa: PLW0603 - loaded once, on first use
    if _statx is ...:
        _statx = _load_statx()
    if _statx is None:
        return None
    import ctypes

    buffer = ctypes.create_string_buffer(256)
    if _statx(fd, path, flags, mask, buffer) != 0:
        error = ctypes.get_errno()
        raise OSError(error, os.strerror(error), os.fsdecode(path) or None)
    return buffer.raw


def _mount_id(path: str | os.PathLike[str]) -> int | None:
    try:
        raw = _call_statx(_AT_FDCWD, os.fsencode(path), 0, _STATX_MNT_ID)
    except OSError:
        return None
    if raw is None or not struct.unpack_from("=I", raw, 0)[0] & _STATX_MNT_ID:
        return None  # a kernel older than 5.8
    return int(struct.unpack_from("=Q", raw, _STX_MNT_ID)[0])


def server_size(fd: int) -> int:
    """The size of the open file ``fd`` as its server knows it now, not as this machine last cached it.

    Also refreshes the size the kernel keeps, so that a read that follows is no longer cut at a stale one.
    A FUSE filesystem answers for the file's *path*, which another machine may have replaced since it was
    opened: use :func:`server_stat` around the read where that matters.  Where ``statx`` is missing, ``fstat``.

    Raises:
        OSError: the file cannot be examined (``FileNotFoundError``: its path is gone on the server).
    """
    raw = _call_statx(fd, b"", _AT_EMPTY_PATH | _AT_STATX_FORCE_SYNC, _STATX_SIZE)
    if raw is None:
        return os.fstat(fd).st_size
    return int(struct.unpack_from("=Q", raw, _STX_SIZE)[0])


def server_stat(path: str | os.PathLike[str]) -> tuple[int, int, int, int, int]:
    """Size, mtime and ctime (seconds, nanoseconds) of ``path`` as its server knows them now.

    Also refreshes what the kernel keeps for the path, so that a file opened after it is read whole.  Where
    ``statx`` is missing, ``os.stat``.

    Raises:
        OSError: ``path`` cannot be examined (``FileNotFoundError`` when it does not exist).
    """
    raw = _call_statx(_AT_FDCWD, os.fsencode(path), _AT_STATX_FORCE_SYNC, _STATX_SIZE | _STATX_MTIME | _STATX_CTIME)
    if raw is None:
        stat = os.stat(path)
        return stat.st_size, stat.st_mtime_ns, 0, stat.st_ctime_ns, 0
    size = struct.unpack_from("=Q", raw, _STX_SIZE)[0]
    mtime, mtime_ns = struct.unpack_from("=qI", raw, _STX_MTIME)
    ctime, ctime_ns = struct.unpack_from("=qI", raw, _STX_CTIME)
    return int(size), int(mtime), int(mtime_ns), int(ctime), int(ctime_ns)
