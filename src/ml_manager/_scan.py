"""Every run directory under a base directory, with the identity of its two files: what a load checks its
cache against.

On a large project this listing is most of a load that finds nothing changed: two ``stat`` calls per run.
Threads cannot overlap them with the rest of the load (each call needs the interpreter lock back), so the
first load of a large cached project runs this file as a script in a second interpreter (``python -I -S``:
the standard library only, no site packages, nothing from the environment) while this one reads the cache
and builds the frame; git preloads its index the same way with threads.  Any failure there — no usable
interpreter, an unreadable directory — and the listing is made here instead, with its warnings.

Standard library only, and importable as a script: nothing here may import the package.
"""

from __future__ import annotations

import os
import subprocess
import sys
from array import array

CONFIG, METRICS = "/config.toml", "/metrics.toml"
# The inode number, folded into a signed 64-bit integer (a few file systems use all 64 bits).
INODE_MASK = (1 << 63) - 1
NO_CONFIG = (-2,) * 8  # never the key of a parsed run: the run is read, and found gone or still being created
NO_FILE = (-1, -1, -1, -1)  # the half of a run's key for a file it does not have (metrics.toml, as a rule)


def subdirs(directory: str, errors: list[tuple[str, OSError]]) -> list[str]:
    """The names of the visible subdirectories, sorted; a directory that cannot be listed is added to
    ``errors``."""
    try:
        with os.scandir(directory) as entries:
            names = [entry.name for entry in entries if _is_dir(entry)]
    except OSError as exc:
        errors.append((directory, exc))
        return []
    names.sort()
    return names


def _is_dir(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir() and not entry.name.startswith(".")
    except OSError:
        return False


def scan(base: str, errors: list[tuple[str, OSError]], *, identify: bool = True) -> tuple[list[str], array[int]]:
    """``project/run_id`` of every run (by project, then id), and its files' identities: 8 integers per run,
    the inode, size, modification and change time (ns) of ``config.toml`` then of ``metrics.toml`` (with
    ``identify=False``, no ``stat`` and every key :data:`NO_CONFIG`: nothing cached to compare with)."""
    places: list[str] = []
    keys = array("q")
    stat, add, mask = os.stat, keys.extend, INODE_MASK
    for project in subdirs(base, errors):
        project_dir = os.path.join(base, project)
        runs = subdirs(project_dir, errors)
        prefix = project + "/"
        places.extend([prefix + name for name in runs])
        if not identify:
            keys.extend(NO_CONFIG * len(runs))
            continue
        # Paths relative to the project's directory: the kernel walks two names per call, not the whole path.
        fd = _open_directory(project_dir)
        try:
            for name in runs:
                where = name if fd is not None else os.path.join(project_dir, name)
                try:
                    c = stat(where + CONFIG, dir_fd=fd)
                except OSError:
                    add(NO_CONFIG)  # missing, or unreadable: the run is read, and skipped with the reason
                    continue
                try:
                    m = stat(where + METRICS, dir_fd=fd)
                except FileNotFoundError:
                    add((c.st_ino & mask, c.st_size, c.st_mtime_ns, c.st_ctime_ns, *NO_FILE))
                    continue
                except OSError:
                    add(NO_CONFIG)
                    continue
                add((
                    c.st_ino & mask, c.st_size, c.st_mtime_ns, c.st_ctime_ns,
                    m.st_ino & mask, m.st_size, m.st_mtime_ns, m.st_ctime_ns,
                ))  # fmt: skip
        finally:
            if fd is not None:
                os.close(fd)
    return places, keys


def _open_directory(path: str) -> int | None:
    """A descriptor of the directory to look up names from, where the platform has them; else ``None``."""
    if os.stat not in os.supports_dir_fd or not hasattr(os, "O_DIRECTORY"):
        return None
    try:
        return os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return None


class Aside:
    """:func:`scan` running in a second interpreter."""

    def __init__(self, base: str) -> None:
        self.process: subprocess.Popen[bytes] | None = None
        executable = sys.executable or ""
        if getattr(sys, "frozen", False) or not os.path.basename(executable).lower().startswith("python"):
            return  # an embedding program, not a Python interpreter: scan here
        try:
            self.process = subprocess.Popen(
                [executable, "-I", "-S", __file__, base],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
            )
        except OSError:
            self.process = None

    def close(self) -> None:
        """Stop the other interpreter if it still runs."""
        if self.process is not None and self.process.returncode is None:
            self.process.kill()
            self.process.communicate()

    def result(self) -> tuple[list[str], array[int]] | None:
        """The listing, or ``None`` if the other interpreter could not make it (then scan here)."""
        if self.process is None:
            return None
        output, _ = self.process.communicate()
        if self.process.returncode != 0 or len(output) < 16:
            return None
        count, size = int.from_bytes(output[:8], "little"), int.from_bytes(output[8:16], "little")
        keys = array("q")
        if (len(output) - 16 - size) % keys.itemsize:
            return None
        keys.frombytes(output[16 + size :])
        places = output[16 : 16 + size].decode("utf-8", "surrogateescape").split("\0") if count else []
        if len(places) != count or len(keys) != 8 * count:
            return None
        return places, keys


def _main() -> int:
    errors: list[tuple[str, OSError]] = []
    places, keys = scan(sys.argv[1], errors)
    if errors:
        return 1  # the loading process lists again, and warns about each
    text = "\0".join(places).encode("utf-8", "surrogateescape")
    sys.stdout.buffer.write(len(places).to_bytes(8, "little") + len(text).to_bytes(8, "little") + text)
    sys.stdout.buffer.write(keys.tobytes())
    return 0


if __name__ == "__main__":
    sys.exit(_main())
