"""Parsed run documents as plain data: merging one into another, copying one, checking a name for a path."""

from __future__ import annotations

import datetime
import os
from collections.abc import Mapping
from typing import Any


def check_name(name: object, what: str) -> str:
    """Validate a name used as one path component.

    Raises:
        TypeError: ``name`` is not a string.
        ValueError: it is empty, ``.`` or ``..``, or contains a path separator or NUL.
    """
    if not isinstance(name, str):
        raise TypeError(f"{what} must be a string, not {type(name).__name__}")
    seps = {os.sep, "/"} | ({os.altsep} if os.altsep else set())
    if name in ("", ".", "..") or any(sep in name for sep in seps) or "\0" in name:
        raise ValueError(f"{what} {name!r} is not a valid name: it must be one non-empty path component")
    return name


def deep_merge(base: dict[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """Merge ``new`` into ``base`` in place: tables merge key by key, any other value replaces."""
    for key, value in new.items():
        if type(value) in _LEAVES:  # the common case first, without the slow Mapping check: it replaces
            base[key] = value
            continue
        old = base.get(key)
        if isinstance(value, Mapping) and isinstance(old, dict):
            deep_merge(old, value)
        else:
            base[key] = copy_document(value)
    return base


def copy_document(value: Any) -> Any:
    """A deep copy of a parsed document (tables and arrays copied, leaves shared: they are immutable)."""
    kind = type(value)
    if kind is dict:  # the common case first: a long metrics.toml is copied on every write
        return {k: v if type(v) in _LEAVES else copy_document(v) for k, v in value.items()}
    if isinstance(value, Mapping):
        return {k: copy_document(v) for k, v in value.items()}
    if isinstance(value, list):
        return [copy_document(v) for v in value]
    return value


_LEAVES = frozenset({str, int, float, bool, datetime.datetime, datetime.date, datetime.time})
