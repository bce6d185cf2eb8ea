"""``doctor``: find what crashed runs left behind and, with ``--fix``, repair it (the engine is ``_doctor``)."""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

from ml_manager import _doctor
from ml_manager.errors import MLManagerError

from . import EXIT_NOTHING, EXIT_OK, _add_base_dir, _base_dir

if TYPE_CHECKING:
    import argparse


def add_doctor(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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
