"""``show`` and ``diff``: one run in full, or what differs between runs."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from ml_manager._frame import flatten
from ml_manager.errors import AmbiguousRunError, RunNotFoundError
from ml_manager.run import MLRun

from . import EXIT_OK, NothingFound, UsageError, _add_base_dir, _base_dir
from ._output import ABSENT, cell, json_value, print_table

if TYPE_CHECKING:
    import argparse
    from collections.abc import Sequence


def add_show(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    show = commands.add_parser("show", help="one run: config, metrics, meta, wandb URL")
    show.add_argument("run_id", metavar="RUN_ID")
    _add_base_dir(show, positional=False)
    show.add_argument("--project", "-p", help="the run's project (needed when several hold the id)")
    show.add_argument("--format", "-f", choices=["text", "json"], default="text")
    show.set_defaults(command=_show)


def add_diff(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    diff = commands.add_parser("diff", help="the config keys and metrics that differ between runs")
    diff.add_argument("run_ids", nargs="+", metavar="RUN_ID", help="two runs or more")
    _add_base_dir(diff, positional=False)
    diff.add_argument("--project", "-p", help="the runs' project (needed when several hold an id)")
    diff.add_argument("--format", "-f", choices=["table", "csv", "json", "markdown"], default="table")
    diff.set_defaults(command=_diff)


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
        print(json.dumps(document, indent=2, default=json_value, ensure_ascii=False))
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
            print(f"  {name:<{width}}  {cell(value)}")
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
            values = [table.get(name, ABSENT) for table in tables]
            if len({repr(value) for value in values}) > 1:
                labels = [_label(run, runs) for run in runs]
                rows.append({"key": f"{section}.{name}", **dict(zip(labels, values, strict=True))})
    if not rows:
        raise NothingFound(f"no differences between {', '.join(args.run_ids)}")
    import pandas as pd

    print_table(pd.DataFrame(rows), args.format)
    return EXIT_OK


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
