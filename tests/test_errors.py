"""Errors: one base, builtin parents users already catch, data as attributes, picklable."""

from __future__ import annotations

import pickle

import pytest

from ml_manager.errors import (
    AmbiguousRunError,
    CorruptRunFileError,
    LockTimeoutError,
    MLManagerError,
    RunNotFoundError,
)


@pytest.mark.parametrize(
    ("error", "builtin"),
    [
        (LockTimeoutError("/r/run.lock", 3), TimeoutError),
        (RunNotFoundError("abc", "/r"), LookupError),
        (AmbiguousRunError("abc", ["p1", "p2"]), LookupError),
        (CorruptRunFileError("/r/p/abc/metrics.toml", "not valid TOML"), ValueError),
    ],
)
def test_errors_subclass_the_base_and_a_builtin_and_survive_pickling(error: Exception, builtin: type) -> None:
    assert isinstance(error, MLManagerError)
    assert isinstance(error, builtin)
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is type(error)
    assert str(copy) == str(error)
    assert vars(copy) == vars(error)


def test_messages_name_what_went_wrong() -> None:
    assert "metrics.toml" in str(CorruptRunFileError("/r/metrics.toml", "truncated"))
    assert "'p1', 'p2'" in str(AmbiguousRunError("abc", ["p1", "p2"]))
    assert "run.lock" in str(LockTimeoutError("/r/run.lock", 3))
