"""Build a real GraphQL schema from the catalog, so validation and introspection work.

Shapes follow Weaviate: ``{ Get { <Class>(nearVector: {...}, limit: N) { props _additional { ... } } } }``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from graphql import (
    FloatValueNode,
    GraphQLArgument,
    GraphQLError,
    GraphQLScalarType,
    IntValueNode,
    ListValueNode,
    ValueNode,
    GraphQLBoolean,
    GraphQLField,
    GraphQLFloat,
    GraphQLInputField,
    GraphQLInputObjectType,
    GraphQLInt,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLOutputType,
    GraphQLSchema,
    GraphQLString,
)

from searchd.config.spec import PropertyType
from searchd.query.get import resolve_get

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


def _vector_value(value: Any) -> Any:
    """A vector is a list of numbers; a multi-vector is a list of such lists (as Weaviate's scalar)."""
    def numbers(row: Any) -> bool:
        return isinstance(row, list) and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in row)

    if numbers(value) or (isinstance(value, list) and value and all(numbers(r) for r in value)):
        return value
    raise GraphQLError("a vector must be a list of numbers, or a list of lists of numbers for a multi-vector")


def _vector_literal(node: ValueNode, _variables: Any = None) -> Any:
    def convert(item: ValueNode) -> Any:
        if isinstance(item, (FloatValueNode, IntValueNode)):
            return float(item.value)
        if isinstance(item, ListValueNode):
            return [convert(v) for v in item.values]
        raise GraphQLError("a vector must be a list of numbers, or a list of lists of numbers for a multi-vector", item)

    return _vector_value(convert(node))


def _vector_scalar() -> GraphQLScalarType:
    return GraphQLScalarType(
        "Vector",
        description="A vector ([Float]) or a multi-vector ([[Float]]).",
        serialize=lambda value: value,
        parse_value=_vector_value,
        parse_literal=_vector_literal,
    )


def _near_inputs(vector: GraphQLScalarType) -> dict[str, GraphQLInputObjectType]:
    """Weaviate's near* argument objects (shared by every class)."""
    common = {
        "distance": GraphQLInputField(GraphQLFloat, description="Only return results at most this far away."),
        "certainty": GraphQLInputField(GraphQLFloat, description="Only return results at least this certain (cosine only)."),
        "targetVectors": GraphQLInputField(GraphQLList(GraphQLString), description="The named vector to search."),
    }
    return {
        "nearVector": GraphQLInputObjectType(
            "NearVectorInpObj",
            {"vector": GraphQLInputField(GraphQLNonNull(vector)), **common},
        ),
        "nearObject": GraphQLInputObjectType(
            "NearObjectInpObj",
            {"id": GraphQLInputField(GraphQLString), "beacon": GraphQLInputField(GraphQLString), **common},
        ),
        "nearText": GraphQLInputObjectType(
            "NearTextInpObj",
            {"concepts": GraphQLInputField(GraphQLNonNull(GraphQLList(GraphQLNonNull(GraphQLString)))), **common},
        ),
        "nearImage": GraphQLInputObjectType(
            "NearImageInpObj",
            {"image": GraphQLInputField(GraphQLNonNull(GraphQLString), description="The image, base64-encoded."), **common},
        ),
    }


def _class_type(collection: CompiledCollection, vector: GraphQLScalarType) -> GraphQLObjectType:
    name = collection.name
    additional_fields: dict[str, GraphQLField] = {
        "id": GraphQLField(GraphQLString),
        "distance": GraphQLField(GraphQLFloat),
        "certainty": GraphQLField(GraphQLFloat),
        "vector": GraphQLField(vector),
        "creationTimeUnix": GraphQLField(GraphQLString),
        "lastUpdateTimeUnix": GraphQLField(GraphQLString),
    }
    if collection.vectors:
        additional_fields["vectors"] = GraphQLField(
            GraphQLObjectType(f"{name}AdditionalVectors", {v: GraphQLField(vector) for v in collection.vectors})
        )
    fields: dict[str, GraphQLField] = {
        p.name: GraphQLField(_SCALARS[p.type], description=p.description or None) for p in collection.spec.properties
    }
    fields["_additional"] = GraphQLField(GraphQLObjectType(f"{name}AdditionalObj", additional_fields))
    return GraphQLObjectType(name, fields, description=collection.spec.description or None)


def build_graphql_schema(catalog: Catalog) -> GraphQLSchema | None:
    if not catalog.collections:
        return None
    vector = _vector_scalar()
    near = _near_inputs(vector)
    get_fields: dict[str, GraphQLField] = {}
    for collection in catalog.collections.values():
        args: dict[str, Any] = {
            "limit": GraphQLArgument(GraphQLInt),
            "offset": GraphQLArgument(GraphQLInt),
            **{key: GraphQLArgument(kind) for key, kind in near.items()},
        }
        get_fields[collection.name] = GraphQLField(
            GraphQLList(_class_type(collection, vector)), args=args, resolve=resolve_get(collection.name), description=collection.spec.description or None
        )
    get = GraphQLObjectType("GetObjectsObj", get_fields)
    query = GraphQLObjectType("WeaviateObj", {"Get": GraphQLField(get, resolve=lambda *_: {})})
    return GraphQLSchema(query)
