"""The filter tree (``searchd.where``) compiled to SQLite: a boolean SQL expression and its parameters.

Every value travels as a bound parameter; the only names written into SQL are
property names, which the config schema restricts to ``[_A-Za-z][_0-9A-Za-z]*``.
Expressions refer to the collection's table as ``objects``.  Stored text reaches the Python
functions (``searchd_like``, ``searchd_epoch``: ``searchd.storage.sqlite``) as a BLOB: a lone
surrogate stored before they were refused comes out of ``json_extract`` as bytes that are not
UTF-8, which Python's sqlite3 cannot turn into a str argument, and the whole query would fail.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from searchd.config.spec import PropertyType
from searchd.where import COMPARISONS, ID_PATHS, TIME_PATHS, Condition, Filter, SortKey

_SQL_COMPARE = {"Equal": "=", "NotEqual": "!=", "GreaterThan": ">", "GreaterThanEqual": ">=", "LessThan": "<", "LessThanEqual": "<="}
# Operators an expression index on the property answers (not NotEqual: it includes missing values).
_LONG_LIST = 64  # longer value lists travel as one JSON parameter
_INDEXABLE = (*COMPARISONS[:1], *COMPARISONS[2:], "ContainsAny")


def _column(path: str, kind: PropertyType | None) -> str:
    if path in ID_PATHS:
        return "id"
    if path in TIME_PATHS:
        return TIME_PATHS[path]
    extract = f"json_extract(properties, '$.{path}')"
    return f"searchd_epoch(CAST({extract} AS BLOB))" if kind is PropertyType.DATE else extract


def _array_sql(condition: Condition) -> tuple[str, list[Any]]:
    op, value, path = condition.operator, condition.value, condition.path
    each = f"SELECT 1 FROM json_each(objects.properties, '$.{path}')"
    if op == "IsNull":
        return (f"json_array_length(properties, '$.{path}') IS {'' if value else 'NOT '}NULL", [])
    if op == "Like":
        return f"EXISTS ({each} WHERE searchd_like(?, CAST(value AS BLOB)))", [value]
    if op in ("Equal", "NotEqual"):
        clause = f"EXISTS ({each} WHERE value = ?)"
        return (clause if op == "Equal" else f"NOT {clause}"), [value]
    if op in _SQL_COMPARE:
        return f"EXISTS ({each} WHERE value {_SQL_COMPARE[op]} ?)", [value]
    marks, values = _in_list(value)
    if op == "ContainsAll":
        return f"(SELECT COUNT(DISTINCT value) FROM json_each(objects.properties, '$.{path}') WHERE value IN ({marks})) = ?", [*values, len(set(value))]
    clause = f"EXISTS ({each} WHERE value IN ({marks}))"
    return (clause if op == "ContainsAny" else f"NOT {clause}"), values


def _in_list(values: Sequence[Any]) -> tuple[str, list[Any]]:
    """The inside of ``IN (...)``: one parameter per value, or one JSON array for a long list.

    Each bound parameter counts against SQLite's limit per statement (32,766); a JSON array
    read by json_each is one parameter however long it is.
    """
    if len(values) <= _LONG_LIST:
        return ",".join("?" * len(values)), list(values)
    return "SELECT value FROM json_each(?)", [json.dumps(list(values))]


def _leaf_sql(condition: Condition) -> tuple[str, list[Any]]:
    if condition.kind is PropertyType.TEXT_ARRAY:
        return _array_sql(condition)
    op, value = condition.operator, condition.value
    column = _column(condition.path, condition.kind)
    if op == "IsNull":
        return f"{column} IS {'' if value else 'NOT '}NULL", []
    if op == "Like":
        return f"searchd_like(?, CAST({column} AS BLOB))", [value]
    if op == "NotEqual":
        return f"({column} IS NULL OR {column} != ?)", [value]
    if op in _SQL_COMPARE:
        return f"{column} {_SQL_COMPARE[op]} ?", [value]
    marks, values = _in_list(value)
    if op == "ContainsAny":
        return f"{column} IN ({marks})", values
    if op == "ContainsNone":
        return f"({column} IS NULL OR {column} NOT IN ({marks}))", values
    # ContainsAll on a single value: it must equal every listed value.
    return " AND ".join([f"{column} = ?"] * len(value)), list(value)


def to_sql(where: Filter) -> tuple[str, list[Any]]:
    """A SQL boolean expression over the collection's table, and its parameters."""
    if isinstance(where, Condition):
        return _leaf_sql(where)
    parts = [to_sql(o) for o in where.operands]
    params = [p for _, ps in parts for p in ps]
    if where.operator == "Not":
        # SQL is three-valued: a comparison on a missing property is NULL, and NOT NULL is still NULL.
        # Treating unknown as false first makes Not the complement of its operand, as users expect.
        return f"NOT COALESCE(({parts[0][0]}), 0)", params
    return _balanced([sql for sql, _ in parts], " AND " if where.operator == "And" else " OR "), params


def _balanced(sqls: Sequence[str], joiner: str) -> str:
    """``(a OR b OR c OR d)`` as ``((a OR b) OR (c OR d))``.

    SQLite parses a flat chain into a tree as deep as it is long and refuses one deeper than
    1,000 ("Expression tree is too large"); halving keeps a filter of n operands log2(n) deep.
    """
    if len(sqls) == 1:
        return f"({sqls[0]})"
    middle = len(sqls) // 2
    return f"({_balanced(sqls[:middle], joiner)}{joiner}{_balanced(sqls[middle:], joiner)})"


def indexed_property(where: Filter, indexed: Sequence[str]) -> str | None:
    """A property whose expression index can answer the filter (a leaf, or a leaf of a top-level And).

    SQLite's statistics know how many distinct values a property has, not how rare one is,
    so a rare value is planned as a full scan; forcing the index is never slower for a
    lookup (the index covers the doc).
    """
    leaves = [where] if isinstance(where, Condition) else list(where.operands) if where.operator == "And" else []
    for leaf in leaves:
        if isinstance(leaf, Condition) and leaf.operator in _INDEXABLE and leaf.kind not in (None, PropertyType.TEXT_ARRAY, PropertyType.DATE) and leaf.path in indexed:
            return leaf.path
    return None


def order_sql(order: Sequence[SortKey]) -> str:
    return "".join(f"{_column(key.path, key.kind)} {'DESC' if key.descending else 'ASC'}, " for key in order)
