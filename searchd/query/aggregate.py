"""``Aggregate { <Class>(...) { meta { count } prop { ... } groupedBy { path value } } }``, as Weaviate.

The class resolver picks the objects (all, a ``where`` filter's matches, or the
``objectLimit`` nearest to a near* query within the filter) and splits them into
groups; each property field then aggregates its group's values in Python/numpy,
only when it is asked for.  Semantics follow Weaviate's aggregator
(``adapters/repos/db/aggregator``):

- ``count`` counts non-null values (every element of a TEXT[]);
- INT / NUMBER: ``mean median mode maximum minimum sum`` as floats; ``median`` is the
  middle value, or the mean of the two middle ones; ``mode`` the most frequent value,
  the smallest on ties; all null (``count`` 0) when there are no values;
- TEXT / TEXT[] / UUID: ``topOccurrences(limit: 5)`` by count, ties by value ascending;
- BOOLEAN: ``percentageTrue`` / ``percentageFalse`` are fractions (0..1), 0 without values;
- DATE: ``minimum maximum mode median`` are RFC 3339 strings as stored (a median between
  two instants is their midpoint, written in UTC);
- ``groupBy: ["prop"]``: one entry per value (each element of a TEXT[]), largest group
  first, ties by value ascending; at most ``limit`` groups (default 100).
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from graphql import (
    FieldNode,
    GraphQLArgument,
    GraphQLField,
    GraphQLFloat,
    GraphQLInt,
    GraphQLList,
    GraphQLObjectType,
    GraphQLResolveInfo,
    GraphQLString,
)

from searchd import deadline
from searchd.config.spec import PropertySpec, PropertyType
from searchd.errors import InvalidInput, NotFound, QueryError
from searchd.query.cost import AGGREGATE_SCAN_FACTOR, counts_only
from searchd.query.search import NEAR_ARGUMENTS, QueryContext, allowed_docs, near_objects, parse_filter

if TYPE_CHECKING:
    from searchd.catalog import Catalog, CompiledCollection
    from searchd.query.types import SharedTypes

DEFAULT_GROUP_LIMIT = 100  # Weaviate's groupedAggregator default
DEFAULT_TOP_OCCURRENCES = 5  # Weaviate's extractLimitFromTopOccs default
RESERVED_FIELDS = ("meta", "groupedBy")  # a property with one of these names is not aggregatable

_TEXT_KINDS = (PropertyType.TEXT, PropertyType.TEXT_ARRAY, PropertyType.UUID)
_NUMERIC_KINDS = (PropertyType.INT, PropertyType.NUMBER)
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


# -- groups -------------------------------------------------------------------------


@dataclass
class Group:
    """One entry of the result list: some objects' properties, and what they were grouped by."""

    objects: Sequence[Mapping[str, Any]]
    grouped_by: dict[str, Any] | None = None
    count: int | None = None  # how many objects it covers, when they were counted and not read (meta { count } alone)
    _cache: dict[str, dict[str, Any]] = field(default_factory=dict, repr=False)

    def aggregate(self, prop: PropertySpec) -> dict[str, Any]:
        found = self._cache.get(prop.name)
        if found is None:
            values = [obj.get(prop.name) for obj in deadline.checked(self.objects)]
            found = self._cache[prop.name] = _AGGREGATORS[_family(prop.type)](prop.type, [v for v in values if v is not None])
        return found


def _family(kind: PropertyType) -> str:
    if kind in _TEXT_KINDS:
        return "text"
    if kind in _NUMERIC_KINDS:
        return "numeric"
    return kind.value.lower()  # boolean, date


def group_label(value: Any) -> str:
    """How Weaviate's GraphQL String shows a grouped-by value (Go's FormatFloat(v, 'f', -1, 64) for numbers)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return np.format_float_positional(value, trim="-")
    return str(value)


def _groups(objects: Sequence[Mapping[str, Any]], prop: PropertySpec, limit: int) -> list[Group]:
    members: dict[Any, list[Mapping[str, Any]]] = {}
    for obj in deadline.checked(objects):
        value = obj.get(prop.name)
        if value is None:
            continue
        seen: set[Any] = set()
        for item in value if isinstance(value, list) else [value]:
            key = float(item) if prop.type is PropertyType.NUMBER else item
            if key in seen:  # an object counts once per group, however often a TEXT[] repeats a value
                continue
            seen.add(key)
            members.setdefault(key, []).append(obj)
    # Largest group first, ties by value (one property has one type, so values compare).
    ordered = sorted(members.items(), key=lambda pair: (-len(pair[1]), pair[0]))[:limit]
    return [Group(list(objs), {"path": [prop.name], "value": group_label(key)}) for key, objs in ordered]


# -- aggregations ---------------------------------------------------------------------


def _text(kind: PropertyType, values: list[Any]) -> dict[str, Any]:
    items = [item for v in values for item in (v if isinstance(v, list) else [v])]
    occurrences = sorted(Counter(items).items(), key=lambda pair: (-pair[1], pair[0]))
    return {"count": len(items), "type": kind.weaviate_name, "_occurrences": occurrences}


def _numeric(kind: PropertyType, values: list[Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"count": len(values), "type": kind.weaviate_name}
    if not values:
        return out | dict.fromkeys(("mean", "median", "mode", "maximum", "minimum", "sum"))
    array = np.asarray(values, dtype=np.float64)
    unique, counts = np.unique(array, return_counts=True)  # ascending, so argmax picks the smallest of the most frequent
    return out | {
        "mean": float(np.mean(array)),
        "median": float(np.median(array)),
        "mode": float(unique[int(np.argmax(counts))]),
        "maximum": float(np.max(array)),
        "minimum": float(np.min(array)),
        "sum": float(np.sum(array)),
    }


def _boolean(kind: PropertyType, values: list[Any]) -> dict[str, Any]:
    true = sum(1 for v in values if v is True)
    false = len(values) - true
    total = len(values)
    return {
        "count": total,
        "type": kind.weaviate_name,
        "totalTrue": true,
        "totalFalse": false,
        "percentageTrue": true / total if total else 0.0,
        "percentageFalse": false / total if total else 0.0,
    }


def _micros(value: str) -> int:
    parsed = dt.datetime.fromisoformat(value)  # checked on write: RFC 3339 with a zone
    return (parsed - _EPOCH) // dt.timedelta(microseconds=1)


def _rfc3339_utc(micros: int) -> str:
    """Like Go's time.RFC3339Nano in UTC: fractional seconds only when nonzero, trailing zeros trimmed."""
    instant = _EPOCH + dt.timedelta(microseconds=micros)
    fraction = f".{instant.microsecond:06d}".rstrip("0").rstrip(".")
    return instant.strftime("%Y-%m-%dT%H:%M:%S") + fraction + "Z"


def _date(kind: PropertyType, values: list[Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"count": len(values), "type": kind.weaviate_name}
    if not values:
        return out | dict.fromkeys(("minimum", "maximum", "mode", "median"))
    stamped = sorted((_micros(v), v) for v in values)  # by instant, then by spelling
    counts = Counter(micros for micros, _ in stamped)
    mode = min(counts, key=lambda micros: (-counts[micros], micros))
    middle = len(stamped) // 2
    if len(stamped) % 2:
        median = stamped[middle][1]
    else:
        low, high = stamped[middle - 1], stamped[middle]
        median = low[1] if low[0] == high[0] else _rfc3339_utc(low[0] + (high[0] - low[0]) // 2)
    return out | {
        "minimum": stamped[0][1],
        "maximum": max(stamped, key=lambda pair: pair[0])[1],
        "mode": next(text for micros, text in stamped if micros == mode),
        "median": median,
    }


_AGGREGATORS: dict[str, Callable[[PropertyType, list[Any]], dict[str, Any]]] = {"text": _text, "numeric": _numeric, "boolean": _boolean, "date": _date}


def _top_occurrences(source: Mapping[str, Any], _info: GraphQLResolveInfo[Any], limit: int | None = None) -> list[dict[str, Any]]:
    if limit is None:
        limit = DEFAULT_TOP_OCCURRENCES
    if limit < 0:
        raise QueryError(f"topOccurrences limit must not be negative, got {limit}", "use a limit of 0 or more (default 5)")
    return [{"value": value, "occurs": occurs} for value, occurs in source["_occurrences"][:limit]]


# -- schema ---------------------------------------------------------------------------


def _property_type(collection: CompiledCollection, prop: PropertySpec) -> GraphQLObjectType:
    prefix = f"Aggregate{collection.name}{prop.name}"
    family = _family(prop.type)
    fields: dict[str, GraphQLField] = {
        "count": GraphQLField(GraphQLInt, description="How many values (non-null; every element of an array)."),
        "type": GraphQLField(GraphQLString, description="The property's data type."),
    }
    if family == "text":
        occurrence = GraphQLObjectType(f"{prefix}TopOccurrencesObj", {"value": GraphQLField(GraphQLString), "occurs": GraphQLField(GraphQLInt)})
        fields["topOccurrences"] = GraphQLField(
            GraphQLList(occurrence),
            args={"limit": GraphQLArgument(GraphQLInt, description=f"How many values to list (default {DEFAULT_TOP_OCCURRENCES}).")},
            resolve=_top_occurrences,
            description="The most frequent values, most frequent first, ties by value.",
        )
    elif family == "numeric":
        for name in ("mean", "median", "mode", "maximum", "minimum", "sum"):
            fields[name] = GraphQLField(GraphQLFloat)
    elif family == "boolean":
        fields |= {
            "totalTrue": GraphQLField(GraphQLInt),
            "totalFalse": GraphQLField(GraphQLInt),
            "percentageTrue": GraphQLField(GraphQLFloat, description="A fraction between 0 and 1."),
            "percentageFalse": GraphQLField(GraphQLFloat, description="A fraction between 0 and 1."),
        }
    else:
        for name in ("minimum", "maximum", "mode", "median"):
            fields[name] = GraphQLField(GraphQLString, description="An RFC 3339 date.")
    return GraphQLObjectType(f"{prefix}Obj", fields)


def _property_resolver(prop: PropertySpec) -> Callable[..., dict[str, Any]]:
    def resolve(group: Group, _info: GraphQLResolveInfo[Any]) -> dict[str, Any]:
        return group.aggregate(prop)

    return resolve


def aggregatable(collection: CompiledCollection) -> list[PropertySpec]:
    return [p for p in collection.spec.properties if p.type is not PropertyType.BLOB and p.name not in RESERVED_FIELDS]


def _class_type(collection: CompiledCollection) -> GraphQLObjectType:
    name = collection.name
    meta = GraphQLObjectType(f"Aggregate{name}MetaObject", {"count": GraphQLField(GraphQLInt, description="How many objects were aggregated.")})
    grouped_by = GraphQLObjectType(f"Aggregate{name}GroupedByObj", {"path": GraphQLField(GraphQLList(GraphQLString)), "value": GraphQLField(GraphQLString)})
    fields: dict[str, GraphQLField] = {
        p.name: GraphQLField(_property_type(collection, p), resolve=_property_resolver(p), description=p.description or None) for p in aggregatable(collection)
    }
    fields["meta"] = GraphQLField(meta, resolve=lambda group, _info: {"count": len(group.objects) if group.count is None else group.count})
    fields["groupedBy"] = GraphQLField(grouped_by, resolve=lambda group, _info: group.grouped_by, description="The group's value (with groupBy).")
    return GraphQLObjectType(f"Aggregate{name}", fields, description=collection.spec.description or None)


def build_aggregate_field(catalog: Catalog, types: SharedTypes) -> GraphQLField:
    """The root ``Aggregate`` field: one field per collection, each a list of groups."""
    fields: dict[str, GraphQLField] = {}
    for collection in catalog.collections.values():
        args = {
            "where": GraphQLArgument(types.where),
            "groupBy": GraphQLArgument(GraphQLList(GraphQLString), description="Group by this property: [\"name\"]."),
            **{key: GraphQLArgument(types.near[key]) for key in NEAR_ARGUMENTS},
            "objectLimit": GraphQLArgument(GraphQLInt, description="How many nearest objects a near* aggregation covers."),
            "limit": GraphQLArgument(GraphQLInt, description=f"The most groups to return with groupBy (default {DEFAULT_GROUP_LIMIT})."),
        }
        fields[collection.name] = GraphQLField(
            GraphQLList(_class_type(collection)), args=args, resolve=_resolver(collection.name), description=collection.spec.description or None
        )
    return GraphQLField(GraphQLObjectType("AggregateObjectsObj", fields), resolve=lambda *_: {}, description="Aggregations over the objects of a collection.")


# -- resolving ------------------------------------------------------------------------


def _resolver(class_name: str) -> Callable[..., Any]:
    async def resolve(_root: Any, info: GraphQLResolveInfo[QueryContext], **args: Any) -> list[Group]:
        try:
            async with info.context.searching():
                groups = await aggregate_groups(info.context, class_name, args, counts_only(info.field_nodes))
                wanted = _selected_properties(info.context.catalog.collection(class_name), info.field_nodes)
                if wanted and groups:
                    # In a worker thread, with the request's deadline: thousands of values per property would hold
                    # the event loop (every other request) for as long; the resolvers below then read the results.
                    await info.context.engine.offload(_aggregate_each, groups, wanted)
                return groups
        except (InvalidInput, NotFound) as exc:  # a bad id or an unknown target vector: a query error here
            raise QueryError(exc.problem, exc.hint) from exc

    return resolve


def _selected_properties(collection: CompiledCollection, nodes: Sequence[FieldNode]) -> list[PropertySpec]:
    """The properties these Aggregate field nodes select by name (one in a fragment is aggregated when its resolver asks)."""
    by_name = {p.name: p for p in aggregatable(collection)}
    names = {s.name.value for node in nodes if node.selection_set for s in node.selection_set.selections if isinstance(s, FieldNode)}
    return [by_name[name] for name in sorted(names) if name in by_name]


def _aggregate_each(groups: Sequence[Group], props: Sequence[PropertySpec]) -> None:
    for group in groups:
        for prop in props:
            group.aggregate(prop)


def _group_property(collection: CompiledCollection, group_by: Sequence[str] | None) -> PropertySpec | None:
    if group_by is None:
        return None
    if len(group_by) != 1:
        raise QueryError(f"groupBy must name exactly one property, got {list(group_by)!r}", "write groupBy: [\"propertyName\"] (cross-references are not supported)")
    prop = collection.spec.find_property(group_by[0])
    usable = [p.name for p in collection.spec.properties if p.type is not PropertyType.BLOB]
    if prop is None:
        raise QueryError(f"groupBy: no property '{group_by[0]}' in class '{collection.name}'", f"group by one of: {', '.join(usable) or 'none'}")
    if prop.type is PropertyType.BLOB:
        raise QueryError(f"groupBy: '{prop.name}' is a BLOB property, which cannot be grouped by", f"group by one of: {', '.join(usable) or 'none'}")
    return prop


def _near_argument(args: Mapping[str, Any], object_limit: int | None) -> str | None:
    given = [k for k in NEAR_ARGUMENTS if args.get(k) is not None]
    if len(given) > 1:
        raise QueryError(f"only one of {', '.join(NEAR_ARGUMENTS)} may be given; got {', '.join(given)}", "keep one search argument")
    if object_limit is not None:
        if object_limit <= 0:
            raise QueryError("objectLimit must be a positive integer", "give objectLimit: N with N >= 1")
        if not given:
            raise QueryError("objectLimit can only be used with a near<Media> filter", "add nearVector, nearObject, nearText or nearImage, or remove objectLimit")
    if given and object_limit is None:
        near = args[given[0]]
        if near.get("certainty") is None and near.get("distance") is None:
            raise QueryError("must provide certainty or objectLimit with vector search", f"add objectLimit: N next to {given[0]} (or a distance or certainty inside it)")
    return given[0] if given else None


async def aggregate_groups(context: QueryContext, class_name: str, args: Mapping[str, Any], only_counted: bool = False) -> list[Group]:
    """The groups an Aggregate covers (one without groupBy), as GraphQL arguments describe them.

    ``only_counted``: nothing but ``meta { count }`` is asked for; without groupBy or near* the objects are then
    counted, not read (so a count is not bound by the scan's limit, and costs nothing per object).
    """
    catalog = context.catalog
    collection = catalog.collection(class_name)
    engine = context.engine
    limit = args.get("limit")
    if limit is not None and limit < 0:
        raise QueryError(f"limit must not be negative, got {limit}", f"give the number of groups to return (default {DEFAULT_GROUP_LIMIT})")
    object_limit = args.get("objectLimit")
    kind = _near_argument(args, object_limit)
    group_prop = _group_property(collection, args.get("groupBy"))
    where = parse_filter(collection, args.get("where"))
    cap = catalog.spec.server.limits.query_limit_max

    if kind is not None:
        if object_limit is not None and object_limit > cap * AGGREGATE_SCAN_FACTOR:
            raise QueryError(f"objectLimit {object_limit} is above the maximum of {cap * AGGREGATE_SCAN_FACTOR}", f"use an objectLimit of at most {cap * AGGREGATE_SCAN_FACTOR}")

        allowed = await allowed_docs(context, collection, where)
        found = await near_objects(context, collection, kind, args[kind], object_limit if object_limit is not None else cap + 1, allowed)
        if object_limit is None and len(found) > cap:
            raise QueryError(f"more than {cap} objects are within the given distance", "add objectLimit: N to aggregate over the N nearest")
        objects = [obj.properties for obj in found]
    else:
        bound = cap * AGGREGATE_SCAN_FACTOR
        total = await engine.offload(engine.count, collection.name, where)
        if only_counted and group_prop is None:
            return [Group((), count=total)]
        if total <= bound:  # read at most bound + 1, so that writes since the count cannot go unnoticed
            stored = await engine.offload(engine.list_objects, collection.name, limit=bound + 1, where=where, vectors=False)
            objects = [obj.properties for obj in stored]
            total = len(objects)
        if total > bound:
            raise QueryError(
                f"Aggregate would cover {total} objects in '{collection.name}', more than this server aggregates at once ({bound})",
                "narrow it with a where filter, or aggregate over the nearest objects with near* and objectLimit",
            )

    if group_prop is None:
        return [Group(objects)]
    return await engine.offload(_groups, objects, group_prop, DEFAULT_GROUP_LIMIT if limit is None else limit)

