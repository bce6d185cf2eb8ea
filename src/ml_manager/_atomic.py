"""The one write primitive: every byte ml_manager writes to a data file goes through :func:`atomic_write`.

A reader opening the target at any moment sees either the old content or the new, whole; never a torn file.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from typing import TYPE_CHECKING, NoReturn

if TYPE_CHECKING:
    from pathlib import Path

TEMP_SUFFIX = ".tmp"


def temp_path_for(target: Path) -> Path:
    """A fresh, hidden temp name beside ``target`` (same directory, so ``os.replace`` stays atomic)."""
    return target.with_name(f".{target.name}.{secrets.token_hex(6)}{TEMP_SUFFIX}")


def atomic_write(target: Path, data: bytes, *, durable: bool = True) -> None:
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

    Raises:
        OSError: the write failed; the error names ``target``.
    """
    temp = temp_path_for(target)
    try:
        # O_EXCL: never follow or reuse anything already sitting at the temp name.
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except OSError as exc:
        _reraise_naming(exc, target)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temp, target)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        if isinstance(exc, OSError):
            _reraise_naming(exc, target)
        raise
    if durable:
        _fsync_directory(target.parent)


def _fsync_directory(directory: Path) -> None:
    # The rename is only durable once the directory entry itself reaches the disk.
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _reraise_naming(exc: OSError, target: Path) -> NoReturn:
    """Re-raise ``exc`` as the same kind of OSError, saying which file could not be written."""
    if exc.errno is None or exc.filename is not None:
        raise exc
    raise OSError(exc.errno, exc.strerror or str(exc), str(target)) from exc
