"""The indexes a vector is served from: the serving one with the settings it was built for, the ones a
rebuild fills beside it (``Shadow``, driven by searchd.reload.rebuild), and where re-vectorized vectors wait."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from searchd.catalog import CompiledVector
from searchd.config.revision import canonical
from searchd.index import VectorIndex


@dataclass
class Shadow:
    """An index rebuilt beside the serving one (see searchd.reload.rebuild).

    Writes made while it is built are captured, then replayed onto it before it
    replaces the serving index.  ``reembed`` means re-vectorization: writes are also
    embedded with ``target``'s vectorizer and stored under ``source``, a staging name.
    """

    collection: str
    vector: str | None  # None: the collection's BM25 index
    source: str = ""  # the stored vector name the index is built from
    target: CompiledVector | None = None  # the settings the rebuilt vector index serves
    reembed: bool = False
    captured: list[tuple[int, Any]] = field(default_factory=list)  # (doc, vector | properties | None for a delete)
    # Objects written after the shadow began but embedded before it: they still need the new vector.
    unstaged: set[str] = field(default_factory=set)

    @property
    def key(self) -> tuple[str, str]:
        return (self.collection, self.vector or "")


@dataclass(frozen=True)
class Serving:
    """A vector index and the vector settings it was built for."""

    index: VectorIndex
    vector: CompiledVector
    retired_at: float = 0.0  # monotonic time it was replaced by a rebuilt index; 0 while in service


# How long an index replaced by a rebuild keeps answering queries that began before the swap.
RETIRED_GRACE_S = 60.0


def staging_name(vector: str, stamp: str) -> str:
    """Where re-vectorized vectors wait until they replace the old ones; '#' never occurs in a vector name."""
    return f"{vector}#{stamp}"


def staging_stamp(vector: CompiledVector) -> str:
    """What vectors made for ``vector`` are: its vectorizer, model and dimensions (not its endpoint).

    A staging name holds it; on a shared store, so does a promoted vector table (``Store.vector_stamps``).
    """
    settings = canonical(vector.spec.vectorizer)
    settings.pop("base_url", None)
    data = json.dumps({"vectorizer": settings, "dimensions": vector.dimensions}, sort_keys=True)
    return hashlib.sha256(data.encode()).hexdigest()[:10]
