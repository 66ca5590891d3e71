"""Check and normalise property values against their declared types, on every write."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import math
import re
import reprlib
from collections.abc import Mapping
from typing import Any

import numpy as np

from searchd.catalog import CompiledCollection
from searchd.config.spec import PropertyType
from searchd.errors import InvalidInput
from searchd.modules.features import decode_image

INT64 = 2**63


# Weaviate's form only: Python's uuid.UUID also takes {braces}, urn:uuid: and 32 bare hex digits.
_CANONICAL_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def normalize_uuid(value: Any, what: str = "id") -> str:
    if isinstance(value, str) and _CANONICAL_UUID.fullmatch(value):
        return value.lower()
    raise InvalidInput(f"{what} {_preview(value)} is not a valid UUID", "use the canonical 8-4-4-4-12 hex form, e.g. 8a3a2f5e-7c1d-4b6e-9f0a-2d4c6e8b1a3f")


def vector_json(collection: CompiledCollection | None, name: str, array: np.ndarray) -> list[Any]:
    """A stored vector as JSON: a multi-vector is always a matrix, even with one row (it is stored flat)."""
    vector = collection.vectors.get(name) if collection is not None else None
    if vector is not None and vector.is_multi and array.ndim == 1:
        array = array.reshape(1, -1)
    shown: list[Any] = array.tolist()
    return shown


def _type_error(name: str, expected: str, value: Any) -> InvalidInput:
    return InvalidInput(
        f"property '{name}' expects {expected}, got {type(value).__name__} {_preview(value)}",
        "send the value with the type declared in the config",
    )


def _preview(value: Any) -> str:
    # reprlib bounds depth and length: a value nested a thousand levels deep is shown as [[...]], not a RecursionError.
    shown = reprlib.Repr()
    shown.maxlevel, shown.maxstring, shown.maxother, shown.maxlist, shown.maxdict = 2, 56, 56, 4, 4
    text = shown.repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _check_text(name: str, value: str) -> str:
    """Refuse a lone UTF-16 surrogate: it cannot be stored as UTF-8, nor rendered in a response."""
    found = _LONE_SURROGATE.search(value)
    if found is not None:
        raise InvalidInput(
            f"property '{name}' holds a lone UTF-16 surrogate (\\u{ord(found.group()):04x}) at character {found.start()}, which is not valid Unicode",
            "send valid Unicode: a character outside the Basic Multilingual Plane is a pair of escapes (e.g. \\ud83d\\ude00), never half of one",
        )
    return value


def _check_value(name: str, kind: PropertyType, value: Any, is_image: bool) -> Any:
    if kind is PropertyType.TEXT:
        if not isinstance(value, str):
            raise _type_error(name, "a string (TEXT)", value)
        return _check_text(name, value)
    if kind is PropertyType.TEXT_ARRAY:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise _type_error(name, "a list of strings (TEXT[])", value)
        return [_check_text(name, v) for v in value]
    if kind is PropertyType.INT:
        # JSON has one number type: 3.0 is accepted as 3, 3.5 is not.
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise _type_error(name, "an integer (INT)", value)
        if not -INT64 <= value < INT64:
            raise InvalidInput(f"property '{name}' is outside the 64-bit integer range", "store it as NUMBER or TEXT")
        return value
    if kind is PropertyType.NUMBER:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise _type_error(name, "a finite number (NUMBER)", value)
        return float(value)
    if kind is PropertyType.BOOLEAN:
        if not isinstance(value, bool):
            raise _type_error(name, "true or false (BOOLEAN)", value)
        return value
    if kind is PropertyType.DATE:
        return _check_date(name, value)
    if kind is PropertyType.UUID:
        return normalize_uuid(value, f"property '{name}'")
    return _check_blob(name, value, is_image)


def _check_date(name: str, value: Any) -> str:
    if isinstance(value, str):
        try:
            parsed = dt.datetime.fromisoformat(value)
        except ValueError:
            parsed = None
        if parsed is not None and parsed.tzinfo is not None:
            return value
    raise InvalidInput(
        f"property '{name}' expects an RFC 3339 date with a time zone, got {_preview(value)}",
        "write it like 2024-05-01T12:00:00Z",
    )


def _check_blob(name: str, value: Any, is_image: bool) -> str:
    if not isinstance(value, str):
        raise _type_error(name, "a base64 string (BLOB)", value)
    try:
        data = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidInput(f"property '{name}' is not valid base64 ({exc})", "encode the file's bytes as standard base64 (A-Z, a-z, 0-9, +, /, = padding)") from exc
    if is_image:
        try:
            decode_image(data)
        except InvalidInput as exc:
            raise InvalidInput(f"property '{name}' is {exc.problem}", exc.hint) from exc
    return value


def check_properties(collection: CompiledCollection, properties: Any) -> dict[str, Any]:
    """Return the properties with values normalised; raise InvalidInput on the first problem."""
    if properties is None:
        return {}
    if not isinstance(properties, Mapping):
        raise InvalidInput("'properties' must be a JSON object", "send properties as {\"name\": value, ...}")
    checked: dict[str, Any] = {}
    for name, value in properties.items():
        prop = collection.spec.find_property(name)
        if prop is None:
            known = ", ".join(p.name for p in collection.spec.properties) or "none"
            raise InvalidInput(
                f"no such prop with name '{name}' found in class '{collection.name}' in the schema",
                f"declared properties: {known}; add it to the YAML config to store it",
            )
        if value is None:
            continue  # null means absent, as in Weaviate
        checked[name] = _check_value(name, prop.type, value, name in collection.image_fields)
    return checked

