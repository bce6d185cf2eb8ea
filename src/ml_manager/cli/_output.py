"""How the commands print and write: plain, markdown, CSV and JSON tables, cells, files."""

from __future__ import annotations

import datetime
import json
import math
import os
import shutil
import sys
from typing import TYPE_CHECKING, Any

from ml_manager._frame import missing

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

    import pandas as pd


class Absent:
    """A value a run does not have, where another run has one (in ``diff``)."""

    def __repr__(self) -> str:
        return "-"


ABSENT = Absent()


def print_table(df: pd.DataFrame, form: str, drop_order: Sequence[str] | None = None) -> None:
    if form == "csv":
        sys.stdout.write(to_csv(df))
    elif form == "json":
        sys.stdout.write(to_json(df))
    elif form == "markdown":
        from tabulate import tabulate

        print(tabulate(_cells(df), headers=list(df.columns), tablefmt="github", disable_numparse=True))
    else:
        print(_fitted_table(df, drop_order))


def _fitted_table(df: pd.DataFrame, drop_order: Sequence[str] | None = None) -> str:
    """A plain table no wider than the terminal (as wide as it takes when writing to a file or a pipe).

    Columns that do not fit are left out, in ``drop_order`` (default: from the right, never the first), and
    said so on stderr.
    """
    from tabulate import tabulate

    width = _width()
    headers = [str(c) for c in df.columns]
    cells = _cells(df)
    order = list(drop_order) if drop_order is not None else headers[:0:-1]
    dropped: list[str] = []
    while True:
        keep = [i for i, name in enumerate(headers) if name not in dropped]
        rows = [[row[i] for i in keep] for row in cells]
        text: str = tabulate(rows, headers=[headers[i] for i in keep], tablefmt="simple", disable_numparse=True)
        if width is None or len(dropped) == len(order) or max(len(line) for line in text.splitlines()) <= width:
            break
        dropped.append(order[len(dropped)])
    if dropped:
        left = ", ".join(name for name in headers if name in dropped)
        print(
            f"{len(dropped)} column(s) left out to fit the terminal: {left} (choose with --columns)",
            file=sys.stderr,
        )
    return text


def _width() -> int | None:
    """The terminal's width; ``None`` when stdout is no terminal (a file, a pipe) and ``COLUMNS`` is unset."""
    if os.environ.get("COLUMNS") or sys.stdout.isatty():
        return shutil.get_terminal_size().columns
    return None


def _cells(df: pd.DataFrame) -> list[list[str]]:
    return [[cell(value) for value in row] for row in df.itertuples(index=False, name=None)]


def cell(value: Any) -> str:
    """One value as a table shows it."""
    if missing(value):
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, datetime.datetime):
        return value.isoformat(sep=" ", timespec="seconds")
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(cell(v) for v in value) + "]"
    return str(value)


def to_csv(df: pd.DataFrame) -> str:
    text: str = df.to_csv(index=False, date_format="%Y-%m-%dT%H:%M:%S.%f%z")
    return text


def to_json(df: pd.DataFrame) -> str:
    records = [
        {str(name): _json_cell(value) for name, value in zip(df.columns, row, strict=True)}
        for row in df.itertuples(index=False, name=None)
    ]
    return json.dumps(records, indent=2, default=json_value, ensure_ascii=False) + "\n"


def _json_cell(value: Any) -> Any:
    # Strict JSON: an empty cell (NaN included) is null, an infinity the string "inf" or "-inf".
    if missing(value):
        return None
    if isinstance(value, float) and math.isinf(value):
        return str(value)
    return value


def json_value(value: Any) -> Any:
    """``json.dumps``'s ``default``: what JSON has no type for."""
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        return value.isoformat()
    if hasattr(value, "item"):  # numpy and pandas scalars
        return value.item()
    if isinstance(value, Absent):
        return None
    return str(value)


def write_file(output: Path, data: bytes) -> None:
    from ml_manager._atomic import atomic_write

    atomic_write(output, data)
