"""Runs → one pandas DataFrame.  The only module that imports pandas.

Columns, in order: ``run_id``, ``project_name``, the flattened config (``model.name``), the flattened metrics,
then ``_meta.*`` and ``_wandb.*``.  Nested tables flatten with ``.``; lists stay lists in one cell.

A name used by both the config and the metrics (in any run) must not lose either value: the metric keeps
the bare name, so ``accuracy > 0.9`` always means the measured value, and the config value moves to
``config.<name>`` in every run.  Config or metric keys named ``run_id`` or ``project_name`` move the same
way, to ``config.<name>`` and ``metrics.<name>``.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import PurePath
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

ID_COLUMNS = ("run_id", "project_name")
# Bookkeeping for exact round-trips through MLRun.load; meaningless as a column.
_HIDDEN_META = {"python_types"}


@dataclass(frozen=True)
class RunRow:
    """What the frame needs of one run."""

    run_id: str
    project_name: str
    config: Mapping[str, Any]
    metrics: Mapping[str, Any]
    meta: Mapping[str, Any]
    wandb: Mapping[str, Any]


def flatten(table: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"model": {"name": "CNN"}}`` → ``{"model.name": "CNN"}``; an empty table becomes no column."""
    flat: dict[str, Any] = {}
    for key, value in table.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = str(value) if isinstance(value, PurePath) else value
    return flat


def _renames(names: Iterable[str], taken: set[str], prefix: str) -> dict[str, str]:
    renames = {}
    for name in names:
        new = f"{prefix}{name}"
        while new in taken:
            new = f"{prefix}{new}"
        taken.add(new)
        renames[name] = new
    return renames


def build_frame(rows: Sequence[RunRow]) -> pd.DataFrame:
    """The project table, one row per run, ordered by creation time (then project and id)."""
    import pandas as pd

    configs = [flatten(row.config) for row in rows]
    metrics = [flatten(row.metrics) for row in rows]
    config_names = {name for flat in configs for name in flat}
    metric_names = {name for flat in metrics for name in flat}
    taken = config_names | metric_names | set(ID_COLUMNS)
    config_moves = _renames(sorted(config_names & (metric_names | set(ID_COLUMNS))), taken, "config.")
    metric_moves = _renames(sorted(metric_names & set(ID_COLUMNS)), taken, "metrics.")

    records = []
    for row, config, metric in zip(rows, configs, metrics, strict=True):
        record: dict[str, Any] = {"run_id": row.run_id, "project_name": row.project_name}
        record.update((config_moves.get(name, name), value) for name, value in config.items())
        record.update((metric_moves.get(name, name), value) for name, value in metric.items())
        meta = {key: value for key, value in row.meta.items() if key not in _HIDDEN_META}
        record.update(flatten(meta, "_meta."))
        record.update(flatten(row.wandb, "_wandb."))
        records.append(record)
    records.sort(key=_order)
    frame: pd.DataFrame = pd.DataFrame.from_records(records) if records else pd.DataFrame(columns=list(ID_COLUMNS))
    return frame


def _order(record: Mapping[str, Any]) -> tuple[str, str, str]:
    created = record.get("_meta.created_at")
    # ISO text sorts chronologically for the UTC times ml_manager writes; missing times sort last.
    stamp = created.isoformat() if isinstance(created, (datetime.datetime, datetime.date)) else "~"
    return stamp, record["project_name"], record["run_id"]
