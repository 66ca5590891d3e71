"""The GraphQL side of each served catalog: its schema and its cache of validated documents.

The catalog sits below query/ and knows nothing of GraphQL.  Whoever serves GraphQL
keeps one ``ServedGraphQL`` and looks a catalog's schema up in it.  Each catalog's is
built once: the reload path builds it before the catalog serves (so a config whose
schema cannot be built never serves), and it is dropped when the catalog is.
"""

from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING

from graphql import GraphQLSchema

from searchd.config.spec import IndexSpec, IndexType
from searchd.query.document import DocumentCache
from searchd.query.schema import build_graphql_schema

if TYPE_CHECKING:
    from searchd.catalog import Catalog


@dataclass(frozen=True)
class CatalogGraphQL:
    schema: GraphQLSchema
    documents: DocumentCache  # queries already validated against this schema


def _candidates(index: IndexSpec) -> int:
    """The least candidates one search of this index looks at, whatever its limit (the cost model's floor)."""
    kind = index.kind
    if kind is IndexType.HNSW or (kind is IndexType.PGVECTOR and not index.matrices):
        return index.ef
    if index.matrices:
        return max(index.ef, index.candidates)
    if kind is IndexType.ANNOY:
        return index.search_k
    return 0  # flat: an exact scan, as many candidates as the limit asks for


def search_floors(catalog: Catalog) -> dict[str, int]:
    """Each collection's largest least-candidates over its vectors."""
    return {name: max((_candidates(v.spec.index) for v in c.vectors.values()), default=0) for name, c in catalog.collections.items()}


def build_catalog_graphql(catalog: Catalog) -> CatalogGraphQL | None:
    """None for a catalog without collections (there is nothing to query); raises what graphql-core raises for a bad schema."""
    schema = build_graphql_schema(catalog)
    if schema is None:
        return None
    return CatalogGraphQL(schema, DocumentCache(schema, limits=catalog.spec.server.limits, floors=search_floors(catalog)))


class ServedGraphQL:
    """Each live catalog's GraphQL, keyed by the catalog's identity (catalogs compare by value, and are not hashable)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._built: dict[int, CatalogGraphQL | None] = {}

    def of(self, catalog: Catalog) -> CatalogGraphQL | None:
        """The catalog's GraphQL, built on first use; thread-safe."""
        key = id(catalog)
        with self._lock:
            if key in self._built:
                return self._built[key]
        # Built outside the lock: requests on the serving catalog do not wait for the next one's schema.
        built = build_catalog_graphql(catalog)
        with self._lock:
            if key in self._built:  # another thread built it meanwhile
                return self._built[key]
            self._built[key] = built
        # Forgotten as the catalog is freed, before its id can be reused by another object.
        weakref.finalize(catalog, self._forget, key)
        return built

    def prepare(self, catalog: Catalog) -> None:
        """Build the catalog's GraphQL before it serves: raises, and so refuses the catalog, if it cannot be built."""
        self.of(catalog)

    def _forget(self, key: int) -> None:
        # No lock: this runs wherever the catalog is freed, perhaps in a thread inside ``of``; one dict pop is atomic.
        self._built.pop(key, None)

    @property
    def size(self) -> int:
        """How many catalogs' GraphQL is kept (the live ones that were asked for)."""
        return len(self._built)
