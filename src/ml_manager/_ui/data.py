"""What the page draws: the runs table (with a query checked before pandas sees it) and downsampled history."""

from __future__ import annotations

import ast
import contextlib
import datetime
import math
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ml_manager import _history
from ml_manager.project import MLProject

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    import pandas as pd

X_AXES = ("step", "time", "relative")
_STATUS_COLUMNS = {"_meta.status": "status", "_meta.created_at": "created"}


class QueryError(ValueError):
    """A query the page may not run: not made of column names, literals, comparisons and and/or/not."""


# -- the runs table --------------------------------------------------------------------------------------------


class Snapshot:
    """The runs under a base directory, loaded once and reloaded on demand (cheaply: unchanged runs are kept)."""

    def __init__(self, base_dir: str | Path) -> None:
        self.base_dir = Path(base_dir)
        self.project = MLProject(self.base_dir)

    def reload(self) -> None:
        self.project.load_project()

    def run_dir(self, project_name: str, run_id: str) -> Path | None:
        """The directory of a run the last scan found; ``None`` for anything else (never a path from a request)."""
        df = self.project.df
        if df.empty:
            return None
        found = df[(df["project_name"] == project_name) & (df["run_id"] == run_id)]
        if found.empty:
            return None
        return self.base_dir / str(found.iloc[0]["project_name"]) / str(found.iloc[0]["run_id"])

    def table(self, query: str | None = None) -> dict[str, Any]:
        """The runs table as JSON-ready columns: ids, status, created, the config keys that differ, the metrics.

        Raises:
            QueryError: ``query`` is not allowed or does not parse.
        """
        df = self.project.df
        config = [c for c in self.project.config_columns if c in df.columns and _varies(df[c])]
        metrics = [c for c in self.project.metric_columns if c in df.columns]
        if query:
            df = run_query(df, query)
        columns = ["project_name", "run_id", *[c for c in _STATUS_COLUMNS if c in df.columns], *config, *metrics]
        rows = [[_plain(value) for value in row] for row in df[columns].itertuples(index=False, name=None)]
        names = [_STATUS_COLUMNS.get(c, c) for c in columns]
        return {"columns": names, "config": config, "metrics": metrics, "rows": rows}


def _varies(column: pd.Series[Any]) -> bool:
    values = {repr(v) for v in column if not _missing(v)}
    return len(values) > 1 or (len(values) == 1 and any(_missing(v) for v in column))


def _missing(value: Any) -> bool:
    try:
        return bool(value is None or (isinstance(value, float) and math.isnan(value)))
    except TypeError:
        return False


def _plain(value: Any) -> Any:
    """A cell as strict JSON: missing as null, infinities as strings, datetimes as ISO text."""
    if hasattr(value, "item") and not isinstance(value, (list, dict)):
        with contextlib.suppress(ValueError, AttributeError):
            value = value.item()
    if _missing(value) or type(value).__name__ in ("NAType", "NaTType", "_Absent"):
        return None
    if isinstance(value, float) and math.isinf(value):
        return str(value)
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


# -- queries ---------------------------------------------------------------------------------------------------

_BACKTICKED = re.compile(r"`([^`]*)`")
_COMPARISONS = (ast.Eq, ast.NotEq, ast.Lt, ast.LtE, ast.Gt, ast.GtE, ast.In, ast.NotIn)


def check_query(query: str, columns: Iterable[str]) -> None:
    """Accept only column names (bare or in backticks), literals, comparisons and ``and``/``or``/``not``.

    Raises:
        QueryError: anything else (a call, an attribute, an ``@`` variable, arithmetic...), or an unknown
            column, naming it.
    """
    known = set(columns)
    names: dict[str, str] = {}

    def placeholder(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in known:
            raise QueryError(f"unknown column {name!r}")
        names[f"__column_{len(names)}"] = name
        return f"__column_{len(names) - 1}"

    text = _BACKTICKED.sub(placeholder, query)
    if "@" in text:
        raise QueryError("'@' (a variable) is not allowed in a query")
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as exc:
        raise QueryError(f"the query does not parse: {exc.msg}") from None
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            if node.id not in names and node.id not in known:
                raise QueryError(f"unknown column {node.id!r}")
        elif isinstance(node, ast.Constant):
            if not isinstance(node.value, (str, int, float, bool)) and node.value is not None:
                raise QueryError(f"the literal {node.value!r} is not allowed")
        elif isinstance(node, ast.Compare):
            if not all(isinstance(op, _COMPARISONS) for op in node.ops):
                raise QueryError("only ==, !=, <, <=, >, >=, in and not in compare")
        elif isinstance(node, ast.UnaryOp):
            if not isinstance(node.op, (ast.Not, ast.USub, ast.UAdd)):
                raise QueryError("only 'not' and a sign apply to one value")
        elif not isinstance(
            node,
            (ast.Expression, ast.BoolOp, ast.And, ast.Or, ast.Not, ast.USub, ast.UAdd, ast.Load, ast.List, ast.Tuple),
        ) and not isinstance(node, _COMPARISONS):
            raise QueryError(f"{type(node).__name__} is not allowed in a query (names, literals, comparisons only)")


def run_query(df: pd.DataFrame, query: str) -> pd.DataFrame:
    """``df.query(query)`` once :func:`check_query` accepted it.

    Raises:
        QueryError: a query that is not allowed, or that pandas cannot evaluate.
    """
    check_query(query, (str(c) for c in df.columns))
    try:
        found: pd.DataFrame = df.query(query, engine="python")
    except Exception as exc:  # pandas raises many kinds for a bad expression
        raise QueryError(str(exc).splitlines()[0] if str(exc) else type(exc).__name__) from None
    return found


# -- history ---------------------------------------------------------------------------------------------------


def read_history(run_dir: Path) -> list[dict[str, Any]]:
    """Every whole record of the run's history, file by file."""
    return HistoryReader().read(run_dir)


class HistoryReader:
    """Reads runs' history files, keeping what it parsed: a file that grew is read from where it stopped (its
    byte offset), so a live run's next look costs only its new records.  A file replaced or cut back (a failed
    append is undone by truncation) is read again whole."""

    def __init__(self) -> None:
        # path -> (inode, bytes consumed, the records of those bytes)
        self.files: dict[str, tuple[int, int, list[dict[str, Any]]]] = {}

    def read(self, run_dir: Path) -> list[dict[str, Any]]:
        records: list[dict[str, Any]] = []
        try:
            paths = sorted((run_dir / _history.HISTORY_DIR).glob("*.jsonl"))
        except OSError:
            return records
        for path in paths:
            key = str(path)
            try:
                with path.open("rb") as file:
                    inode, size = _identity(file.fileno())
                    known = self.files.get(key)
                    if known is not None and known[0] == inode and known[1] <= size:
                        file.seek(known[1])
                        done, parsed = known[1], known[2]
                    else:
                        done, parsed = 0, []
                    data = file.read(size - done)
            except OSError:
                continue
            whole = data.rfind(b"\n") + 1  # a last line without its newline is still being written
            if whole:
                parsed = parsed + parse_lines(data[:whole])
            self.files[key] = (inode, done + whole, parsed)
            records.extend(parsed)
        return records


def _identity(fd: int) -> tuple[int, int]:
    import os

    status = os.fstat(fd)
    return status.st_ino, status.st_size


def parse_lines(data: bytes) -> list[dict[str, Any]]:
    """The records of whole JSON lines (orjson: several times the standard parser); unreadable lines skipped."""
    import orjson

    try:
        # One call for the whole block: much faster than one per line.
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
    return [r for r in parsed if isinstance(r, dict) and isinstance(r.get("metrics"), dict)]


def metric_names(records: Iterable[dict[str, Any]]) -> list[str]:
    """The flattened metric names the records hold, in first-seen order."""
    from ml_manager._frame import flatten

    seen: dict[str, None] = {}
    for record in records:
        for name, value in flatten(record["metrics"]).items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                seen.setdefault(name, None)
    return list(seen)


def series(
    records: Sequence[dict[str, Any]],
    metric: str,
    *,
    x: str = "step",
    width: int = 1000,
    start: float | None = None,
    end: float | None = None,
) -> list[dict[str, Any]]:
    """One series per writer of ``metric``: ``{"writer", "x", "y", "points"}``, downsampled to ``width`` buckets.

    Each bucket keeps its lowest and highest point (so a spike is never hidden), and the first and last points
    are always kept.  ``x``: ``step``, ``time`` (seconds since the epoch) or ``relative`` (seconds since the
    run's first record); ``start``/``end`` cut the range (a zoom), drawn then at full resolution of the range.
    """
    if x not in X_AXES:
        raise QueryError(f"x must be one of {', '.join(X_AXES)}, not {x!r}")
    first_time = min((r["time"] for r in records if isinstance(r.get("time"), (int, float))), default=0.0)
    by_writer: dict[str, list[tuple[float, float]]] = {}
    path = metric.split(".")
    for record in records:
        value: Any = record["metrics"]
        for part in path:
            value = value.get(part) if isinstance(value, dict) else None
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            continue
        if x == "step":
            position = record.get("step")
            if not isinstance(position, int):
                continue
        else:
            when = record.get("time")
            if not isinstance(when, (int, float)):
                continue
            position = when - first_time if x == "relative" else when
        if (start is not None and position < start) or (end is not None and position > end):
            continue
        by_writer.setdefault(str(record.get("writer", "")), []).append((float(position), float(value)))
    out = []
    for writer in sorted(by_writer):
        points = sorted(by_writer[writer])
        kept = downsample(points, max(2, width))
        out.append(
            {
                "writer": writer,
                "x": [p[0] for p in kept],
                "y": [_json_float(p[1]) for p in kept],
                "points": len(points),
            }
        )
    return out


def downsample(points: Sequence[tuple[float, float]], buckets: int) -> list[tuple[float, float]]:
    """At most about ``2 * buckets`` points: per bucket of the x range its lowest and highest (in x order); the
    first and last points always."""
    if len(points) <= 2 * buckets:
        return list(points)
    low, high = points[0][0], points[-1][0]
    span = (high - low) or 1.0
    kept: list[tuple[float, float]] = [points[0]]
    index, total = 1, len(points) - 1
    for bucket in range(buckets):
        edge = low + span * (bucket + 1) / buckets
        lowest = highest = None
        while index < total and (points[index][0] <= edge or bucket == buckets - 1):
            point = points[index]
            if lowest is None or _below(point[1], lowest[1]):
                lowest = point
            if highest is None or _below(highest[1], point[1]):
                highest = point
            index += 1
        if lowest is not None and highest is not None:
            kept.extend(sorted({lowest, highest}))
    kept.append(points[-1])
    return kept


def _below(a: float, b: float) -> bool:
    return a < b or (math.isnan(b) and not math.isnan(a))


def _json_float(value: float) -> float | None:
    return value if math.isfinite(value) else None


def as_json(value: Any) -> Any:
    """A config, metrics or meta value as strict JSON (tables and arrays kept)."""
    if isinstance(value, dict):
        return {str(k): as_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [as_json(v) for v in value]
    return _plain(value)
