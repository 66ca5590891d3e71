"""``Weaviate/Aggregate``: an AggregateRequest becomes the arguments of its GraphQL ``Aggregate`` twin.

The groups and each property's aggregation come from ``searchd.query.aggregate``, as
for GraphQL; this module only picks what the request asked for and encodes it.
"""

from __future__ import annotations

from typing import Any

from searchd.catalog import CompiledCollection
from searchd.config.spec import LimitsSpec, PropertyType
from searchd.errors import QueryError
from searchd.grpc.codec import where_of
from searchd.grpc.protocol import Protocol
from searchd.grpc.search import Unsupported, near_image_argument, near_object_argument, near_text_argument, near_vector_argument
from searchd.query.aggregate import DEFAULT_TOP_OCCURRENCES, Group, aggregatable, aggregate_groups
from searchd.query.search import QueryContext

_FAMILY = {
    "int": (PropertyType.INT,),
    "number": (PropertyType.NUMBER, PropertyType.INT),
    "text": (PropertyType.TEXT, PropertyType.TEXT_ARRAY, PropertyType.UUID),
    "boolean": (PropertyType.BOOLEAN,),
    "date": (PropertyType.DATE,),
}
_NUMERIC = ("count", "type", "mean", "median", "mode", "maximum", "minimum", "sum")
_INTEGRAL = ("mode", "maximum", "minimum", "sum")  # int64 in an Integer aggregation's reply
_BOOLEAN = ("count", "type", "total_true", "total_false", "percentage_true", "percentage_false")
_DATE = ("count", "type", "median", "mode", "maximum", "minimum")


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def aggregate_arguments(collection: CompiledCollection, request: Any, limits: LimitsSpec) -> dict[str, Any]:
    """The GraphQL ``Aggregate`` arguments an AggregateRequest stands for."""
    if request.tenant:
        raise QueryError(f"collection '{collection.name}' has no tenants (multi-tenancy is not supported)", "leave the tenant out")
    args: dict[str, Any] = {}
    if request.HasField("filters"):
        args["where"] = where_of(collection, request.filters, limits)  # refused past maxFilterOperands / maxFilterDepth
    if request.HasField("group_by"):
        args["groupBy"] = [request.group_by.property]
    if request.HasField("object_limit"):
        args["objectLimit"] = request.object_limit
    if request.HasField("limit"):
        args["limit"] = request.limit
    search = request.WhichOneof("search")
    converters = {"near_vector": ("nearVector", near_vector_argument), "near_object": ("nearObject", near_object_argument), "near_text": ("nearText", near_text_argument), "near_image": ("nearImage", near_image_argument)}
    if search in converters:
        name, convert = converters[search]
        args[name] = convert(getattr(request, search))
    elif search is not None:
        raise Unsupported(f"aggregating over a {search} search is not supported", "aggregate over near_vector, near_text, near_image or near_object, or with filters")
    return args


def _fill(target: Any, wanted: Any, values: dict[str, Any], names: tuple[str, ...], integral: tuple[str, ...] = ()) -> None:
    for name in names:
        if not getattr(wanted, name):
            continue
        value = values.get(_camel(name))
        if value is None:
            continue
        setattr(target, name, int(value) if name in integral else value)


def _aggregation(collection: CompiledCollection, group: Group, request: Any, into: Any) -> None:
    prop = collection.spec.find_property(request.property)
    if prop is None or prop not in aggregatable(collection):
        usable = ", ".join(p.name for p in aggregatable(collection)) or "none"
        raise QueryError(f"no aggregatable property '{request.property}' in collection '{collection.name}'", f"aggregate one of: {usable}")
    kind = request.WhichOneof("aggregation")
    if kind not in _FAMILY or prop.type not in _FAMILY[kind]:
        raise QueryError(f"property '{prop.name}' is {prop.type.value}; a {kind} aggregation does not apply to it", "choose the metrics of the property's type")
    values = group.aggregate(prop)
    wanted = getattr(request, kind)
    target = getattr(into, kind)
    into.property = prop.name
    if kind == "text":
        _fill(target, wanted, values, ("count", "type"))
        if wanted.top_occurences:
            limit = wanted.top_occurences_limit if wanted.HasField("top_occurences_limit") else DEFAULT_TOP_OCCURRENCES
            occurrences = target.top_occurences
            occurrences.SetInParent()
            for value, occurs in values["_occurrences"][:limit]:
                occurrences.items.add(value=str(value), occurs=occurs)
    elif kind in ("int", "number"):
        _fill(target, wanted, values, _NUMERIC, _INTEGRAL if kind == "int" else ())
    elif kind == "boolean":
        _fill(target, wanted, values, _BOOLEAN)
    else:
        _fill(target, wanted, values, _DATE)


def _grouped_by(collection: CompiledCollection, group: Group, into: Any) -> None:
    assert group.grouped_by is not None
    path, label = group.grouped_by["path"], group.grouped_by["value"]
    into.path.extend(path)
    prop = collection.spec.find_property(path[0])
    kind = prop.type if prop is not None else PropertyType.TEXT
    if kind is PropertyType.INT:
        into.int = int(label)
    elif kind is PropertyType.NUMBER:
        into.number = float(label)
    elif kind is PropertyType.BOOLEAN:
        into.boolean = label == "true"
    else:
        into.text = label


def _aggregations(collection: CompiledCollection, group: Group, request: Any, into: Any) -> None:
    if request.objects_count:
        into.objects_count = len(group.objects)
    if len(request.aggregations):
        into.aggregations.SetInParent()
        for wanted in request.aggregations:
            _aggregation(collection, group, wanted, into.aggregations.aggregations.add())


async def run_aggregate(protocol: Protocol, context: QueryContext, request: Any) -> Any:
    collection = context.catalog.collection(request.collection)
    args = aggregate_arguments(collection, request, context.catalog.spec.server.limits)
    groups = await aggregate_groups(context, collection.name, args)
    # The values are aggregated as the reply is built: in a worker thread, as GraphQL's are (thousands of values).
    return await context.engine.offload(_reply, protocol, collection, request, groups)


def _reply(protocol: Protocol, collection: CompiledCollection, request: Any, groups: list[Group]) -> Any:
    reply = protocol.AggregateReply()
    if not request.HasField("group_by"):
        _aggregations(collection, groups[0], request, reply.single_result)
        reply.single_result.SetInParent()
        return reply
    reply.grouped_results.SetInParent()
    for group in groups:
        entry = reply.grouped_results.groups.add()
        _aggregations(collection, group, request, entry)
        _grouped_by(collection, group, entry.grouped_by)
    return reply
