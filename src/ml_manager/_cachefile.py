"""The cache file of a project: a :class:`~ml_manager._table.Table` as bytes, and back.

Layout: :data:`~ml_manager._cache.MAGIC`, then ``<format u32, header length u64, body length u64, CRC-32
u32>``, then the header — one JSON document — and the body — the raw little-endian arrays the header points
into: per column its type codes (uint8, or one code for the whole column), ints (int64), floats (float64) and
the place of each row's text among the column's distinct texts (int32, -1 on other rows); per run its file
identity (8 int64).  Texts, lists and other cells are in
the header; a cell JSON cannot hold exactly (a tuple, a datetime, NaN inside a list) is written as a tagged
tree, ``["t", [...]]``, and only such cells are decoded one by one.  A run with a value none of this can hold
is left out of the file (it is parsed again next time).

Decoding trusts nothing: any inconsistency makes :func:`decode` return ``None``.
"""

from __future__ import annotations

import datetime
import math
import zlib
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import orjson

from ._cache import _HEAD, FORMAT, MAGIC
from ._column import BOOL, EPOCH, FLOAT, INT, OBJ, STR, TIME, Column, objects
from ._table import SECTIONS, Table

if TYPE_CHECKING:
    from numpy.typing import NDArray

_ENDIAN: Literal["<"] = "<"
# The microseconds since 1970 of the first and last datetime Python has (UTC).
_FIRST_TIME = (datetime.datetime.min.replace(tzinfo=datetime.timezone.utc) - EPOCH) // datetime.timedelta(
    microseconds=1
)
_LAST_TIME = (datetime.datetime.max.replace(tzinfo=datetime.timezone.utc) - EPOCH) // datetime.timedelta(microseconds=1)


class _Unstorable(Exception):
    """A cell the file has no form for."""


def encode(table: Table, base: str, version: str, **extra: Any) -> bytes:
    """The file of ``table`` (runs with a value the file cannot hold are left out); ``extra`` goes in its
    header."""
    try:
        return _encode(table, base, version, extra)
    except _Unstorable:
        pass
    keep = np.array([row for row in range(len(table)) if _storable(table, row)], np.intp)
    return _encode(table.take(keep), base, version, extra)


def _storable(table: Table, row: int) -> bool:
    for columns in table.sections.values():
        for column in columns.values():
            if column.codes[row] == OBJ:
                try:
                    _tag(column.objs[row])  # type: ignore[index]
                except _Unstorable:
                    return False
    return True


def _encode(table: Table, base: str, version: str, extra: dict[str, Any]) -> bytes:
    body = bytearray()

    def put(array: NDArray[Any]) -> int:
        at = len(body)
        body.extend(array.astype(array.dtype.newbyteorder(_ENDIAN), copy=False).tobytes())
        return at

    sections: dict[str, list[Any]] = {}
    for section in SECTIONS:
        described = []
        for name, column in table.sections[section].items():
            codes = column.codes
            entry: dict[str, Any] = {"code": int(codes[0])} if _uniform(codes) else {"codes": put(codes)}
            if column.ints is not None:
                entry["ints"] = put(column.ints)
            if column.floats is not None:
                entry["floats"] = put(column.floats)
            if column.texts is not None and column.text_at is not None:
                texts, text_at = _used_texts(column.texts, column.text_at)
                entry["texts"] = texts.tolist()
                entry["text_at"] = put(text_at)
            if column.objs is not None:
                cells = column.objs[codes == OBJ].tolist()
                if cells:
                    entry["cells"], entry["tagged"] = _cells(cells)
            described.append([name, entry])
        sections[section] = described
    header = {
        "ml_manager": version,
        "base": _text(base),
        "rows": len(table),
        "where": table.where,
        "keys": put(table.keys),
        "sections": sections,
        **extra,
    }
    text = orjson.dumps(header)
    crc = zlib.crc32(body, zlib.crc32(text))
    return MAGIC + _HEAD.pack(FORMAT, len(text), len(body), crc) + text + bytes(body)


def _used_texts(
    texts: NDArray[np.object_], text_at: NDArray[np.int32]
) -> tuple[NDArray[np.object_], NDArray[np.int32]]:
    """Only the texts some row uses (a table of a few rows taken from a large one keeps all of its texts)."""
    is_text = text_at >= 0
    used, places = np.unique(text_at[is_text], return_inverse=True)
    if len(used) == len(texts):
        return texts, text_at
    compact = np.full(len(text_at), -1, np.int32)
    compact[is_text] = places
    return texts[used], compact


def _text(path: str) -> str:
    """A path as JSON can hold it: undecodable bytes (kept by the file system's encoding) written as ``\\xNN``."""
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _uniform(codes: NDArray[np.uint8]) -> bool:
    return bool(len(codes)) and not (codes != codes[0]).any()


def _cells(cells: list[Any]) -> tuple[list[Any], list[int]]:
    """The cells as JSON gives them back exactly, and which of them are tagged trees."""
    try:
        if orjson.loads(orjson.dumps(cells)) == cells:  # no tuple, datetime, NaN, path...: the usual case
            return cells, []
    except (TypeError, ValueError):
        pass  # something JSON cannot hold at all: cell by cell
    out, tagged = [], []
    for at, cell in enumerate(cells):
        if _plain(cell):
            out.append(cell)
        else:
            out.append(_tag(cell))
            tagged.append(at)
    return out, tagged


def _plain(value: Any) -> bool:
    """Whether JSON gives ``value`` back exactly."""
    kind = type(value)
    if kind is str or kind is bool or value is None:
        return True
    if kind is int:
        return bool(-(2**63) <= value < 2**63)
    if kind is float:
        return math.isfinite(value)
    if kind is list:
        return all(map(_plain, value))
    if kind is dict:
        return all(type(key) is str and _plain(item) for key, item in value.items())
    return False


def _tag(value: Any) -> list[Any]:  # noqa: PLR0911 - one return per kind
    kind = type(value)
    if kind is str or kind is bool or value is None:
        return ["v", value]
    if kind is int:
        return ["v", value] if -(2**63) <= value < 2**63 else ["I", str(value)]
    if kind is float:
        return ["v", value] if math.isfinite(value) else ["F", repr(value)]
    if kind is list or kind is tuple:
        return ["l" if kind is list else "t", [_tag(item) for item in value]]
    if kind is dict and all(type(key) is str for key in value):
        return ["d", [[key, _tag(item)] for key, item in value.items()]]
    if kind in _TIMES:
        return [_TIMES[kind], value.isoformat()]
    if isinstance(value, PurePosixPath | PureWindowsPath):
        return ["p", str(value)]
    raise _Unstorable(kind.__name__)


_TIMES = {datetime.datetime: "dt", datetime.date: "da", datetime.time: "ti"}
_FROM_ISO = {
    "dt": datetime.datetime.fromisoformat,
    "da": datetime.date.fromisoformat,
    "ti": datetime.time.fromisoformat,
}


def _untag(tree: Any) -> Any:  # noqa: PLR0911 - one return per tag
    tag, value = tree  # anything malformed raises, and the file is ignored
    if tag == "v":
        if type(value) not in (str, bool, int, float) and value is not None:
            raise ValueError("not a scalar")
        return value
    if tag == "I":
        return int(value)
    if tag == "F":
        return float(value)
    if tag == "l":
        return [_untag(item) for item in value]
    if tag == "t":
        return tuple(_untag(item) for item in value)
    if tag == "d":
        return {str(key): _untag(item) for key, item in value}
    if tag in _FROM_ISO:
        return _FROM_ISO[tag](value)
    if tag == "p":
        return Path(value)
    raise ValueError(f"unknown tag {tag!r}")


def decode(data: bytes, base: str, version: str) -> tuple[Table, dict[str, Any]] | None:
    """The table in ``data`` and the header (with what ``encode`` was given as ``extra``), or ``None`` if it is
    not a whole, consistent cache of ``base`` by ``version``."""
    try:
        return _decode(data, base, version)
    except (ValueError, TypeError, KeyError, IndexError, AttributeError, OverflowError, RecursionError):
        return None


def _decode(data: bytes, base: str, version: str) -> tuple[Table, dict[str, Any]] | None:  # noqa: PLR0911
    start = len(MAGIC) + _HEAD.size
    if not data.startswith(MAGIC) or len(data) < start:
        return None
    format_, header_size, body_size, crc = _HEAD.unpack_from(data, len(MAGIC))
    if format_ != FORMAT or len(data) != start + header_size + body_size:
        return None
    view = memoryview(data)
    text, body = view[start : start + header_size], view[start + header_size :]
    if zlib.crc32(body, zlib.crc32(text)) != crc:
        return None
    header = orjson.loads(text)
    if header["ml_manager"] != version or header["base"] != _text(base):
        return None
    n = header["rows"]
    where = header["where"]
    if type(n) is not int or type(where) is not list or len(where) != n or not set(map(type, where)) <= {str}:
        return None
    rows = {place: row for row, place in enumerate(where)}
    if len(rows) != n:
        return None

    def get(at: Any, dtype: str, count: int) -> NDArray[Any]:
        if type(at) is not int or at < 0:
            raise ValueError("bad offset")
        array = np.frombuffer(body, np.dtype(_ENDIAN + dtype), count, at)  # raises past the end
        return array.astype(array.dtype.newbyteorder("="), copy=False)

    keys = get(header["keys"], "i8", 8 * n).reshape(n, 8)
    sections: dict[str, dict[str, Column]] = {}
    for section in SECTIONS:
        columns: dict[str, Column] = {}
        for name, entry in header["sections"][section]:
            if type(name) is not str or name in columns:
                return None
            columns[name] = _column(entry, n, get)
        sections[section] = columns
    return Table(where, keys, sections, rows), header


def _column(entry: dict[str, Any], n: int, get: Any) -> Column:
    if "code" in entry:
        if type(entry["code"]) is not int:
            raise ValueError("bad type code")
        codes = np.full(n, entry["code"], np.uint8)
    else:
        codes = get(entry["codes"], "u1", n)
    counts = np.bincount(codes, minlength=OBJ + 1)
    if len(counts) > OBJ + 1 or not counts[1:].any():
        raise ValueError("bad type codes")
    ints = get(entry["ints"], "i8", n) if "ints" in entry else None
    floats = get(entry["floats"], "f8", n) if "floats" in entry else None
    if (ints is None) != (counts[INT] + counts[BOOL] + counts[TIME] == 0) or (floats is None) != (counts[FLOAT] == 0):
        raise ValueError("arrays do not match the type codes")
    if counts[TIME] and ints is not None:
        times = ints[codes == TIME]
        if times.min() < _FIRST_TIME or times.max() > _LAST_TIME:
            raise ValueError("a time out of datetime's range")
    texts, text_at = _texts(entry, codes, int(counts[STR]), get)
    objs = _objects(entry, codes, int(counts[OBJ]))
    return Column(codes, ints, floats, objs, texts=texts, text_at=text_at)


def _texts(entry: dict[str, Any], codes: NDArray[np.uint8], count: int, get: Any) -> tuple[Any, Any]:
    if not count:
        if "texts" in entry:
            raise ValueError("texts without text rows")
        return None, None
    given = entry["texts"]
    if type(given) is not list or not set(map(type, given)) <= {str}:
        raise ValueError("a text that is not one")
    texts = objects(given)
    text_at = get(entry["text_at"], "i4", len(codes))
    is_text = codes == STR
    if (text_at[~is_text] != -1).any() or (text_at[is_text] < 0).any() or (text_at >= len(given)).any():
        raise ValueError("text places do not match the type codes")
    return texts, text_at


def _objects(entry: dict[str, Any], codes: NDArray[np.uint8], count: int) -> NDArray[np.object_] | None:
    if not count:
        if "cells" in entry:
            raise ValueError("cells without object rows")
        return None
    cells = entry["cells"]
    if type(cells) is not list or len(cells) != count:
        raise ValueError("cells do not match the type codes")
    for at in entry["tagged"]:
        cells[at] = _untag(cells[at])
    objs = np.empty(len(codes), object)
    objs[codes == OBJ] = objects(cells)
    return objs
