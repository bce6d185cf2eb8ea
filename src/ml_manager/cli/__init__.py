"""The ``ml-manager`` command: list, show, compare and export runs, and repair what crashed runs left behind.

Thin over :class:`MLProject` and :class:`MLRun`.  Results go to stdout; warnings and messages go to stderr,
one line each.  Exit codes: 0 done, 1 nothing found or problems found, 2 bad usage (unknown option, bad
query, missing base directory, ambiguous run id).
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import shutil
import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from . import _doctor
from ._frame import flatten, missing, varies
from .errors import AmbiguousRunError, MLManagerError, RunNotFoundError
from .project import MLProject
from .run import MLRun

if TYPE_CHECKING:
    from collections.abc import Sequence

    import pandas as pd

BASE_DIR_ENV = "ML_MANAGER_BASE_DIR"
EXIT_OK, EXIT_NOTHING, EXIT_USAGE = 0, 1, 2
# Default columns of `ls`: the ids, then these, then the config keys that differ between runs, then metrics.
_META_COLUMNS = {"_meta.status": "status", "_meta.created_at": "created"}
_MAX_VARYING_CONFIG = 6


class UsageError(Exception):
    """A bad argument: printed as one line, exit code 2."""


class NothingFound(Exception):
    """Nothing to show: printed as one line, exit code 1."""


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; returns its exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    warnings.showwarning = _warning_line
    try:
        _resolve_base_dir(args)
        code: int = args.command(args)
    except BrokenPipeError:  # pragma: no cover - `ml-manager ls | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except UsageError as exc:
        _error(exc)
        return EXIT_USAGE
    except (NothingFound, MLManagerError, OSError) as exc:
        _error(exc)
        return EXIT_NOTHING
    return code


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ml-manager",
        description="List, show, compare and export ml_manager runs; find and repair crashed ones.",
        epilog=f"BASE_DIR defaults to ${BASE_DIR_ENV}, else the current directory.  "
        "Exit codes: 0 done, 1 nothing found or problems found, 2 bad usage.",
    )
    commands = parser.add_subparsers(title="commands", required=True, metavar="COMMAND")

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

    show = commands.add_parser("show", help="one run: config, metrics, meta, wandb URL")
    show.add_argument("run_id", metavar="RUN_ID")
    _add_base_dir(show, positional=False)
    show.add_argument("--project", "-p", help="the run's project (needed when several hold the id)")
    show.add_argument("--format", "-f", choices=["text", "json"], default="text")
    show.set_defaults(command=_show)

    diff = commands.add_parser("diff", help="the config keys and metrics that differ between runs")
    diff.add_argument("run_ids", nargs="+", metavar="RUN_ID", help="two runs or more")
    _add_base_dir(diff, positional=False)
    diff.add_argument("--project", "-p", help="the runs' project (needed when several hold an id)")
    diff.add_argument("--format", "-f", choices=["table", "csv", "json", "markdown"], default="table")
    diff.set_defaults(command=_diff)

    export = commands.add_parser("export", help="the whole runs table to a file")
    _add_base_dir(export, positional=True)
    export.add_argument("--format", "-f", choices=["csv", "json", "parquet"], required=True)
    export.add_argument("--output", "-o", required=True, metavar="FILE", help="the file to write; - for stdout")
    export.set_defaults(command=_export)

    doctor = commands.add_parser(
        "doctor",
        help="find crashed, corrupt or half-created runs and stale temp or lock files",
        description=_doctor.__doc__.split("\n\n", 1)[0] if _doctor.__doc__ else None,
    )
    _add_base_dir(doctor, positional=True)
    doctor.add_argument("--fix", action="store_true", help="repair what can be repaired (never deletes data)")
    doctor.add_argument(
        "--stale-after",
        type=float,
        default=_doctor.DEFAULT_STALE_AFTER / 3600,
        metavar="HOURS",
        help="a running run from another host whose files have not changed for this long counts as "
        "crashed (default: %(default)s)",
    )
    doctor.set_defaults(command=_doctor_command)

    ui = commands.add_parser(
        "ui",
        help="a web page of the runs on this machine: table, charts, live",
        description="Serve a page of the runs under BASE_DIR: the runs table, charts of the selected runs "
        "(live while they run), each run's config and history.  Reach it from another machine through an SSH "
        "tunnel (ssh -L 8765:127.0.0.1:8765 host) rather than --host 0.0.0.0.",
    )
    _add_base_dir(ui, positional=True)
    ui.add_argument("--host", default="127.0.0.1", help="the address to bind (default: %(default)s, this machine)")
    ui.add_argument("--port", type=_positive_int, default=8765, help="default: %(default)s")
    ui.add_argument("--open", action="store_true", help="open it in the default browser")
    ui.set_defaults(command=_ui_command)

    report = commands.add_parser(
        "report",
        help="the runs page as one self-contained HTML file",
        description="Write the runs table and charts to one HTML file that needs no network when opened.",
    )
    _add_base_dir(report, positional=True)
    report.add_argument("--output", "-o", default="report.html", metavar="FILE", help="default: %(default)s")
    report.add_argument("--query", "-q", help="only the runs this query selects (as for ls)")
    report.add_argument("--metrics", "-m", help="comma-separated metrics to chart (default: every metric)")
    report.set_defaults(command=_report_command)
    return parser


def _add_base_dir(parser: argparse.ArgumentParser, *, positional: bool) -> None:
    """``-d/--base-dir`` on every command; the table-level ones also take it as their last positional."""
    if positional:
        parser.add_argument("base_dir", nargs="?", metavar="BASE_DIR", help="the base directory (or -d)")
    parser.add_argument(
        "--base-dir",
        "-d",
        dest="base_dir_option",
        metavar="BASE_DIR",
        help=f"the base directory (default: ${BASE_DIR_ENV}, else the current directory)",
    )


def _resolve_base_dir(args: argparse.Namespace) -> None:
    """``args.base_dir``: the positional or ``-d`` (given twice, they must agree), else the variable, else "."."""
    given, option = getattr(args, "base_dir", None), args.base_dir_option
    if given is not None and option is not None and given != option:
        raise UsageError(f"two base directories given: {given!r} and -d {option!r}")
    args.base_dir = given or option or os.environ.get(BASE_DIR_ENV) or "."


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


# -- ls, export -----------------------------------------------------------------------------------------------


def _load(base_dir: str) -> MLProject:
    return MLProject(_base_dir(base_dir))


def _base_dir(base_dir: str) -> Path:
    """The base directory argument, checked: it exists, is a directory, and can be listed."""
    path = Path(base_dir)
    if not path.exists():
        raise UsageError(f"no such base directory: {base_dir}")
    if not path.is_dir():
        raise UsageError(f"not a directory: {base_dir}")
    try:
        os.listdir(path)
    except OSError as exc:
        raise UsageError(f"cannot read base directory {base_dir}: {exc.strerror or exc}") from None
    return path


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
    _print_table(view, args.format, drop_order)
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
        text = _csv(df) if args.format == "csv" else _json(df)
        if args.output == "-":
            sys.stdout.write(text)
        else:
            _write_file(Path(args.output), text.encode("utf-8"))
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
    _write_file(output, buffer.getvalue())


def _write_file(output: Path, data: bytes) -> None:
    from ._atomic import atomic_write

    atomic_write(output, data)


# -- show, diff -----------------------------------------------------------------------------------------------


def _show(args: argparse.Namespace) -> int:
    run = _load_run(args.run_id, args.base_dir, args.project)
    if args.format == "json":
        document = {
            "run_id": run.run_id,
            "project_name": run.project_name,
            "run_dir": str(run.run_dir),
            "config": run.config,
            "metrics": run.metrics,
            "meta": {key: value for key, value in run.meta.items() if key != "python_types"},
            "wandb": run.wandb_info,
            "wandb_url": run.get_wandb_url(),
        }
        print(json.dumps(document, indent=2, default=_json_value, ensure_ascii=False))
        return EXIT_OK
    print(f"run {run.run_id}  (project {run.project_name}, {run.run_dir})")
    print(f"wandb: {run.get_wandb_url() or '-'}")
    for title, table in (
        ("config", run.config),
        ("metrics", run.metrics),
        ("meta", {key: value for key, value in run.meta.items() if key != "python_types"}),
    ):
        print(f"\n[{title}]")
        flat = flatten(table)
        if not flat:
            print("  (none)")
        width = max((len(name) for name in flat), default=0)
        for name, value in flat.items():
            print(f"  {name:<{width}}  {_cell(value)}")
    return EXIT_OK


def _diff(args: argparse.Namespace) -> int:
    if len(args.run_ids) < 2:
        raise UsageError("diff needs two runs or more")
    runs = [_load_run(run_id, args.base_dir, args.project) for run_id in args.run_ids]
    rows: list[dict[str, Any]] = []
    for section, tables in (
        ("config", [flatten(run.config) for run in runs]),
        ("metrics", [flatten(run.metrics) for run in runs]),
    ):
        names = sorted({name for table in tables for name in table})
        for name in names:
            values = [table.get(name, _ABSENT) for table in tables]
            if len({repr(value) for value in values}) > 1:
                labels = [_label(run, runs) for run in runs]
                rows.append({"key": f"{section}.{name}", **dict(zip(labels, values, strict=True))})
    if not rows:
        raise NothingFound(f"no differences between {', '.join(args.run_ids)}")
    import pandas as pd

    _print_table(pd.DataFrame(rows), args.format)
    return EXIT_OK


class _Absent:
    def __repr__(self) -> str:
        return "-"


_ABSENT = _Absent()


def _label(run: MLRun, runs: Sequence[MLRun]) -> str:
    ids = [other.run_id for other in runs]
    return run.run_id if ids.count(run.run_id) == 1 else f"{run.project_name}/{run.run_id}"


def _load_run(run_id: str, base_dir: str, project_name: str | None) -> MLRun:
    path = _base_dir(base_dir)
    try:
        return MLRun.load(run_id, path, project_name)
    except (TypeError, ValueError) as exc:
        raise UsageError(str(exc)) from None
    except AmbiguousRunError as exc:
        raise UsageError(f"{exc} (name the project with --project)") from None
    except RunNotFoundError:
        where = f"project {project_name!r} of {base_dir}" if project_name else base_dir
        raise NothingFound(f"no run {run_id!r} in {where}") from None


# -- doctor ---------------------------------------------------------------------------------------------------


def _doctor_command(args: argparse.Namespace) -> int:
    base_dir = _base_dir(args.base_dir)
    census: _doctor.Census = {}
    problems = _doctor.examine(base_dir, stale_after=args.stale_after * 3600, census=census)
    for line in _doctor.describe_census(census):
        print(line, file=sys.stderr)
    remaining = 0
    for problem in problems:
        where = os.path.relpath(problem.run_dir, base_dir)
        line = f"{problem.kind:<13} {where}: {problem.detail}"
        if args.fix and problem.fixable:
            try:
                outcome = _doctor.fix(problem)
            except (OSError, MLManagerError) as exc:
                remaining += 1
                print(f"{line}\n{'':14}not fixed: {exc}")
                continue
            print(f"{line}\n{'':14}fixed: {outcome}")
        else:
            remaining += 1
            print(line)
    fixable = sum(problem.fixable for problem in problems)
    if not problems:
        print(f"no problems found in {args.base_dir}", file=sys.stderr)
    elif args.fix:
        print(f"{len(problems)} problem(s) found, {len(problems) - remaining} fixed", file=sys.stderr)
    else:
        hint = f" ({fixable} fixable: run again with --fix)" if fixable else ""
        print(f"{len(problems)} problem(s) found{hint}", file=sys.stderr)
    return EXIT_NOTHING if remaining else EXIT_OK


# -- output ---------------------------------------------------------------------------------------------------


def _print_table(df: pd.DataFrame, form: str, drop_order: Sequence[str] | None = None) -> None:
    if form == "csv":
        sys.stdout.write(_csv(df))
    elif form == "json":
        sys.stdout.write(_json(df))
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
    return [[_cell(value) for value in row] for row in df.itertuples(index=False, name=None)]


def _cell(value: Any) -> str:
    if missing(value):
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, datetime.datetime):
        return value.isoformat(sep=" ", timespec="seconds")
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_cell(v) for v in value) + "]"
    return str(value)


def _short_time(value: Any) -> Any:
    if isinstance(value, datetime.datetime):
        return value.astimezone(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
    return value


def _csv(df: pd.DataFrame) -> str:
    text: str = df.to_csv(index=False, date_format="%Y-%m-%dT%H:%M:%S.%f%z")
    return text


def _json(df: pd.DataFrame) -> str:
    records = [
        {str(name): _json_cell(value) for name, value in zip(df.columns, row, strict=True)}
        for row in df.itertuples(index=False, name=None)
    ]
    return json.dumps(records, indent=2, default=_json_value, ensure_ascii=False) + "\n"


def _json_cell(value: Any) -> Any:
    # Strict JSON: an empty cell (NaN included) is null, an infinity the string "inf" or "-inf".
    if missing(value):
        return None
    if isinstance(value, float) and math.isinf(value):
        return str(value)
    return value


def _json_value(value: Any) -> Any:
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        return value.isoformat()
    if hasattr(value, "item"):  # numpy and pandas scalars
        return value.item()
    if isinstance(value, _Absent):
        return None
    return str(value)


def _ui_command(args: argparse.Namespace) -> int:
    base_dir = _base_dir(args.base_dir)
    try:
        from ._ui.server import serve
    except ImportError as exc:  # pragma: no cover - starlette and uvicorn are dependencies
        raise UsageError(f"the UI needs starlette and uvicorn ({exc})") from None
    serve(base_dir, host=args.host, port=args.port, open_browser=args.open)
    return EXIT_OK


def _report_command(args: argparse.Namespace) -> int:
    from ._ui.data import QueryError
    from ._ui.report import build_report

    base_dir = _base_dir(args.base_dir)
    metrics = [m.strip() for m in args.metrics.split(",") if m.strip()] if args.metrics else None
    try:
        page = build_report(base_dir, query=args.query, metrics=metrics)
    except QueryError as exc:
        raise UsageError(f"bad query or metric: {exc}") from None
    encoded = page.encode("utf-8")
    _write_file(Path(args.output), encoded)
    print(f"ml-manager: wrote {args.output} ({len(encoded) / 1e6:.1f} MB)", file=sys.stderr)
    return EXIT_OK


def _warning_line(message: Warning | str, category: type[Warning], *_: Any, **__: Any) -> None:
    print(f"ml-manager: warning: {message}", file=sys.stderr)


def _error(message: object) -> None:
    print(f"ml-manager: error: {message}", file=sys.stderr)


def run() -> NoReturn:
    """The console script's entry point."""
    sys.exit(main())
