"""The runs of a base directory as columns: what the project table is built from, and what the cache stores.

One :class:`Table` holds every run's values, one :class:`Column` per flattened key of each section (config,
metrics, ``_meta``, ``_wandb``), rows in the order of the project table (creation time, then project and id).
A column keeps each value's exact kind — a type code per row, with ints (and booleans, UTC times) in one int64
array, floats in one float64 array and everything else as objects — so rows can be dropped, added and stored
without ever changing a value, and the frame decides the dtypes from what the rows hold now.

numpy, and pandas only to number the distinct texts of a column (its hash table is in C).
"""

from __future__ import annotations

import bisect
import datetime
import itertools
from pathlib import PurePath
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

    from numpy.typing import NDArray

# Type codes, one per row of a column.
MISSING, INT, FLOAT, BOOL, STR, TIME, OBJ = range(7)
SECTIONS = ("config", "metrics", "meta", "wandb")
# _meta bookkeeping for exact round-trips through MLRun.load; meaningless as a column.
HIDDEN_META = frozenset({"python_types"})
# The identity of a run's two files: (inode, size, mtime ns, ctime ns) of config.toml, then of metrics.toml;
# a missing file is four -1.
RunKey = tuple[int, int, int, int, int, int, int, int]
NO_FILE = (-1, -1, -1, -1)

EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
_MICROSECOND = datetime.timedelta(microseconds=1)
_ZERO = datetime.timedelta(0)
_SCALARS = {int: INT, float: FLOAT, bool: BOOL, str: STR}


class Column:
    """One flattened key's values over every row of a table.

    ``codes`` has each row's type code; ints, booleans (0/1) and UTC times (microseconds since 1970) are in
    ``ints``, floats in ``floats``, texts as ``texts[text_at[row]]`` (``text_at`` is -1 on other rows; ``texts``
    may hold a text twice), anything else in ``objs``.  An array no row needs is ``None``.
    """

    __slots__ = ("codes", "floats", "ints", "objs", "text_at", "texts")

    def __init__(
        self,
        codes: NDArray[np.uint8],
        ints: NDArray[np.int64] | None = None,
        floats: NDArray[np.float64] | None = None,
        objs: NDArray[np.object_] | None = None,
        *,
        texts: NDArray[np.object_] | None = None,
        text_at: NDArray[np.int32] | None = None,
    ) -> None:
        self.codes, self.ints, self.floats, self.objs = codes, ints, floats, objs
        self.texts, self.text_at = texts, text_at

    def __len__(self) -> int:
        return len(self.codes)

    def take(self, rows: NDArray[np.intp]) -> Column:
        ints, floats, objs, text_at = self.ints, self.floats, self.objs, self.text_at
        return Column(
            self.codes[rows],
            None if ints is None else ints[rows],
            None if floats is None else floats[rows],
            None if objs is None else objs[rows],
            texts=self.texts,
            text_at=None if text_at is None else text_at[rows],
        )

    def value(self, row: int) -> Any:  # noqa: PLR0911 - one return per type code
        """The value of one row, as it was parsed; :data:`MISSING` (the int) is never a value: ``None`` instead."""
        code = int(self.codes[row])
        if code == INT:
            return int(self.ints[row])  # type: ignore[index]
        if code == FLOAT:
            return float(self.floats[row])  # type: ignore[index]
        if code == BOOL:
            return bool(self.ints[row])  # type: ignore[index]
        if code == TIME:
            return EPOCH + int(self.ints[row]) * _MICROSECOND  # type: ignore[index]
        if code == STR:
            return self.texts[self.text_at[row]]  # type: ignore[index]
        if code == OBJ:
            return self.objs[row]  # type: ignore[index]
        return None


def missing_column(n: int) -> Column:
    return Column(np.zeros(n, np.uint8))


def concat(parts: Sequence[Column]) -> Column:
    """One column of the rows of ``parts`` in turn."""
    n = sum(len(part) for part in parts)
    codes = np.concatenate([part.codes for part in parts]) if parts else np.zeros(0, np.uint8)
    arrays: list[Any] = []
    for attribute, dtype, fill in (("ints", np.int64, 0), ("floats", np.float64, 0.0), ("objs", object, None)):
        if all(getattr(part, attribute) is None for part in parts):
            arrays.append(None)
            continue
        out = np.full(n, fill, dtype)
        start = 0
        for part in parts:
            values = getattr(part, attribute)
            if values is not None:
                out[start : start + len(part)] = values
            start += len(part)
        arrays.append(out)
    texts = text_at = None
    if any(part.texts is not None for part in parts):
        # Each part's texts one after the other (a text may then be there twice), its places moved along.
        texts = np.concatenate([part.texts for part in parts if part.texts is not None])
        text_at = np.full(n, -1, np.int32)
        start = offset = 0
        for part in parts:
            if part.texts is not None and part.text_at is not None:
                at = part.text_at
                text_at[start : start + len(part)] = np.where(at >= 0, at + offset, -1)
                offset += len(part.texts)
            start += len(part)
    return Column(codes, *arrays, texts=texts, text_at=text_at)


def _with_texts(column: Column) -> Column:
    """``column`` with its text rows moved from ``objs`` into ``texts``/``text_at``."""
    from ._frame import factorize

    is_text = column.codes == STR
    if not is_text.any():
        return column
    objs = column.objs
    assert objs is not None
    at, texts = factorize(objs[is_text])
    text_at = np.full(len(column), -1, np.int32)
    text_at[is_text] = at
    others = None
    if (column.codes == OBJ).any():
        others = objs.copy()
        others[is_text] = None
    return Column(column.codes, column.ints, column.floats, others, texts=texts, text_at=text_at)


def encode(values: list[Any]) -> Column:
    """The column of ``values`` (one per row; :data:`ABSENT` where the row has no such key)."""
    n = len(values)
    kinds = set(map(type, values))
    if len(kinds) == 1:  # the common case: every run has the key, with one type
        fast = _one_kind(next(iter(kinds)), values)
        if fast is not None:
            return fast
    codes = np.zeros(n, np.uint8)
    ints = np.zeros(n, np.int64)
    floats = np.zeros(n, np.float64)
    objs = np.empty(n, object)
    used = set()
    for row, given in enumerate(values):
        if given is ABSENT:
            continue
        value, kind = given, type(given)
        code = _SCALARS.get(kind, OBJ)
        if code == INT and not -(2**63) <= value < 2**63:
            code = OBJ
        elif code == OBJ and kind is datetime.datetime and value.utcoffset() == _ZERO:
            code, value = TIME, (value - EPOCH) // _MICROSECOND
        codes[row] = code
        used.add(code)
        if code in (INT, BOOL, TIME):
            ints[row] = value
        elif code == FLOAT:
            floats[row] = value
        else:
            objs[row] = value if code == STR else standard(value)
    column = Column(
        codes,
        ints if used & {INT, BOOL, TIME} else None,
        floats if FLOAT in used else None,
        objs if used & {STR, OBJ} else None,
    )
    return _with_texts(column) if STR in used else column


def _one_kind(kind: type, values: list[Any]) -> Column | None:  # noqa: PLR0911 - one return per kind
    """The column of ``values``, all of type ``kind``, built without a loop in Python where possible."""
    n = len(values)
    if kind is float:
        return Column(np.full(n, FLOAT, np.uint8), floats=np.array(values, np.float64))
    if kind is bool:
        return Column(np.full(n, BOOL, np.uint8), ints=np.array(values, np.int64))
    if kind is int:
        try:
            return Column(np.full(n, INT, np.uint8), ints=np.array(values, np.int64))
        except OverflowError:
            return None  # beyond int64: kept as objects
    if kind is datetime.datetime and all(value.utcoffset() == _ZERO for value in values):
        return Column(np.full(n, TIME, np.uint8), ints=np.array([(value - EPOCH) // _MICROSECOND for value in values]))
    if kind is str or kind is list:
        if kind is list and not set(map(type, itertools.chain.from_iterable(values))) <= _PLAIN:
            values = [standard(value) for value in values]  # lists of more than plain scalars: rare
        objs = np.empty(n, object)
        objs[:] = values
        if kind is list:
            return Column(np.full(n, OBJ, np.uint8), objs=objs)
        from ._frame import factorize

        at, texts = factorize(objs)
        return Column(np.full(n, STR, np.uint8), texts=texts, text_at=at)
    return None


class _Absent:
    def __repr__(self) -> str:
        return "ABSENT"


ABSENT: Any = _Absent()


def standard(value: Any) -> Any:
    """``value`` with every time-zone-aware datetime on a standard :class:`datetime.timezone` (the TOML parser
    gives its own tzinfo class, which pandas and pickle treat differently)."""
    kind = type(value)
    if kind is datetime.datetime:
        offset = value.utcoffset()
        return value if offset is None else value.replace(tzinfo=datetime.timezone(offset))
    if kind is list or kind is tuple:
        if set(map(type, value)) <= _PLAIN:
            return value
        return kind(standard(item) for item in value)
    if kind is dict:
        return {key: standard(item) for key, item in value.items()}
    return value


_PLAIN = frozenset({str, int, float, bool})


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
    chosen = np.empty(int(last.sum()), object)
    chosen[:] = [value for value, keep in zip(values, last.tolist(), strict=True) if keep]
    spread[at[last]] = chosen
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


def difference(old: Table, new: Table) -> tuple[list[str], NDArray[np.intp]]:
    """What turns ``old`` into ``new``: the places of ``old``'s rows that are not in ``new`` as they are (gone
    or changed), and the rows of ``new`` that are not in ``old`` as they are (added or changed)."""
    rows = np.fromiter(map(old.rows.get, new.where, itertools.repeat(-1)), np.intp, len(new))
    same = rows >= 0
    same[same] = (old.keys[rows[same]] == new.keys[same]).all(axis=1)
    kept = np.zeros(len(old), bool)
    kept[rows[same]] = True
    return [old.where[row] for row in np.flatnonzero(~kept).tolist()], np.flatnonzero(~same)


def empty() -> Table:
    return Table([], np.zeros((0, 8), np.int64), {section: {} for section in SECTIONS})
