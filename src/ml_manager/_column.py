"""One column of the runs table: each row's value with its exact kind, as arrays.

A type code per row, ints (and booleans, UTC times) in one int64 array, floats in one float64 array, texts as
distinct texts and a place per row, anything else as objects: rows can be dropped, added and stored without
ever changing a value, and the frame decides the dtype from the kinds the rows hold.
"""

from __future__ import annotations

import datetime
import itertools
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from collections.abc import Sequence

    from numpy.typing import NDArray

# Type codes, one per row of a column.
MISSING, INT, FLOAT, BOOL, STR, TIME, OBJ = range(7)

EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
_MICROSECOND = datetime.timedelta(microseconds=1)
_ZERO = datetime.timedelta(0)
_SCALARS = {int: INT, float: FLOAT, bool: BOOL, str: STR}


def objects(values: Sequence[Any]) -> NDArray[np.object_]:
    """A one-dimensional array of ``values`` as they are (a list is one cell, never a dimension)."""
    array = np.empty(len(values), object)
    array[:] = values
    return array


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
        objs = objects(values)
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
