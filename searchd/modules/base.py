"""The contract every vectorizer module implements."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np

from searchd.config.spec import CollectionSpec, NamedVectorSpec
from searchd.errors import SearchdError

Modality = Literal["text", "image"]
Vector = np.ndarray  # float32, shape (dimensions,)


@dataclass(frozen=True)
class ModelInfo:
    name: str
    default_dimensions: int
    min_dimensions: int
    max_dimensions: int


@runtime_checkable
class Vectorizer(Protocol):
    """Turns objects and queries into vectors for one named vector.

    Async because remote providers are; offline modules simply compute.
    ``embed_objects`` returns one entry per object, in order: a vector, ``None``
    when the object has nothing to embed, or the error that object alone met.
    """

    @property
    def dimensions(self) -> int: ...

    async def embed_objects(self, objects: Sequence[Mapping[str, Any]]) -> list[Vector | None | SearchdError]: ...

    async def embed_text_query(self, texts: Sequence[str]) -> Vector: ...

    async def embed_image_query(self, image: bytes) -> Vector: ...


VectorizerFactory = Callable[[CollectionSpec, NamedVectorSpec, Mapping[str, Any]], Vectorizer]


@dataclass(frozen=True)
class ModuleInfo:
    """What the config compiler and /v1/meta need to know about a module."""

    name: str
    title: str
    documentation: str
    modalities: frozenset[Modality]
    models: Mapping[str, ModelInfo] = field(default_factory=dict)
    default_model: str | None = None
    factory: VectorizerFactory | None = None  # None for module "none"
    multi_vector: bool = False  # late interaction: one matrix per object

    @property
    def brings_own_vectors(self) -> bool:
        return self.factory is None

    def model(self, name: str | None) -> ModelInfo | None:
        return self.models.get(name or self.default_model or "")

    def meta(self) -> dict[str, str]:
        return {"name": self.title, "documentationHref": self.documentation}
