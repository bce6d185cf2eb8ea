"""What the page draws: the runs table (with a query checked before pandas sees it) and downsampled history."""

from __future__ import annotations

import ast
import contextlib
import datetime
import math
import operator
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ml_manager import _history
from ml_manager._frame import missing, varies
from ml_manager.project import MLProject

if TYPE_CHECKING:
    from collections.abc import Callable

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
        config = [c for c in self.project.config_columns if c in df.columns and varies(df[c])]
        metrics = [c for c in self.project.metric_columns if c in df.columns]
        if query:
            df = run_query(df, query)
        columns = ["project_name", "run_id", *[c for c in _STATUS_COLUMNS if c in df.columns], *config, *metrics]
        rows = [[_plain(value) for value in row] for row in df[columns].itertuples(index=False, name=None)]
        names = [_STATUS_COLUMNS.get(c, c) for c in columns]
        return {"columns": names, "config": config, "metrics": metrics, "rows": rows}


def _plain(value: Any) -> Any:
    """A cell as strict JSON: missing as null, infinities as strings, datetimes as ISO text."""
    if hasattr(value, "item") and not isinstance(value, (list, dict)):
        with contextlib.suppress(ValueError, AttributeError):
            value = value.item()
    if missing(value):
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
_MAX_QUERY = 2000  # characters
_MAX_NODES = 400
_COMPARE: dict[type[ast.cmpop], Callable[[Any, Any], Any]] = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
}


def run_query(df: pd.DataFrame, query: str) -> pd.DataFrame:
    """The rows of ``df`` a query selects, in ``MLProject.search``'s language, evaluated here from its checked
    syntax tree (pandas never parses the text): column names (bare or in backticks), literals, comparisons
    (``==``, ``!=``, ``<``, ``<=``, ``>``, ``>=``, ``in``, ``not in`` a list), ``and``, ``or``, ``not``.
    Every operand is evaluated once, so the cost grows with the query's length, never faster.

    Raises:
        QueryError: anything else (a call, an attribute, an ``@`` variable, arithmetic...), an unknown column,
            a query too long, or a comparison the values do not allow, named in the message.
    """
    import pandas as pd

    if len(query) > _MAX_QUERY:
        raise QueryError(f"the query is longer than {_MAX_QUERY} characters")
    known = {str(c) for c in df.columns}
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
        tree = ast.parse(text.strip(), mode="eval")
    except (SyntaxError, ValueError) as exc:
        raise QueryError(f"the query does not parse: {getattr(exc, 'msg', exc)}") from None
    except (RecursionError, MemoryError):
        raise QueryError("the query is nested too deeply") from None
    if sum(1 for _ in ast.walk(tree)) > _MAX_NODES:
        raise QueryError(f"the query has more than {_MAX_NODES} parts")
    try:
        mask = _condition(tree.body, df, names)
    except QueryError:
        raise
    except (TypeError, ValueError) as exc:
        raise QueryError(f"cannot compare these values: {exc}") from None
    if not isinstance(mask, pd.Series):
        mask = pd.Series(bool(mask), index=df.index)
    selected: pd.DataFrame = df[mask.fillna(False).astype(bool)]
    return selected


def _condition(node: ast.expr, df: pd.DataFrame, names: dict[str, str]) -> Any:
    """A boolean Series (or a bool) for a condition: and/or/not of comparisons, or a column of booleans."""
    if isinstance(node, ast.BoolOp):
        parts = [_condition(value, df, names) for value in node.values]
        combine = operator.and_ if isinstance(node.op, ast.And) else operator.or_
        result = parts[0]
        for part in parts[1:]:
            result = combine(result, part)
        return result
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        inner = _condition(node.operand, df, names)
        return not inner if isinstance(inner, bool) else ~inner
    if isinstance(node, ast.Compare):
        values = [_operand(item, df, names) for item in (node.left, *node.comparators)]
        chained: Any = True
        for op, left, right in zip(node.ops, values, values[1:], strict=False):
            chained = chained & _compare(op, left, right)
        return chained
    if isinstance(node, ast.Name):
        return _operand(node, df, names)
    raise QueryError(f"{type(node).__name__} is not allowed in a query (names, literals, comparisons only)")


def _operand(node: ast.expr, df: pd.DataFrame, names: dict[str, str]) -> Any:
    if isinstance(node, ast.Name):
        column = names.get(node.id, node.id)
        if column not in df.columns:
            raise QueryError(f"unknown column {column!r}")
        return df[column]
    if isinstance(node, ast.Constant) and (node.value is None or isinstance(node.value, (str, int, float, bool))):
        return node.value
    if (
        isinstance(node, ast.UnaryOp)
        and isinstance(node.op, (ast.USub, ast.UAdd))
        and isinstance(node.operand, ast.Constant)
        and isinstance(node.operand.value, (int, float))
        and not isinstance(node.operand.value, bool)
    ):
        return -node.operand.value if isinstance(node.op, ast.USub) else node.operand.value
    if isinstance(node, (ast.List, ast.Tuple)):
        items = [_operand(item, df, names) for item in node.elts]
        if any(hasattr(item, "index") and not isinstance(item, (str, list)) for item in items):
            raise QueryError("a list in a query holds literals only")
        return items
    raise QueryError(f"{type(node).__name__} is not allowed in a query (names, literals, comparisons only)")


def _compare(op: ast.cmpop, left: Any, right: Any) -> Any:
    if isinstance(op, (ast.In, ast.NotIn)):
        if not isinstance(right, list) or not hasattr(left, "isin"):
            raise QueryError("'in' takes a column on its left and a list of literals on its right")
        found = left.isin(right)
        return ~found if isinstance(op, ast.NotIn) else found
    if isinstance(left, list) or isinstance(right, list):
        raise QueryError("a list compares only with 'in' or 'not in'")
    compare = _COMPARE.get(type(op))
    if compare is None:
        raise QueryError("only ==, !=, <, <=, >, >=, in and not in compare")
    return compare(left, right)


# -- history ---------------------------------------------------------------------------------------------------


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


def as_json(value: Any) -> Any:
    """A config, metrics or meta value as strict JSON (tables and arrays kept)."""
    if isinstance(value, dict):
        return {str(k): as_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [as_json(v) for v in value]
    return _plain(value)
