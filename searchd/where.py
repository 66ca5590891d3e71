"""The filter tree: what a ``where`` argument means, independent of any backend.

The query layer parses a request's ``where`` into this tree (checked against the
catalog, values converted); each backend compiles it its own way: SQLite and
PostgreSQL to parameterised SQL, the in-memory columns to a mask over documents.
Every backend gives the same answer:

* ``Equal`` on TEXT compares the whole value (case-sensitive); ``Like`` matches the
  whole value case-insensitively (``*`` any run, ``?`` one character);
* on TEXT[], a comparison means "some element ..."; ``NotEqual`` and ``ContainsNone``
  mean "no element ..." and so include objects that lack the property;
* ``NotEqual`` and ``ContainsNone`` on a scalar include objects that lack it;
* ``Not`` is the exact complement of its operand;
* DATE values compare as instants (seconds since the epoch); BOOLEAN as 0/1;
* ``id`` compares the UUID text, the two timestamps compare milliseconds.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from searchd.config.spec import PropertyType

LOGICAL = ("And", "Or", "Not")
COMPARISONS = ("Equal", "NotEqual", "GreaterThan", "GreaterThanEqual", "LessThan", "LessThanEqual")
OPERATORS = (*LOGICAL, *COMPARISONS, "Like", "IsNull", "ContainsAny", "ContainsAll", "ContainsNone")
ID_PATHS = ("id", "_id")
TIME_PATHS = {"_creationTimeUnix": "created_ms", "_lastUpdateTimeUnix": "updated_ms"}


@dataclass(frozen=True)
class Condition:
    """A leaf: ``path operator value``; ``kind`` is the property's type (None for id and timestamps).

    ``value`` is already converted: DATE → epoch seconds, timestamps → milliseconds,
    BOOLEAN → 0/1, ids normalised; a tuple for the Contains operators.
    """

    path: str
    operator: str
    value: Any
    kind: PropertyType | None


@dataclass(frozen=True)
class Combination:
    operator: str  # And, Or, Not
    operands: tuple[Condition | Combination, ...]


Filter = Condition | Combination


@dataclass(frozen=True)
class SortKey:
    """One ``sort`` entry: a property (or id / a timestamp) and its direction."""

    path: str
    kind: PropertyType | None
    descending: bool


def properties_of(where: Filter) -> set[str]:
    """Every property path the filter reads."""
    if isinstance(where, Condition):
        return {where.path}
    return set().union(*(properties_of(o) for o in where.operands))


def epoch_seconds(value: Any) -> float | None:
    """RFC 3339 text with a zone → seconds since the epoch; None for anything else."""
    if not isinstance(value, str):
        return None
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed.timestamp() if parsed.tzinfo else None


@lru_cache(maxsize=256)
def like_regex(pattern: str) -> re.Pattern[str]:
    # Weaviate's Like: ? is one character, * any run, anchored at both ends.
    return re.compile("".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern), re.IGNORECASE | re.DOTALL)


def like(pattern: Any, value: Any) -> bool:
    return isinstance(pattern, str) and isinstance(value, str) and like_regex(pattern).fullmatch(value) is not None
