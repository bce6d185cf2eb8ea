"""Find and repair what crashed processes leave in a base directory.  Never deletes user data.

What it finds, run by run (``base_dir/project_name/run_id``):

* ``crashed``: a run still marked ``running`` whose process is gone.  On this host: its recorded pid is dead
  (or now belongs to a process started after the run was created).  On another host, where a pid proves
  nothing: none of the run's files has changed for ``stale_after`` seconds (every ``add_metrics`` rewrites
  ``metrics.toml`` and appends to the history, so a run's files are its heartbeat).  Fix: mark it ``crashed``.
* ``corrupt``: a run file that cannot be read or parsed.  Fix for ``metrics.toml``: rebuild it from the run's
  history (every ``add_metrics`` call is recorded there), keeping the corrupt bytes as
  ``metrics.toml.corrupt``.  A corrupt ``config.toml`` cannot be rebuilt and is only reported.
* ``half-created``: a run directory without ``config.toml`` older than a minute (its creator died before
  writing it).  Only reported: it may hold wandb's files.
* ``stale-temp``: a temp file of the atomic write older than a minute (a writer killed mid-write).  Fix:
  removed, under the run's lock.
* ``stale-lock``: a soft lock file whose holder died on this machine, or held for over a minute by a holder on
  another machine or one that left no readable record (writers break such a lock themselves after the lease);
  an entry of the lock's waiting queue that nobody holds, older than a minute (left by a writer that gave up or
  died while waiting).  Fix: removed.  (A flock ``run.lock`` is never stale: the kernel releases it.)
* ``unsafe-lock``: the run records ``flock`` but lies on a filesystem where ``flock`` may not exclude writers
  on other machines (a FUSE mount such as sshfs, SMB, Lustre without ``-o flock``, ...); or it lies on a FUSE
  mount of an object store, where no lock and no atomic replace work.  Only reported: writers running now hold
  the recorded kind, and changing it under them would let two in at once.

It also counts the runs by filesystem and lock kind (:func:`census`).
"""

from __future__ import annotations

import datetime
import fcntl
import os
import time
from pathlib import Path
from typing import Any, NamedTuple

from . import _document, _fs, _history, _lease, _scan, _storage
from ._atomic import _TEMP_NAME, remove_stale_temps
from ._locking import LOCK_FILES, LockKind, recorded_kind, resolve_lock_kind, resolve_lock_timeout, run_lock
from ._queue import NODE_SUFFIX, QUEUE_SUFFIX
from .errors import CorruptRunFileError

QUIET_SECONDS = 60.0
DEFAULT_STALE_AFTER = 24 * 3600.0


class Problem(NamedTuple):
    """One thing found wrong; ``fixable`` says whether :func:`fix` can repair it."""

    kind: str
    run_dir: Path
    detail: str
    fixable: bool


def examine(base_dir: Path, *, stale_after: float = DEFAULT_STALE_AFTER, census: Census | None = None) -> list[Problem]:
    """Every problem under ``base_dir``, run by run, in path order.

    ``census``: filled with the number of runs per filesystem and recorded lock kind.
    """
    now = time.time()
    _fs.forget()  # which filesystem each run is on: looked up once per mount in this pass
    problems: list[Problem] = []
    for project in _visible_dirs(base_dir):
        for run_dir in _visible_dirs(project):
            problems.extend(_examine_run(run_dir, now, stale_after, census))
    return problems


Census = dict[tuple[str, str, str], int]
"""(filesystem type, mount point, lock kind) -> runs."""


def describe_census(census: Census) -> list[str]:
    """One line per filesystem and lock kind: ``fuse.sshfs at /shared: 12 run(s) with the soft lock``."""
    lines = []
    for (kind, mount_point, lock), runs in sorted(census.items()):
        lines.append(f"{kind} at {mount_point}: {runs} run(s) with the {lock} lock")
    return lines


def fix(problem: Problem) -> str:
    """Repair one fixable problem; returns what was done.

    Raises:
        OSError, LockTimeoutError, CorruptRunFileError: the repair could not be made; nothing was lost.
    """
    run_dir = problem.run_dir
    if problem.kind == "stale-temp":
        lock = _lock_kind(_storage.RunPaths(run_dir))
        with run_lock(run_dir / LOCK_FILES[lock], resolve_lock_timeout(None), lock):
            removed = remove_stale_temps(run_dir)
        return f"removed {len(removed)} temp file(s)"
    if problem.kind == "stale-lock":
        done = []
        lock_file = run_dir / LOCK_FILES["soft"]
        stale = _stale_soft_lock(lock_file)
        if stale is not None and _lease.remove_if(str(lock_file), stale[1]):
            done.append("removed the soft lock file")
        nodes = _stale_queue_nodes(run_dir, time.time())
        for node in nodes:
            node.unlink(missing_ok=True)
        if nodes:
            done.append(f"removed {len(nodes)} queue entry(ies)")
        return "; ".join(done) or "nothing left to do"
    if problem.kind == "crashed":
        return _mark_crashed(run_dir)
    if problem.kind == "corrupt":
        return _rebuild_metrics(run_dir)
    raise ValueError(f"{problem.kind} problems cannot be fixed automatically")


def _examine_run(run_dir: Path, now: float, stale_after: float, census: Census | None) -> list[Problem]:
    problems: list[Problem] = []
    try:
        names = os.listdir(run_dir)
    except OSError as exc:
        return [Problem("corrupt", run_dir, f"cannot list the run directory: {exc.strerror or exc}", False)]
    temps = [name for name in names if _TEMP_NAME.fullmatch(name) and _age(run_dir / name, now) > QUIET_SECONDS]
    if temps:
        problems.append(Problem("stale-temp", run_dir, f"{len(temps)} temp file(s) left by a killed writer", True))
    if LOCK_FILES["soft"] in names:
        stale = _stale_soft_lock(run_dir / LOCK_FILES["soft"])
        if stale is not None:
            problems.append(Problem("stale-lock", run_dir, stale[0], True))
    if LOCK_FILES["flock"] + QUEUE_SUFFIX in names:
        nodes = _stale_queue_nodes(run_dir, now)
        if nodes:
            detail = f"{len(nodes)} queue entry(ies) left by writers that gave up or died while waiting"
            problems.append(Problem("stale-lock", run_dir, detail, True))
    try:
        config, _, _ = _storage.read_run_files(str(run_dir))
    except FileNotFoundError:
        if _age(run_dir, now) > QUIET_SECONDS:
            detail = "no config.toml: its creator died before writing it (inspect it, remove it by hand)"
            problems.append(Problem("half-created", run_dir, detail, False))
        return problems
    except CorruptRunFileError as exc:
        metrics_broken = Path(exc.path).name == _storage.METRICS_FILE
        detail = str(exc) + (
            " (rebuilt from the history by --fix)" if metrics_broken else " (cannot be rebuilt: edit it by hand)"
        )
        problems.append(Problem("corrupt", run_dir, detail, metrics_broken))
        return problems
    try:
        meta, _ = _storage.split_config(config, run_dir / _storage.CONFIG_FILE)
    except CorruptRunFileError as exc:
        problems.append(Problem("corrupt", run_dir, f"{exc} (cannot be rebuilt: edit it by hand)", False))
        return problems
    problems.extend(_check_lock_kind(run_dir, meta, census))
    if meta.get("status") == "running":
        gone = _process_gone(run_dir, meta, now, stale_after)
        if gone:
            problems.append(Problem("crashed", run_dir, f"marked running, but {gone}", True))
    return problems


def _check_lock_kind(run_dir: Path, meta: dict[str, Any], census: Census | None) -> list[Problem]:
    filesystem = _fs.remembered(run_dir)
    try:
        lock = resolve_lock_kind(None, recorded_kind(meta))
    except ValueError as exc:
        return [Problem("unsafe-lock", run_dir, f"cannot tell its lock: {exc}", False)]
    if filesystem is None:
        return [Problem("unsafe-lock", run_dir, "cannot tell which filesystem it is on", False)]
    if census is not None:
        key = (filesystem.type, filesystem.mount_point, lock)
        census[key] = census.get(key, 0) + 1
    if filesystem.unsupported:
        return [Problem("unsafe-lock", run_dir, f"{filesystem.unsupported}; keep runs elsewhere", False)]
    if lock == "flock" and filesystem.lock == "soft":
        detail = (
            f"records lock=flock, but {filesystem.why}: writers on other machines are not excluded "
            "(fine while every writer runs on one machine; otherwise create runs here with lock='auto')"
        )
        return [Problem("unsafe-lock", run_dir, detail, False)]
    return []


def _process_gone(run_dir: Path, meta: dict[str, Any], now: float, stale_after: float) -> str | None:
    pid, host = meta.get("pid"), meta.get("hostname")
    if host == _history.HOST and isinstance(pid, int):
        created = meta.get("created_at")
        if not _alive(pid, created.timestamp() if isinstance(created, datetime.datetime) else None):
            return f"its process {pid} on this host is gone"
        return None
    quiet = now - _last_activity(run_dir)
    if quiet > stale_after:
        return f"it ran on {host!s} and none of its files changed for {quiet / 3600:.1f} h"
    return None


def _alive(pid: int, created_at: float | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process: it exists
    started = _process_start(pid)
    # A pid reused by a process started after the run was created is not the run's process.
    return started is None or created_at is None or started <= created_at + 1.0


def _process_start(pid: int) -> float | None:
    """When process ``pid`` started (Linux ``/proc``), or ``None`` where that cannot be known."""
    state = _lease.process_state(pid)
    if state is None:
        return None
    try:
        with open("/proc/stat", "rb") as file:
            boot = next(float(line.split()[1]) for line in file if line.startswith(b"btime "))
        return boot + int(state[1]) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError, StopIteration):
        return None


def _last_activity(run_dir: Path) -> float:
    latest = 0.0
    for path in (run_dir / _storage.CONFIG_FILE, run_dir / _storage.METRICS_FILE, run_dir / _history.HISTORY_DIR):
        latest = max(latest, _mtime(path))
    history = run_dir / _history.HISTORY_DIR
    if history.is_dir():
        for entry in os.scandir(history):
            latest = max(latest, _mtime(Path(entry.path)))
    return latest


def _stale_soft_lock(lock_file: Path) -> tuple[str, bytes] | None:
    """Why the soft lock at ``lock_file`` is stale, with the record judged so; ``None`` if it is not."""
    try:
        record = _lease.read_record(str(lock_file))
    except OSError:
        return None
    if record is None:
        return None
    gone = _lease.holder_gone(record)
    if gone:
        return f"soft lock of {_lease.describe(record)}: {gone}", record
    if _lease.held_here(record):
        return None
    # Another machine's holder, or no readable one: its age by the server's clock, never this machine's.
    age = _lease.age_on_server(str(lock_file))
    if age is not None and age > QUIET_SECONDS:
        held = "held for over a minute (a locked update takes milliseconds)"
        return f"soft lock of {_lease.describe(record)}, {held}", record
    return None


def _stale_queue_nodes(run_dir: Path, now: float) -> list[Path]:
    """Queue entries nobody holds, untouched for over a minute (see ``_queue``)."""
    stale = []
    queue_dir = run_dir / (LOCK_FILES["flock"] + QUEUE_SUFFIX)
    for node in sorted(queue_dir.glob("*" + NODE_SUFFIX)):
        if _age(node, now) <= QUIET_SECONDS:
            continue
        try:
            fd = os.open(node, os.O_RDONLY)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # free: its owner let go or died
        except BlockingIOError:
            continue  # a writer waiting right now
        finally:
            os.close(fd)
        stale.append(node)
    return stale


def _lock_kind(paths: _storage.RunPaths) -> LockKind:
    """The lock kind the run recorded, which every writer of it uses."""
    meta, _ = _storage.split_config(_storage.read_toml(paths.config), paths.config)
    return resolve_lock_kind(None, recorded_kind(meta))


def _mark_crashed(run_dir: Path) -> str:
    paths = _storage.RunPaths(run_dir)
    lock = _lock_kind(paths)
    now = datetime.datetime.now(datetime.timezone.utc)
    outcome = "marked crashed"

    def mark(document: dict[str, Any]) -> dict[str, Any]:
        nonlocal outcome
        meta = document.setdefault("_meta", {})
        if meta.get("status") != "running":
            outcome = f"left alone: its status became {meta.get('status')!r} meanwhile"
            return document
        meta["status"] = "crashed"
        meta["crash_detected_at"] = now
        return document

    _storage.update_file(paths, paths.config, mark, lock=lock, lock_timeout=resolve_lock_timeout(None), durable=True)
    return outcome


def _rebuild_metrics(run_dir: Path) -> str:
    paths = _storage.RunPaths(run_dir)
    lock = _lock_kind(paths)
    records = sorted(_history.read(run_dir), key=lambda record: record.get("time") or 0.0)
    with run_lock(paths.lock(lock), resolve_lock_timeout(None), lock) as fence:
        try:
            _storage.read_toml(paths.metrics)
        except (FileNotFoundError, CorruptRunFileError):
            pass
        else:
            return "left alone: metrics.toml was repaired meanwhile"
        merged: dict[str, Any] = {}
        for record in records:
            _document.deep_merge(merged, record["metrics"])
        keep = _free_name(run_dir / f"{_storage.METRICS_FILE}.corrupt")
        fence()
        os.replace(paths.metrics, keep)
        if merged:
            _storage.write_toml(paths.metrics, merged, durable=True, before_replace=fence)
    return f"rebuilt metrics.toml from {len(records)} history record(s); the corrupt file is kept as {keep.name}"


def _free_name(path: Path) -> Path:
    candidate, n = path, 1
    while candidate.exists():
        n += 1
        candidate = path.with_name(f"{path.name}.{n}")
    return candidate


def _visible_dirs(directory: Path) -> list[Path]:
    return [directory / name for name in _scan.subdirs(str(directory), [])]  # one that cannot be listed: none


def _age(path: Path, now: float) -> float:
    return now - _mtime(path)


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0
