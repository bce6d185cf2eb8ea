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
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import PurePath
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    import pandas as pd

ID_COLUMNS = ("run_id", "project_name")
# Bookkeeping for exact round-trips through MLRun.load; meaningless as a column.
_HIDDEN_META = {"python_types"}


class RunRow(NamedTuple):
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
        kind = type(value)
        if kind in _LEAVES:  # the common case first: a project load flattens every value of every run
            flat[name] = value
        elif isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = str(value) if isinstance(value, PurePath) else value
    return flat


_LEAVES = frozenset({str, int, float, bool, list})


def _renames(names: Iterable[str], taken: set[str], prefix: str) -> dict[str, str]:
    renames = {}
    for name in names:
        new = f"{prefix}{name}"
        while new in taken:
            new = f"{prefix}{new}"
        taken.add(new)
        renames[name] = new
    return renames


class Frame(NamedTuple):
    """The project table, and which of its columns hold config values and which metrics."""

    df: pd.DataFrame
    config_columns: tuple[str, ...]
    metric_columns: tuple[str, ...]


def build_frame(rows: Sequence[RunRow]) -> Frame:
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
    config_columns = {config_moves.get(name, name) for name in config_names}
    metric_columns = {metric_moves.get(name, name) for name in metric_names}
    return Frame(
        frame,
        tuple(column for column in frame.columns if column in config_columns),
        tuple(column for column in frame.columns if column in metric_columns),
    )


HISTORY_COLUMNS = ("step", "time", "writer")


def history_frame(
    runs: Sequence[tuple[Mapping[str, Any], Mapping[str, Any], Sequence[Mapping[str, Any]]]],
) -> pd.DataFrame:
    """History records -> one row per record, ordered by time (then writer).

    Args:
        runs: for each run, its id columns (``run_id``, ``project_name``, or none), its config (flattened
            into every row of the run) and its records.

    Columns: the ids, the config, ``step`` (nullable int), ``time`` (UTC), ``writer``, then the metrics.  As in
    :func:`build_frame`, nothing is lost to a name clash: a metric named like an id or history column moves to
    ``metrics.<name>``; a config key named like a metric or a history column moves to ``config.<name>``.
    """
    import pandas as pd

    configs = [flatten(config) for _, config, _ in runs]
    metrics = [[flatten(record["metrics"]) for record in records] for _, _, records in runs]
    id_names = {name for ids, _, _ in runs for name in ids}
    config_names = {name for flat in configs for name in flat}
    metric_names = {name for flats in metrics for flat in flats for name in flat}
    taken = id_names | config_names | metric_names | set(HISTORY_COLUMNS)
    metric_moves = _renames(sorted(metric_names & (id_names | set(HISTORY_COLUMNS))), taken, "metrics.")
    config_moves = _renames(sorted(config_names & (metric_names | id_names | set(HISTORY_COLUMNS))), taken, "config.")

    blocks = []
    for (ids, _, records), config, flats in zip(runs, configs, metrics, strict=True):
        if not records:
            continue
        fixed = {**ids, **{config_moves.get(name, name): value for name, value in config.items()}}
        # Built column by column: a million records cost one pass each, not a dict merge per row.
        block = pd.DataFrame({name: [value] * len(records) for name, value in fixed.items()})
        for column in HISTORY_COLUMNS:
            block[column] = [record.get(column) for record in records]
        values = pd.DataFrame.from_records(flats).rename(columns=metric_moves)
        blocks.append(pd.concat([block, values], axis=1))
    if not blocks:
        empty: pd.DataFrame = pd.DataFrame(columns=[*sorted(id_names), *HISTORY_COLUMNS])
        return empty
    frame: pd.DataFrame = pd.concat(blocks, ignore_index=True) if len(blocks) > 1 else blocks[0]
    frame["step"] = frame["step"].astype("Int64")
    frame["time"] = pd.to_datetime(frame["time"], unit="s", utc=True)
    ordered: pd.DataFrame = frame.sort_values(["time", "writer"], kind="stable", ignore_index=True)
    return ordered


def _order(record: Mapping[str, Any]) -> tuple[str, str, str]:
    created = record.get("_meta.created_at")
    # ISO text sorts chronologically for the UTC times ml_manager writes; missing times sort last.
    stamp = created.isoformat() if isinstance(created, (datetime.datetime, datetime.date)) else "~"
    return stamp, record["project_name"], record["run_id"]


def missing(value: Any) -> bool:
    """None, NaN, NaT, pd.NA: an empty cell of a frame."""
    if value is None:
        return True
    if isinstance(value, float):
        return math.isnan(value)
    if isinstance(value, (str, int, list, tuple, dict)):
        return False
    import pandas as pd

    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def varies(column: pd.Series[Any]) -> bool:
    """Whether the runs do not all have the same value (a value some runs lack counts as varying)."""
    values = {repr(value) for value in column if not missing(value)}
    return len(values) > 1 or (len(values) == 1 and any(missing(value) for value in column))
