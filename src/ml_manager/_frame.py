"""Runs → one pandas DataFrame.  The only module that imports pandas.

Columns, in order: ``run_id``, ``project_name``, the flattened config (``model.name``), the flattened metrics,
then ``_meta.*`` and ``_wandb.*``.  Nested tables flatten with ``.``; lists stay lists in one cell.

A name used by both the config and the metrics (in any run) must not lose either value: the metric keeps
the bare name, so ``accuracy > 0.9`` always means the measured value, and the config value moves to
``config.<name>`` in every run.  Config or metric keys named ``run_id`` or ``project_name`` move the same
way, to ``config.<name>`` and ``metrics.<name>``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import PurePath
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    import pandas as pd

    from ._column import Column
    from ._table import Table

ID_COLUMNS = ("run_id", "project_name")


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


def build_frame(table: Table) -> Frame:
    """The project table: one row per run of ``table``, in its order, each column's dtype from what it holds.

    A column of ints is int64; ints and floats, or numbers some runs lack, float64 (NaN where missing); booleans
    bool; UTC times ``datetime64[us, UTC]`` (NaT where missing); text pandas' default string dtype; anything
    else (lists, mixed kinds) object cells, NaN where missing.
    """
    import pandas as pd

    from ._column import objects

    sections = table.sections
    config_names, metric_names = set(sections["config"]), set(sections["metrics"])
    taken = config_names | metric_names | set(ID_COLUMNS)
    config_moves = _renames(sorted(config_names & (metric_names | set(ID_COLUMNS))), taken, "config.")
    metric_moves = _renames(sorted(metric_names & set(ID_COLUMNS)), taken, "metrics.")
    where = [place.partition("/") for place in table.where]
    data: dict[str, Any] = {
        "run_id": objects([run_id for _, _, run_id in where]),
        "project_name": objects([project for project, _, _ in where]),
    }
    for name, column in sections["config"].items():
        data[config_moves.get(name, name)] = _column(column)
    for name, column in sections["metrics"].items():
        data[metric_moves.get(name, name)] = _column(column)
    for prefix, section in (("_meta.", "meta"), ("_wandb.", "wandb")):
        for name, column in sections[section].items():
            data[prefix + name] = _column(column)
    frame = pd.DataFrame(data, index=pd.RangeIndex(len(table)), copy=False)
    return Frame(
        frame,
        tuple(config_moves.get(name, name) for name in sections["config"]),
        tuple(metric_moves.get(name, name) for name in sections["metrics"]),
    )


def _column(column: Column) -> Any:  # noqa: PLR0911 - one return per kind of column
    """What pandas makes the column from: a typed array where every row holds one kind, else objects."""
    import numpy as np
    import pandas as pd

    from ._column import BOOL, FLOAT, INT, MISSING, OBJ, STR, TIME

    codes = column.codes
    counts = np.bincount(codes, minlength=7)
    kinds = {code for code, count in enumerate(counts.tolist()) if count}
    ints, floats, objs = column.ints, column.floats, column.objs
    if kinds == {INT}:
        return ints
    if kinds == {FLOAT}:
        return floats
    if kinds <= {INT, FLOAT, MISSING}:
        numbers = np.full(len(codes), np.nan)
        if ints is not None:
            numbers = np.where(codes == INT, ints.astype(np.float64), numbers)
        if floats is not None:
            numbers = np.where(codes == FLOAT, floats, numbers)
        return numbers
    if kinds == {BOOL}:
        return ints.astype(bool)  # type: ignore[union-attr]
    if kinds <= {TIME, MISSING}:
        times = np.where(codes == TIME, ints, np.iinfo(np.int64).min).view("M8[us]")  # type: ignore[arg-type]
        return pd.DatetimeIndex(times).tz_localize("UTC")
    if kinds <= {STR, MISSING}:
        # The distinct texts made strings once (pandas' default string dtype), then taken: no work per row.
        assert column.texts is not None
        assert column.text_at is not None
        texts = pd.Index(column.texts)
        return texts.take(column.text_at, allow_fill=True, fill_value=None).array
    if kinds == {OBJ}:
        return objs.copy()  # type: ignore[union-attr]
    if kinds <= {OBJ, MISSING}:
        return np.where(codes == MISSING, np.nan, objs)  # type: ignore[arg-type]
    cells = np.empty(len(codes), object)
    for row in range(len(codes)):
        cells[row] = np.nan if codes[row] == MISSING else column.value(row)
    return cells


def factorize(texts: Any) -> tuple[Any, Any]:
    """Each text's place among the distinct texts (int32), and those (an object array, first seen first)."""
    import numpy as np
    import pandas as pd

    from ._column import objects

    at, distinct = pd.factorize(texts)
    return at.astype(np.int32), objects(distinct)


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
