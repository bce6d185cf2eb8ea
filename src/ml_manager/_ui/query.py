"""The runs page's query: the language of ``MLProject.search``, evaluated from its checked syntax tree."""

from __future__ import annotations

import ast
import operator
import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable

    import pandas as pd


class QueryError(ValueError):
    """A query the page may not run: not made of column names, literals, comparisons and and/or/not."""


_BACKTICKED = re.compile(r"`([^`]*)`")
_MAX_QUERY = 2000  # characters
_MAX_NODES = 400
_COMPARE: dict[type[ast.cmpop], Callable[[Any, Any], Any]] = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
}


def run_query(df: pd.DataFrame, query: str) -> pd.DataFrame:
    """The rows of ``df`` a query selects, in ``MLProject.search``'s language, evaluated here from its checked
    syntax tree (pandas never parses the text): column names (bare or in backticks), literals, comparisons
    (``==``, ``!=``, ``<``, ``<=``, ``>``, ``>=``, ``in``, ``not in`` a list), ``and``, ``or``, ``not``.
    Every operand is evaluated once, so the cost grows with the query's length, never faster.

    Raises:
        QueryError: anything else (a call, an attribute, an ``@`` variable, arithmetic...), an unknown column,
            a query too long, or a comparison the values do not allow, named in the message.
    """
    import pandas as pd

    if len(query) > _MAX_QUERY:
        raise QueryError(f"the query is longer than {_MAX_QUERY} characters")
    known = {str(c) for c in df.columns}
    names: dict[str, str] = {}

    def placeholder(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in known:
            raise QueryError(f"unknown column {name!r}")
        names[f"__column_{len(names)}"] = name
        return f"__column_{len(names) - 1}"

    text = _BACKTICKED.sub(placeholder, query)
    if "@" in text:
        raise QueryError("'@' (a variable) is not allowed in a query")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except (SyntaxError, ValueError) as exc:
        raise QueryError(f"the query does not parse: {getattr(exc, 'msg', exc)}") from None
    except (RecursionError, MemoryError):
        raise QueryError("the query is nested too deeply") from None
    if sum(1 for _ in ast.walk(tree)) > _MAX_NODES:
        raise QueryError(f"the query has more than {_MAX_NODES} parts")
    try:
        mask = _condition(tree.body, df, names)
    except QueryError:
        raise
    except (TypeError, ValueError) as exc:
        raise QueryError(f"cannot compare these values: {exc}") from None
    if not isinstance(mask, pd.Series):
        mask = pd.Series(bool(mask), index=df.index)
    selected: pd.DataFrame = df[mask.fillna(False).astype(bool)]
    return selected


def _condition(node: ast.expr, df: pd.DataFrame, names: dict[str, str]) -> Any:
    """A boolean Series (or a bool) for a condition: and/or/not of comparisons, or a column of booleans."""
    if isinstance(node, ast.BoolOp):
        parts = [_condition(value, df, names) for value in node.values]
        combine = operator.and_ if isinstance(node.op, ast.And) else operator.or_
        result = parts[0]
        for part in parts[1:]:
            result = combine(result, part)
        return result
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        inner = _condition(node.operand, df, names)
        return not inner if isinstance(inner, bool) else ~inner
    if isinstance(node, ast.Compare):
        values = [_operand(item, df, names) for item in (node.left, *node.comparators)]
        chained: Any = True
        for op, left, right in zip(node.ops, values, values[1:], strict=False):
            chained = chained & _compare(op, left, right)
        return chained
    if isinstance(node, ast.Name):
        return _operand(node, df, names)
    raise QueryError(f"{type(node).__name__} is not allowed in a query (names, literals, comparisons only)")


def _operand(node: ast.expr, df: pd.DataFrame, names: dict[str, str]) -> Any:
    if isinstance(node, ast.Name):
        column = names.get(node.id, node.id)
        if column not in df.columns:
            raise QueryError(f"unknown column {column!r}")
        return df[column]
    if isinstance(node, ast.Constant) and (node.value is None or isinstance(node.value, (str, int, float, bool))):
        return node.value
    if (
        isinstance(node, ast.UnaryOp)
        and isinstance(node.op, (ast.USub, ast.UAdd))
        and isinstance(node.operand, ast.Constant)
        and isinstance(node.operand.value, (int, float))
        and not isinstance(node.operand.value, bool)
    ):
        return -node.operand.value if isinstance(node.op, ast.USub) else node.operand.value
    if isinstance(node, (ast.List, ast.Tuple)):
        items = [_operand(item, df, names) for item in node.elts]
        if any(hasattr(item, "index") and not isinstance(item, (str, list)) for item in items):
            raise QueryError("a list in a query holds literals only")
        return items
    raise QueryError(f"{type(node).__name__} is not allowed in a query (names, literals, comparisons only)")


def _compare(op: ast.cmpop, left: Any, right: Any) -> Any:
    if isinstance(op, (ast.In, ast.NotIn)):
        if not isinstance(right, list) or not hasattr(left, "isin"):
            raise QueryError("'in' takes a column on its left and a list of literals on its right")
        found = left.isin(right)
        return ~found if isinstance(op, ast.NotIn) else found
    if isinstance(left, list) or isinstance(right, list):
        raise QueryError("a list compares only with 'in' or 'not in'")
    compare = _COMPARE.get(type(op))
    if compare is None:
        raise QueryError("only ==, !=, <, <=, >, >=, in and not in compare")
    return compare(left, right)
