"""JSON Schema validation that reports every error, located and with a hint."""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Callable, Iterator
from functools import cache
from importlib import resources
from typing import Any

import jsonschema
from jsonschema import Draft202012Validator

from searchd.config.loader import Locator, PathKey
from searchd.errors import ConfigIssue


@cache
def config_schema() -> dict[str, Any]:
    """The published JSON Schema (schemas/searchd.schema.json); read once, never mutated."""
    text = resources.files("searchd.config").joinpath("searchd.schema.json").read_text(encoding="utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


def _finite_number(checker: jsonschema.TypeChecker, instance: Any) -> bool:
    """JSON has no NaN or infinity, but YAML does (.nan, .inf): a number here is a finite one."""
    return bool(Draft202012Validator.TYPE_CHECKER.is_type(instance, "number")) and (not isinstance(instance, float) or math.isfinite(instance))


_extend: Callable[..., Any] = jsonschema.validators.extend
_Validator = _extend(Draft202012Validator, type_checker=Draft202012Validator.TYPE_CHECKER.redefine("number", _finite_number))


@cache
def _validator() -> Any:
    schema = config_schema()
    Draft202012Validator.check_schema(schema)
    return _Validator(schema)


@cache
def _fast_validator() -> Any:
    """jsonschema-rs (Rust) for the common case, a valid config: ~50x faster on a large file than the Python validator,
    which then only runs to word the errors of an invalid one.  None when it is not installed."""
    try:
        import jsonschema_rs
    except ImportError:
        return None
    return jsonschema_rs.validator_for(config_schema())


# What a collection's schema may say besides its keys' own schemas, for each key to be checked on its own.
_ANNOTATIONS = frozenset({"description", "title", "type", "additionalProperties", "required", "properties"})


@cache
def entries_independent() -> bool:
    """Whether the schema checks each key of a collection on its own (and the list, item by item): then a collection
    with some of its entries left out, each equal to one checked in the same place, is valid when the whole is."""
    schema = config_schema()
    collection = schema["$defs"]["collection"]
    listed = schema["properties"]["collections"]
    return (
        all(key in _ANNOTATIONS or key.startswith("x-") for key in collection)
        and all(key in ("description", "type", "items") or key.startswith("x-") for key in listed)
        and listed.get("items") == {"$ref": "#/$defs/collection"}
        and collection.get("additionalProperties") is False
    )


def surely_valid(data: Any) -> bool:
    fast = _fast_validator()
    if fast is None:
        return False
    try:
        # NaN, infinity, dates and huge integers are not JSON: it answers False (or raises), and the Python validator words why.
        return bool(fast.is_valid(data))
    except (ValueError, TypeError, OverflowError):
        return False


def non_finite(value: Any) -> bool:
    return isinstance(value, float) and not math.isfinite(value)


def _schema_of(error: jsonschema.ValidationError) -> dict[str, Any]:
    return error.schema if isinstance(error.schema, dict) else {}


def _hint(error: jsonschema.ValidationError) -> str:
    kind = error.validator
    schema = _schema_of(error)
    if kind == "enum":
        return "use one of: " + ", ".join(str(v) for v in error.validator_value)  # type: ignore[union-attr]
    if kind == "additionalProperties" and isinstance(schema.get("properties"), dict):
        allowed = sorted(schema["properties"])
        return "remove it or fix its spelling; allowed keys here: " + ", ".join(allowed) if allowed else "this section takes no keys"
    if kind == "required":
        return "add the missing key"
    if kind == "type":
        return f"expected a value of type {error.validator_value}; in YAML, quote strings and leave numbers and booleans unquoted"
    if kind == "pattern":
        return str(schema.get("description") or f"the value must match {error.validator_value}")
    hints = {
        "minimum": f"use a value of at least {error.validator_value}",
        "maximum": f"use a value of at most {error.validator_value}",
        "minLength": "the value must not be empty",
        "uniqueItems": "list each entry once",
    }
    return hints.get(str(kind), "")


def _located_path(error: jsonschema.ValidationError) -> PathKey:
    path: PathKey = tuple(error.absolute_path)
    # An unexpected key is best reported at the key itself, not at its parent mapping.
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        known = _schema_of(error).get("properties", {})
        extra = [key for key in error.instance if key not in known]
        if len(extra) == 1:
            return (*path, extra[0])
    return path


def schema_errors(data: Any) -> Iterator[jsonschema.ValidationError]:
    errors: Iterator[jsonschema.ValidationError] = _validator().iter_errors(data)
    return errors


def _python_errors(data: Any) -> list[jsonschema.ValidationError]:
    """The Python validator's errors (it words them); when the schema checks each collection on its own, only the
    collections the Rust validator finds errors in are walked in Python: it takes ~1 ms a collection, 90 s for 90,000."""
    fast = _fast_validator()
    collections = data.get("collections") if isinstance(data, dict) else None
    if fast is None or not isinstance(collections, list) or not entries_independent():
        return list(_validator().iter_errors(data))
    try:
        paths = [list(error.instance_path) for error in fast.iter_errors(data)]
    except (ValueError, TypeError, OverflowError):  # not JSON (NaN, a date, a huge integer): the whole document in Python
        return list(_validator().iter_errors(data))
    bad = sorted({path[1] for path in paths if len(path) > 1 and path[0] == "collections" and isinstance(path[1], int)})
    errors = list(_validator().iter_errors({**data, "collections": [collections[index] for index in bad]}))
    for error in errors:
        if len(error.path) > 1 and error.path[0] == "collections" and isinstance(error.path[1], int):
            error.path[1] = bad[error.path[1]]  # back to the collection's place in the whole list
    return errors


def schema_issues(data: Any, locator: Locator) -> list[tuple[PathKey, ConfigIssue]]:
    """Every schema violation, with the path it concerns (for dropping the invalid part)."""
    if surely_valid(data):
        return []
    issues = []
    for error in sorted(_python_errors(data), key=lambda e: [str(p) for p in e.absolute_path]):
        path = _located_path(error)
        if "propertyNames" in error.schema_path:
            # A bad mapping key (e.g. a vector name): the error is about the key, located at it.
            message = f"invalid name {error.instance!r}"
            hint = "names start with a letter or underscore, followed by letters, digits or underscores"
            issues.append((path, locator.issue(path, message, hint, at=(*path, str(error.instance)))))
            continue
        if path and (path[-1] == "apiKey" or (path[:3] == ("server", "auth", "apiKeys") and path[-1] == "key")):
            # Never echo a secret: say what is wrong without the value.
            if error.instance == "":
                continue  # a literal secret was already reported by the loader, which blanked it
            issues.append((path, locator.issue(path, f"the value does not pass the schema's '{error.validator}' rule", "keys declared here must be at least 16 characters")))
            continue
        if error.validator == "type" and isinstance(error.instance, (dt.date, bytes)):
            # YAML 1.1 reads an unquoted 2024-01-01 as a date, and !!binary as bytes: say so, not with a Python repr.
            wanted = " or ".join(error.validator_value) if isinstance(error.validator_value, list) else error.validator_value
            if isinstance(error.instance, dt.date):
                written = error.instance.isoformat()
                message, hint = f"{written} reads as a date in YAML, not as a {wanted}", f"quote it to make it a string: '{written}'"
            else:
                message, hint = f"this !!binary value reads as bytes in YAML, not as a {wanted}", "remove the !!binary tag and write the value itself"
            issues.append((path, locator.issue(path, message, hint)))
            continue
        if error.validator == "type" and non_finite(error.instance):
            issues.append((path, locator.issue(path, f"{error.instance} is not a finite number", "NaN and infinity are not allowed here; write a finite number, e.g. 1.2")))
            continue
        issues.append((path, locator.issue(path, error.message, _hint(error))))
    return issues
