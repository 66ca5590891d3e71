"""The contract every vectorizer module implements."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np

from searchd.config.spec import CollectionSpec, NamedVectorSpec
from searchd.errors import SearchdError
from searchd.modules.cache import EmbeddingCache
from searchd.modules.provider import HttpPool, Provider

Modality = Literal["text", "image"]
Vector = np.ndarray  # float32, shape (dimensions,)
NO_KEYS: Mapping[str, str] = MappingProxyType({})  # a request that sent no provider headers


@dataclass(frozen=True)
class ModelInfo:
    name: str
    default_dimensions: int
    min_dimensions: int
    max_dimensions: int
    allowed_dimensions: frozenset[int] | None = None  # a fixed set (e.g. 1024 or 256) instead of a range
    options: frozenset[str] = frozenset()  # vectorizer keys only this model takes: lateChunking, truncate
    matryoshka: bool = False  # the provider truncates to `dimensions` itself (sent in the request)

    def accepts_dimensions(self, dimensions: int) -> bool:
        if self.allowed_dimensions is not None:
            return dimensions in self.allowed_dimensions
        return self.min_dimensions <= dimensions <= self.max_dimensions

    def describe_dimensions(self) -> str:
        if self.allowed_dimensions is not None:
            return " or ".join(str(d) for d in sorted(self.allowed_dimensions, reverse=True))
        return f"{self.min_dimensions}..{self.max_dimensions}"


@runtime_checkable
class Vectorizer(Protocol):
    """Turns objects and queries into vectors for one named vector.

    Async because remote providers are; offline modules simply compute.
    ``embed_objects`` returns one entry per object, in order: a vector, ``None``
    when the object has nothing to embed, or the error that object alone met.
    ``keys`` are the request's provider headers (lower-cased), e.g. x-jinaai-api-key.
    """

    @property
    def dimensions(self) -> int: ...

    async def embed_objects(self, objects: Sequence[Mapping[str, Any]], keys: Mapping[str, str] = ...) -> list[Vector | None | SearchdError]: ...

    async def embed_text_query(self, texts: Sequence[str], keys: Mapping[str, str] = ...) -> Vector: ...

    async def embed_image_query(self, image: bytes, keys: Mapping[str, str] = ...) -> Vector: ...


@dataclass(frozen=True)
class ModuleRuntime:
    """What modules share across catalogs (and reloads): HTTP clients, the embedding cache, the environment."""

    pool: HttpPool
    cache: EmbeddingCache
    environ: Mapping[str, str]
    # Told of every provider request: (module, outcome, seconds); the server feeds its metrics.
    on_provider_call: Callable[[str, str, float], None] | None = None

    @classmethod
    def offline(cls) -> ModuleRuntime:
        """For compiling without serving (validate, plan): nothing is sent, nothing is cached on disk."""
        return cls(HttpPool(), EmbeddingCache(None), {})


VectorizerFactory = Callable[[CollectionSpec, NamedVectorSpec, Mapping[str, Any], ModuleRuntime], Vectorizer]


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
    open_models: bool = False  # any model name the provider serves (dimensions then required)
    object_modalities: frozenset[Modality] | None = None  # what objects may hold, when narrower than modalities
    query_modalities: frozenset[Modality] | None = None  # what queries may be, when narrower
    provider: Provider | None = None  # a remote provider: where its API key may come from

    @property
    def embeds(self) -> frozenset[Modality]:
        return self.modalities if self.object_modalities is None else self.object_modalities

    @property
    def queries(self) -> frozenset[Modality]:
        return self.modalities if self.query_modalities is None else self.query_modalities

    @property
    def brings_own_vectors(self) -> bool:
        return self.factory is None

    def model(self, name: str | None) -> ModelInfo | None:
        return self.models.get(name or self.default_model or "")

    def meta(self) -> dict[str, str]:
        return {"name": self.title, "documentationHref": self.documentation}
