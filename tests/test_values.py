"""Property tests of values and keys: every call is stored as documented or refused with nothing changed.

The oracle below restates the documented normalisation independently of the implementation: numpy scalars
become Python values; NaN and ±inf are kept; ints must fit 64 bits; text must be valid Unicode; ``None`` in a
metric is refused (TypeError) and inside a list refused (ValueError); in a config ``None``, tuples and paths
round-trip; anything else is a TypeError.  Checks run depth-first in insertion order, so the oracle predicts
which error comes first.
"""

from __future__ import annotations

import datetime
import math
import tempfile
from collections.abc import Callable, Mapping
from decimal import Decimal
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ml_manager import MLRun

Snapshot = Callable[[Path], dict[str, bytes]]
INT64 = (-(2**63), 2**63 - 1)
PROPERTY = settings(
    max_examples=120, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


class Refused(Exception):
    def __init__(self, kind: type[Exception]) -> None:
        super().__init__(kind.__name__)
        self.kind = kind


# -- the oracle ------------------------------------------------------------------------------------------------


def _text_ok(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def expected_config(config: Mapping[Any, Any]) -> Any:
    """What MLRun.load gives back as the config, or Refused: ml_manager's own table names are refused first."""
    if any(key in ("_meta", "_wandb") for key in config):
        raise Refused(ValueError)
    return expected(config, config=True)


def expected(value: Any, *, config: bool, in_list: bool = False) -> Any:  # noqa: PLR0911, PLR0912 - one branch per documented rule
    """What MLRun.load gives back for ``value``, or Refused(kind)."""
    if value is None:
        if in_list:
            raise Refused(ValueError)
        if not config:
            raise Refused(TypeError)
        return None
    if isinstance(value, np.generic):
        item = value.item()
        if isinstance(item, (complex, bytes)):
            raise Refused(TypeError)
        return expected(item, config=config, in_list=in_list)
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        if not INT64[0] <= value <= INT64[1]:
            raise Refused(ValueError)
        return value
    if isinstance(value, float):
        return value
    if isinstance(value, str):
        if not _text_ok(value):
            raise Refused(ValueError)
        return value
    if isinstance(value, datetime.datetime):
        offset = value.utcoffset()
        if offset is not None and offset % datetime.timedelta(minutes=1):
            raise Refused(ValueError)
        return value
    if isinstance(value, (datetime.date, datetime.time)):
        return value
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise Refused(TypeError)
            if not _text_ok(key):
                raise Refused(ValueError)
            out[key] = expected(item, config=config)
        return out
    if isinstance(value, PurePosixPath) and config:
        if not _text_ok(str(value)):
            raise Refused(ValueError)
        return Path(value)
    if isinstance(value, (list, tuple)):
        items = [expected(item, config=config, in_list=True) for item in value]
        return tuple(items) if isinstance(value, tuple) and config else items
    raise Refused(TypeError)


def merged(state: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    out = dict(state)
    for key, value in new.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merged(out[key], value)
        else:
            out[key] = value
    return out


def same(a: Any, b: Any) -> bool:
    """Equality that also checks types, NaN and time-zone offsets."""
    if type(a) is not type(b) and not (isinstance(a, Path) and isinstance(b, Path)):
        return False
    if isinstance(a, float):
        return (math.isnan(a) and math.isnan(b)) or a == b
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, datetime.datetime):
        return a == b and a.utcoffset() == b.utcoffset()
    return bool(a == b)


# -- strategies ------------------------------------------------------------------------------------------------

# Any code point, lone surrogates included: they are valid str but not valid Unicode text.
ANY_TEXT = st.text(st.characters(codec=None, exclude_categories=()), max_size=8)
KEYS = st.one_of(
    ANY_TEXT,
    st.sampled_from(
        [
            "",
            ".",
            "a.b",
            'q"uote',
            "it's",
            "two words",
            "ünï",
            "🔥",
            "[x]",
            "#",
            "\n",
            "\x7f",
            "=",
            "\\",
            "_meta",
            "_wandb",
        ]
    ),
)
OFFSETS = st.timedeltas(min_value=datetime.timedelta(hours=-23), max_value=datetime.timedelta(hours=23))
TIMES = st.one_of(
    st.datetimes(),
    st.datetimes(timezones=st.builds(datetime.timezone, OFFSETS)),
    st.dates(),
    st.times(),
)
NUMPY = st.one_of(
    st.floats(width=32, allow_nan=True).map(np.float32),
    st.floats(allow_nan=True).map(np.float64),
    st.integers(*INT64).map(np.int64),
    st.integers(0, 255).map(np.uint8),
    st.booleans().map(np.bool_),
    st.complex_numbers(allow_nan=False).map(np.complex128),
)
ODD = st.sampled_from([object(), b"bytes", 1 + 2j, {1, 2}, Decimal("1.5"), print, Exception("x")])
LEAVES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    ANY_TEXT,
    TIMES,
    NUMPY,
    st.builds(PurePosixPath, st.text(max_size=5)),
    ODD,
)
VALUES = st.recursive(
    LEAVES,
    lambda children: st.one_of(
        st.lists(children, max_size=3),
        st.lists(children, max_size=3).map(tuple),
        st.dictionaries(KEYS, children, max_size=3),
    ),
    max_leaves=8,
)
DOCUMENTS = st.dictionaries(st.one_of(KEYS, st.integers(0, 3)), VALUES, max_size=4)


def _fresh(tmp_path: Path) -> Path:
    return Path(tempfile.mkdtemp(dir=tmp_path))


@PROPERTY
@given(calls=st.lists(DOCUMENTS, min_size=1, max_size=3))
def test_metrics_are_stored_as_documented_or_refused_changing_nothing(
    tmp_path: Path, snapshot: Snapshot, calls: list[dict[Any, Any]]
) -> None:
    base_dir = _fresh(tmp_path)
    run = MLRun.create({}, base_dir, "p", mode="disabled", durable=False)
    model: dict[str, Any] = {}
    for metrics in calls:
        before = snapshot(base_dir)
        try:
            want = expected(metrics, config=False)
        except Refused as refused:
            with pytest.raises(refused.kind):
                run.add_metrics(metrics)
            assert snapshot(base_dir) == before
            continue
        run.add_metrics(metrics)
        model = merged(model, want)
        assert same(MLRun.load(run.run_id, base_dir).metrics, model)
        assert same(run.metrics, model)
    run.finish()


@PROPERTY
@given(config=DOCUMENTS)
def test_configs_round_trip_as_documented_or_are_refused_creating_nothing(
    tmp_path: Path, config: dict[Any, Any]
) -> None:
    base_dir = _fresh(tmp_path)
    try:
        want = expected_config(config)
    except Refused as refused:
        with pytest.raises(refused.kind):
            MLRun.create(config, base_dir, "p", mode="disabled", durable=False)
        assert list(base_dir.iterdir()) == []
        return
    run = MLRun.create(config, base_dir, "p", mode="disabled", durable=False)
    assert same(run.config, want)
    assert same(MLRun.load(run.run_id, base_dir).config, want)
    run.finish()


def test_aware_datetimes_come_back_on_standard_timezones_wherever_they_sit(tmp_path: Path) -> None:
    east = datetime.timezone(datetime.timedelta(hours=5, minutes=30))
    when = datetime.datetime(2024, 3, 1, 12, 0, 0, 250000, tzinfo=east)
    naive = datetime.datetime(2024, 3, 1, 12, 0)
    run = MLRun.create({"at": when, "deep": {"list": [[when]], "naive": naive}}, tmp_path, "p", mode="disabled")
    run.add_metrics({"seen": {"at": when.astimezone(datetime.timezone.utc)}})
    loaded = MLRun.load(run.run_id, tmp_path)
    values = [loaded.config["at"], loaded.config["deep"]["list"][0][0], loaded.metrics["seen"]["at"]]
    assert values == [when, when, when]
    assert [type(v.tzinfo) for v in values] == [datetime.timezone] * 3
    assert values[0].utcoffset() == datetime.timedelta(hours=5, minutes=30)
    assert loaded.config["deep"]["naive"] == naive
    assert loaded.config["deep"]["naive"].tzinfo is None
    run.finish()
