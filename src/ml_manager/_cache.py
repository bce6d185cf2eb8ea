"""What a reload of an unchanged project may skip: runs whose files have not changed since they were parsed.

A run's files are identified by what ``stat`` says of them: inode, size, modification and change time in
nanoseconds.  Every ml_manager write is an atomic replace, so a changed file is a new inode whatever the
clock says.  A file changed *in place* by another program within one timestamp tick keeps all four; so, as
git does for its index, an entry is only kept once its files are older than :data:`SETTLE_NS` when they are
parsed: any later in-place change then lands in a later tick and shows.  The key is taken *before* the files
are read, so a file replaced between the ``stat`` and the read is only read again next time, never served
stale.
"""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

    from ._frame import Frame, RunRow

FileKey = tuple[int, int, int, int] | None
RunKey = tuple[FileKey, FileKey]
SETTLE_NS = 2_000_000_000


def file_key(path: str | Path) -> FileKey:
    """The identity of ``path``'s current version, or ``None`` if it does not exist."""
    try:
        return key_of(os.stat(path))
    except FileNotFoundError:
        return None


def key_of(st: os.stat_result) -> tuple[int, int, int, int]:
    """The identity of the file version a ``stat``/``fstat`` result describes."""
    return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def settled(key: RunKey, now_ns: int) -> bool:
    """Whether every file of the key is old enough that a later in-place change would show in its key."""
    return all(k is None or now_ns - max(k[2], k[3]) > SETTLE_NS for k in key)


class ProjectCache:
    """Parsed runs and the last frame built from them, for one base directory."""

    def __init__(self) -> None:
        self.rows: dict[str, tuple[RunKey, RunRow]] = {}
        self.frame: tuple[tuple[tuple[str, RunKey], ...], Frame] | None = None


_caches: dict[str, ProjectCache] = {}
_guard = threading.Lock()


def cache_for(base_dir: Path) -> ProjectCache:
    """The cache of ``base_dir`` (shared by every MLProject on it in this process)."""
    with _guard:
        return _caches.setdefault(os.path.abspath(base_dir), ProjectCache())
