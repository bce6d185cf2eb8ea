"""Per-step history: every ``add_metrics`` and ``log`` call as one record, in one append-only file per process.

    {run_dir}/history/{host}-{pid}.jsonl     one JSON object per line:
        {"step": 3, "time": 1795662508.03, "writer": "rank1", "metrics": {"loss": 0.25}}

Why one file per writer: appends never contend (no lock, no read, no rewrite), so a record costs one small
write (plus an fsync when durable) however long the run gets; readers merge the files.  Why JSON lines: a
record is appended as one line by one ``write``, and a writer killed mid-record leaves a partial last line,
which readers skip; the next writer process that appends to the same file first ends that line.
"""

from __future__ import annotations

import datetime
import os
import threading
from typing import TYPE_CHECKING, Any

from . import _log
from ._atomic import write_all

if TYPE_CHECKING:
    from pathlib import Path


HISTORY_DIR = "history"
HOST = os.uname().nodename if hasattr(os, "uname") else __import__("socket").gethostname()
_FILE_HOST = HOST.replace(os.sep, "_") or "host"


class _Appenders:
    """This process's appenders: one lock for all of them, and which files it has checked the tail of."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.guard = threading.Lock()
        self.checked: set[str] = set()


_appenders = _Appenders()
os.register_at_fork(after_in_child=_appenders.reset)


def writer_file(run_dir: Path) -> Path:
    """This process's history file in ``run_dir`` (forked children get their own)."""
    return run_dir / HISTORY_DIR / f"{_FILE_HOST}-{os.getpid()}.jsonl"


def writer_name() -> str:
    """How this process signs its records: ``rank{n}`` under torch.distributed, else ``{host}:{pid}``."""
    from . import _dist

    ranks = _dist.current()
    return f"rank{ranks.rank}" if ranks is not None else f"{HOST}:{os.getpid()}"


def _default(value: Any) -> Any:
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        return value.isoformat()
    raise TypeError(f"cannot record {type(value).__name__} in the history")


def encode(record: dict[str, Any]) -> bytes:
    """One record as one line (NaN and ±inf kept, as Python's json writes and reads them)."""
    import json  # imported on first use, like everything only writers or readers need

    return (json.dumps(record, default=_default, ensure_ascii=False, separators=(",", ":")) + "\n").encode()


# One buffered record of MLRun.log: (step, wall time, normalised metrics).
Record = tuple[int | None, float, dict[str, Any]]


def encode_batch(records: list[Record], writer: str) -> bytes:
    """Many records as JSON lines, the same text :func:`encode` writes, about ten times faster.

    orjson writes NaN and ±inf as ``null`` (metrics are never null): a line with a ``null`` it cannot owe to
    a missing step is written again with :func:`encode`, so the history keeps NaN as ``NaN``.
    """
    import orjson

    dumps, newline = orjson.dumps, orjson.OPT_APPEND_NEWLINE
    out = bytearray()
    for step, when, values in records:
        record = {"step": step, "time": when, "writer": writer, "metrics": values}
        try:
            line = dumps(record, option=newline)
        except TypeError:  # orjson.JSONEncodeError: a value it does not know (a foreign tzinfo, say)
            line = encode(record)
        else:
            if b"null" in line and line.count(b"null") > (step is None):
                line = encode(record)
        out += line
    return bytes(out)


def append(run_dir: Path, record: dict[str, Any], *, durable: bool) -> None:
    """Append one record to this process's history file; see :func:`append_lines`."""
    append_lines(run_dir, encode(record), durable=durable)


def append_lines(run_dir: Path, data: bytes, *, durable: bool) -> None:
    """Append whole lines to this process's history file, in one write (and one fsync when durable).

    On failure the file is cut back to its previous length, so that writing the same lines again later never
    duplicates a record.

    Raises:
        OSError: the append failed; ``filename`` is the history file, the message names the failing step.
    """
    path = writer_file(run_dir)
    step = "creating"
    with _appenders.guard:
        fresh = str(path) not in _appenders.checked
        try:
            if fresh:
                path.parent.mkdir(exist_ok=True)
            # Read access too: the first append of a process checks how the file ends.
            fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o666)
        except OSError as exc:
            raise OSError(exc.errno, f"{exc.strerror or exc} while {step} the history file", str(path)) from exc
        try:
            size = os.fstat(fd).st_size
            if fresh and size and os.pread(fd, 1, size - 1) != b"\n":
                # A previous process with this pid may have died mid-record: end its partial line first.
                data = b"\n" + data
            try:
                step = "appending to"
                write_all(fd, data)
                if durable:
                    step = "syncing (fsync)"
                    os.fsync(fd)
            except OSError as exc:
                _cut_back(fd, size, str(path))
                raise OSError(exc.errno, f"{exc.strerror or exc} while {step} the history file", str(path)) from exc
            _appenders.checked.add(str(path))
        finally:
            os.close(fd)


def _cut_back(fd: int, size: int, path: str) -> None:
    try:
        os.ftruncate(fd, size)
    except OSError:
        # The file may now end in a partial line: the next append checks its end again and closes it.
        _appenders.checked.discard(path)


def read(run_dir: Path) -> list[dict[str, Any]]:
    """Every whole record of the run, file by file (each file in the order its writer wrote it).

    Lines that do not parse (a writer killed mid-record) are skipped, with one warning per file naming it.
    """
    records: list[dict[str, Any]] = []
    try:
        files = sorted((run_dir / HISTORY_DIR).glob("*.jsonl"))
    except OSError:
        return records
    import json

    for path in files:
        try:
            lines = [line for line in path.read_bytes().splitlines() if line]
        except OSError as exc:
            _log.warning("skipping history file %s: %s", path, exc.strerror or exc)
            continue
        try:
            # One parse of the whole file as an array: much faster than a parse per line.
            parsed = json.loads(b"[" + b",".join(lines) + b"]")
        except ValueError:
            parsed = [_parse(line) for line in lines]
        whole = [r for r in parsed if isinstance(r, dict) and isinstance(r.get("metrics"), dict)]
        if len(whole) < len(lines):
            _log.warning("%s: skipped %d partial or unreadable record(s)", path, len(lines) - len(whole))
        records.extend(whole)
    return records


def _parse(line: bytes) -> Any:
    import json

    try:
        return json.loads(line)
    except ValueError:
        return None
