"""How an object's parts are stored by every backend: vectors as float32 bytes, properties as JSON text."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

import numpy as np


def vector_from_blob(dims: int, data: bytes) -> np.ndarray:
    # A multi-vector (one row per token) is stored flat; dims tells the row length.
    flat = np.frombuffer(data, dtype=np.float32)
    return flat if flat.size == dims else flat.reshape(-1, dims)


def blob(vector: np.ndarray) -> tuple[int, bytes]:
    return int(vector.shape[-1]), np.ascontiguousarray(vector, dtype=np.float32).tobytes()


_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def _readable(value: Any) -> Any:
    if isinstance(value, str):
        return _LONE_SURROGATE.sub("\ufffd", value)
    if isinstance(value, list):
        return [_readable(v) for v in value]
    if isinstance(value, dict):
        return {_readable(k): _readable(v) for k, v in value.items()}
    return value


def stored_text(value: Any) -> Any:
    """A stored string handed to a SQL function as bytes, as text (a lone surrogate reads as U+FFFD, as in properties_of); other values as they are."""
    if not isinstance(value, bytes):
        return value
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:  # SQLite writes the escape of a lone surrogate as its three-byte (not UTF-8) form
        try:
            return _LONE_SURROGATE.sub("\ufffd", value.decode("utf-8", "surrogatepass"))
        except UnicodeDecodeError:
            return value.decode("utf-8", "replace")


def properties_of(text: str) -> dict[str, Any]:
    """Stored properties; a lone surrogate (stored before they were refused) reads as U+FFFD instead of failing every response."""
    properties: dict[str, Any] = json.loads(text)
    # An escape of a surrogate is mostly half of a valid pair (emoji); only then is the walk needed.
    return _readable(properties) if _SURROGATE_ESCAPE.search(text) else properties


def matrix_of(rows: Sequence[tuple[int, int, bytes]]) -> tuple[list[int], np.ndarray | list[np.ndarray]]:
    """(doc, dims, data) rows as their docs and one matrix when they are all single vectors of one length (else a list)."""
    if not rows:
        return [], []
    # Column-wise checks at C speed: the exact scan of a narrow filter reads hundreds of rows per query.
    found, widths, blobs = (list(column) for column in zip(*rows, strict=True))
    dims = widths[0]
    if set(widths) == {dims} and set(map(len, blobs)) == {4 * dims}:
        return found, np.frombuffer(b"".join(blobs), dtype=np.float32).reshape(len(rows), dims)
    return found, [vector_from_blob(d, data) for d, data in zip(widths, blobs, strict=True)]
