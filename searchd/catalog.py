"""The compiled config: one immutable Catalog, swapped whole through a CatalogHolder.

Compiling builds vectorizer instances next to the spec, so a bad config fails here,
before it ever serves a request.  The GraphQL schema is built per catalog above, by
whoever serves GraphQL (``searchd.query.served``): the catalog sits below query/.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from searchd.config.loader import collector_paused
from searchd.config.spec import CollectionSpec, NamedVectorSpec, PropertyType, Spec
from searchd.errors import NotFound
from searchd.modules.base import ModuleInfo, ModuleRuntime, Vectorizer
from searchd.modules.registry import ModuleRegistry


@dataclass(frozen=True)
class CompiledVector:
    spec: NamedVectorSpec
    module: ModuleInfo
    vectorizer: Vectorizer | None  # None: objects bring their own vectors
    dimensions: int

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def is_multi(self) -> bool:
        """Late interaction: each object carries a matrix (one row per token) of `dimensions` columns."""
        return self.spec.index.matrices

    def same_embedding(self, other: CompiledVector) -> bool:
        """Whether vectors made for one are vectors of the other (a provider URL does not change them)."""
        return other is self or (self.dimensions, self.spec.vectorizer.embedding()) == (other.dimensions, other.spec.vectorizer.embedding())

    def same_space(self, other: CompiledVector) -> bool:
        """Whether an index built for one serves the other: same embeddings, same built index.

        A re-vectorization or reindex changes the space; a search-time setting does not.
        """
        return other is self or (self.same_embedding(other) and self.spec.index.built() == other.spec.index.built())


@dataclass(frozen=True)
class CompiledCollection:
    spec: CollectionSpec
    vectors: Mapping[str, CompiledVector]
    # BLOB properties some vectorizer reads as images: writes must hold decodable images there.
    image_fields: frozenset[str]

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def default_vector(self) -> CompiledVector | None:
        chosen = self.spec.default_vector
        return None if chosen is None else self.vectors[chosen.name]

    def vector(self, name: str) -> CompiledVector:
        found = self.vectors.get(name)
        if found is None:
            known = ", ".join(self.vectors) or "none"
            raise NotFound(f"collection '{self.name}' has no named vector '{name}'", f"its named vectors are: {known}")
        return found


@dataclass(frozen=True)
class Catalog:
    spec: Spec
    registry: ModuleRegistry
    collections: Mapping[str, CompiledCollection]

    def collection(self, name: str) -> CompiledCollection:
        found = self.collections.get(name)
        if found is None:
            known = ", ".join(self.collections) or "none"
            raise NotFound(f"collection '{name}' is not declared in the config", f"declared collections: {known}; add it to the YAML config")
        return found

    def modules_in_use(self) -> dict[str, ModuleInfo]:
        names = set(self.spec.modules) | {v.module.name for c in self.collections.values() for v in c.vectors.values()}
        return {name: self.registry[name] for name in sorted(names) if name != "none"}


def _compile_vector(collection: CollectionSpec, vector: NamedVectorSpec, spec: Spec, registry: ModuleRegistry, runtime: ModuleRuntime) -> CompiledVector:
    module = registry[vector.vectorizer.module]
    if module.factory is None:
        assert vector.vectorizer.dimensions is not None  # enforced by the semantic checks
        return CompiledVector(vector, module, None, vector.vectorizer.dimensions)
    vectorizer = module.factory(collection, vector, spec.modules.get(module.name, {}), runtime)
    return CompiledVector(vector, module, vectorizer, vectorizer.dimensions)


def compile_catalog(spec: Spec, registry: ModuleRegistry, runtime: ModuleRuntime | None = None) -> Catalog:
    """``runtime`` is what vectorizers share across catalogs; without one nothing is cached on disk."""
    runtime = runtime or ModuleRuntime.offline()
    with collector_paused():  # objects by the hundred thousand for a large config: see collector_paused
        return _compile(spec, registry, runtime)


def _compile(spec: Spec, registry: ModuleRegistry, runtime: ModuleRuntime) -> Catalog:
    collections = {}
    for collection in spec.collections:
        vectors = {v.name: _compile_vector(collection, v, spec, registry, runtime) for v in collection.vectors}
        image_fields = frozenset(
            name
            for v in collection.vectors
            for name in (v.vectorizer.image_fields or ())
            if (p := collection.find_property(name)) is not None and p.type is PropertyType.BLOB
        )
        collections[collection.name] = CompiledCollection(collection, MappingProxyType(vectors), image_fields)
    return Catalog(spec, registry, MappingProxyType(collections))


class CatalogHolder:
    """The single reference requests read; a reload builds the next catalog beside it and swaps."""

    def __init__(self, catalog: Catalog) -> None:
        self._current = catalog
        self._lock = threading.Lock()

    @property
    def current(self) -> Catalog:
        return self._current

    def swap(self, catalog: Catalog) -> Catalog:
        with self._lock:
            previous, self._current = self._current, catalog
        return previous
