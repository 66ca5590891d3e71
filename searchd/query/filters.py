"""``where`` filters and ``sort``: Weaviate's arguments checked against the catalog, as ``searchd.where`` trees.

Values are converted here (dates to instants, booleans to 0/1, ids normalised), so
every backend that compiles the tree compares the same things.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from searchd.catalog import CompiledCollection
from searchd.config.spec import PropertyType
from searchd.errors import InvalidInput, QueryError
from searchd.values import normalize_uuid
from searchd.where import ID_PATHS, LOGICAL, OPERATORS, TIME_PATHS, Combination, Condition, Filter, SortKey, epoch_seconds

__all__ = ["OPERATORS", "parse_where", "sort_key"]

VALUE_KEYS = ("valueInt", "valueNumber", "valueBoolean", "valueText", "valueString", "valueDate")


def _expected_keys(kind: PropertyType | None, path: str) -> tuple[str, ...]:
    if path in TIME_PATHS:
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
    if path in ID_PATHS:
        try:
            return normalize_uuid(value, "id filter value")
        except InvalidInput as exc:
            raise QueryError(exc.problem, exc.hint) from exc
    if path in TIME_PATHS:
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
    if name not in ID_PATHS and name not in TIME_PATHS:
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


def sort_key(collection: CompiledCollection, path: Any, descending: bool) -> SortKey:
    """A sort entry checked against the collection (a property, id, or a timestamp)."""
    if not isinstance(path, Sequence) or isinstance(path, str) or len(path) != 1:
        raise QueryError(f"sort path must name one property, got {path!r}", "write sort: [{path: [\"propertyName\"], order: asc}]")
    name = path[0]
    if name in ID_PATHS or name in TIME_PATHS:
        return SortKey(name, None, descending)
    prop = collection.spec.find_property(name)
    if prop is None:
        known = ", ".join(p.name for p in collection.spec.properties) or "none"
        raise QueryError(f"no such prop with name '{name}' found in class '{collection.name}' in the schema", f"sortable properties: {known}, id")
    if prop.type in (PropertyType.BLOB, PropertyType.TEXT_ARRAY):
        raise QueryError(f"'{name}' is {prop.type.value}, which cannot be sorted on", "sort on a scalar property")
    return SortKey(name, prop.type, descending)
