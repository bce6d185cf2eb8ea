"""The runs of a base directory as columns: what the project table is built from, and what the cache stores.

One :class:`Table` holds every run's values, one :class:`~ml_manager._column.Column` per flattened key of each
section (config, metrics, ``_meta``, ``_wandb``), rows in the order of the project table (creation time, then
project and id): built from parsed runs, rows taken, tables merged.  numpy, and pandas only to number a
column's distinct texts (its hash table is in C).
"""

from __future__ import annotations

import bisect
import datetime
import itertools
from pathlib import PurePath
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from ._column import ABSENT, Column, concat, encode, missing_column, objects

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from numpy.typing import NDArray

SECTIONS = ("config", "metrics", "meta", "wandb")
# _meta bookkeeping for exact round-trips through MLRun.load; meaningless as a column.
HIDDEN_META = frozenset({"python_types"})
# The identity of a run's two files: (inode, size, mtime ns, ctime ns) of config.toml, then of metrics.toml;
# a missing file is four -1 (_scan.NO_FILE).
RunKey = tuple[int, int, int, int, int, int, int, int]


class Parsed(NamedTuple):
    """One run as read from its files, ready to become a row."""

    where: str  # "project/run_id", the run's directory relative to the base directory
    key: RunKey
    config: Mapping[str, Any]
    metrics: Mapping[str, Any]
    meta: Mapping[str, Any]
    wandb: Mapping[str, Any]


class Table:
    """Rows of runs in the project table's order, as columns per section."""

    def __init__(
        self,
        where: list[str],
        keys: NDArray[np.int64],
        sections: dict[str, dict[str, Column]],
        rows: dict[str, int] | None = None,
    ) -> None:
        self.where, self.keys, self.sections = where, keys, sections  # keys: 8 per row, see RunKey
        self._rows = rows

    def __len__(self) -> int:
        return len(self.where)

    @property
    def rows(self) -> dict[str, int]:
        """Row of each run, by its ``project/run_id``."""
        if self._rows is None:
            self._rows = {where: row for row, where in enumerate(self.where)}
        return self._rows

    def in_listing_order(self) -> tuple[list[str], NDArray[np.intp]]:
        """The places in the order the listing of the base directory gives them (by project, then id), and the
        row of each."""
        rows = sorted(range(len(self.where)), key=lambda row: self.where[row].partition("/")[::2])
        return [self.where[row] for row in rows], np.asarray(rows, np.intp)

    def order_key(self, row: int) -> tuple[str, str, str]:
        """Where the row sorts: creation time (as ISO text; missing last), then project, then id."""
        created = self.sections["meta"].get("created_at")
        project, _, run_id = self.where[row].partition("/")
        return _stamp(None if created is None else created.value(row)), project, run_id

    def take(self, rows: NDArray[np.intp]) -> Table:
        """The table of ``rows`` (in that order); columns no row has any more are dropped."""
        where = [self.where[row] for row in rows.tolist()]
        keys = self.keys[rows]
        sections = {
            name: _present({key: column.take(rows) for key, column in columns.items()})
            for name, columns in self.sections.items()
        }
        return Table(where, keys, sections)


def _stamp(created: Any) -> str:
    # ISO text sorts chronologically for the UTC times ml_manager writes.
    return created.isoformat() if isinstance(created, (datetime.datetime, datetime.date)) else "~"


def _present(columns: dict[str, Column]) -> dict[str, Column]:
    return {key: column for key, column in columns.items() if column.codes.any()}


def from_parsed(runs: Iterable[Parsed]) -> Table:
    """The table of ``runs``, sorted into the project table's order."""
    ordered = sorted(runs, key=lambda run: (_stamp(run.meta.get("created_at")), *run.where.partition("/")[::2]))
    n = len(ordered)
    every = list(range(n))
    sections: dict[str, dict[str, Column]] = {}
    for section in SECTIONS:
        found: dict[str, tuple[list[int], list[Any]]] = {}
        for row, run in enumerate(ordered):
            _collect(_visible(section, getattr(run, section)), "", row, found)
        sections[section] = {name: encode(_spread(*found[name], every)) for name in sorted(found)}
    keys = np.array([run.key for run in ordered], np.int64).reshape(n, 8)
    return Table([run.where for run in ordered], keys, sections)


def _collect(table: Mapping[str, Any], prefix: str, row: int, found: dict[str, tuple[list[int], list[Any]]]) -> None:
    """Add the row's flattened values (as :func:`flatten` names them) to ``found``: per name, rows and values."""
    for key, given in table.items():
        kind = type(given)
        if kind is dict:
            _collect(given, f"{prefix}{key}.", row, found)
            continue
        name = f"{prefix}{key}" if prefix else key
        value = str(given) if kind not in _FLAT and isinstance(given, PurePath) else given
        column = found.get(name)
        if column is None:
            found[name] = column = ([], [])
        column[0].append(row)
        column[1].append(value)


_FLAT = frozenset({str, int, float, bool, list, datetime.datetime})


def _spread(rows: list[int], values: list[Any], every: list[int]) -> list[Any]:
    """One value per row of ``every``: ``values`` at ``rows``, :data:`ABSENT` elsewhere.  A row given twice
    (``"a.b" = 1`` and ``[a] b = 2`` in one run) keeps its last value, as :func:`flatten` does."""
    if rows == every:  # the usual column: one value in every row
        return values
    at = np.asarray(rows, np.intp)
    last = np.ones(len(at), bool)
    last[:-1] = at[1:] != at[:-1]
    spread = np.full(len(every), ABSENT, object)
    spread[at[last]] = objects([value for value, keep in zip(values, last.tolist(), strict=True) if keep])
    return spread.tolist()  # type: ignore[no-any-return]


def _visible(section: str, values: Mapping[str, Any]) -> Mapping[str, Any]:
    if section == "meta" and not HIDDEN_META.isdisjoint(values):
        return {key: value for key, value in values.items() if key not in HIDDEN_META}
    return values


def merge(kept: Table, new: Table) -> Table:
    """The rows of both tables (each already in order), in the project table's order."""
    if not len(new):
        return kept
    if not len(kept):
        return new
    positions = [bisect.bisect_left(_Keys(kept), new.order_key(row)) for row in range(len(new))]
    order = np.empty(len(kept) + len(new), np.intp)
    new_at = np.asarray(positions, np.intp) + np.arange(len(new))
    taken = np.ones(len(order), bool)
    taken[new_at] = False
    order[new_at] = np.arange(len(kept), len(order))
    order[taken] = np.arange(len(kept))
    sections = {}
    for section in SECTIONS:
        names = sorted(set(kept.sections[section]) | set(new.sections[section]))
        sections[section] = {
            name: concat(
                [
                    _column(kept.sections[section], name, len(kept)),
                    _column(new.sections[section], name, len(new)),
                ]
            ).take(order)
            for name in names
        }
    where = kept.where + new.where
    keys = np.concatenate([kept.keys, new.keys])[order]
    return Table([where[row] for row in order.tolist()], keys, sections)


def _column(columns: dict[str, Column], name: str, n: int) -> Column:
    found = columns.get(name)
    return missing_column(n) if found is None else found


class _Keys:
    """The order keys of a table's rows, computed only for the rows a binary search looks at."""

    def __init__(self, table: Table) -> None:
        self.table = table

    def __len__(self) -> int:
        return len(self.table)

    def __getitem__(self, row: int) -> tuple[str, str, str]:
        return self.table.order_key(row)


def matching(
    table: Table, places: list[str], keys: NDArray[np.int64], rows: NDArray[np.intp] | None = None
) -> tuple[NDArray[np.intp], NDArray[np.bool_]]:
    """Each place's row in ``table`` (-1 where it has none; ``rows`` when already known), and whether that row
    was read from the very file versions ``keys`` identify."""
    if rows is None:
        rows = np.fromiter(map(table.rows.get, places, itertools.repeat(-1)), np.intp, len(places))
    same = rows >= 0
    same[same] = (table.keys[rows[same]] == keys[same]).all(axis=1)
    return rows, same


def difference(old: Table, new: Table) -> tuple[list[str], NDArray[np.intp]]:
    """What turns ``old`` into ``new``: the places of ``old``'s rows that are not in ``new`` as they are (gone
    or changed), and the rows of ``new`` that are not in ``old`` as they are (added or changed)."""
    rows, same = matching(old, new.where, new.keys)
    kept = np.zeros(len(old), bool)
    kept[rows[same]] = True
    return [old.where[row] for row in np.flatnonzero(~kept).tolist()], np.flatnonzero(~same)


def empty() -> Table:
    return Table([], np.zeros((0, 8), np.int64), {section: {} for section in SECTIONS})
