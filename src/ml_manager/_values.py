"""Turn what a training script passes into values TOML can hold, before any I/O.

TOML holds strings, booleans, 64-bit integers, floats (NaN and ±inf included), dates and times, arrays and
tables.  On top of those:

* numpy and torch scalars (and 0-d arrays and tensors) become Python numbers; larger numpy arrays and
  tensors become arrays.  Neither library is imported here: a value is only recognised as theirs when the
  user's program has imported it already.
* In a **config**, ``None``, tuples and ``pathlib`` paths are stored in their nearest TOML form (the key left
  out, an array, a string) and their places are recorded in ``_meta.python_types`` so that ``MLRun.load``
  gives back what was passed (paths come back as ``pathlib.Path``).  ``None`` inside an array has no TOML
  form and is rejected.
* In **metrics**, tuples are stored as arrays (and read back as lists); ``None`` and paths are rejected: a
  metric is a measurement, and a plain TOML value keeps ``metrics.toml`` readable by any tool.

Anything else raises ``TypeError`` (or ``ValueError`` for a value of the right type TOML still cannot hold:
an int beyond 64 bits, a lone surrogate, a datetime whose offset is not whole minutes) naming the offending key
path, e.g. ``config['model']['layers'][2]``.
"""

from __future__ import annotations

import datetime
import sys
from collections.abc import Mapping
from pathlib import Path, PurePath
from typing import Any

# A key path: table keys (str) and array indices (int) from the top of the document.
KeyPath = tuple[str | int, ...]

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_PLAIN = (bool, int, float, str, datetime.datetime, datetime.date, datetime.time)


def normalize_config(config: Mapping[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Normalise a run config.

    Returns:
        The TOML-ready config, and the records of ``None``/tuple/path values to store in
        ``_meta.python_types`` (each ``{"path": [...], "type": "none" | "tuple" | "path"}``).

    Raises:
        TypeError: a key is not a string, or a value has a type TOML cannot hold.
        ValueError: a value of an accepted type that TOML still cannot hold (an int beyond 64 bits, a string
            that is not valid Unicode, ``None`` inside an array).
    """
    types: list[dict[str, Any]] = []
    return _table(config, ("config",), (), types), types


def normalize_metrics(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """Normalise the argument of ``add_metrics``; same errors as :func:`normalize_config`."""
    if not isinstance(metrics, Mapping):
        raise TypeError(f"metrics must be a mapping of names to values, not {type(metrics).__name__}")
    return _table(metrics, ("metrics",), (), None)


def metrics_snapshot(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """:func:`normalize_metrics`, in about a microsecond for the common call: a flat dict of plain values.

    ``MLRun.log`` runs this on the caller's thread for every step.  Exact types only (a numpy scalar is not
    a ``float`` here and takes the full path); ASCII keys and strings need no Unicode check.  Returns a new
    dict either way: the caller may change its own afterwards.
    """
    if type(metrics) is dict:
        for key, value in metrics.items():
            kind = type(value)
            if type(key) is not str or not key.isascii():
                break
            if kind is float or kind is bool or (kind is str and value.isascii()):
                continue
            if kind is not int or not _INT64_MIN <= value <= _INT64_MAX:
                break
        else:
            return metrics.copy()
    return normalize_metrics(metrics)


def check_step(step: object) -> int | None:
    """A step: ``None`` or a non-negative int.

    Raises:
        TypeError: anything else (a negative or boolean one included), named in the message.
    """
    if step is not None and (isinstance(step, bool) or not isinstance(step, int) or step < 0):
        raise TypeError(f"step must be a non-negative int, not {step!r}")
    return step


def restore_config(config: dict[str, Any], types: Any) -> dict[str, Any]:
    """Undo :func:`normalize_config`'s substitutions, in place, from the ``_meta.python_types`` records."""
    if not isinstance(types, list):
        return config
    # Innermost places were recorded last: restore them first, before an enclosing list becomes a tuple.
    for record in reversed(types):
        if not isinstance(record, dict):
            continue
        path, kind = record.get("path"), record.get("type")
        if not isinstance(path, list) or not path:
            continue
        try:
            parent: Any = config
            for part in path[:-1]:
                parent = parent[part]
            last = path[-1]
            if kind == "none":
                parent[last] = None
            elif kind == "tuple":
                parent[last] = tuple(parent[last])
            elif kind == "path":
                parent[last] = Path(parent[last]) if isinstance(parent[last], str) else parent[last]
        except (KeyError, IndexError, TypeError):
            # A record that no longer matches the config (edited by hand): keep the stored value.
            continue
    return config


def _where(root: tuple[str, ...], path: KeyPath) -> str:
    return root[0] + "".join(f"[{part!r}]" for part in path)


def _table(
    mapping: Mapping[Any, Any],
    root: tuple[str, ...],
    path: KeyPath,
    types: list[dict[str, Any]] | None,
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in mapping.items():
        if not isinstance(key, str):
            raise TypeError(f"{_where(root, path)} has key {key!r} of type {type(key).__name__}; keys must be strings")
        _check_text(key, root, (*path, key), "key")
        here = (*path, key)
        if value is None and types is not None:
            types.append({"path": list(here), "type": "none"})
            continue
        out[key] = _value(value, root, here, types)
    return out


def _value(value: Any, root: tuple[str, ...], path: KeyPath, types: list[dict[str, Any]] | None) -> Any:
    if isinstance(value, _PLAIN):
        return _plain(value, root, path)
    if isinstance(value, Mapping):
        return _table(value, root, path, types)
    if isinstance(value, PurePath) and types is not None:
        types.append({"path": list(path), "type": "path"})
        return _check_text(str(value), root, path, "value")
    if isinstance(value, (list, tuple)):
        if isinstance(value, tuple) and types is not None:
            types.append({"path": list(path), "type": "tuple"})
        return [_array_item(item, root, (*path, i), types) for i, item in enumerate(value)]
    foreign = _foreign(value)
    if foreign is not _NOT_FOREIGN:
        return _value(foreign, root, path, types)
    if value is None:
        raise TypeError(f"{_where(root, path)} is None; a metric must be a value (leave the key out instead)")
    raise TypeError(
        f"{_where(root, path)} has type {type(value).__module__}.{type(value).__qualname__}, "
        "which TOML cannot store (use numbers, strings, booleans, datetimes, lists or dicts)"
    )


def _array_item(item: Any, root: tuple[str, ...], path: KeyPath, types: list[dict[str, Any]] | None) -> Any:
    if item is None:
        raise ValueError(f"{_where(root, path)} is None inside a list, which TOML cannot store")
    return _value(item, root, path, types)


def _plain(value: Any, root: tuple[str, ...], path: KeyPath) -> Any:
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        if not _INT64_MIN <= value <= _INT64_MAX:
            raise ValueError(f"{_where(root, path)} = {value} does not fit TOML's 64-bit integers")
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, str):
        return _check_text(str(value), root, path, "value")
    if isinstance(value, datetime.time) and value.tzinfo is not None:
        raise ValueError(f"{_where(root, path)} is a time with a time zone, which TOML cannot store")
    if isinstance(value, datetime.datetime):
        offset = value.utcoffset()
        if offset is not None and offset % datetime.timedelta(minutes=1):
            # TOML offsets are whole minutes; writing this one would make the whole file unreadable.
            raise ValueError(f"{_where(root, path)} has the time-zone offset {offset}, not a whole number of minutes")
    return value


def _check_text(text: str, root: tuple[str, ...], path: KeyPath, what: str) -> str:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"{_where(root, path)}: the {what} {text!r} is not valid Unicode text") from None
    return text


_NOT_FOREIGN = object()


def _foreign(value: Any) -> Any:
    """numpy / torch values as Python values, or ``_NOT_FOREIGN``; imports neither library."""
    numpy = sys.modules.get("numpy")
    if numpy is not None:
        if isinstance(value, numpy.generic):
            item = value.item()
            # float16/32 widen exactly to Python floats; complex and bytes_ have no TOML form.
            return item if isinstance(item, _PLAIN) else _NOT_FOREIGN
        if isinstance(value, numpy.ndarray):
            return value.tolist()
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(value, torch.Tensor):
        return value.item() if value.dim() == 0 else value.tolist()
    return _NOT_FOREIGN
