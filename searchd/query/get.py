"""Resolvers for ``Get { <Class>(...) }``: check the argument mix, run the search, shape ``_additional``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from graphql import FieldNode, FragmentSpreadNode, GraphQLResolveInfo, InlineFragmentNode, SelectionSetNode

from searchd.catalog import CompiledCollection
from searchd.config.spec import Distance, PropertyType
from searchd.errors import InvalidInput, QueryError
from searchd.query.aggregate import group_label
from searchd.query.filters import sort_key
from searchd.query.fusion import autocut
from searchd.query.search import (
    NEAR_ARGUMENTS,
    QueryContext,
    Row,
    allowed_docs,
    bm25_rows,
    hybrid_rows,
    near_rows,
    parse_filter,
    read_objects,
)
from searchd.values import normalize_uuid, vector_json
from searchd.where import Filter

__all__ = ["QueryContext", "resolve_get"]

SEARCH_ARGUMENTS = (*NEAR_ARGUMENTS, "bm25", "hybrid")


def _limits(context: QueryContext, args: Mapping[str, Any]) -> tuple[int, int]:
    limits = context.catalog.spec.server.limits
    limit = args.get("limit")
    offset = args.get("offset") or 0
    limit = limits.query_limit_default if limit is None else limit
    if limit < 0 or offset < 0:
        raise QueryError("limit and offset must not be negative", "use 0 or a positive number")
    if limit + offset > limits.query_limit_max:
        raise QueryError(f"limit + offset is {limit + offset}, above the maximum of {limits.query_limit_max}", "page with a smaller limit and offset")
    return limit, offset


@dataclass(frozen=True)
class Shown:
    """What a selection shows of each object, and so what must be read: the object itself, its vectors."""

    objects: bool
    vectors: bool
    explain: bool = True  # _additional { explainScore }: BM25 writes out each hit's term statistics

_ID_ONLY = frozenset({"id", "distance", "certainty", "score", "explainScore", "__typename"})


def shown(info: GraphQLResolveInfo[Any]) -> Shown:
    """Walk the field's selection (fragments included): properties, timestamps or groups need the objects; vector(s) their vectors."""
    objects = vectors = explain = False
    pending: list[SelectionSetNode] = [node.selection_set for node in info.field_nodes if node.selection_set is not None]
    seen: set[str] = set()
    while pending:
        for selection in pending.pop().selections:
            if isinstance(selection, FragmentSpreadNode):
                fragment = info.fragments.get(selection.name.value)
                if fragment is not None and selection.name.value not in seen:
                    seen.add(selection.name.value)
                    pending.append(fragment.selection_set)
            elif isinstance(selection, InlineFragmentNode):
                pending.append(selection.selection_set)
            elif isinstance(selection, FieldNode):
                name = selection.name.value
                if name == "_additional" and selection.selection_set is not None:
                    pending.append(selection.selection_set)
                elif name in ("vector", "vectors"):
                    objects = vectors = True
                elif name == "explainScore":
                    explain = True
                elif name not in _ID_ONLY:
                    objects = True
    return Shown(objects, vectors, explain)


def _shown_vector(collection: CompiledCollection, row: Row) -> Any:
    shown = row.vector or collection.default_vector
    vectors = row.object.vectors if row.object is not None else {}
    return vector_json(collection, shown.name, vectors[shown.name]) if shown is not None and shown.name in vectors else None


def _certainty(collection: CompiledCollection, row: Row) -> float | None:
    searched = row.vector
    if row.distance is not None and searched is not None and searched.spec.index.distance is Distance.COSINE:
        return 1.0 - row.distance / 2.0
    return None


# Each _additional field a plan (searchd.query.plan) reads row by row, without building the whole dict.
ADDITIONAL_GETTERS: dict[str, Callable[[CompiledCollection, Row], Any]] = {
    "id": lambda _collection, row: row.id,
    "creationTimeUnix": lambda _collection, row: str(row.object.created_ms) if row.object is not None else None,
    "lastUpdateTimeUnix": lambda _collection, row: str(row.object.updated_ms) if row.object is not None else None,
    "vector": _shown_vector,
    "distance": lambda _collection, row: row.distance,
    "certainty": _certainty,
    "score": lambda _collection, row: None if row.score is None else f"{row.score:.9g}",
    "explainScore": lambda _collection, row: row.explain,
}


def additional_fields(collection: CompiledCollection, row: Row) -> dict[str, Any]:
    vectors = row.object.vectors if row.object is not None else {}
    # vector and vectors are callables: graphql-core calls them only when the query asks for them.
    additional: dict[str, Any] = {name: get(collection, row) for name, get in ADDITIONAL_GETTERS.items() if name != "vector"}
    additional["vector"] = lambda _info: _shown_vector(collection, row)
    additional["vectors"] = lambda _info: {name: vector_json(collection, name, vec) for name, vec in vectors.items()}
    additional["group"] = None
    return additional


def _result(collection: CompiledCollection, row: Row) -> dict[str, Any]:
    properties = row.object.properties if row.object is not None else {}
    result: dict[str, Any] = {p.name: properties.get(p.name) for p in collection.spec.properties}
    result["_additional"] = additional_fields(collection, row)
    return result


def group_rows(collection: CompiledCollection, rows: list[Row], group_by: Mapping[str, Any]) -> list[tuple[str, list[Row]]]:
    """Weaviate's groupBy: the rows split by the property's value (as text), at most ``groups`` groups of ``objectsPerGroup``."""
    path = group_by["path"]
    prop = collection.spec.find_property(path[0]) if len(path) == 1 else None
    if prop is None:
        raise QueryError(f"groupBy path {path!r} is not a property of '{collection.name}'", "group by one declared property")
    numeric = prop.type is PropertyType.NUMBER
    groups: dict[str, list[Row]] = {}
    for row in rows:
        value = row.object.properties.get(path[0]) if row.object is not None else None
        # As Aggregate (and Weaviate): an array puts the object in each of its values' groups; values read as GraphQL Strings.
        values = value if isinstance(value, list) else [value]
        for key in dict.fromkeys("" if v is None else group_label(float(v) if numeric else v) for v in values or [None]):
            if key not in groups and len(groups) >= group_by["groups"]:
                continue
            members = groups.setdefault(key, [])
            if len(members) < group_by["objectsPerGroup"]:
                members.append(row)
    return list(groups.items())


def _grouped(collection: CompiledCollection, groups: list[tuple[str, list[Row]]], path: list[str]) -> list[dict[str, Any]]:
    """The best object of each group carries the group in _additional.group."""
    results = []
    for number, (value, members) in enumerate(groups):
        distances = [m.distance for m in members if m.distance is not None]
        first = _result(collection, members[0])
        first["_additional"]["group"] = {
            "id": number,
            "groupedBy": {"path": path, "value": value},
            "count": len(members),
            "minDistance": min(distances) if distances else None,
            "maxDistance": max(distances) if distances else None,
            "hits": [{**_result(collection, m), "_additional": {"id": m.id, "distance": m.distance, "vector": additional_fields(collection, m)["vector"]}} for m in members],
        }
        results.append(first)
    return results


def _check_mix(args: Mapping[str, Any]) -> str | None:
    searches = [k for k in SEARCH_ARGUMENTS if args.get(k) is not None]
    if len(searches) > 1:
        raise QueryError(f"only one of {', '.join(SEARCH_ARGUMENTS)} may be given; got {', '.join(searches)}", "keep one search argument")
    search = searches[0] if searches else None
    if args.get("after") is not None and (args.get("limit") is None or search or args.get("where") is not None or args.get("sort") or args.get("offset")):
        raise QueryError("other params cannot be set with after and limit parameters", "page with only after and limit")
    if args.get("sort") and search:
        raise QueryError(f"sort cannot be combined with {search}", "results of a search are ordered by relevance; drop sort or the search")
    if args.get("groupBy") is not None and search not in (*NEAR_ARGUMENTS, "hybrid"):
        raise QueryError("groupBy needs a vector search (near* or hybrid)", "add e.g. nearText: {concepts: [...]}")
    if args.get("autocut") and not search:
        raise QueryError("autocut needs a search (near*, bm25 or hybrid)", "add a search, or drop autocut")
    return search


async def get_rows(context: QueryContext, collection: CompiledCollection, args: Mapping[str, Any], show: Shown) -> list[Row]:
    """The rows a Get without groupBy returns, with their objects read when ``show`` needs them."""
    limit, offset = _limits(context, args)
    search = _check_mix(args)
    where = parse_filter(collection, args.get("where"))
    if search is None:
        order = [sort_key(collection, s["path"], s.get("order") == "desc") for s in args.get("sort") or []]
        after = normalize_uuid(args["after"], "after") if args.get("after") else None
        objects = await context.engine.offload(context.engine.list_objects, collection.name, limit, offset, after, where, order, show.vectors)
        return [Row(obj.doc, obj.id, object=obj) for obj in objects]
    rows = await _search(context, collection, search, args, limit + offset, where, show.explain)
    rows = rows[offset : offset + limit]
    if args.get("autocut"):
        rows = rows[: autocut([r.rank_value for r in rows], args["autocut"])]
    return await read_objects(context, collection, rows, show.vectors) if show.objects else rows


async def _search(
    context: QueryContext, collection: CompiledCollection, search: str, args: Mapping[str, Any], fetch: int, where: Filter | None, explain: bool = True
) -> list[Row]:
    allowed = await allowed_docs(context, collection, where)
    if search == "bm25":
        return await bm25_rows(context, collection, args["bm25"], fetch, allowed, explain)
    if search == "hybrid":
        return await hybrid_rows(context, collection, args["hybrid"], fetch, allowed, explain)
    return await near_rows(context, collection, search, args[search], fetch, allowed)


async def grouped_rows(context: QueryContext, collection: CompiledCollection, args: Mapping[str, Any], show: Shown) -> list[tuple[str, list[Row]]]:
    """The groups a Get with groupBy returns: (the value grouped by, its rows with their objects)."""
    group_by = args["groupBy"]
    limit, offset = _limits(context, args)
    search = _check_mix(args)
    assert search is not None  # _check_mix: groupBy needs a search
    fetch = max(limit + offset, group_by["groups"] * group_by["objectsPerGroup"] * 4, 100)
    rows = await _search(context, collection, search, args, fetch, parse_filter(collection, args.get("where")), show.explain)
    return group_rows(collection, await read_objects(context, collection, rows, show.vectors), group_by)


async def _run(context: QueryContext, class_name: str, args: Mapping[str, Any], show: Shown) -> list[dict[str, Any]]:
    collection = context.catalog.collection(class_name)
    if args.get("groupBy") is None:
        return [_result(collection, row) for row in await get_rows(context, collection, args, show)]
    return _grouped(collection, await grouped_rows(context, collection, args, show), args["groupBy"]["path"])


def resolve_get(class_name: str) -> Callable[..., Awaitable[list[dict[str, Any]]]]:
    async def resolve(_root: Any, info: GraphQLResolveInfo[Any], **args: Any) -> list[dict[str, Any]]:
        context: QueryContext = info.context
        try:
            async with context.searching():
                return await _run(context, class_name, args, shown(info))
        except InvalidInput as exc:  # e.g. a malformed id: a query error in GraphQL terms
            raise QueryError(exc.problem, exc.hint) from exc

    return resolve
