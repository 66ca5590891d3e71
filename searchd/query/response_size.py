"""A bound on a GraphQL response's JSON size, checked before it is encoded (``server.limits.maxResponseBytes``).

The cost model counts rows and fields before a query runs, not their bytes: twenty aliases of twenty
fields over a hundred 50 KB texts cost 42,000, a tenth of the limit, and encode to 2 GB, because the
result holds the same stored strings many times over and only the encoder copies them out.  The
walk here counts what the encoder would write, without writing it: it visits every value once (as
many as the cost model already allowed), and stops as soon as the count passes the limit.

A long string counts exactly what orjson writes for it (escapes and UTF-8 included), measured once per
string object (the repeats of a stored text are one object), a short one 6 bytes a character at most; a number its longest form, 25 bytes with its comma; a
list whose first item is a number (a vector, an INT[] or NUMBER[]: the schema keeps an array of one type)
25 bytes an item, without visiting them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from searchd.config.spec import LimitsSpec
from searchd.errors import LimitExceeded

NUMBER_BYTES = 25  # the longest number orjson writes (-1.2345678901234567e-308), and a comma
SCALAR_BYTES = 6  # false, and a comma
SHORT_STRING = 64  # shorter strings are bounded (6 bytes a character at most), longer ones encoded once to be measured


def json_bytes_over(value: Any, most: int) -> int | None:
    """The bytes ``value`` encodes to at most, or None once the count passes ``most`` (the walk stops there).

    A query's response is mostly rows of short values: those are counted where their row is, by type
    (about 7 µs for ten rows of three fields; the encoding itself takes 1).
    """
    total = 0
    pending = [value]
    sizes: dict[int, int] = {}  # by id: the strings stay referenced by ``value`` meanwhile
    while pending:
        item = pending.pop()
        if type(item) is dict or isinstance(item, Mapping):  # (the ABC's check is slow: dicts skip it)
            total += 3  # braces and a comma
            for key, inner in item.items():
                total += len(key) + 3 if isinstance(key, str) else NUMBER_BYTES
                kind = type(inner)
                if kind is str:
                    total += _string_bytes(inner, sizes)
                elif kind is float or kind is int:
                    total += NUMBER_BYTES
                elif inner is None or kind is bool:
                    total += SCALAR_BYTES
                else:
                    pending.append(inner)
        elif type(item) is list or isinstance(item, tuple):
            total += 3  # brackets and a comma
            if item and type(item[0]) in (int, float):
                total += NUMBER_BYTES * len(item)
            else:
                pending.extend(item)
        elif isinstance(item, str):
            total += _string_bytes(item, sizes)
        else:
            total += NUMBER_BYTES if type(item) in (int, float) else SCALAR_BYTES
        if total > most:
            return None
    return total


def _string_bytes(text: str, sizes: dict[int, int]) -> int:
    """What orjson writes for ``text``, and a comma: a short one at most 6 bytes a character (``\\u0001``), a long one
    exactly, once per string object."""
    if len(text) < SHORT_STRING:
        return 6 * len(text) + 3
    size = sizes.get(id(text))
    if size is None:
        size = sizes[id(text)] = len(orjson.dumps(text)) + 1
    return size


def check_response_size(results: list[dict[str, Any]], limits: LimitsSpec) -> None:
    """Refuse the responses of one request (a query or a batch) whose JSON would pass ``maxResponseBytes``."""
    most = limits.max_response_bytes
    if json_bytes_over(results, most) is None:
        raise LimitExceeded(
            f"this query's response would be more than {most} bytes of JSON (server.limits.maxResponseBytes)",
            "ask for fewer results, fewer aliases or fewer large text and blob fields (a field repeated under several aliases counts each time)",
        )
