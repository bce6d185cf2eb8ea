"""The run directory on disk: its layout, reading and writing its TOML files, and the locked updates.

    {base_dir}/{project_name}/{run_id}/
        config.toml    the user's config + [_wandb] + [_meta]
        metrics.toml   the latest value of every metric key, merged from every writer
        run.lock       the run's lock file (run.soft.lock with the soft lock); never data
        run.lock.queue/  the writers waiting for the lock, first come, first served (see _queue); never data
        .*.tmp         in-flight temp files of the atomic write; never data, removed by the next writer

Readers take no lock: every file is replaced atomically, so a read sees one whole version of it.  On a
filesystem shared between machines a reader may see a version late, never torn: where the mount caches file
sizes the read asks the server for the size first (see _fs), and a file that is missing for a moment while
another machine replaces it (FUSE and NFS clients rename a busy target aside first, then the new file into
place) is looked for again before it is believed missing.
"""

from __future__ import annotations

import errno
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

from . import _fs
from ._atomic import atomic_write, remove_stale_temps, sync_directory_of
from ._cache import FileKey, file_key, key_of
from ._document import check_name, copy_document, deep_merge
from ._locking import LOCK_FILES, LeaseLost, LockKind, run_lock
from ._toml import dumps, parse_toml
from .errors import CorruptRunFileError, LockTimeoutError

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

CONFIG_FILE = "config.toml"
METRICS_FILE = "metrics.toml"
HISTORY_DIR = "history"
FORMAT_VERSION = 1

_T = TypeVar("_T")


class RunPaths(NamedTuple):
    """Where one run's files live."""

    run_dir: Path

    @classmethod
    def of(cls, base_dir: str | os.PathLike[str], project_name: str, run_id: str) -> RunPaths:
        """The paths of run ``run_id`` of ``project_name`` under ``base_dir`` (names validated first)."""
        check_name(project_name, "project_name")
        check_name(run_id, "run_id")
        return cls(Path(base_dir) / project_name / run_id)

    @property
    def config(self) -> Path:
        return self.run_dir / CONFIG_FILE

    @property
    def metrics(self) -> Path:
        return self.run_dir / METRICS_FILE

    def has_files(self) -> bool:
        """Whether the run has any of its data files (a directory being created has neither yet)."""
        return self.config.exists() or self.metrics.exists()

    def lock(self, kind: LockKind) -> Path:
        return self.run_dir / LOCK_FILES[kind]


def read_toml(path: str | Path) -> dict[str, Any]:
    """Parse a run file.

    ml_manager never writes an empty run file, so an empty one is corrupt too: what a crash leaves when a file
    was renamed into place before its data reached the disk (possible only with ``durable=False``, or when
    another tool wrote it).

    Raises:
        FileNotFoundError: the file does not exist.
        CorruptRunFileError: it exists but cannot be read, decoded or parsed, or is empty (never reset).
    """
    return read_toml_keyed(path)[0]


def read_toml_keyed(
    path: str | Path, parse: Callable[[str], dict[str, Any]] = parse_toml
) -> tuple[dict[str, Any], FileKey]:
    """:func:`read_toml`, with the identity (:func:`file_key`) of the very version of the file it read."""
    try:
        stat, data = _read_bytes(path)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise CorruptRunFileError(str(path), exc.strerror or str(exc)) from exc
    if not data:
        raise CorruptRunFileError(str(path), "the file is empty")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CorruptRunFileError(str(path), f"not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    try:
        document = parse(text)
    except ValueError as exc:
        raise CorruptRunFileError(str(path), f"not valid TOML ({exc})") from exc
    return document, key_of(stat)


def _read_bytes(path: str | Path) -> tuple[os.stat_result, bytes]:
    with open(path, "rb") as file:
        stat = os.fstat(file.fileno())
        if not _fs.caches_sizes(stat.st_dev, path):
            return stat, file.read()
    # A mount that keeps sizes cached (FUSE) cuts a read at the size it last saw: another machine's longer
    # version reads as a prefix of itself.  Ask the server for the path's size before opening and again after
    # reading: the same answer both times means the bytes read are that version's, whole.
    for _ in range(_REPLACED_TRIES):
        before = _fs.server_stat(path)
        with open(path, "rb") as file:
            data = file.read()
            stat = os.fstat(file.fileno())
        if len(data) == before[0] and _fs.server_stat(path) == before:
            return stat, data
    # Not FileNotFoundError: a file that keeps being replaced exists, and must never be read as missing.
    raise OSError(errno.ESTALE, "replaced again and again while being read", str(path))


_REPLACED_TRIES = 20


def read_run_files(
    run_dir: str, parse: Callable[[str], dict[str, Any]] = parse_toml
) -> tuple[dict[str, Any], dict[str, Any], tuple[FileKey, FileKey]]:
    """Parse a run's ``config.toml`` and ``metrics.toml`` (missing: empty), with the identity of each version.

    Plain strings, no :class:`~pathlib.Path`: a project load calls this once per run, with a ``parse`` that
    leaves datetimes' time zones as the parser gives them (the project table converts them itself).

    Raises:
        FileNotFoundError: the run has no data files at all (it does not exist, or is still being created).
        CorruptRunFileError: a file is unreadable, or ``config.toml`` is missing while ``metrics.toml`` exists.
    """
    config_file = os.path.join(run_dir, CONFIG_FILE)
    metrics_file = os.path.join(run_dir, METRICS_FILE)
    try:
        # Missing is "being created" unless the run has written anything else.
        config, config_key = _read_again_if_missing(config_file, run_dir, (METRICS_FILE, HISTORY_DIR), parse)
    except FileNotFoundError:
        if os.path.exists(metrics_file):
            raise CorruptRunFileError(config_file, "missing, though metrics.toml exists") from None
        raise
    try:
        # Missing is "no metrics yet" unless the run has logged records (its history says so).
        metrics, metrics_key = _read_again_if_missing(metrics_file, run_dir, (HISTORY_DIR,), parse)
    except FileNotFoundError:
        metrics, metrics_key = {}, None
    return config, metrics, (config_key, metrics_key)


# How long, in all, a run file that should exist is looked for again on a shared filesystem: a replace done as
# two renames leaves it missing for two server round trips.
_MISSING_FOR = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1)


def _read_again_if_missing(
    path: str, run_dir: str, evidence: tuple[str, ...], parse: Callable[[str], dict[str, Any]]
) -> tuple[dict[str, Any], FileKey]:
    """:func:`read_toml_keyed`; on a shared filesystem a missing file that should exist is looked for again.

    It should exist when any of ``evidence`` (names in ``run_dir``) does.
    """
    try:
        return read_toml_keyed(path, parse)
    except FileNotFoundError:
        if not any(os.path.exists(os.path.join(run_dir, name)) for name in evidence) or not _fs.is_shared(run_dir):
            raise
    found = _look_again(lambda: read_toml_keyed(path, parse), _MISSING_FOR)
    if found is None:
        raise FileNotFoundError(errno.ENOENT, "No such file or directory", path)
    return found


def _look_again(read: Callable[[], _T], delays: tuple[float, ...]) -> _T | None:
    """``read()`` again after each of ``delays`` until the file is found; ``None`` if it never is."""
    for delay in delays:
        time.sleep(delay)
        try:
            return read()
        except FileNotFoundError:
            continue
    return None


def split_config(document: dict[str, Any], config_file: str | Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """Take the ``[_meta]`` and ``[_wandb]`` tables out of a parsed ``config.toml``; returns them.

    Raises:
        CorruptRunFileError: they are missing or not tables: the file is not an ml_manager run's.
    """
    meta = document.pop("_meta", None)
    wandb_info = document.pop("_wandb", {})
    if not isinstance(meta, dict) or not isinstance(wandb_info, dict):
        raise CorruptRunFileError(str(config_file), "no [_meta] and [_wandb] tables: not an ml_manager run")
    return meta, wandb_info


def _read_locked(target: Path, lock: LockKind) -> dict[str, Any]:
    """The file to update, read under the run's lock; missing only when the server says so.

    A client may answer "missing" from what it cached before another machine created the file (NFS keeps a
    failed lookup until it sees the directory change): merging into an empty document would then drop every
    other writer's keys.  On a shared filesystem a missing file is looked for once more after listing the
    directory, which revalidates what the client keeps of it.
    """
    try:
        return read_toml(target)
    except FileNotFoundError:
        if lock == "flock" and not _fs.is_shared(target.parent):
            return {}
    if target.name not in os.listdir(target.parent):
        return {}
    found = _look_again(lambda: read_toml(target), (0.0, *_MISSING_FOR))
    if found is None:
        raise OSError(errno.ESTALE, "listed in its directory, but cannot be opened", str(target))
    return found


def read_toml_or_empty(path: Path) -> dict[str, Any]:
    """:func:`read_toml`, with a missing file read as an empty document (a run that logged nothing yet)."""
    try:
        return read_toml(path)
    except FileNotFoundError:
        return {}


def write_toml(
    path: Path,
    document: Mapping[str, Any],
    *,
    durable: bool,
    sync_directory: bool = True,
    before_replace: Callable[[], None] | None = None,
) -> None:
    """Serialise ``document`` and replace ``path`` with it through the atomic write primitive."""
    data = dumps(document).encode("utf-8")
    atomic_write(path, data, durable=durable, sync_directory=sync_directory, before_replace=before_replace)


def update_file(
    paths: RunPaths,
    target: Path,
    change: Callable[[dict[str, Any]], dict[str, Any]],
    *,
    lock: LockKind,
    lock_timeout: float,
    durable: bool,
    written: Callable[[dict[str, Any]], object] | None = None,
) -> dict[str, Any]:
    """Read-modify-write one run file under the run's lock; returns the document written.

    ``written`` is called with it while the lock is still held: threads of one process that keep the latest
    document (a handle's ``metrics``) then keep it in the order of the writes, not of their returns.

    Temp files that killed writers left behind are removed first: under the lock no live writer has one.
    With the soft lock, an update whose lock was broken while it was held (its holder outlived the lease) is
    abandoned before its replace and redone from a fresh read (see _lease).

    Raises:
        LockTimeoutError: the lock was not free in time.
        CorruptRunFileError: the current file cannot be parsed; it is left untouched.
        OSError: the write failed; the file keeps its previous bytes (except when only the directory sync
            after the replace failed: the new bytes are in place, their survival of a power loss is not sure).
    """
    deadline = time.monotonic() + lock_timeout
    while True:
        remaining = max(0.0, deadline - time.monotonic())
        try:
            document = _locked_update(paths, target, change, lock, remaining, durable, written)
        except LeaseLost as exc:
            if time.monotonic() >= deadline:
                raise LockTimeoutError(str(paths.lock(lock)), lock_timeout) from exc
            continue
        break
    if durable:
        # Outside the lock: every reader already sees the new file; only its survival of a power loss waits
        # on this, and the next writer need not.
        sync_directory_of(target)
    return document


def _locked_update(  # noqa: PLR0917 - update_file's arguments, passed on
    paths: RunPaths,
    target: Path,
    change: Callable[[dict[str, Any]], dict[str, Any]],
    lock: LockKind,
    timeout: float,
    durable: bool,
    written: Callable[[dict[str, Any]], object] | None,
) -> dict[str, Any]:
    with run_lock(paths.lock(lock), timeout, lock) as fence:
        remove_stale_temps(paths.run_dir)
        # What this process wrote last, if the file is still exactly that: a long metrics.toml is then not
        # parsed again on every call.  Taken out of the cache while it changes, so a failed write leaves none.
        # Not where another machine writes too: a mount caching attributes would show its file as ours.
        key = file_key(target) if lock == "flock" else None
        cached = _written.pop(str(target), None)
        current = cached[1] if cached is not None and key is not None and cached[0] == key else None
        document = change(current if current is not None else _read_locked(target, lock))
        try:
            write_toml(target, document, durable=durable, sync_directory=False, before_replace=fence)
        except FileNotFoundError as exc:
            if lock == "flock":
                raise
            # A writer that believed itself the holder (its lock broken a moment ago, not yet fenced off)
            # removed our temp file as a dead writer's: redo the update, as after a broken lock.
            raise LeaseLost(str(target)) from exc
        written_key = file_key(target)
        if written_key is not None:
            _written[str(target)] = (written_key, copy_document(document))
        if written is not None:
            written(document)
    return document


# The last document this process wrote to each run file, with the identity of the file it wrote: inode (every
# write is a rename onto the target, so another writer's write is another inode), size, mtime and ctime.
_written: dict[str, tuple[FileKey, dict[str, Any]]] = {}


def merge_metrics(
    paths: RunPaths,
    metrics: Mapping[str, Any],
    *,
    lock: LockKind,
    lock_timeout: float,
    durable: bool,
    written: Callable[[dict[str, Any]], object] | None = None,
) -> dict[str, Any]:
    """Deep-merge already normalised ``metrics`` into ``metrics.toml``; returns the merged state on disk.

    ``written``: as for :func:`update_file` (called with what is read when there is nothing to write).
    """
    if not metrics:
        # Nothing to merge: no write (and no empty file, which would read as corrupt).
        current = read_toml_or_empty(paths.metrics)
        if written is not None:
            written(current)
        return current
    return update_file(
        paths,
        paths.metrics,
        lambda current: deep_merge(current, metrics),
        lock=lock,
        lock_timeout=lock_timeout,
        durable=durable,
        written=written,
    )
