"""What a project load may skip: runs whose files have not changed since they were parsed, in this process or
in an earlier one.

**What is trusted.**  A run's files are identified by what ``stat`` says of them: inode, size, modification
and change time in nanoseconds.  Every ml_manager write is an atomic replace, so a changed file is a new inode
whatever the clock says; an edit in place by another program changes the times.  A file changed in place
within one timestamp tick keeps all four; so, as git does for its index, a run is only cached once its files
are older than :data:`SETTLE_NS` when they are parsed: any later in-place change then lands in a later tick and
shows.  The run directory's own time is not used: an edit in place does not change it.

**Where.**  In memory for the process, and in one file per base directory (with a delta of recent changes
beside it) under the user's cache directory
(``$ML_MANAGER_CACHE_DIR``, else ``$XDG_CACHE_HOME/ml_manager``, else ``~/.cache/ml_manager``), named by a
hash of the base directory's real path: never inside the base directory, which may be read-only or shared.
``ML_MANAGER_NO_CACHE=1`` (or ``MLProject(..., cache=False)``) keeps it in memory only.

**Safe to read.**  The file is data: a fixed header, one JSON document (parsed by orjson) and raw arrays of
numbers (``numpy.frombuffer``) — nothing in it is executed or unpickled.  A file that is not ours (another
user's, another version's, another base directory's), truncated, corrupt (a CRC-32 of its JSON and arrays)
or inconsistent is ignored and replaced.  Writers write a temporary file and rename it into place, so
a reader sees a whole file or none; many processes may load and write at once.
"""

from __future__ import annotations

import contextlib
import os
import struct
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._frame import Frame
    from ._table import RunKey, Table

SETTLE_NS = 2_000_000_000
INODE_MASK = (1 << 63) - 1  # as the listing of runs folds it: the key is kept as signed 64-bit integers
FileKey = tuple[int, int, int, int] | None

MAGIC = b"ml_manager runs\n"
FORMAT = 1
_HEAD = struct.Struct("<IQQI")  # format, header length, body length, CRC-32 of header + body


def file_key(path: str | os.PathLike[str]) -> FileKey:
    """The identity of ``path``'s current version, or ``None`` if it does not exist."""
    try:
        return key_of(os.stat(path))
    except FileNotFoundError:
        return None


def key_of(st: os.stat_result) -> tuple[int, int, int, int]:
    """The identity of the file version a ``stat``/``fstat`` result describes."""
    return (st.st_ino & INODE_MASK, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def settled(key: RunKey, now_ns: int) -> bool:
    """Whether every file of the key is old enough that a later in-place change would show in its key."""
    return all(
        size < 0 or now_ns - max(mtime, ctime) > SETTLE_NS
        for size, mtime, ctime in ((key[1], key[2], key[3]), (key[5], key[6], key[7]))
    )


def cache_dir(setting: bool | str | os.PathLike[str] | None) -> Path | None:
    """Where cache files go for ``MLProject(cache=setting)``; ``None``: in memory only."""
    if setting is False:
        return None
    if setting is not None and setting is not True:
        if not os.fspath(setting):
            raise ValueError("cache: give a directory, True, False or None, not an empty path")
        return Path(setting).absolute()
    if os.environ.get("ML_MANAGER_NO_CACHE", "").strip().lower() not in ("", "0", "false", "no"):
        return None
    chosen = os.environ.get("ML_MANAGER_CACHE_DIR")
    if chosen and os.path.isabs(chosen):  # a relative one (as XDG's rule for its own variables) is ignored
        return Path(chosen)
    xdg = os.environ.get("XDG_CACHE_HOME")
    root = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".cache"
    return root / "ml_manager"


class Store:
    """The cache of one base directory: the settled runs last seen, and the frame last built from them.

    On disk: the runs as of the last full write (``<name>.runs``), and what changed since (``<name>.delta``:
    the runs added or changed, and those of the full file that are gone), so that a few changed runs in a large
    project cost a small write.  The delta names the full file it applies to; with another, it is ignored.
    """

    def __init__(self, base: str, file: Path | None) -> None:
        self.base, self.file = base, file
        self.delta = None if file is None else file.with_suffix(".delta")
        self.table: Table | None = None
        self.frame: tuple[Table, Frame] | None = None
        self.full: tuple[Table, str] | None = None  # the full file as read or written, and its id
        self.full_key: tuple[int, int, int, int] | None = None  # which version of the file that was
        self.lock = threading.Lock()

    def load(self) -> Table:
        """The settled runs last seen by this process, else by any (the cache files), else none."""
        if self.table is None:
            from . import _table

            try:
                self.table = self.read()
            except Exception:  # whatever is wrong with a cache file, it is ignored and rebuilt
                self.table, self.full = None, None
            self.table = self.table or _table.empty()
        return self.table

    def file_size(self) -> int:
        """The size of the cache file; 0 when there is none."""
        try:
            return 0 if self.file is None else os.stat(self.file).st_size
        except OSError:
            return 0

    def read(self) -> Table | None:
        """The table in the cache files, or ``None`` when there is none or it cannot be trusted."""
        found = _read(self.file, self.base)
        if found is None:
            return None
        table, header, key = found
        if type(header.get("id")) is not str:
            return None
        self.full, self.full_key = (table, header["id"]), key
        changed = _read(self.delta, self.base)
        if changed is None or changed[1].get("full") != header["id"]:
            return table
        gone = changed[1].get("gone")
        if type(gone) is not list or not set(map(type, gone)) <= {str}:
            return table
        return _apply(table, set(gone), changed[0])

    def save(self, table: Table) -> None:
        """Keep ``table`` for this process and, where there are cache files, write them (best effort: a cache
        that cannot be written, or holds a name JSON cannot, is only slower next time)."""
        self.table = table
        if self.file is None or self.delta is None:
            return
        from . import _cachefile, _table

        try:
            if self.full is not None:
                full, full_id = self.full
                gone, added = _table.difference(full, table)
                if len(gone) + len(added) <= max(_DELTA_ROWS, len(full) // 20):
                    if _key(self.file) == self.full_key:  # else another process rewrote it: a delta would be lost
                        data = _cachefile.encode(table.take(added), self.base, _version(), full=full_id, gone=gone)
                        _write(self.delta, data)
                    return
            full_id = os.urandom(8).hex()
            if _write(self.file, _cachefile.encode(table, self.base, _version(), id=full_id)):
                self.full, self.full_key = (table, full_id), _key(self.file)
                _unlink(str(self.delta))
        except (TypeError, ValueError, OverflowError):
            return  # orjson refuses text that is not UTF-8 (a path's undecodable bytes)


def _key(path: Path) -> tuple[int, int, int, int] | None:
    try:
        return key_of(os.stat(path))
    except OSError:
        return None


# A delta of up to this many runs (or a twentieth of the full file) is written instead of the whole cache.
_DELTA_ROWS = 1000


def _apply(table: Table, gone: set[str], changed: Table) -> Table:
    import numpy as np

    from . import _table

    dropped = [row for row in map(table.rows.get, gone) if row is not None]
    if not dropped:
        return _table.merge(table, changed)
    keep = np.ones(len(table), bool)
    keep[dropped] = False
    return _table.merge(table.take(np.flatnonzero(keep)), changed)


def _read(path: Path | None, base: str) -> tuple[Table, dict[str, Any], tuple[int, int, int, int]] | None:
    if path is None:
        return None
    try:
        with open(path, "rb") as handle:
            st = os.fstat(handle.fileno())
            if hasattr(os, "getuid") and st.st_uid != os.getuid():
                return None  # written by someone else: not data to rely on
            data = handle.read()
    except OSError:
        return None
    from . import _cachefile

    found = _cachefile.decode(data, base, _version())
    return None if found is None else (*found, key_of(st))


def _write(path: Path, data: bytes) -> bool:
    """Write ``data`` to ``path`` whole or not at all (a temporary file renamed into place); False if it could
    not be written: a cache that cannot be written is only slower next time."""
    temporary = f"{path}.{os.getpid()}.{os.urandom(4).hex()}.tmp"
    try:
        path.parent.parent.parent.mkdir(parents=True, exist_ok=True)
        for folder in (path.parent.parent, path.parent):  # .../ml_manager/projects: the user's alone
            folder.mkdir(mode=0o700, exist_ok=True)
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.replace(temporary, path)
        except BaseException:
            _unlink(temporary)
            raise
    except OSError:
        return False
    return True


def _unlink(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


def _version() -> str:
    import ml_manager

    return str(ml_manager.__version__)


_stores: dict[tuple[str, Path | None], Store] = {}
_guard = threading.Lock()


def store_for(base_dir: str | os.PathLike[str], setting: bool | str | os.PathLike[str] | None) -> Store:
    """The cache of ``base_dir`` (shared by every MLProject on it in this process)."""
    import hashlib  # imported by the first load: `import ml_manager` is for writers too

    base = os.path.realpath(base_dir)
    where = cache_dir(setting)
    name = hashlib.sha256(os.fsencode(base)).hexdigest()[:32] + ".runs"
    file = None if where is None else where / "projects" / name
    with _guard:
        return _stores.setdefault((base, file), Store(base, file))


def forget() -> None:
    """Drop what this process keeps in memory; the next load starts from the cache files, as a new process does."""
    with _guard:
        _stores.clear()
