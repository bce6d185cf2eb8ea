"""The TOML writer: the same TOML values as tomli-w, on generated documents, whichever path writes them."""

from __future__ import annotations

import math
import sys
from typing import Any

import tomli_w
from hypothesis import given, settings
from hypothesis import strategies as st

from ml_manager import _toml

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10 only
    import tomli as tomllib

TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=12)
SCALARS = st.one_of(
    TEXT,
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
)
LEAVES = st.one_of(SCALARS, st.lists(SCALARS, max_size=4))
DOCUMENTS = st.recursive(
    st.dictionaries(TEXT, LEAVES, max_size=5),
    lambda children: st.dictionaries(TEXT, st.one_of(LEAVES, children), max_size=5),
    max_leaves=30,
)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a) == math.copysign(1, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return set(a) == set(b) and all(_same(a[k], b[k]) for k in a)  # tables come after values
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


@settings(max_examples=400, deadline=None, database=None)
@given(document=DOCUMENTS)
def test_plain_documents_are_written_as_tomli_w_writes_them(document: dict[str, Any]) -> None:
    ours = tomllib.loads(_toml.dumps(document))
    theirs = tomllib.loads(tomli_w.dumps(document))
    assert _same(ours, theirs)
    assert _same(ours, document)
    assert _same(_toml.parse_toml(_toml.dumps(document)), document)


def test_plain_documents_take_the_fast_path_and_others_fall_back() -> None:
    plain = {"loss": 0.5, "name": 'a "b"\n', "per_class": [0.1, 0.2], "eval": {"acc": 1, "ok": True}}
    chunks: list[str] = []
    assert _toml._write_table(plain, "", chunks)
    assert "".join(chunks) == _toml.dumps(plain)
    for other in ({"when": __import__("datetime").date(2024, 1, 1)}, {"rows": [{"a": 1}]}, {"m": [[1], [2]]}):
        assert not _toml._write_table(other, "", [])
        assert tomllib.loads(_toml.dumps(other)) == tomllib.loads(tomli_w.dumps(other))
