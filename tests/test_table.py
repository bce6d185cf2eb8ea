"""Runs as typed columns: any rows, any values — stored, dropped, merged — give the frame built from scratch."""

from __future__ import annotations

import datetime
from typing import Any

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from ml_manager import _cachefile, _table
from ml_manager._frame import build_frame

UTC = datetime.timezone.utc
_times = st.datetimes(
    min_value=datetime.datetime(1970, 1, 2), max_value=datetime.datetime(2200, 1, 1), timezones=st.just(UTC)
)
_scalars = st.one_of(
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.text(max_size=8),
    st.none(),
    _times,
    st.datetimes(timezones=st.just(datetime.timezone(datetime.timedelta(hours=-5)))),
    st.datetimes(),
    st.dates(),
    st.times(),
)
_values = st.one_of(
    _scalars,
    st.lists(st.one_of(st.integers(-5, 5), st.text(max_size=3), st.floats(allow_nan=True)), max_size=3),
    st.tuples(st.integers(), st.text(max_size=3)),
)
_keys = st.sampled_from(["lr", "model.name", "model.size", "tags", "when", "a.b.c"])


def _nest(flat: dict[str, Any]) -> dict[str, Any]:
    nested: dict[str, Any] = {}
    for name, value in flat.items():
        *parents, last = name.split(".")
        table = nested
        for part in parents:
            child = table.setdefault(part, {})
            if not isinstance(child, dict):
                break
            table = child
        else:
            table[last] = value
    return nested


@st.composite
def _runs(draw: Any) -> list[_table.Parsed]:
    runs = []
    for i in range(draw(st.integers(0, 7))):
        created = draw(st.one_of(st.none(), _times))
        meta = {"status": draw(st.sampled_from(["running", "finished"]))}
        if created is not None:
            meta["created_at"] = created
        runs.append(
            _table.Parsed(
                f"p{draw(st.integers(0, 2))}/r{i}",
                tuple(draw(st.lists(st.integers(-1, 2**40), min_size=8, max_size=8))),  # type: ignore[arg-type]
                _nest(draw(st.dictionaries(_keys, _values, max_size=4))),
                _nest(draw(st.dictionaries(_keys, _values, max_size=3))),
                meta,
                {"id": f"r{i}"},
            )
        )
    return runs


def _frame(table: _table.Table) -> pd.DataFrame:
    return build_frame(table).df


@settings(max_examples=150, deadline=None)
@given(_runs())
def test_a_table_read_back_from_its_file_gives_the_same_frame(runs: list[_table.Parsed]) -> None:
    table = _table.from_parsed(runs)
    decoded = _cachefile.decode(_cachefile.encode(table, "/base", "1"), "/base", "1")
    assert decoded is not None
    pd.testing.assert_frame_equal(_frame(decoded[0]), _frame(table))
    assert (decoded[0].keys == table.keys).all()


@settings(max_examples=150, deadline=None)
@given(_runs(), st.data())
def test_rows_dropped_and_merged_give_the_frame_built_from_scratch(runs: list[_table.Parsed], data: Any) -> None:
    keep = data.draw(st.lists(st.booleans(), min_size=len(runs), max_size=len(runs)))
    kept = [run for run, chosen in zip(runs, keep, strict=True) if chosen]
    added = [run for run, chosen in zip(runs, keep, strict=True) if not chosen]
    whole = _table.from_parsed(runs)
    rows = np.array([row for row, place in enumerate(whole.where) if place in {run.where for run in kept}], np.intp)
    merged = _table.merge(whole.take(rows), _table.from_parsed(added))
    pd.testing.assert_frame_equal(_frame(merged), _frame(whole))
    pd.testing.assert_frame_equal(_frame(whole.take(rows)), _frame(_table.from_parsed(kept)))
