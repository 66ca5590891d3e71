"""Build a real GraphQL schema from the catalog, so validation and introspection work.

Shapes follow Weaviate: ``{ Get { <Class>(nearVector: {...}, where: {...}, limit: N) { props _additional { ... } } } }``
and ``{ Aggregate { <Class>(...) { meta { count } prop { ... } } } }``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from graphql import (
    GraphQLArgument,
    GraphQLBoolean,
    GraphQLField,
    GraphQLFloat,
    GraphQLInt,
    GraphQLList,
    GraphQLObjectType,
    GraphQLOutputType,
    GraphQLSchema,
    GraphQLString,
)

from searchd.config.spec import PropertyType
from searchd.query.aggregate import build_aggregate_field
from searchd.query.get import resolve_get
from searchd.query.types import SharedTypes, build_shared_types

if TYPE_CHECKING:
    from searchd.catalog import Catalog, CompiledCollection

_SCALARS: dict[PropertyType, GraphQLOutputType] = {
    PropertyType.TEXT: GraphQLString,
    PropertyType.TEXT_ARRAY: GraphQLList(GraphQLString),
    PropertyType.INT: GraphQLInt,
    PropertyType.NUMBER: GraphQLFloat,
    PropertyType.BOOLEAN: GraphQLBoolean,
    PropertyType.DATE: GraphQLString,
    PropertyType.UUID: GraphQLString,
    PropertyType.BLOB: GraphQLString,
}


def _property_fields(collection: CompiledCollection) -> dict[str, GraphQLField]:
    return {p.name: GraphQLField(_SCALARS[p.type], description=p.description or None) for p in collection.spec.properties}


def _class_type(collection: CompiledCollection, types: SharedTypes) -> GraphQLObjectType:
    name = collection.name
    additional: dict[str, GraphQLField] = {
        "id": GraphQLField(GraphQLString),
        "distance": GraphQLField(GraphQLFloat),
        "certainty": GraphQLField(GraphQLFloat),
        "score": GraphQLField(GraphQLString, description="BM25 or fused hybrid score (a string, as in Weaviate)."),
        "explainScore": GraphQLField(GraphQLString, description="How the score came about."),
        "vector": GraphQLField(types.vector),
        "creationTimeUnix": GraphQLField(GraphQLString),
        "lastUpdateTimeUnix": GraphQLField(GraphQLString),
    }
    if collection.vectors:
        additional["vectors"] = GraphQLField(GraphQLObjectType(f"{name}AdditionalVectors", {v: GraphQLField(types.vector) for v in collection.vectors}))
    hit = GraphQLObjectType(
        f"{name}GroupHit",
        lambda: {
            **_property_fields(collection),
            "_additional": GraphQLField(
                GraphQLObjectType(f"{name}GroupHitAdditional", {"id": GraphQLField(GraphQLString), "distance": GraphQLField(GraphQLFloat), "vector": GraphQLField(types.vector)})
            ),
        },
    )
    grouped_by = GraphQLObjectType(f"{name}GroupedBy", {"path": GraphQLField(GraphQLList(GraphQLString)), "value": GraphQLField(GraphQLString)})
    additional["group"] = GraphQLField(
        GraphQLObjectType(
            f"{name}AdditionalGroup",
            {
                "id": GraphQLField(GraphQLInt),
                "groupedBy": GraphQLField(grouped_by),
                "count": GraphQLField(GraphQLInt),
                "minDistance": GraphQLField(GraphQLFloat),
                "maxDistance": GraphQLField(GraphQLFloat),
                "hits": GraphQLField(GraphQLList(hit)),
            },
        )
    )
    fields = _property_fields(collection)
    fields["_additional"] = GraphQLField(GraphQLObjectType(f"{name}AdditionalObj", additional))
    return GraphQLObjectType(name, fields, description=collection.spec.description or None)


def _get_field(catalog: Catalog, types: SharedTypes) -> GraphQLField:
    fields: dict[str, GraphQLField] = {}
    for collection in catalog.collections.values():
        args: dict[str, Any] = {
            "limit": GraphQLArgument(GraphQLInt),
            "offset": GraphQLArgument(GraphQLInt),
            "after": GraphQLArgument(GraphQLString, description="Cursor: the id after which to continue (needs limit; no filters or searches)."),
            "autocut": GraphQLArgument(GraphQLInt, description="Cut results after this many jumps in distance or score (<= 0: off)."),
            "where": GraphQLArgument(types.where),
            "sort": GraphQLArgument(GraphQLList(types.sort)),
            "bm25": GraphQLArgument(types.bm25),
            "hybrid": GraphQLArgument(types.hybrid),
            "groupBy": GraphQLArgument(types.group_by),
            **{key: GraphQLArgument(kind) for key, kind in types.near.items()},
        }
        fields[collection.name] = GraphQLField(
            GraphQLList(_class_type(collection, types)), args=args, resolve=resolve_get(collection.name), description=collection.spec.description or None
        )
    return GraphQLField(GraphQLObjectType("GetObjectsObj", fields), resolve=lambda *_: {})


def build_graphql_schema(catalog: Catalog) -> GraphQLSchema | None:
    if not catalog.collections:
        return None
    types = build_shared_types()
    query = GraphQLObjectType("WeaviateObj", {"Get": _get_field(catalog, types), "Aggregate": build_aggregate_field(catalog, types)})
    return GraphQLSchema(query)
