"""Running searches for the resolvers: filters → allow-lists, near* vectors, BM25, hybrid fusion.

Each function returns ``Row``s: a doc and its id plus whatever the search measured
(distance, score, explanation).  Objects are read afterwards, and only when the
query shows something of them (``read_objects``).  Blocking work (filters, index
searches, the store) runs in worker threads, never on the event loop.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import time
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from searchd.config.spec import Distance
from searchd.deadline import timed_out
from searchd.errors import QueryError
from searchd.index import Hit
from searchd.index.base import AllowList
from searchd.index.bm25 import KeywordHit
from searchd.modules.base import NO_KEYS
from searchd.query.filters import parse_where
from searchd.query.fusion import Leg, LegHit, ScoredLeg, fused_top, ranked_fusion, relative_score_fusion
from searchd.records import StoredObject
from searchd.where import Filter

if TYPE_CHECKING:
    from searchd.catalog import Catalog, CompiledCollection, CompiledVector
    from searchd.engine import Engine

NEAR_ARGUMENTS = ("nearVector", "nearObject", "nearText", "nearImage")
HYBRID_MIN_CANDIDATES = 100  # each leg fetches at least this many (QUERY_HYBRID_MAXIMUM_RESULTS)
DEFAULT_ALPHA = 0.75
# One request's collection queries (aliases) run at most this many at once, so one request cannot take every worker thread.
PARALLEL_SEARCHES = 4


@dataclass(frozen=True)
class QueryContext:
    """What resolvers see: the catalog snapshot the request started with, and the engine."""

    catalog: Catalog
    engine: Engine
    keys: Mapping[str, str] = field(default_factory=lambda: NO_KEYS)  # the request's provider headers (X-JinaAI-Api-Key, ...)
    deadline: float | None = None  # time.monotonic() after which no further collection query starts
    _parallel: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(PARALLEL_SEARCHES), repr=False, compare=False)

    @contextlib.asynccontextmanager
    async def searching(self) -> AsyncIterator[None]:
        """Around each collection query: waits for one of the request's parallel turns, and starts nothing past the deadline."""
        async with self._parallel:
            if self.deadline is not None and time.monotonic() >= self.deadline:
                raise timed_out(self.catalog.spec.server.limits.query_timeout)
            yield


@dataclass
class Row:
    """One result: a doc and its id, what the search measured, and the object once it is read."""

    doc: int
    id: str
    vector: CompiledVector | None = None  # the vector searched, if any
    distance: float | None = None
    score: float | None = None
    explain: str | None = None
    object: StoredObject | None = None  # read only when the query shows properties, timestamps or vectors

    @property
    def rank_value(self) -> float:
        """What autocut looks at: distance for vector search, otherwise the negated score."""
        return self.distance if self.distance is not None else -(self.score or 0.0)


def rows_of(context: QueryContext, collection: CompiledCollection, found: Sequence[tuple[int, float | None, float | None, str | None]], vector: CompiledVector | None = None) -> list[Row]:
    """Rows for (doc, distance, score, explanation) hits, skipping docs deleted since they were found."""
    ids = context.engine.ids(collection.name, [f[0] for f in found])
    return [Row(doc, object_id, vector, distance, score, explain) for (doc, distance, score, explain), object_id in zip(found, ids) if object_id is not None]


async def read_objects(context: QueryContext, collection: CompiledCollection, rows: list[Row], vectors: bool = False) -> list[Row]:
    """Read the rows' objects (in a worker thread); rows whose object was deleted meanwhile are dropped."""
    if not rows:
        return rows
    objects = await context.engine.offload(context.engine.objects, collection.name, [r.doc for r in rows], vectors)
    for row in rows:
        row.object = objects.get(row.doc)
    return [r for r in rows if r.object is not None]


# -- filters ---------------------------------------------------------------------


def parse_filter(collection: CompiledCollection, where: Any) -> Filter | None:
    return None if where is None else parse_where(collection, where)


async def allowed_docs(context: QueryContext, collection: CompiledCollection, where: Filter | None) -> AllowList | None:
    if where is None:
        return None
    at_once = context.engine.allowed_at_once(collection.name, where)
    return at_once if at_once is not None else await context.engine.offload(context.engine.allowed, collection.name, where)


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


async def _stored_vector(context: QueryContext, collection: CompiledCollection, vector: CompiledVector, reference: Mapping[str, Any], what: str) -> np.ndarray:
    stored = await context.engine.offload(context.engine.get, context.catalog, collection.name, _object_id(reference, what))
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
        targets += [await _stored_vector(context, collection, vector, o, key) for o in move.get("objects") or []]
        if not targets:
            raise QueryError(f"{key} needs concepts or objects", f"add concepts: [\"...\"] to {key}")
        target = np.mean(np.stack(targets), axis=0)
        query = query * (1 - 0.5 * force) + target * 0.5 * force if key == "moveTo" else query + 0.5 * force * (query - target)
    return query


async def query_vector(context: QueryContext, collection: CompiledCollection, vector: CompiledVector, kind: str, near: Mapping[str, Any]) -> np.ndarray:
    if kind == "nearVector":
        with np.errstate(over="ignore"):  # a number beyond float32's range becomes inf: refused below
            query = np.asarray(near["vector"], dtype=np.float32)
        if not np.isfinite(query).all():
            raise QueryError("nearVector holds a number outside the 32-bit float range (about ±3.4e38)", "send finite numbers of a normal size")
        if query.ndim == 2 and not vector.is_multi:
            raise QueryError(f"nearVector got a multi-vector, but vector '{vector.name}' holds single vectors", "send a flat list of numbers")
        if query.shape[-1] != vector.dimensions:
            raise QueryError(
                f"nearVector has {query.shape[-1]} dimensions, but vector '{vector.name}' has {vector.dimensions}",
                f"send {vector.dimensions} numbers{' per row' if vector.is_multi else ''}, or choose another target vector",
            )
        return query
    if kind == "nearObject":
        return await _stored_vector(context, collection, vector, near, "nearObject")
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


async def near_hits(context: QueryContext, collection: CompiledCollection, kind: str, near: Mapping[str, Any], limit: int, allowed: AllowList | None) -> tuple[CompiledVector, list[Hit]]:
    """The searched vector and the nearest docs, without reading objects."""
    vector = target_vector(collection, near.get("targetVectors"))
    threshold = max_distance(vector, near)
    query = await query_vector(context, collection, vector, kind, near)
    return vector, await context.engine.offload(context.engine.search_hits, collection, vector, query, limit, 0, threshold, allowed)


async def near_rows(context: QueryContext, collection: CompiledCollection, kind: str, near: Mapping[str, Any], limit: int, allowed: AllowList | None) -> list[Row]:
    vector, hits = await near_hits(context, collection, kind, near, limit, allowed)
    return rows_of(context, collection, [(h.id, h.distance, None, None) for h in hits], vector)


async def near_objects(context: QueryContext, collection: CompiledCollection, kind: str, near: Mapping[str, Any], limit: int, allowed: AllowList | None) -> list[StoredObject]:
    rows = await read_objects(context, collection, await near_rows(context, collection, kind, near, limit, allowed))
    return [row.object for row in rows if row.object is not None]


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
    context: QueryContext,
    collection: CompiledCollection,
    query: str,
    limit: int,
    properties: Sequence[str] | None,
    search_operator: Mapping[str, Any] | None,
    allowed: AllowList | None,
    explain: bool = True,
    ordered: bool = True,
) -> list[KeywordHit]:
    """The best ``limit`` docs for ``query``; ``ordered``: by score then id (ranks need it; relative-score fusion does not)."""
    index = context.engine.keyword_index(collection)
    operator, minimum = _operator(search_operator)
    hits = index.search(query, limit, _properties(collection, properties), operator, minimum, allowed, explain=explain)
    kept = _best_by_id(context, collection, [h.id for h in hits], [h.score for h in hits], limit, ordered)
    return hits if kept is None else [hits[i] for i in kept]


def keyword_columns(
    context: QueryContext,
    collection: CompiledCollection,
    query: str,
    limit: int,
    properties: Sequence[str] | None,
    search_operator: Mapping[str, Any] | None,
    allowed: AllowList | None,
    ordered: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """``keyword_hits`` without explanations, as (docs, scores) arrays: hybrid's fusion works on arrays."""
    index = context.engine.keyword_index(collection)
    operator, minimum = _operator(search_operator)
    docs, scores = index.search_columns(query, limit, _properties(collection, properties), operator, minimum, allowed)
    kept = _best_by_id(context, collection, docs.tolist(), scores.tolist(), limit, ordered)
    return (docs, scores) if kept is None else (docs[kept], scores[kept])


def _best_by_id(context: QueryContext, collection: CompiledCollection, docs: list[int], scores: list[float], limit: int, ordered: bool) -> list[int] | None:
    """Which of a BM25 search's hits (best first, then every hit tied with the limit-th) to keep: the ``limit`` best, equal
    scores ordered by id (``ordered``) or only the ties at the cut chosen by id, with ids read only for those.  None: all of them.
    """
    if ordered:
        ids = context.engine.ids(collection.name, docs)
        return sorted(range(len(docs)), key=lambda i: (-scores[i], ids[i] or ""))[:limit]  # equal scores: by id, deterministically
    if len(docs) <= limit:
        return None
    last = scores[limit - 1]
    first_tied = scores.index(last)
    tied = range(first_tied, len(docs))
    ids = context.engine.ids(collection.name, [docs[i] for i in tied])
    chosen = sorted(zip(tied, ids), key=lambda pair: pair[1] or "")[: limit - first_tied]
    return [*range(first_tied), *(i for i, _ in chosen)]


async def bm25_rows(context: QueryContext, collection: CompiledCollection, bm25: Mapping[str, Any], limit: int, allowed: AllowList | None, explain: bool = True) -> list[Row]:
    hits = await context.engine.offload(keyword_hits, context, collection, bm25["query"], limit, bm25.get("properties"), bm25.get("searchOperator"), allowed, explain)
    return rows_of(context, collection, [(h.id, None, h.score, h.explain) for h in hits])


# -- hybrid -------------------------------------------------------------------------


async def _hybrid_vector_query(
    context: QueryContext, collection: CompiledCollection, hybrid: Mapping[str, Any]
) -> tuple[str, CompiledVector, np.ndarray, float | None]:
    """The vector side of a hybrid: its leg's name, the vector searched, the query vector and its distance bound."""
    searches = hybrid.get("searches") or []
    if len(searches) > 1:
        raise QueryError("hybrid takes one entry in searches", "keep one of nearText, nearVector, nearImage")
    if searches:
        given = [k for k in ("nearText", "nearVector", "nearImage") if searches[0].get(k) is not None]
        if len(given) != 1:
            raise QueryError("each hybrid searches entry needs exactly one of nearText, nearVector, nearImage", "e.g. searches: [{nearImage: {image: \"...\"}}]")
        name, kind, near = f"vector,{given[0]}", given[0], {**searches[0][given[0]]}
        near.setdefault("targetVectors", hybrid.get("targetVectors"))
    elif hybrid.get("vector") is not None:
        name, kind, near = "vector,hybridVector", "nearVector", {"vector": hybrid["vector"], "targetVectors": hybrid.get("targetVectors")}
    elif not hybrid.get("query"):
        raise QueryError("hybrid with alpha > 0 needs a query, a vector or searches", "add query: \"...\"")
    else:
        searched = target_vector(collection, hybrid.get("targetVectors"))
        if searched.vectorizer is None:
            raise QueryError(
                f"hybrid needs a vector for its vector side: '{searched.name}' brings its own vectors (module: none), so the query text cannot be embedded",
                f"send hybrid: {{query: \"...\", vector: [...]}} with {searched.dimensions} numbers{' per row' if searched.is_multi else ''}, or alpha: 0 for keyword search only",
            )
        name, kind, near = "vector,hybridVector", "nearText", {"concepts": [hybrid["query"]], "targetVectors": hybrid.get("targetVectors")}
    searched = target_vector(collection, near.get("targetVectors"))
    threshold = max_distance(searched, near)
    return name, searched, await query_vector(context, collection, searched, kind, near), threshold


class _IdsOnDemand(Mapping[int, str]):
    """Doc → id, looked up only for the docs fusion asks about (ties at the cut), not for every candidate."""

    def __init__(self, context: QueryContext, collection: str) -> None:
        self._context, self._collection = context, collection

    def __getitem__(self, doc: int) -> str:
        return self._context.engine.ids(self._collection, [doc])[0] or ""

    def __iter__(self) -> Iterator[int]:
        raise TypeError("ids are looked up one by one")

    def __len__(self) -> int:
        raise TypeError("ids are looked up one by one")


async def hybrid_rows(
    context: QueryContext, collection: CompiledCollection, hybrid: Mapping[str, Any], limit: int, allowed: AllowList | None, explain: bool = True
) -> list[Row]:
    alpha = DEFAULT_ALPHA if hybrid.get("alpha") is None else float(hybrid["alpha"])
    if not 0.0 <= alpha <= 1.0:
        raise QueryError(f"alpha should be between 0.0 and 1.0, got {alpha}", "0 is pure keyword search, 1 pure vector search")
    # The query vector first (it may be embedded by a provider); then both legs and the fusion in one worker call.
    vector_side = await _hybrid_vector_query(context, collection, hybrid) if alpha > 0.0 else None
    return await context.engine.offload(_hybrid_fused, context, collection, hybrid, alpha, vector_side, limit, allowed, explain)


def _hybrid_fused(
    context: QueryContext,
    collection: CompiledCollection,
    hybrid: Mapping[str, Any],
    alpha: float,
    vector_side: tuple[str, CompiledVector, np.ndarray, float | None] | None,
    limit: int,
    allowed: AllowList | None,
    explain: bool,
) -> list[Row]:
    """Both legs at hybrid's candidate depth, then the fusion (in a worker thread: it is all CPU).

    Without explanations (the usual query) the legs stay arrays and fuse in numpy; explanations fuse hits by id.
    """
    fetch = max(HYBRID_MIN_CANDIDATES, limit)
    ranked = hybrid.get("fusionType") == "rankedFusion"
    query = hybrid.get("query") or ""
    keyword_wanted = alpha < 1.0 and bool(query)
    vector_name, searched = "vector,hybridVector", None
    vector_docs, vector_distances = _NO_DOCS, _NO_NUMBERS
    if vector_side is not None:
        vector_name, searched, near_vector, threshold = vector_side
        vector_docs, vector_distances = context.engine.search_columns(collection, searched, near_vector, fetch, threshold, allowed)
    # maxVectorDistance is a relevance gate: far vector hits go, and keyword hits the vector side did not keep go too.
    cap = hybrid.get("maxVectorDistance")
    if cap is not None:
        near = vector_distances <= cap
        vector_docs, vector_distances = vector_docs[near], vector_distances[near]
    keyword_args = (query, fetch, hybrid.get("properties"), hybrid.get("bm25SearchOperator"), allowed)
    if not explain:
        keyword_docs, keyword_scores = keyword_columns(context, collection, *keyword_args, ranked) if keyword_wanted else (_NO_DOCS, _NO_NUMBERS)
        if cap is not None:
            gated = np.isin(keyword_docs, vector_docs)
            keyword_docs, keyword_scores = keyword_docs[gated], keyword_scores[gated]
        return _fused_rows(context, collection, searched, (keyword_docs, keyword_scores), (vector_docs, vector_distances), alpha, ranked, limit)
    keyword_result = keyword_hits(context, collection, *keyword_args, True, True) if keyword_wanted else []
    if cap is not None:
        kept = set(vector_docs.tolist())
        keyword_result = [h for h in keyword_result if h.id in kept]
    # Fusion ranks and explains by id (ties too, as Weaviate does): docs become ids first.
    vector_result = list(zip(vector_docs.tolist(), vector_distances.tolist()))
    docs = [h.id for h in keyword_result] + [doc for doc, _ in vector_result]
    ids = dict(zip(docs, context.engine.ids(collection.name, docs)))
    distances = dict(vector_result)
    doc_of = {object_id: doc for doc, object_id in ids.items() if object_id is not None}
    legs = [
        Leg("keyword,bm25", 1.0 - alpha, [LegHit(i, h.score, h.explain) for h in keyword_result if (i := ids[h.id]) is not None]),
        Leg(vector_name, alpha, [LegHit(i, 1.0 - distance) for doc, distance in vector_result if (i := ids[doc]) is not None]),
    ]
    fuse = ranked_fusion if ranked else relative_score_fusion
    fused = fuse([leg for leg in legs if leg.weight > 0], explain)[:limit]
    return [Row(doc_of[f.id], f.id, searched, distances.get(doc_of[f.id]), f.score, f.explain) for f in fused]


_NO_DOCS = np.empty(0, dtype=np.int64)
_NO_NUMBERS = np.empty(0, dtype=np.float64)


def _fused_rows(
    context: QueryContext,
    collection: CompiledCollection,
    searched: CompiledVector | None,
    keyword: tuple[np.ndarray, np.ndarray],
    vector: tuple[np.ndarray, np.ndarray],
    alpha: float,
    ranked: bool,
    limit: int,
) -> list[Row]:
    """Hybrid without explanations: the legs' (docs, scores or distances) fused in numpy; ids are read for the rows kept."""
    (keyword_docs, keyword_scores), (vector_docs, vector_distances) = keyword, vector
    # Docs deleted since the legs ran drop out, as their ids would be gone.
    keep_keyword, keep_vector = context.engine.alive(collection.name, keyword_docs), context.engine.alive(collection.name, vector_docs)
    legs = [
        ScoredLeg(1.0 - alpha, keyword_docs[keep_keyword], keyword_scores[keep_keyword]),
        ScoredLeg(alpha, vector_docs[keep_vector], 1.0 - vector_distances[keep_vector]),
    ]
    top = fused_top(legs, ranked, limit, _IdsOnDemand(context, collection.name))
    ids = context.engine.ids(collection.name, [doc for doc, _ in top])
    distances = _distances_of(vector_docs, vector_distances, [doc for doc, _ in top])
    return [Row(doc, object_id, searched, distance, score) for (doc, score), object_id, distance in zip(top, ids, distances) if object_id is not None]


def _distances_of(docs: np.ndarray, distances: np.ndarray, wanted: list[int]) -> list[float | None]:
    """The distance of each wanted doc in a vector leg (None if the leg did not find it); cheaper than a dict of the leg."""
    if not len(docs) or not wanted:
        return [None] * len(wanted)
    order = np.argsort(docs)
    at = np.minimum(np.searchsorted(docs[order], wanted), len(docs) - 1)
    found = (docs[order[at]] == wanted).tolist()
    return [d if ok else None for d, ok in zip(distances[order[at]].tolist(), found)]
