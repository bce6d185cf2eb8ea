"""What the page draws: the runs table (with a query checked before pandas sees it) and downsampled history."""

from __future__ import annotations

import contextlib
import datetime
import math
from pathlib import Path
from typing import Any

from ml_manager._frame import missing, varies
from ml_manager.project import MLProject

from .history import X_AXES, HistoryReader, RunHistory, downsample_indices, parse_lines, read_history, series
from .query import QueryError, run_query

_STATUS_COLUMNS = {"_meta.status": "status", "_meta.created_at": "created"}


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


def as_json(value: Any) -> Any:
    """A config, metrics or meta value as strict JSON (tables and arrays kept)."""
    if isinstance(value, dict):
        return {str(k): as_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [as_json(v) for v in value]
    return _plain(value)


__all__ = [
    "X_AXES",
    "HistoryReader",
    "QueryError",
    "RunHistory",
    "Snapshot",
    "as_json",
    "downsample_indices",
    "parse_lines",
    "read_history",
    "run_query",
    "series",
]
