"""Running searches for the resolvers: filters → allow-lists, near* vectors, BM25, hybrid fusion.

Each function returns ``Row``s: a stored object plus whatever the search measured
(distance, score, explanation), ready for shaping into ``_additional``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio.to_thread
import numpy as np

from searchd.config.spec import Distance
from searchd.errors import QueryError
from searchd.index import Hit
from searchd.index.base import EXACT_SCAN_MAX
from searchd.index.bm25 import KeywordHit
from searchd.modules.base import NO_KEYS
from searchd.query.filters import index_hint, parse_where, to_sql
from searchd.query.fusion import Leg, LegHit, ranked_fusion, relative_score_fusion
from searchd.storage import ObjectStore, StoredObject

if TYPE_CHECKING:
    from searchd.catalog import Catalog, CompiledCollection, CompiledVector
    from searchd.engine import Engine

NEAR_ARGUMENTS = ("nearVector", "nearObject", "nearText", "nearImage")
HYBRID_MIN_CANDIDATES = 100  # each leg fetches at least this many (QUERY_HYBRID_MAXIMUM_RESULTS)
DEFAULT_ALPHA = 0.75


@dataclass(frozen=True)
class QueryContext:
    """What resolvers see: the catalog snapshot the request started with, and the engine."""

    catalog: Catalog
    engine: Engine
    keys: Mapping[str, str] = field(default_factory=lambda: NO_KEYS)  # the request's provider headers (X-JinaAI-Api-Key, ...)


@dataclass
class Row:
    object: StoredObject
    vector: CompiledVector | None = None  # the vector searched, if any
    distance: float | None = None
    score: float | None = None
    explain: str | None = None

    @property
    def rank_value(self) -> float:
        """What autocut looks at: distance for vector search, otherwise the negated score."""
        return self.distance if self.distance is not None else -(self.score or 0.0)


# -- filters ---------------------------------------------------------------------


@dataclass(frozen=True)
class CompiledFilter:
    sql: tuple[str, list[Any]]
    indexed_property: str | None  # an index that can answer it (see filters.index_hint)


def compiled_filter(collection: CompiledCollection, where: Any) -> CompiledFilter | None:
    if where is None:
        return None
    parsed = parse_where(collection, where)
    return CompiledFilter(to_sql(parsed), index_hint(collection, parsed))


class FilterCheck:
    """A broad filter's allow-list: counted, not listed; candidates are checked against it in SQL.

    Listing 40,000 allowed ids costs more than the search itself, so an approximate search
    over-fetches and keeps the candidates that pass.  Anything that needs the whole list
    (an exact scan, BM25's mask) gets it on first iteration.
    """

    def __init__(self, store: ObjectStore, collection: str, where: CompiledFilter, count: int) -> None:
        self._store, self._collection, self._where, self._count = store, collection, where, count
        self._all: list[str] | None = None

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[str]:
        if self._all is None:
            self._all = self._store.ids_matching(self._collection, self._where.sql, self._where.indexed_property)
        return iter(self._all)

    def __contains__(self, object_id: object) -> bool:
        return isinstance(object_id, str) and bool(self.retain([object_id]))

    def retain(self, object_ids: Sequence[str]) -> set[str]:
        return self._store.ids_among(self._collection, self._where.sql, object_ids)


def _allowed(store: ObjectStore, collection: CompiledCollection, where: CompiledFilter) -> Collection[str]:
    count = store.count_matching(collection.name, where.sql, where.indexed_property)
    if count <= EXACT_SCAN_MAX:
        return store.ids_matching(collection.name, where.sql, where.indexed_property)
    return FilterCheck(store, collection.name, where, count)


async def allowed_ids(context: QueryContext, collection: CompiledCollection, where: CompiledFilter | None) -> Collection[str] | None:
    if where is None:
        return None
    return await anyio.to_thread.run_sync(_allowed, context.engine.store, collection, where)


# -- vector search ----------------------------------------------------------------


def target_vector(collection: CompiledCollection, targets: Sequence[str] | None) -> CompiledVector:
    if targets:
        if len(targets) > 1:
            raise QueryError("searching several targetVectors at once is not supported", "name exactly one target vector")
        return collection.vector(targets[0])
    default = collection.default_vector
    if default is None:
        raise QueryError(
            f"collection '{collection.name}' has several named vectors and none is the default",
            f"add targetVectors: [\"...\"] with one of: {', '.join(collection.vectors) or 'none'}",
        )
    return default


def max_distance(vector: CompiledVector, near: Mapping[str, Any]) -> float | None:
    if near.get("distance") is not None and near.get("certainty") is not None:
        raise QueryError("give either distance or certainty, not both", "remove one of them")
    if near.get("certainty") is not None:
        if vector.spec.index.distance is not Distance.COSINE:
            raise QueryError(
                f"can't compute and return certainty when vector index is configured with {vector.spec.index.distance.value} distance",
                "use distance instead of certainty",
            )
        return (1.0 - float(near["certainty"])) * 2.0
    return None if near.get("distance") is None else float(near["distance"])


def _object_id(reference: Mapping[str, Any], what: str) -> str:
    if reference.get("id"):
        return str(reference["id"])
    if reference.get("beacon"):
        return str(reference["beacon"]).rstrip("/").rsplit("/", 1)[-1]
    raise QueryError(f"{what} needs an id or a beacon", "add id: \"<uuid>\"")


def _stored_vector(context: QueryContext, collection: CompiledCollection, vector: CompiledVector, reference: Mapping[str, Any], what: str) -> np.ndarray:
    stored = context.engine.get(context.catalog, collection.name, _object_id(reference, what))
    if vector.name not in stored.vectors:
        raise QueryError(f"object '{stored.id}' has no '{vector.name}' vector", "choose a target vector the object has")
    return stored.vectors[vector.name]


async def _moved(context: QueryContext, collection: CompiledCollection, vector: CompiledVector, query: np.ndarray, near: Mapping[str, Any]) -> np.ndarray:
    """nearText moveTo / moveAwayFrom, with Weaviate's formulas."""
    for key in ("moveTo", "moveAwayFrom"):
        move = near.get(key)
        if not move:
            continue
        if vector.is_multi:
            raise QueryError(f"{key} is not supported for multi-vectors", f"remove {key}")
        force = float(move["force"])
        if force < 0 or (key == "moveTo" and force > 1):
            raise QueryError(f"{key}.force must be {'between 0 and 1' if key == 'moveTo' else 'at least 0'}, got {force}", "adjust force")
        targets = []
        if move.get("concepts"):
            assert vector.vectorizer is not None
            targets.append(await vector.vectorizer.embed_text_query(list(move["concepts"]), context.keys))
        targets += [_stored_vector(context, collection, vector, o, key) for o in move.get("objects") or []]
        if not targets:
            raise QueryError(f"{key} needs concepts or objects", f"add concepts: [\"...\"] to {key}")
        target = np.mean(np.stack(targets), axis=0)
        query = query * (1 - 0.5 * force) + target * 0.5 * force if key == "moveTo" else query + 0.5 * force * (query - target)
    return query


async def query_vector(context: QueryContext, collection: CompiledCollection, vector: CompiledVector, kind: str, near: Mapping[str, Any]) -> np.ndarray:
    if kind == "nearVector":
        query = np.asarray(near["vector"], dtype=np.float32)
        if query.ndim == 2 and not vector.is_multi:
            raise QueryError(f"nearVector got a multi-vector, but vector '{vector.name}' holds single vectors", "send a flat list of numbers")
        if query.shape[-1] != vector.dimensions:
            raise QueryError(
                f"nearVector has {query.shape[-1]} dimensions, but vector '{vector.name}' has {vector.dimensions}",
                f"send {vector.dimensions} numbers{' per row' if vector.is_multi else ''}, or choose another target vector",
            )
        return query
    if kind == "nearObject":
        return _stored_vector(context, collection, vector, near, "nearObject")
    if vector.vectorizer is None:
        raise QueryError(f"{kind} needs a vectorizer, but vector '{vector.name}' brings its own vectors (module: none)", "use nearVector, or target a vectorized vector")
    if kind == "nearText":
        return await _moved(context, collection, vector, await vector.vectorizer.embed_text_query(list(near["concepts"]), context.keys), near)
    if "image" not in vector.module.queries:
        raise QueryError(f"nearImage needs an image module, but vector '{vector.name}' uses {vector.module.name}", "target a multi2vec vector")
    try:
        image = base64.b64decode(near["image"], validate=True)
    except (binascii.Error, ValueError) as exc:
        raise QueryError(f"nearImage.image is not valid base64 ({exc})", "send the image file's bytes as standard base64") from exc
    return await vector.vectorizer.embed_image_query(image, context.keys)


async def near_hits(context: QueryContext, collection: CompiledCollection, kind: str, near: Mapping[str, Any], limit: int, allowed: Collection[str] | None) -> tuple[CompiledVector, list[Hit]]:
    """The searched vector and the nearest ids, without reading objects."""
    vector = target_vector(collection, near.get("targetVectors"))
    threshold = max_distance(vector, near)
    query = await query_vector(context, collection, vector, kind, near)
    if context.engine.searches_inline(vector):
        return vector, context.engine.search_hits(collection, vector, query, limit, 0, threshold, allowed)
    return vector, await anyio.to_thread.run_sync(context.engine.search_hits, collection, vector, query, limit, 0, threshold, allowed)


async def near_rows(context: QueryContext, collection: CompiledCollection, kind: str, near: Mapping[str, Any], limit: int, allowed: Collection[str] | None) -> list[Row]:
    vector, hits = await near_hits(context, collection, kind, near, limit, allowed)
    objects = await _load(context, collection, [h.id for h in hits])
    return [Row(objects[h.id], vector, distance=h.distance) for h in hits if h.id in objects]


async def _load(context: QueryContext, collection: CompiledCollection, ids: list[str]) -> dict[str, StoredObject]:
    if len(ids) <= 16 and not context.engine.writing:  # a page of results: cheaper on the event loop than a thread hop
        return context.engine.store.get_many(collection.name, ids)
    return await anyio.to_thread.run_sync(context.engine.store.get_many, collection.name, ids)


async def near_objects(context: QueryContext, collection: CompiledCollection, kind: str, near: Mapping[str, Any], limit: int, allowed: Collection[str] | None) -> list[StoredObject]:
    return [row.object for row in await near_rows(context, collection, kind, near, limit, allowed)]


# -- keyword search ---------------------------------------------------------------


def _properties(collection: CompiledCollection, names: Sequence[str] | None) -> list[tuple[str, float]] | None:
    """Parse ["title^2", "body"] into (name, boost) pairs, checking each is BM25-searchable."""
    if not names:
        return None
    parsed = []
    for entry in names:
        name, _, boost = entry.partition("^")
        prop = collection.spec.find_property(name)
        if prop is None or not prop.searchable:
            searchable = ", ".join(p.name for p in collection.spec.properties if p.searchable) or "none"
            raise QueryError(f"'{name}' is not a searchable property of '{collection.name}'", f"searchable properties: {searchable}")
        try:
            weight = float(boost) if boost else 1.0
        except ValueError:
            raise QueryError(f"boost in {entry!r} is not a number", "write it like title^2") from None
        parsed.append((name, weight))
    return parsed


def _operator(search_operator: Mapping[str, Any] | None) -> tuple[str, int]:
    if not search_operator:
        return "Or", 1
    minimum = search_operator.get("minimumOrTokensMatch")
    if minimum is not None and (search_operator["operator"] != "Or" or minimum < 1):
        raise QueryError("minimumOrTokensMatch needs operator Or and a value of at least 1", "use {operator: Or, minimumOrTokensMatch: 2}")
    return search_operator["operator"], minimum or 1


def keyword_hits(
    context: QueryContext, collection: CompiledCollection, query: str, limit: int, properties: Sequence[str] | None, search_operator: Mapping[str, Any] | None, allowed: Collection[str] | None
) -> list[KeywordHit]:
    index = context.engine.keyword_index(collection)
    operator, minimum = _operator(search_operator)
    return index.search(query, limit, _properties(collection, properties), operator, minimum, allowed, explain=True)


async def bm25_rows(context: QueryContext, collection: CompiledCollection, bm25: Mapping[str, Any], limit: int, allowed: Collection[str] | None) -> list[Row]:
    hits = await anyio.to_thread.run_sync(keyword_hits, context, collection, bm25["query"], limit, bm25.get("properties"), bm25.get("searchOperator"), allowed)
    objects = await _load(context, collection, [h.id for h in hits])
    return [Row(objects[h.id], score=h.score, explain=h.explain) for h in hits if h.id in objects]


# -- hybrid -------------------------------------------------------------------------


async def _hybrid_vector_leg(
    context: QueryContext, collection: CompiledCollection, hybrid: Mapping[str, Any], fetch: int, allowed: Collection[str] | None
) -> tuple[str, CompiledVector | None, list[Hit]]:
    searches = hybrid.get("searches") or []
    if len(searches) > 1:
        raise QueryError("hybrid takes one entry in searches", "keep one of nearText, nearVector, nearImage")
    if searches:
        given = [k for k in ("nearText", "nearVector", "nearImage") if searches[0].get(k) is not None]
        if len(given) != 1:
            raise QueryError("each hybrid searches entry needs exactly one of nearText, nearVector, nearImage", "e.g. searches: [{nearImage: {image: \"...\"}}]")
        near = {**searches[0][given[0]]}
        near.setdefault("targetVectors", hybrid.get("targetVectors"))
        return (f"vector,{given[0]}", *await near_hits(context, collection, given[0], near, fetch, allowed))
    targets = hybrid.get("targetVectors")
    if hybrid.get("vector") is not None:
        near = {"vector": hybrid["vector"], "targetVectors": targets}
        return ("vector,hybridVector", *await near_hits(context, collection, "nearVector", near, fetch, allowed))
    if not hybrid.get("query"):
        raise QueryError("hybrid with alpha > 0 needs a query, a vector or searches", "add query: \"...\"")
    near = {"concepts": [hybrid["query"]], "targetVectors": targets}
    return ("vector,hybridVector", *await near_hits(context, collection, "nearText", near, fetch, allowed))


async def hybrid_rows(context: QueryContext, collection: CompiledCollection, hybrid: Mapping[str, Any], limit: int, allowed: Collection[str] | None) -> list[Row]:
    alpha = DEFAULT_ALPHA if hybrid.get("alpha") is None else float(hybrid["alpha"])
    if not 0.0 <= alpha <= 1.0:
        raise QueryError(f"alpha should be between 0.0 and 1.0, got {alpha}", "0 is pure keyword search, 1 pure vector search")
    fetch = max(HYBRID_MIN_CANDIDATES, limit)
    query = hybrid.get("query") or ""

    async def keyword() -> list[KeywordHit]:
        if alpha >= 1.0 or not query:
            return []
        return await anyio.to_thread.run_sync(keyword_hits, context, collection, query, fetch, hybrid.get("properties"), hybrid.get("bm25SearchOperator"), allowed)

    async def vector() -> tuple[str, CompiledVector | None, list[Hit]]:
        return ("vector,hybridVector", None, []) if alpha <= 0.0 else await _hybrid_vector_leg(context, collection, hybrid, fetch, allowed)

    keyword_result, (vector_name, searched, vector_result) = await asyncio.gather(keyword(), vector())
    cap = hybrid.get("maxVectorDistance")
    if cap is not None:
        # A relevance gate: far vector hits go, and keyword hits the vector side did not keep go too.
        vector_result = [h for h in vector_result if h.distance <= cap]
        kept = {h.id for h in vector_result}
        keyword_result = [h for h in keyword_result if h.id in kept]
    legs = [
        Leg("keyword,bm25", 1.0 - alpha, [LegHit(h.id, h.score, h.explain) for h in keyword_result]),
        Leg(vector_name, alpha, [LegHit(h.id, 1.0 - h.distance) for h in vector_result]),
    ]
    fuse = ranked_fusion if hybrid.get("fusionType") == "rankedFusion" else relative_score_fusion
    # Fuse ids and scores first; read only the objects that make the page.
    fused = fuse([leg for leg in legs if leg.weight > 0])[:limit]
    objects = await _load(context, collection, [f.id for f in fused])
    distances = {h.id: h.distance for h in vector_result}
    return [Row(objects[f.id], searched, distances.get(f.id), f.score, f.explain) for f in fused if f.id in objects]
