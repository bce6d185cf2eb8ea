"""``ls`` and ``export``: the runs table, shown or written."""

from __future__ import annotations

import datetime
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ml_manager._frame import varies
from ml_manager.project import MLProject

from . import EXIT_OK, NothingFound, UsageError, _add_base_dir, _base_dir, _positive_int
from ._output import print_table, to_csv, to_json, write_file

if TYPE_CHECKING:
    import argparse
    from collections.abc import Sequence

    import pandas as pd

# Default columns of `ls`: the ids, then these, then the config keys that differ between runs, then metrics.
_META_COLUMNS = {"_meta.status": "status", "_meta.created_at": "created"}
_MAX_VARYING_CONFIG = 6


def add_ls(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    ls = commands.add_parser("ls", help="the runs table", description="The runs table, one row per run.")
    _add_base_dir(ls, positional=True)
    ls.add_argument("--project", "-p", help="only this project")
    ls.add_argument("--query", "-q", help='a pandas query, as for MLProject.search: "lr < 0.01 and acc > 0.9"')
    ls.add_argument("--columns", "-c", help="comma-separated columns to show (default: a summary)")
    ls.add_argument("--sort", "-s", metavar="KEY", help="sort by this column (default: creation time)")
    ls.add_argument("--desc", action="store_true", help="sort descending")
    ls.add_argument("--limit", "-n", type=_positive_int, metavar="N", help="show at most N runs")
    ls.add_argument("--format", "-f", choices=["table", "csv", "json", "markdown"], default="table")
    ls.set_defaults(command=_ls)


def add_export(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    export = commands.add_parser("export", help="the whole runs table to a file")
    _add_base_dir(export, positional=True)
    export.add_argument("--format", "-f", choices=["csv", "json", "parquet"], required=True)
    export.add_argument("--output", "-o", required=True, metavar="FILE", help="the file to write; - for stdout")
    export.set_defaults(command=_export)


def _load(base_dir: str) -> MLProject:
    return MLProject(_base_dir(base_dir))


def _ls(args: argparse.Namespace) -> int:
    project = _load(args.base_dir)
    df = project.df
    if args.project is not None:
        df = df[df["project_name"] == args.project]
    if args.query:
        df = _query(df, args.query)
    if df.empty:
        raise NothingFound("no runs found" + (" matching the query" if args.query else f" in {args.base_dir}"))
    if args.sort:
        _check_columns(df, [args.sort])
        df = df.sort_values(args.sort, ascending=not args.desc, na_position="last", kind="stable")
    elif args.desc:
        df = df.iloc[::-1]
    if args.limit:
        df = df.head(args.limit)
    if args.columns:
        columns = [name.strip() for name in args.columns.split(",") if name.strip()]
        _check_columns(df, columns)
        view, drop_order = df[columns], None
    else:
        view, drop_order = _summary(df, project)
    print_table(view, args.format, drop_order)
    return EXIT_OK


def _query(df: pd.DataFrame, query: str) -> pd.DataFrame:
    try:
        found: pd.DataFrame = df.query(query)
    except Exception as exc:  # pandas raises many kinds for a bad expression
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UsageError(f"bad query {query!r}: {message} (quote dotted names with backticks: `model.name`)") from None
    return found


def _check_columns(df: pd.DataFrame, columns: Sequence[str]) -> None:
    unknown = [name for name in columns if name not in df.columns]
    if unknown:
        known = ", ".join(str(c) for c in df.columns)
        raise UsageError(f"unknown column {unknown[0]!r}; the columns are: {known}")


def _summary(df: pd.DataFrame, project: MLProject) -> tuple[pd.DataFrame, list[str]]:
    """Ids, status, creation time, the config keys that vary between runs, the metrics; and the order in which
    to leave columns out when the table is too wide."""
    varying = [name for name in project.config_columns if name in df.columns and varies(df[name])]
    columns = [
        "run_id",
        "project_name",
        *(name for name in _META_COLUMNS if name in df.columns),
        *varying[:_MAX_VARYING_CONFIG],
        *(name for name in project.metric_columns if name in df.columns),
    ]
    view: pd.DataFrame = df[columns].rename(columns=_META_COLUMNS).copy()
    if "created" in view.columns:
        view["created"] = [_short_time(value) for value in view["created"]]
    # On a narrow terminal the config goes first (from the right), then the creation time, then the metrics.
    metrics = [name for name in project.metric_columns if name in df.columns]
    drop_order = [*varying[:_MAX_VARYING_CONFIG][::-1], "created", *metrics[::-1], "status", "project_name"]
    return view, [name for name in drop_order if name in view.columns]


def _short_time(value: Any) -> Any:
    if isinstance(value, datetime.datetime):
        return value.astimezone(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
    return value


def _export(args: argparse.Namespace) -> int:
    project = _load(args.base_dir)
    df = project.df
    if df.empty:
        raise NothingFound(f"no runs found in {args.base_dir}")
    if args.format == "parquet":
        if args.output == "-":
            raise UsageError("parquet is binary: give a file name with --output")
        _write_parquet(df, Path(args.output))
    else:
        text = to_csv(df) if args.format == "csv" else to_json(df)
        if args.output == "-":
            sys.stdout.write(text)
        else:
            write_file(Path(args.output), text.encode("utf-8"))
    if args.output != "-":
        print(f"wrote {len(df)} runs to {args.output}", file=sys.stderr)
    return EXIT_OK


def _write_parquet(df: pd.DataFrame, output: Path) -> None:
    import importlib.util

    if importlib.util.find_spec("pyarrow") is None:
        raise NothingFound("parquet export needs pyarrow, which is not installed: pip install pyarrow")
    import io

    buffer = io.BytesIO()
    try:
        df.to_parquet(buffer, index=False)
    except Exception as exc:  # pyarrow refuses mixed-type columns and the like
        raise NothingFound(f"cannot write parquet: {exc}") from None
    write_file(output, buffer.getvalue())
