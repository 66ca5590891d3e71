"""The filter tree (``searchd.where``) compiled to PostgreSQL: a boolean SQL expression and its parameters.

The same meaning as ``searchd.storage.sqlwhere`` gives SQLite (the rules are in
``searchd.where``).  Every value travels as a bound parameter (``%s``, typed by an explicit
cast); the only names written into SQL are property names, which the config schema restricts
to ``[_A-Za-z][_0-9A-Za-z]*``.  Text compares and sorts bytewise (``COLLATE "C"``), as SQLite
does, whatever the database's own collation.  Expressions refer to the collection's table as
``objects``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from searchd.config.spec import PropertyType
from searchd.where import ID_PATHS, TIME_PATHS, Condition, Filter, SortKey

_SQL_COMPARE = {"Equal": "=", "NotEqual": "!=", "GreaterThan": ">", "GreaterThanEqual": ">=", "LessThan": "<", "LessThanEqual": "<="}
_CAST = {PropertyType.INT: "numeric", PropertyType.NUMBER: "numeric", PropertyType.BOOLEAN: "int", PropertyType.DATE: "float8"}


def text_of(path: str, qualifier: str = "objects.") -> str:
    """A property's value as text, as the expression indexes hold it (they are written without the qualifier)."""
    return f"""(({qualifier}properties->>'{path}') COLLATE "C")"""


def _column(path: str, kind: PropertyType | None) -> tuple[str, str]:
    """The SQL expression of a path's value, and the type its parameters are cast to."""
    if path in ID_PATHS:
        return "objects.id", "text"
    if path in TIME_PATHS:
        return f"objects.{TIME_PATHS[path]}", "bigint"
    value = f"(objects.properties->>'{path}')"
    if kind is PropertyType.DATE:
        return f"searchd_epoch({value})", "float8"
    if kind is PropertyType.BOOLEAN:
        return f"({value}::boolean::int)", "int"
    if kind in (PropertyType.INT, PropertyType.NUMBER):
        return f"({value}::numeric)", "numeric"
    return text_of(path), "text"


def like_pattern(pattern: str) -> str:
    """Weaviate's Like (``*`` any run, ``?`` one character) as an ILIKE pattern (backslash escapes)."""
    out = []
    for char in pattern:
        if char in "\\%_":
            out.append("\\" + char)
        else:
            out.append("%" if char == "*" else "_" if char == "?" else char)
    return "".join(out)


def _array_sql(condition: Condition) -> tuple[str, list[Any]]:
    op, value, path = condition.operator, condition.value, condition.path
    field = f"objects.properties->'{path}'"
    # jsonb_array_elements_text refuses a scalar: a value that is not an array has no elements.
    elements = f"""SELECT e.value COLLATE "C" AS value FROM jsonb_array_elements_text(CASE WHEN jsonb_typeof({field}) = 'array' THEN {field} ELSE '[]'::jsonb END) AS e(value)"""
    if op == "IsNull":
        return f"({field} IS {'' if value else 'NOT '}NULL)", []
    if op == "Like":
        return f"EXISTS (SELECT 1 FROM ({elements}) AS e WHERE e.value ILIKE %s::text)", [like_pattern(value)]
    if op in ("Equal", "NotEqual"):
        clause = f"EXISTS (SELECT 1 FROM ({elements}) AS e WHERE e.value = %s::text)"
        return (clause if op == "Equal" else f"NOT {clause}"), [value]
    if op in _SQL_COMPARE:
        return f"EXISTS (SELECT 1 FROM ({elements}) AS e WHERE e.value {_SQL_COMPARE[op]} %s::text)", [value]
    values = [str(v) for v in value]
    if op == "ContainsAll":
        return f"(SELECT COUNT(DISTINCT e.value) FROM ({elements}) AS e WHERE e.value = ANY(%s::text[])) = %s::int", [values, len(set(values))]
    clause = f"EXISTS (SELECT 1 FROM ({elements}) AS e WHERE e.value = ANY(%s::text[]))"
    return (clause if op == "ContainsAny" else f"NOT {clause}"), [values]


def _leaf_sql(condition: Condition) -> tuple[str, list[Any]]:
    if condition.kind is PropertyType.TEXT_ARRAY:
        return _array_sql(condition)
    op, value = condition.operator, condition.value
    column, cast = _column(condition.path, condition.kind)
    if op == "IsNull":
        return f"({column} IS {'' if value else 'NOT '}NULL)", []
    if op == "Like":
        return f"({column} ILIKE %s::text)", [like_pattern(value)]
    if op == "NotEqual":
        return f"({column} IS NULL OR {column} != %s::{cast})", [value]
    if op in _SQL_COMPARE:
        return f"({column} {_SQL_COMPARE[op]} %s::{cast})", [value]
    values = list(value)
    # One array parameter however long the list; as text, since a list of ints and floats has no single array type.
    listed = [str(v) for v in values]
    if op == "ContainsAny":
        return f"({column} = ANY(%s::text[]::{cast}[]))", [listed]
    if op == "ContainsNone":
        return f"({column} IS NULL OR NOT ({column} = ANY(%s::text[]::{cast}[])))", [listed]
    # ContainsAll on a single value: it must equal every listed value.
    return "(" + " AND ".join([f"{column} = %s::{cast}"] * len(values)) + ")", values


def to_sql(where: Filter) -> tuple[str, list[Any]]:
    """A SQL boolean expression over the collection's table (``objects``), and its parameters."""
    if isinstance(where, Condition):
        return _leaf_sql(where)
    parts = [to_sql(o) for o in where.operands]
    params = [p for _, ps in parts for p in ps]
    if where.operator == "Not":
        # A comparison on a missing property is NULL, and NOT NULL is still NULL: unknown counts as false first.
        return f"(NOT COALESCE({parts[0][0]}, false))", params
    joiner = " AND " if where.operator == "And" else " OR "
    return "(" + joiner.join(sql for sql, _ in parts) + ")", params


def order_sql(order: Sequence[SortKey]) -> str:
    """ORDER BY terms before the id; a missing value sorts first ascending, as SQLite sorts NULL."""
    return "".join(f"{_column(key.path, key.kind)[0]} {'DESC NULLS LAST' if key.descending else 'ASC NULLS FIRST'}, " for key in order)
