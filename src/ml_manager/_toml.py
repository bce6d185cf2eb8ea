"""TOML text: parsing run files fast, and writing them fast when they hold plain values.

Reading uses rtoml (Rust; about ten times tomllib's speed on run files).  Writing a document of tables,
strings, numbers, booleans and lists of those (every ``metrics.toml``, as a rule) uses the small writer
below, several times faster than tomli-w on a long file; anything else (datetimes, nested lists, lists of
tables) goes to tomli-w, which refuses what TOML cannot hold.  Both write the same TOML values, which the
tests check against tomli-w on generated documents.
"""

from __future__ import annotations

import datetime
import functools
import math
import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

# The end of a TOML time with a UTC offset: seconds, optional fraction, then Z or ±HH:MM.  Only a file that has
# one is walked for datetimes to convert (a false match just costs the walk).
_AWARE_TIME = re.compile(r"\d:\d\d(?:\.\d+)?(?:[zZ]|[+-]\d\d:\d\d)")
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
# What a basic string must escape: the quote, the backslash and the control characters but tab.
_MUST_ESCAPE = re.compile(r'["\\\x00-\x08\x0a-\x1f\x7f]')
_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\n": "\\n", "\f": "\\f", "\r": "\\r"}


def parse_toml(text: str) -> dict[str, Any]:
    """Parse TOML text, with every time-zone-aware datetime on a standard :class:`datetime.timezone`.

    rtoml gives aware datetimes its own tzinfo class; they are moved to ``datetime.timezone`` so values
    compare, pickle and convert in pandas exactly as the ones written.

    Raises:
        ValueError: the text is not valid TOML.
    """
    import rtoml  # imported on first use: most processes that import ml_manager only write

    document: dict[str, Any] = rtoml.loads(text)
    if _AWARE_TIME.search(text):
        _standard_timezones(document)
    return document


def parse_toml_as_is(text: str) -> dict[str, Any]:
    """Parse TOML text, leaving aware datetimes on the parser's own tzinfo class.

    Raises:
        ValueError: the text is not valid TOML.
    """
    import rtoml

    document: dict[str, Any] = rtoml.loads(text)
    return document


def dumps(document: Mapping[str, Any]) -> str:
    """``document`` as TOML text.

    Raises:
        TypeError, ValueError: a value TOML cannot hold (from tomli-w; callers normalise values first).
    """
    chunks: list[str] = []
    if type(document) is dict and _write_table(document, "", chunks):
        return "".join(chunks)
    import tomli_w  # imported on first use: needed for datetimes and unusual shapes only

    return tomli_w.dumps(document)


def _write_table(table: dict[str, Any], name: str, out: list[str]) -> bool:
    """Append ``table`` (named ``name``; the root when empty) and its subtables; False if not plain."""
    subtables = []
    lines = []
    for key, value in table.items():
        kind = type(value)
        if kind is dict:
            subtables.append((key, value))
            continue
        write = _WRITERS.get(kind)
        text = write(value) if write is not None else _array(value) if kind is list else None
        if text is None or type(key) is not str:
            return False
        lines.append(f"{_key(key)} = {text}\n")
    if name and (lines or not subtables):
        if out:
            out.append("\n")
        out.append(f"[{name}]\n")
    out.extend(lines)
    for key, value in subtables:
        if type(key) is not str:
            return False
        if not _write_table(value, f"{name}.{_key(key)}" if name else _key(key), out):
            return False
    return True


def _float(value: float) -> str:
    return repr(value) if math.isfinite(value) else ("nan" if math.isnan(value) else str(value))


def _array(values: list[Any]) -> str | None:
    items = []
    for value in values:
        write = _WRITERS.get(type(value))
        if write is None:
            return None
        items.append(write(value))
    return "[" + ", ".join(items) + "]"


@functools.lru_cache(maxsize=4096)  # a run logs the same keys again and again
def _key(key: str) -> str:
    return key if _BARE_KEY.fullmatch(key) else _string(key)


def _string(text: str) -> str:
    if not _MUST_ESCAPE.search(text):
        return f'"{text}"'
    return '"' + _MUST_ESCAPE.sub(_escape, text) + '"'


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    return _ESCAPES.get(char) or f"\\u{ord(char):04x}"


_WRITERS: dict[type, Callable[[Any], str]] = {
    str: _string,
    bool: lambda value: "true" if value else "false",
    int: str,
    float: _float,
}


def _standard_timezones(container: dict[str, Any] | list[Any]) -> None:
    items = container.items() if isinstance(container, dict) else enumerate(container)
    for key, value in items:
        kind = type(value)
        if kind is dict or kind is list:
            _standard_timezones(value)
        elif kind is datetime.datetime and value.tzinfo is not None:
            container[key] = value.replace(tzinfo=datetime.timezone(value.utcoffset()))  # type: ignore[index]
