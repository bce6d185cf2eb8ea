"""The one write primitive: every byte ml_manager writes to a data file goes through :func:`atomic_write`.

A reader opening the target at any moment sees either the old content or the new, whole; never a torn file.
"""

from __future__ import annotations

import contextlib
import os
import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

TEMP_SUFFIX = ".tmp"
_TEMP_NAME = re.compile(r"\..+\.[0-9a-f]{12}\.tmp")


def temp_path_for(target: Path) -> Path:
    """A fresh, hidden temp name beside ``target`` (same directory, so ``os.replace`` stays atomic)."""
    return target.with_name(f".{target.name}.{os.urandom(6).hex()}{TEMP_SUFFIX}")


def atomic_write(
    target: Path,
    data: bytes,
    *,
    durable: bool = True,
    sync_directory: bool = True,
    before_replace: Callable[[], None] | None = None,
) -> None:
    """Replace ``target`` with ``data`` atomically.

    Temp file in the target's directory, write, flush, fsync, ``os.replace`` over the target, fsync the
    directory.  On any failure the temp file is removed, the target keeps its previous bytes and the error is
    re-raised.

    Args:
        target: the file to create or replace.
        data: its complete new content.
        durable: fsync the file and its directory, so the new content survives a power loss once this
            returns.  Without it the replace is still atomic for readers, but a crash of the machine (not of the
            process) may lose the latest writes.
        sync_directory: with ``durable``, also fsync the directory here.  A caller holding a lock passes
            ``False`` and calls :func:`sync_directory_of` itself once it has let go: the rename is already
            visible to every reader, only its durability waits, and the lock is held for less.
        before_replace: called once the temp file is complete, just before the replace; whatever it raises
            abandons the write (the temp file removed, the target untouched) and propagates.

    Raises:
        OSError: the write failed.  Same errno as the underlying error (kept as ``__cause__``), ``filename``
            is ``target`` and the message says which step failed.
    """
    temp = temp_path_for(target)
    step = "creating a temp file for"
    try:
        # O_EXCL: never follow or reuse anything already sitting at the temp name.
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        try:
            try:
                step = "writing"
                write_all(fd, data)
                if durable:
                    step = "syncing (fsync)"
                    os.fsync(fd)
            finally:
                os.close(fd)
            if before_replace is not None:
                before_replace()
            step = "replacing (os.replace)"
            os.replace(temp, target)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp)
            raise
    except OSError as exc:
        raise OSError(exc.errno, f"{exc.strerror or exc} while {step} the file", str(target)) from exc
    if durable and sync_directory:
        sync_directory_of(target)


def write_all(fd: int, data: bytes) -> None:
    """``os.write`` until every byte of ``data`` is written (a write may take only part of it)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def sync_directory_of(target: Path) -> None:
    """fsync the directory holding ``target``, so a rename onto ``target`` survives a power loss.

    Raises:
        OSError: the sync failed; ``filename`` is ``target``.
    """
    try:
        _fsync_directory(target.parent)
    except OSError as exc:
        message = f"{exc.strerror or exc} while syncing the directory of the file"
        raise OSError(exc.errno, message, str(target)) from exc


def remove_stale_temps(directory: Path) -> list[Path]:
    """Delete the temp files that writers killed mid-write left in ``directory``.

    Only safe while holding the lock that every writer of the directory takes (a live writer's temp file
    exists only inside that lock).  Never touches anything but this module's temp names.

    Returns:
        The files removed.
    """
    removed: list[Path] = []
    try:
        names = os.listdir(directory)
    except OSError:
        return removed
    for name in names:
        if _TEMP_NAME.fullmatch(name):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(directory / name)
                removed.append(directory / name)
    return removed


def _fsync_directory(directory: Path) -> None:
    # The rename is only durable once the directory entry itself reaches the disk.
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
