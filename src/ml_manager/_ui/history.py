"""A run's history as the page draws it: columns per metric and writer, read incrementally, downsampled."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from ml_manager import _history

from .query import QueryError

if TYPE_CHECKING:
    from pathlib import Path

X_AXES = ("step", "time", "relative")


class Column:
    """One metric of one writer: its records' steps (NaN where none), wall times and values, in file order."""

    __slots__ = ("_arrays", "steps", "times", "values")

    def __init__(self) -> None:
        self.steps: list[float] = []
        self.times: list[float] = []
        self.values: list[float] = []
        self._arrays: tuple[int, Any] | None = None

    def arrays(self) -> Any:
        """The three lists as numpy arrays, made again only after the column grew."""
        import numpy as np

        if self._arrays is None or self._arrays[0] != len(self.values):
            self._arrays = (
                len(self.values),
                (
                    np.array(self.steps, dtype=np.float64),
                    np.array(self.times, dtype=np.float64),
                    np.array(self.values, dtype=np.float64),
                ),
            )
        return self._arrays[1]


class RunHistory:
    """A run's history as columns (metric -> writer -> :class:`Column`), its first time, its last records."""

    def __init__(self) -> None:
        self.columns: dict[str, dict[str, Column]] = {}
        self.first_time = math.inf
        self.records = 0
        self.tail: list[dict[str, Any]] = []  # the last records, for the run's page
        self.files: dict[str, tuple[int, int]] = {}  # path -> (inode, bytes consumed)

    def add(self, records: list[dict[str, Any]]) -> None:
        from ml_manager._frame import flatten

        columns = self.columns
        for record in records:
            step = record.get("step")
            when = record.get("time")
            step_value = float(step) if type(step) is int else math.nan
            time_value = float(when) if isinstance(when, (int, float)) else math.nan
            self.first_time = min(self.first_time, time_value)
            writer = str(record.get("writer", ""))
            metrics = record["metrics"]
            if any(type(v) is dict for v in metrics.values()):
                metrics = flatten(metrics)
            for name, value in metrics.items():
                kind = type(value)
                if kind is not float and kind is not int:
                    continue
                by_writer = columns.get(name)
                if by_writer is None:
                    by_writer = columns[name] = {}
                column = by_writer.get(writer)
                if column is None:
                    column = by_writer[writer] = Column()
                column.steps.append(step_value)
                column.times.append(time_value)
                column.values.append(float(value))
        self.records += len(records)
        self.tail = (self.tail + records[-_TAIL:])[-_TAIL:]

    def metric_names(self) -> list[str]:
        return list(self.columns)


_TAIL = 200


class HistoryReader:
    """Reads runs' history files into :class:`RunHistory` columns, keeping them: a file that grew is read from
    where it stopped (its byte offset, whole lines only), so a live run's next look costs only its new records.
    A file replaced or cut back (a failed append is undone by truncation) makes the run read again whole."""

    def __init__(self) -> None:
        self.runs: dict[Path, RunHistory] = {}

    def read(self, run_dir: Path) -> RunHistory:
        history = self.runs.get(run_dir) or RunHistory()
        try:
            paths = sorted((run_dir / _history.HISTORY_DIR).glob("*.jsonl"))
        except OSError:
            paths = []
        for path in paths:
            key = str(path)
            try:
                with path.open("rb") as file:
                    inode, size = _identity(file.fileno())
                    known = history.files.get(key)
                    if known is not None and (known[0] != inode or known[1] > size):
                        self.runs.pop(run_dir, None)  # replaced or cut back: start again
                        return self.read(run_dir)
                    done = known[1] if known is not None else 0
                    file.seek(done)
                    data = file.read(size - done)
            except OSError:
                continue
            whole = data.rfind(b"\n") + 1  # a last line without its newline is still being written
            if whole:
                history.add(parse_lines(data[:whole]))
            history.files[key] = (inode, done + whole)
        self.runs[run_dir] = history
        return history


def read_history(run_dir: Path) -> RunHistory:
    """A run's history as columns (a reader that keeps nothing)."""
    return HistoryReader().read(run_dir)


def _identity(fd: int) -> tuple[int, int]:
    import os

    status = os.fstat(fd)
    return status.st_ino, status.st_size


def parse_lines(data: bytes) -> list[dict[str, Any]]:
    """The records of whole JSON lines (orjson: several times the standard parser); unreadable lines skipped."""
    import gc

    import orjson

    # A million small dicts wake the cyclic collector again and again for nothing: it cannot find a cycle in
    # freshly parsed JSON.  Off while parsing (it was measured to take half the time).
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        try:
            parsed = orjson.loads(b"[" + b",".join(line for line in data.splitlines() if line) + b"]")
        except orjson.JSONDecodeError:
            parsed = []
            for line in data.splitlines():
                if not line:
                    continue
                try:
                    parsed.append(orjson.loads(line))
                except orjson.JSONDecodeError:
                    parsed.append(_history._parse(line))  # NaN and infinities, which orjson does not read
    finally:
        if was_enabled:
            gc.enable()
    return [r for r in parsed if isinstance(r, dict) and isinstance(r.get("metrics"), dict)]


def series(
    history: RunHistory,
    metric: str,
    *,
    x: str = "step",
    width: int = 1000,
    start: float | None = None,
    end: float | None = None,
    digits: int | None = None,
) -> list[dict[str, Any]]:
    """One series per writer of ``metric``: ``{"writer", "x", "y", "points"}``, downsampled to ``width`` buckets.

    Each bucket keeps its lowest and highest point (so a spike is never hidden), and the first and last points
    are always kept.  ``x``: ``step``, ``time`` (seconds since the epoch) or ``relative`` (seconds since the
    run's first record); ``start``/``end`` cut the range (a zoom), drawn then at full resolution of the range.
    ``digits``: significant digits kept of each value (a smaller report); default all.
    """
    import numpy as np

    if x not in X_AXES:
        raise QueryError(f"x must be one of {', '.join(X_AXES)}, not {x!r}")
    out = []
    for writer, column in sorted(history.columns.get(metric, {}).items()):
        steps, times, values = column.arrays()
        xs = steps if x == "step" else times - history.first_time if x == "relative" else times
        keep = np.isfinite(xs) & np.isfinite(values)
        if start is not None:
            keep &= xs >= start
        if end is not None:
            keep &= xs <= end
        xs, ys = xs[keep], values[keep]
        if xs.size == 0:
            continue
        if np.any(xs[1:] < xs[:-1]):
            order = np.argsort(xs, kind="stable")
            xs, ys = xs[order], ys[order]
        chosen = downsample_indices(xs, ys, max(2, width))
        xs, ys = xs[chosen], ys[chosen]
        if digits is not None:
            ys = np.array([float(f"{v:.{digits}g}") for v in ys.tolist()])
        out.append(
            {
                "writer": writer,
                "x": [int(v) if v.is_integer() else v for v in xs.tolist()],
                "y": ys.tolist(),
                "points": int(keep.sum()),
            }
        )
    return out


def downsample_indices(xs: Any, ys: Any, buckets: int) -> Any:
    """Which points to draw of ``xs`` (sorted) and ``ys``: all of them when they are at most ``2 * buckets``;
    else per bucket of the x range its lowest and highest point, and the first and last points."""
    import numpy as np

    n = xs.size
    if n <= 2 * buckets:
        return np.arange(n)
    low, high = xs[0], xs[-1]
    span = (high - low) or 1.0
    bucket = np.minimum(((xs - low) / span * buckets).astype(np.int64), buckets - 1)
    starts = np.flatnonzero(np.r_[True, bucket[1:] != bucket[:-1]])
    lowest = np.minimum.reduceat(ys, starts)
    highest = np.maximum.reduceat(ys, starts)
    counts = np.diff(np.r_[starts, n])
    at_lowest = np.flatnonzero(ys == np.repeat(lowest, counts))
    at_highest = np.flatnonzero(ys == np.repeat(highest, counts))
    # The first point of each bucket that holds its extreme (every bucket holds one).
    first_lowest = at_lowest[np.searchsorted(at_lowest, starts)]
    first_highest = at_highest[np.searchsorted(at_highest, starts)]
    return np.unique(np.concatenate(([0, n - 1], first_lowest, first_highest)))
