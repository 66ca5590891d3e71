"""Which fields a vectorizer reads, and how per-field vectors are combined by weight."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from searchd.config.spec import CollectionSpec, NamedVectorSpec
from searchd.modules.base import Vector


def text_fields_of(collection: CollectionSpec, vector: NamedVectorSpec, all_text_by_default: bool) -> tuple[str, ...]:
    fields = vector.vectorizer.text_fields
    if fields is not None:
        return fields
    return tuple(p.name for p in collection.properties if p.type.is_text) if all_text_by_default else ()


def field_weights(vector: NamedVectorSpec, fields: Sequence[str]) -> dict[str, float]:
    """Weights by field name; with no ``weights`` every field counts the same."""
    weights = vector.vectorizer.weights
    return {f: (1.0 if weights is None else float(weights.get(f, 0.0))) for f in fields}


def as_text(value: Any) -> str:
    return " ".join(value) if isinstance(value, list) else str(value)


def normalized_mean(parts: list[tuple[float, np.ndarray]]) -> Vector | None:
    total = sum(weight for weight, _ in parts)
    if not parts or total <= 0:
        return None
    combined = np.sum([weight * vec for weight, vec in parts], axis=0) / total
    norm = float(np.linalg.norm(combined))
    return (combined / norm).astype(np.float32) if norm > 0 else None
