"""Functions the object store registers with SQLite, for filters (arguments are bound parameters)."""

from __future__ import annotations

import datetime as dt
import re
from functools import lru_cache
from typing import Any


def epoch_seconds(value: Any) -> float | None:
    """RFC 3339 text → seconds since the epoch (the SQL function behind DATE comparisons)."""
    if not isinstance(value, str):
        return None
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed.timestamp() if parsed.tzinfo else None


@lru_cache(maxsize=256)
def _like_regex(pattern: str) -> re.Pattern[str]:
    # Weaviate's Like: ? is one character, * any run, anchored at both ends.
    return re.compile("".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern), re.IGNORECASE | re.DOTALL)


def like(pattern: Any, value: Any) -> int:
    return int(isinstance(pattern, str) and isinstance(value, str) and _like_regex(pattern).fullmatch(value) is not None)
