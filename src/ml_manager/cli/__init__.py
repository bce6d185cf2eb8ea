"""The ``ml-manager`` command: list, show, compare and export runs, and repair what crashed runs left behind.

Thin over :class:`MLProject` and :class:`MLRun`.  Results go to stdout; warnings and messages go to stderr,
one line each.  Exit codes: 0 done, 1 nothing found or problems found, 2 bad usage (unknown option, bad
query, missing base directory, ambiguous run id).

This module is the front: the parser, the base directory, exit codes and messages.  Each group of commands
adds its own subcommands and holds their code: ``_runs`` (ls, export), ``_one`` (show, diff), ``_repair``
(doctor), ``_page`` (ui, report); ``_output`` formats tables, CSV and JSON for them.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from ml_manager.errors import MLManagerError

if TYPE_CHECKING:
    from collections.abc import Sequence

BASE_DIR_ENV = "ML_MANAGER_BASE_DIR"
EXIT_OK, EXIT_NOTHING, EXIT_USAGE = 0, 1, 2


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
    from . import _one, _page, _repair, _runs

    parser = argparse.ArgumentParser(
        prog="ml-manager",
        description="List, show, compare and export ml_manager runs; find and repair crashed ones.",
        epilog=f"BASE_DIR defaults to ${BASE_DIR_ENV}, else the current directory.  "
        "Exit codes: 0 done, 1 nothing found or problems found, 2 bad usage.",
    )
    commands = parser.add_subparsers(title="commands", required=True, metavar="COMMAND")
    _runs.add_ls(commands)
    _one.add_show(commands)
    _one.add_diff(commands)
    _runs.add_export(commands)
    _repair.add_doctor(commands)
    _page.add_ui(commands)
    _page.add_report(commands)
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


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _warning_line(message: Warning | str, category: type[Warning], *_: Any, **__: Any) -> None:
    print(f"ml-manager: warning: {message}", file=sys.stderr)


def _error(message: object) -> None:
    print(f"ml-manager: error: {message}", file=sys.stderr)


def run() -> NoReturn:
    """The console script's entry point."""
    sys.exit(main())
