"""What the store holds for an object, as every layer above it sees it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class StoredObject:
    collection: str
    id: str
    properties: dict[str, Any]
    vectors: dict[str, np.ndarray] = field(default_factory=dict)
    created_ms: int = 0
    updated_ms: int = 0
    doc: int = 0  # the store's key for the object; 0 until stored
