"""The vector index contract, and the factory that picks an implementation from the spec."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from searchd.config.spec import IndexSpec


@dataclass(frozen=True)
class Hit:
    id: str
    distance: float


class VectorIndex(Protocol):
    """Ids → vectors, searchable by distance.

    ``allowed`` restricts a search to a set of ids (the seam filtered search uses);
    a filtered search still returns ``k`` hits whenever that many allowed ids exist.
    """

    dimensions: int

    def upsert(self, object_id: str, vector: np.ndarray) -> None: ...

    def delete(self, object_id: str) -> None: ...

    def search(self, query: np.ndarray, k: int, allowed: Collection[str] | None = None) -> list[Hit]: ...

    def vector(self, object_id: str) -> np.ndarray | None: ...

    def __len__(self) -> int: ...


def build_index(spec: IndexSpec, dimensions: int) -> VectorIndex:
    from searchd.index.flat import FlatIndex

    # Only 'flat' exists so far; the schema's enum keeps other names out.
    return FlatIndex(spec.distance, dimensions)
