"""Request bodies as JSON: strict, bounded in depth, and refused with a message that points at the problem.

orjson refuses invalid UTF-8 and lone surrogates (``"\\udfff"``) but only says where in the
byte stream; the refusal here names the property instead, so a client can find the bad
value.  Nesting is limited to ``MAX_JSON_DEPTH`` levels: no route needs more, and code that
walks a value recursively (error messages, filters, storage) stays far from Python's
recursion limit.
"""

from __future__ import annotations

import json
import re
from itertools import compress
from typing import Any

import orjson

from searchd.errors import InvalidInput
from searchd.server.errors import escaped

MAX_JSON_DEPTH = 64
_CONTAINER = frozenset({dict, list})  # what orjson makes of JSON objects and arrays
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
_SURROGATE_HINT = (
    "send valid Unicode: a character outside the Basic Multilingual Plane is written as a pair of escapes (e.g. \\ud83d\\ude00), never half of one"
)


def parse_json(body: bytes) -> Any:
    """The body's JSON value, or InvalidInput (422) saying what is wrong and where."""
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        # orjson says "surrogates not allowed" for any bytes that are not UTF-8 as well as for an escaped lone surrogate.
        if "surrogate" in str(exc):
            raise not_utf8(body) or surrogate_error(body) from None
        if "depth" in str(exc):
            raise too_deep() from None
        raise InvalidInput(f"the request body is not valid JSON ({exc})", "send a JSON document with Content-Type: application/json") from None
    check_depth(value)
    return value


def not_utf8(body: bytes) -> InvalidInput | None:
    """The refusal of a body whose bytes are not UTF-8 (JSON's only encoding), naming the first bad byte; None if they are."""
    try:
        body.decode("utf-8")
    except UnicodeDecodeError as exc:
        return InvalidInput(
            f"the request body is not valid UTF-8 at byte {exc.start} (0x{body[exc.start]:02x})",
            "encode the body as UTF-8 (text in another encoding such as Latin-1 has to be converted first)",
        )
    return None


def too_deep() -> InvalidInput:
    return InvalidInput(f"the request body nests JSON objects and arrays more than {MAX_JSON_DEPTH} levels deep", "send a flatter document")


def check_depth(value: Any) -> None:
    """Refuse a value nested deeper than MAX_JSON_DEPTH, without recursion (a list of numbers costs one pass in C)."""
    level: list[Any] = [value] if isinstance(value, (dict, list)) else []
    for _ in range(MAX_JSON_DEPTH):
        inner: list[Any] = []
        for item in level:
            children = list(item.values()) if isinstance(item, dict) else item
            # map/compress iterate in C: a batch of 768-dimension vectors is checked in a fraction of its parse time.
            inner.extend(compress(children, map(_CONTAINER.__contains__, map(type, children))))
        if not inner:
            return
        level = inner
    raise too_deep()


def surrogate_error(body: bytes) -> InvalidInput:
    """Name the string holding a lone surrogate (the body is read again leniently, to find it)."""
    try:
        lenient = json.loads(body)
        where = _find_surrogate(lenient, "")
    except (ValueError, RecursionError):
        where = None
    if where is None:
        return InvalidInput("the request body holds a string that is not valid Unicode (a lone UTF-16 surrogate)", _SURROGATE_HINT)
    path, text, is_key = where
    found = _LONE_SURROGATE.search(text)
    shown = escaped(found.group()) if found else "?"
    # The path holds the surrogate itself when a key does: it is shown escaped, as the client wrote it (a raw one cannot be encoded).
    property_name = re.fullmatch(r"(?:objects\[\d+\]\.)?properties\.([^.\[]+)", path)
    if property_name and is_key:
        what = f"the name of property '{escaped(property_name.group(1))}'"
    elif property_name:
        what = f"property '{escaped(property_name.group(1))}'"
    else:
        what = f"{'the key ' if is_key else ''}'{escaped(path) or '<root>'}'"
    return InvalidInput(f"{what} holds a lone UTF-16 surrogate ({shown}), which is not valid Unicode", _SURROGATE_HINT)


def _find_surrogate(value: Any, path: str) -> tuple[str, str, bool] | None:
    """(path, the string holding a lone surrogate, whether it is a key), for the first such string in document order."""
    if isinstance(value, str):
        return (path, value, False) if _LONE_SURROGATE.search(value) else None
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, child in items:
        inner = f"{path}[{key}]" if isinstance(key, int) else f"{path}.{key}" if path else key
        if isinstance(key, str) and _LONE_SURROGATE.search(key):
            return (inner, key, True)
        found = _find_surrogate(child, inner)
        if found is not None:
            return found
    return None
