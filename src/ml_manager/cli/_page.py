"""``ui`` and ``report``: the runs page, served live or written to one HTML file."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

from . import EXIT_OK, UsageError, _add_base_dir, _base_dir, _positive_int
from ._output import write_file

if TYPE_CHECKING:
    import argparse


def add_ui(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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


def add_report(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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


def _ui_command(args: argparse.Namespace) -> int:
    base_dir = _base_dir(args.base_dir)
    try:
        from ml_manager._ui.server import serve
    except ImportError as exc:  # pragma: no cover - starlette and uvicorn are dependencies
        raise UsageError(f"the UI needs starlette and uvicorn ({exc})") from None
    serve(base_dir, host=args.host, port=args.port, open_browser=args.open)
    return EXIT_OK


def _report_command(args: argparse.Namespace) -> int:
    from ml_manager._ui.data import QueryError
    from ml_manager._ui.report import build_report

    base_dir = _base_dir(args.base_dir)
    metrics = [m.strip() for m in args.metrics.split(",") if m.strip()] if args.metrics else None
    try:
        page = build_report(base_dir, query=args.query, metrics=metrics)
    except QueryError as exc:
        raise UsageError(f"bad query or metric: {exc}") from None
    encoded = page.encode("utf-8")
    write_file(Path(args.output), encoded)
    print(f"ml-manager: wrote {args.output} ({len(encoded) / 1e6:.1f} MB)", file=sys.stderr)
    return EXIT_OK
