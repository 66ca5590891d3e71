"""``where`` filters: parse Weaviate's filter tree against the catalog, compile it to parameterised SQL.

Every value travels as a bound parameter; the only names written into SQL are
property names, which the config schema restricts to ``[_A-Za-z][_0-9A-Za-z]*``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from searchd.catalog import CompiledCollection
from searchd.config.spec import PropertyType
from searchd.errors import InvalidInput, QueryError
from searchd.storage.sqlfunctions import epoch_seconds
from searchd.values import normalize_uuid

LOGICAL = ("And", "Or", "Not")
COMPARISONS = ("Equal", "NotEqual", "GreaterThan", "GreaterThanEqual", "LessThan", "LessThanEqual")
OPERATORS = (*LOGICAL, *COMPARISONS, "Like", "IsNull", "ContainsAny", "ContainsAll", "ContainsNone")
VALUE_KEYS = ("valueInt", "valueNumber", "valueBoolean", "valueText", "valueString", "valueDate")
_SQL_COMPARE = {"Equal": "=", "NotEqual": "!=", "GreaterThan": ">", "GreaterThanEqual": ">=", "LessThan": "<", "LessThanEqual": "<="}
_ID_PATHS = ("id", "_id")
_TIME_PATHS = {"_creationTimeUnix": "created_ms", "_lastUpdateTimeUnix": "updated_ms"}


@dataclass(frozen=True)
class Condition:
    """A leaf: ``path operator value``; ``kind`` is the property's type (None for id and timestamps)."""

    path: str
    operator: str
    value: Any
    kind: PropertyType | None


@dataclass(frozen=True)
class Combination:
    operator: str  # And, Or, Not
    operands: tuple[Condition | Combination, ...]


Filter = Condition | Combination


def _expected_keys(kind: PropertyType | None, path: str) -> tuple[str, ...]:
    if path in _TIME_PATHS:
        return ("valueText", "valueString", "valueDate", "valueInt")
    if kind is None or kind in (PropertyType.TEXT, PropertyType.TEXT_ARRAY, PropertyType.UUID):
        return ("valueText", "valueString")
    return {
        PropertyType.INT: ("valueInt",),
        PropertyType.NUMBER: ("valueNumber", "valueInt"),
        PropertyType.BOOLEAN: ("valueBoolean",),
        PropertyType.DATE: ("valueDate", "valueText"),
    }[kind]


def _convert(value: Any, kind: PropertyType | None, path: str, key: str) -> Any:
    if path in _ID_PATHS:
        try:
            return normalize_uuid(value, "id filter value")
        except InvalidInput as exc:
            raise QueryError(exc.problem, exc.hint) from exc
    if path in _TIME_PATHS:
        if key == "valueDate":
            seconds = epoch_seconds(value)
            if seconds is None:
                raise QueryError(f"{path} filter value {value!r} is not an RFC 3339 date", "write it like 2024-05-01T12:00:00Z")
            return int(seconds * 1000)
        if (isinstance(value, int) and not isinstance(value, bool)) or (isinstance(value, str) and value.isascii() and value.isdigit()):
            return _int64(int(value), path)
        raise QueryError(f"{path} filter value {value!r} is not a Unix time in milliseconds", "send e.g. valueText: \"1714564800000\"")
    if kind is PropertyType.DATE:
        seconds = epoch_seconds(value)
        if seconds is None:
            raise QueryError(f"'{path}' is a DATE; {value!r} is not an RFC 3339 date with a time zone", "write it like 2024-05-01T12:00:00Z")
        return seconds
    if kind is PropertyType.UUID:
        try:
            return normalize_uuid(value, f"filter value for '{path}'")
        except InvalidInput as exc:
            raise QueryError(exc.problem, exc.hint) from exc
    wanted: dict[str, tuple[type, ...]] = {"valueInt": (int,), "valueNumber": (int, float), "valueBoolean": (bool,)}
    is_bool = isinstance(value, bool)
    if not isinstance(value, wanted.get(key, (str,))) or (is_bool and key != "valueBoolean"):
        raise QueryError(f"{key} for '{path}' must be {key[5:].lower()}, got {value!r}", f"send a {key[5:].lower()} value")
    if isinstance(value, bool):
        return int(value)  # JSON true is 1 in SQLite
    return _int64(value, path) if isinstance(value, int) else value


def _int64(value: int, path: str) -> int:
    if not -(2**63) <= value < 2**63:
        raise QueryError(f"filter value for '{path}' is outside the 64-bit integer range", "stored integers are 64-bit; use a smaller value")
    return value


def parse_where(collection: CompiledCollection, where: Any) -> Filter:
    if not isinstance(where, Mapping):
        raise QueryError("a where filter must be an object", "write it like {path: [\"prop\"], operator: Equal, valueText: \"x\"}")
    operator = where.get("operator")
    if operator not in OPERATORS:
        raise QueryError(f"unknown filter operator {operator!r}", f"use one of: {', '.join(OPERATORS)}")
    if operator in LOGICAL:
        operands = where.get("operands") or []
        if not operands or (operator == "Not" and len(operands) != 1):
            raise QueryError(f"operator {operator} needs {'exactly one operand' if operator == 'Not' else 'operands'}", "add operands: [{...}]")
        return Combination(operator, tuple(parse_where(collection, o) for o in operands))
    path = where.get("path")
    if not isinstance(path, Sequence) or isinstance(path, str) or len(path) != 1:
        raise QueryError(f"filter path must name one property, got {path!r}", "write path: [\"propertyName\"] (cross-references are not supported)")
    name = path[0]
    kind: PropertyType | None = None
    if name not in _ID_PATHS and name not in _TIME_PATHS:
        prop = collection.spec.find_property(name)
        if prop is None:
            known = ", ".join(p.name for p in collection.spec.properties) or "none"
            raise QueryError(f"no such prop with name '{name}' found in class '{collection.name}' in the schema", f"filterable properties: {known}, id")
        if prop.type is PropertyType.BLOB:
            raise QueryError(f"'{name}' is a BLOB property, which cannot be filtered", "filter on another property")
        kind = prop.type
    given = [k for k in VALUE_KEYS if where.get(k) is not None]
    if operator == "IsNull":
        if given != ["valueBoolean"] or not isinstance(where["valueBoolean"], bool):
            raise QueryError("IsNull takes valueBoolean: true or false", "write {path: [...], operator: IsNull, valueBoolean: true}")
        return Condition(name, operator, where["valueBoolean"], kind)
    expected = _expected_keys(kind, name)
    if len(given) != 1 or given[0] not in expected:
        what = f"'{name}' ({kind.value if kind else name})"
        raise QueryError(f"a filter on {what} needs exactly one of {', '.join(expected)}; got {', '.join(given) or 'none'}", f"use {expected[0]}")
    key = given[0]
    raw = where[key]
    if operator.startswith("Contains"):
        values = raw if isinstance(raw, list) else [raw]
        if not values:
            raise QueryError(f"{operator} needs at least one value", f"send {key}: [\"a\", \"b\"]")
        return Condition(name, operator, tuple(_convert(v, kind, name, key) for v in values), kind)
    if isinstance(raw, list):
        raise QueryError(f"{operator} takes one value, not a list", "use ContainsAny / ContainsAll for lists")
    if operator == "Like":
        if kind not in (PropertyType.TEXT, PropertyType.TEXT_ARRAY) or not isinstance(raw, str):
            raise QueryError("Like works on TEXT and TEXT[] properties with valueText", "use Equal for other types")
        return Condition(name, operator, raw, kind)
    if kind is PropertyType.BOOLEAN and operator not in ("Equal", "NotEqual"):
        raise QueryError(f"{operator} does not apply to BOOLEAN '{name}'", "use Equal or NotEqual")
    return Condition(name, operator, _convert(raw, kind, name, key), kind)


def _column(condition: Condition) -> str:
    if condition.path in _ID_PATHS:
        return "id"
    if condition.path in _TIME_PATHS:
        return _TIME_PATHS[condition.path]
    extract = f"json_extract(properties, '$.{condition.path}')"
    return f"searchd_epoch({extract})" if condition.kind is PropertyType.DATE else extract


def _leaf_sql(condition: Condition) -> tuple[str, list[Any]]:
    op, value = condition.operator, condition.value
    if condition.kind is PropertyType.TEXT_ARRAY:
        each = f"SELECT 1 FROM json_each(objects.properties, '$.{condition.path}')"
        if op == "IsNull":
            return ("json_array_length(properties, '$.{0}') IS {1}NULL".format(condition.path, "" if value else "NOT "), [])
        if op == "Like":
            return f"EXISTS ({each} WHERE searchd_like(?, value))", [value]
        if op in ("Equal", "NotEqual"):
            clause = f"EXISTS ({each} WHERE value = ?)"
            return (clause if op == "Equal" else f"NOT {clause}"), [value]
        if op in _SQL_COMPARE:
            return f"EXISTS ({each} WHERE value {_SQL_COMPARE[op]} ?)", [value]
        marks = ",".join("?" * len(value))
        if op == "ContainsAll":
            return f"(SELECT COUNT(DISTINCT value) FROM json_each(objects.properties, '$.{condition.path}') WHERE value IN ({marks})) = ?", [*value, len(set(value))]
        clause = f"EXISTS ({each} WHERE value IN ({marks}))"
        return (clause if op == "ContainsAny" else f"NOT {clause}"), list(value)
    column = _column(condition)
    if op == "IsNull":
        return f"{column} IS {'' if value else 'NOT '}NULL", []
    if op == "Like":
        return f"searchd_like(?, {column})", [value]
    if op == "NotEqual":
        return f"({column} IS NULL OR {column} != ?)", [value]
    if op in _SQL_COMPARE:
        return f"{column} {_SQL_COMPARE[op]} ?", [value]
    marks = ",".join("?" * len(value))
    if op == "ContainsAny":
        return f"{column} IN ({marks})", list(value)
    if op == "ContainsNone":
        return f"({column} IS NULL OR {column} NOT IN ({marks}))", list(value)
    # ContainsAll on a single value: it must equal every listed value.
    return " AND ".join([f"{column} = ?"] * len(value)), list(value)


_INDEXABLE = (*COMPARISONS[:1], *COMPARISONS[2:], "ContainsAny")  # not NotEqual: it includes missing values


def index_hint(collection: CompiledCollection, where: Filter) -> str | None:
    """A property whose expression index can answer the filter (a leaf, or a leaf of a top-level And).

    SQLite's statistics know how many distinct values a property has, not how rare one is,
    so a rare value ("pos = r") is planned as a full scan; the hint forces the index, which
    is never slower for an id lookup (the index covers the id).
    """
    leaves = [where] if isinstance(where, Condition) else list(where.operands) if where.operator == "And" else []
    for leaf in leaves:
        if isinstance(leaf, Condition) and leaf.operator in _INDEXABLE and leaf.kind not in (None, PropertyType.TEXT_ARRAY, PropertyType.DATE):
            prop = collection.spec.find_property(leaf.path)
            if prop is not None and prop.filterable:
                return prop.name
    return None


def to_sql(where: Filter) -> tuple[str, list[Any]]:
    """A SQL boolean expression over the objects table, and its parameters."""
    if isinstance(where, Condition):
        return _leaf_sql(where)
    parts = [to_sql(o) for o in where.operands]
    params = [p for _, ps in parts for p in ps]
    if where.operator == "Not":
        # SQL is three-valued: a comparison on a missing property is NULL, and NOT NULL is still NULL.
        # Treating unknown as false first makes Not the complement of its operand, as users expect.
        return f"NOT COALESCE(({parts[0][0]}), 0)", params
    joiner = " AND " if where.operator == "And" else " OR "
    return "(" + joiner.join(f"({sql})" for sql, _ in parts) + ")", params


def sort_expression(collection: CompiledCollection, path: Any) -> str:
    """The SQL expression to order by for a sort path (a property, id, or a timestamp)."""
    if not isinstance(path, Sequence) or isinstance(path, str) or len(path) != 1:
        raise QueryError(f"sort path must name one property, got {path!r}", "write sort: [{path: [\"propertyName\"], order: asc}]")
    name = path[0]
    if name in _ID_PATHS or name in _TIME_PATHS:
        return _column(Condition(name, "Equal", None, None))
    prop = collection.spec.find_property(name)
    if prop is None:
        known = ", ".join(p.name for p in collection.spec.properties) or "none"
        raise QueryError(f"no such prop with name '{name}' found in class '{collection.name}' in the schema", f"sortable properties: {known}, id")
    if prop.type in (PropertyType.BLOB, PropertyType.TEXT_ARRAY):
        raise QueryError(f"'{name}' is {prop.type.value}, which cannot be sorted on", "sort on a scalar property")
    return _column(Condition(name, "Equal", None, prop.type))
