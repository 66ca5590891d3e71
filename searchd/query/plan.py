"""Compiled Get plans: the common query shape answered without graphql-core's executor.

graphql-core resolves every field of every row through a generic resolver, which
costs more than the search itself.  A validated document whose only operation is
``{ Get { Class(args) { properties _additional { id distance ... } } } }`` (aliases
allowed; no fragments, directives, ``__typename``, ``groupBy`` or ``vectors``)
compiles once, with its cached document, into a plan: which classes, which
properties and which ``_additional`` fields, each with its serializer.  A request
then coerces the variables and arguments (graphql-core's own functions, so errors
and values are the same), runs the search, and builds the response rows directly.
Anything else goes through graphql-core as before.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    GraphQLError,
    GraphQLField,
    GraphQLFloat,
    GraphQLID,
    GraphQLList,
    GraphQLObjectType,
    GraphQLScalarType,
    GraphQLSchema,
    GraphQLString,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
)
from graphql.execution.values import get_argument_values, get_variable_values

from searchd.catalog import CompiledCollection
from searchd.errors import InvalidInput, QueryError, SearchdError
from searchd.query.get import ADDITIONAL_GETTERS, Shown, get_rows
from searchd.query.search import QueryContext, Row

_NEEDS_OBJECT = frozenset({"creationTimeUnix", "lastUpdateTimeUnix", "vector"})
Serialize = Callable[[Any], Any]
Getter = Callable[[CompiledCollection, Row], Any]


@dataclass(frozen=True)
class ClassPlan:
    key: str  # the response key: the alias, or the class name
    class_name: str
    node: FieldNode
    definition: GraphQLField
    properties: tuple[tuple[str, str, Serialize], ...]  # (response key, property, serializer)
    additional_key: str | None  # the response key of _additional, if selected
    additional: tuple[tuple[str, Getter, Serialize], ...]  # (response key, how the row gives the _additional field, serializer)
    shown: Shown


@dataclass(frozen=True)
class GetPlan:
    schema: GraphQLSchema
    operation: OperationDefinitionNode
    get_key: str
    classes: tuple[ClassPlan, ...]


def _serializer(output: Any) -> Serialize | None:
    """How graphql-core would serialize a leaf of this type (None: not a leaf this plan handles)."""
    if isinstance(output, GraphQLScalarType):
        serialize = output.serialize
        # The values graphql-core's own serializers hand back unchanged, without the call (the common case per row).
        if output is GraphQLFloat:
            return lambda value: value if type(value) is float and math.isfinite(value) else None if value is None else serialize(value)
        if output in (GraphQLString, GraphQLID):
            return lambda value: value if type(value) is str else None if value is None else serialize(value)
        return lambda value: None if value is None else serialize(value)
    if isinstance(output, GraphQLList) and isinstance(output.of_type, GraphQLScalarType):
        inner = output.of_type.serialize
        return lambda value: None if value is None else [None if v is None else inner(v) for v in value]
    return None


def _plain_fields(selection_set: SelectionSetNode | None) -> list[FieldNode] | None:
    """The selections when they are all plain fields (no fragments, no directives), else None."""
    if selection_set is None:
        return None
    fields = [s for s in selection_set.selections if isinstance(s, FieldNode) and not s.directives]
    return fields if len(fields) == len(selection_set.selections) else None


def _class_plan(node: FieldNode, definition: GraphQLField) -> ClassPlan | None:
    object_type = definition.type.of_type if isinstance(definition.type, GraphQLList) else None
    fields = _plain_fields(node.selection_set)
    if not isinstance(object_type, GraphQLObjectType) or fields is None or any(a.name.value == "groupBy" for a in node.arguments or ()):
        return None
    properties: list[tuple[str, str, Serialize]] = []
    additional: list[tuple[str, Getter, Serialize]] = []
    wanted: set[str] = set()
    additional_key: str | None = None
    for field in fields:
        key = field.alias.value if field.alias else field.name.value
        name = field.name.value
        if name == "_additional":
            inner = _plain_fields(field.selection_set)
            additional_type = object_type.fields[name].type
            if inner is None or additional_key is not None or not isinstance(additional_type, GraphQLObjectType):
                return None
            additional_key = key
            for extra in inner:
                get = ADDITIONAL_GETTERS.get(extra.name.value)
                serialize = _serializer(additional_type.fields[extra.name.value].type) if get is not None else None
                if get is None or serialize is None:
                    return None
                additional.append((extra.alias.value if extra.alias else extra.name.value, get, serialize))
                wanted.add(extra.name.value)
            continue
        serialize = _serializer(object_type.fields[name].type) if name in object_type.fields and not field.selection_set else None
        if serialize is None:
            return None
        properties.append((key, name, serialize))
    shown = Shown(objects=bool(properties) or bool(wanted & _NEEDS_OBJECT), vectors="vector" in wanted, explain="explainScore" in wanted)
    return ClassPlan(
        node.alias.value if node.alias else node.name.value, node.name.value, node, definition, tuple(properties), additional_key, tuple(additional), shown
    )


def compile_get(schema: GraphQLSchema, document: DocumentNode) -> GetPlan | None:
    """The plan for a validated document of the plain Get shape, or None."""
    if len(document.definitions) != 1 or not isinstance(document.definitions[0], OperationDefinitionNode):
        return None
    operation = document.definitions[0]
    query_type = schema.query_type
    if operation.operation is not OperationType.QUERY or operation.directives or query_type is None:
        return None
    top = _plain_fields(operation.selection_set)
    if top is None or len(top) != 1 or top[0].name.value != "Get" or top[0].arguments:
        return None
    get_type = query_type.fields["Get"].type
    classes = _plain_fields(top[0].selection_set)
    if not isinstance(get_type, GraphQLObjectType) or not classes:
        return None
    plans = []
    for node in classes:
        definition = get_type.fields.get(node.name.value)
        plan = _class_plan(node, definition) if definition is not None else None
        if plan is None:
            return None
        plans.append(plan)
    if len({p.key for p in plans}) != len(plans):
        return None  # one response key twice: graphql-core merges or rejects such fields
    return GetPlan(schema, operation, top[0].alias.value if top[0].alias else "Get", tuple(plans))


def _rendered(plan: ClassPlan, rows: list[Row], context: QueryContext) -> list[dict[str, Any]]:
    collection = context.catalog.collection(plan.class_name)
    results = []
    for row in rows:
        properties = row.object.properties if row.object is not None else {}
        result = {key: serialize(properties.get(name)) for key, name, serialize in plan.properties}
        if plan.additional_key is not None:
            result[plan.additional_key] = {key: serialize(get(collection, row)) for key, get, serialize in plan.additional}
        results.append(result)
    return results


async def _class_result(plan: ClassPlan, context: QueryContext, args: dict[str, Any]) -> list[dict[str, Any]]:
    collection = context.catalog.collection(plan.class_name)
    try:
        async with context.searching():
            rows = await get_rows(context, collection, args, plan.shown)
    except InvalidInput as exc:  # e.g. a malformed id: a query error in GraphQL terms (as the resolver says)
        raise QueryError(exc.problem, exc.hint) from exc
    return _rendered(plan, rows, context)


async def execute_plan(plan: GetPlan, context: QueryContext, inputs: Mapping[str, Any], locate: Callable[[FieldNode], list[dict[str, int]]]) -> dict[str, Any] | None:
    """The response body, as graphql-core would give it; None when the variables do not coerce (graphql-core reports that)."""
    variables = get_variable_values(plan.schema, plan.operation.variable_definitions or (), dict(inputs))
    if isinstance(variables, list):
        return None
    try:
        arguments = [get_argument_values(c.definition, c.node, variables) for c in plan.classes]
    except GraphQLError:
        return None
    results: list[list[dict[str, Any]] | BaseException]
    if len(plan.classes) == 1:  # the common case: no task per class
        try:
            results = [await _class_result(plan.classes[0], context, arguments[0])]
        except SearchdError as exc:
            results = [exc]
    else:
        results = await asyncio.gather(*(_class_result(c, context, a) for c, a in zip(plan.classes, arguments)), return_exceptions=True)
    data: dict[str, Any] = {}
    errors: list[dict[str, Any]] = []
    for class_plan, result in zip(plan.classes, results):
        if isinstance(result, BaseException):
            if not isinstance(result, SearchdError):
                raise result
            data[class_plan.key] = None
            errors.append({"message": str(result), "locations": locate(class_plan.node), "path": [plan.get_key, class_plan.key]})
        else:
            data[class_plan.key] = result
    body: dict[str, Any] = {"data": {plan.get_key: data}}
    if errors:
        body["errors"] = errors
    return body

