"""GraphQL input types shared by Get and Aggregate, built once per schema (graphql-core types are not shared between schemas)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from graphql import (
    BooleanValueNode,
    FloatValueNode,
    GraphQLEnumType,
    GraphQLError,
    GraphQLFloat,
    GraphQLInputField,
    GraphQLInputObjectType,
    GraphQLInt,
    GraphQLList,
    GraphQLNonNull,
    GraphQLScalarType,
    GraphQLString,
    IntValueNode,
    ListValueNode,
    StringValueNode,
    ValueNode,
)

from searchd.query.filters import OPERATORS

_VECTOR_SHAPE = "a vector must be a list of numbers, or a list of lists of numbers for a multi-vector"


def _vector_value(value: Any) -> Any:
    """A vector is a list of numbers; a multi-vector is a list of such lists (as Weaviate's scalar).

    A vector lifted out of the query text arrives as the array it was already checked to be.
    """
    if isinstance(value, np.ndarray) and value.dtype.kind in "iuf" and value.ndim in (1, 2) and value.size:
        return value
    if isinstance(value, list) and value:
        try:
            array = np.asarray(value)  # numpy checks 384 numbers far faster than a Python loop
        except ValueError:  # ragged rows
            array = None
        if array is not None and array.dtype.kind in "iuf" and array.ndim in (1, 2) and array.size:
            return value
    raise GraphQLError(_VECTOR_SHAPE)


def _literal(node: ValueNode) -> Any:
    if isinstance(node, IntValueNode):
        return int(node.value)
    if isinstance(node, FloatValueNode):
        return float(node.value)
    if isinstance(node, (StringValueNode, BooleanValueNode)):
        return node.value
    if isinstance(node, ListValueNode):
        return [_literal(v) for v in node.values]
    raise GraphQLError("expected a number, string, boolean or a list of them", node)


def _vector_literal(node: ValueNode, _variables: Any = None) -> Any:
    return _vector_value(_literal(node))


def _filter_literal(node: ValueNode, _variables: Any = None) -> Any:
    return _literal(node)


@dataclass(frozen=True)
class SharedTypes:
    vector: GraphQLScalarType
    where: GraphQLInputObjectType
    near: dict[str, GraphQLInputObjectType]
    bm25: GraphQLInputObjectType
    hybrid: GraphQLInputObjectType
    sort: GraphQLInputObjectType
    group_by: GraphQLInputObjectType


def build_shared_types() -> SharedTypes:
    vector = GraphQLScalarType(
        "Vector",
        description="A vector ([Float]) or a multi-vector ([[Float]]).",
        serialize=lambda value: value,
        parse_value=_vector_value,
        parse_literal=_vector_literal,
    )
    # One permissive scalar for filter values: a value or a list of values, checked against the property's type later.
    value = GraphQLScalarType("FilterValue", description="A filter value, or a list of them for Contains* operators.", parse_value=lambda v: v, parse_literal=_filter_literal)
    operator = GraphQLEnumType("WhereOperatorEnum", {name: name for name in OPERATORS})
    where: GraphQLInputObjectType = GraphQLInputObjectType(
        "WhereInpObj",
        lambda: {
            "operator": GraphQLInputField(GraphQLNonNull(operator)),
            "operands": GraphQLInputField(GraphQLList(GraphQLNonNull(where))),
            "path": GraphQLInputField(GraphQLList(GraphQLNonNull(GraphQLString))),
            **{key: GraphQLInputField(value) for key in ("valueInt", "valueNumber", "valueBoolean", "valueText", "valueString", "valueDate")},
        },
    )
    common = {
        "distance": GraphQLInputField(GraphQLFloat, description="Only return results at most this far away."),
        "certainty": GraphQLInputField(GraphQLFloat, description="Only return results at least this certain (cosine only)."),
        "targetVectors": GraphQLInputField(GraphQLList(GraphQLString), description="The named vector to search."),
    }
    move = GraphQLInputObjectType(
        "MoveInpObj",
        {
            "concepts": GraphQLInputField(GraphQLList(GraphQLNonNull(GraphQLString))),
            "objects": GraphQLInputField(GraphQLList(GraphQLNonNull(GraphQLInputObjectType("MoveObjectInpObj", {"id": GraphQLInputField(GraphQLString), "beacon": GraphQLInputField(GraphQLString)})))),
            "force": GraphQLInputField(GraphQLNonNull(GraphQLFloat)),
        },
    )
    near = {
        "nearVector": GraphQLInputObjectType("NearVectorInpObj", {"vector": GraphQLInputField(GraphQLNonNull(vector)), **common}),
        "nearObject": GraphQLInputObjectType("NearObjectInpObj", {"id": GraphQLInputField(GraphQLString), "beacon": GraphQLInputField(GraphQLString), **common}),
        "nearText": GraphQLInputObjectType(
            "NearTextInpObj",
            {
                "concepts": GraphQLInputField(GraphQLNonNull(GraphQLList(GraphQLNonNull(GraphQLString)))),
                "moveTo": GraphQLInputField(move),
                "moveAwayFrom": GraphQLInputField(move),
                **common,
            },
        ),
        "nearImage": GraphQLInputObjectType("NearImageInpObj", {"image": GraphQLInputField(GraphQLNonNull(GraphQLString), description="The image, base64-encoded."), **common}),
    }
    search_operator = GraphQLInputObjectType(
        "SearchOperatorInpObj",
        {
            "operator": GraphQLInputField(GraphQLNonNull(GraphQLEnumType("SearchOperatorEnum", {"And": "And", "Or": "Or"}))),
            "minimumOrTokensMatch": GraphQLInputField(GraphQLInt),
        },
    )
    bm25 = GraphQLInputObjectType(
        "Bm25InpObj",
        {
            "query": GraphQLInputField(GraphQLNonNull(GraphQLString)),
            "properties": GraphQLInputField(GraphQLList(GraphQLNonNull(GraphQLString)), description="Properties to search, optionally boosted: title^2."),
            "searchOperator": GraphQLInputField(search_operator),
        },
    )
    searches = GraphQLInputObjectType(
        "HybridSearchesInpObj",
        {"nearText": GraphQLInputField(near["nearText"]), "nearVector": GraphQLInputField(near["nearVector"]), "nearImage": GraphQLInputField(near["nearImage"])},
    )
    hybrid = GraphQLInputObjectType(
        "HybridInpObj",
        {
            "query": GraphQLInputField(GraphQLString),
            "alpha": GraphQLInputField(GraphQLFloat, description="0 is pure keyword, 1 pure vector; default 0.75."),
            "vector": GraphQLInputField(vector),
            "properties": GraphQLInputField(GraphQLList(GraphQLNonNull(GraphQLString))),
            "fusionType": GraphQLInputField(GraphQLEnumType("FusionEnum", {"rankedFusion": "rankedFusion", "relativeScoreFusion": "relativeScoreFusion"})),
            "targetVectors": GraphQLInputField(GraphQLList(GraphQLString)),
            "maxVectorDistance": GraphQLInputField(GraphQLFloat),
            "bm25SearchOperator": GraphQLInputField(search_operator),
            "searches": GraphQLInputField(GraphQLList(GraphQLNonNull(searches)), description="The vector leg as nearText, nearVector or nearImage (an image for the vector side, text for BM25)."),
        },
    )
    sort = GraphQLInputObjectType(
        "SortInpObj",
        {"path": GraphQLInputField(GraphQLNonNull(GraphQLList(GraphQLNonNull(GraphQLString)))), "order": GraphQLInputField(GraphQLEnumType("SortOrderEnum", {"asc": "asc", "desc": "desc"}))},
    )
    group_by = GraphQLInputObjectType(
        "GroupByInpObj",
        {
            "path": GraphQLInputField(GraphQLNonNull(GraphQLList(GraphQLNonNull(GraphQLString)))),
            "groups": GraphQLInputField(GraphQLNonNull(GraphQLInt)),
            "objectsPerGroup": GraphQLInputField(GraphQLNonNull(GraphQLInt)),
        },
    )
    return SharedTypes(vector, where, near, bm25, hybrid, sort, group_by)
