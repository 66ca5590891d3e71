"""``Weaviate/Search``: a SearchRequest becomes the arguments of its GraphQL twin, run by the same query code.

``search_arguments`` gives exactly what ``Get { Class(...) }`` would receive from
graphql-core (``where``, ``nearVector``, ``hybrid`` …), so the rows come from
``searchd.query.get`` as they do for GraphQL; only the reply's encoding is gRPC's.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from google.protobuf import unknown_fields

from searchd.catalog import CompiledCollection
from searchd.config.spec import Distance, LimitsSpec, PropertySpec
from searchd.errors import QueryError
from searchd.grpc.codec import near_vector_input, set_value, target_names, uuid_bytes, vector_bytes, wanted_properties, where_of
from searchd.grpc.protocol import Protocol
from searchd.query.get import Shown, get_rows, grouped_rows
from searchd.query.search import QueryContext, Row

_UNSUPPORTED_NEAR = ("near_audio", "near_video", "near_depth", "near_thermal", "near_imu")
# SearchRequest fields left out of searchd's .proto files, which a client may still send.
_LEFT_OUT = {
    60: ("generative search (RAG) is not supported: searchd has no generative modules", "query without generate, and pass the results to your model yourself"),
    62: ("boosts are not supported", "query without boost"),
}
_FUSION = {1: "rankedFusion", 2: "relativeScoreFusion"}


class Unsupported(QueryError):
    """A request for something searchd does not do at all (answered UNIMPLEMENTED, not INVALID_ARGUMENT)."""


def _distances(message: Any) -> dict[str, Any]:
    found: dict[str, Any] = {}
    if message.HasField("certainty"):
        found["certainty"] = message.certainty
    if message.HasField("distance"):
        found["distance"] = message.distance
    return found


def _no_selection(message: Any, what: str) -> None:
    if message.HasField("selection"):
        raise Unsupported(f"{what}: diversity selection (MMR) is not supported", "remove the diversity selection")


def _targets(message: Any) -> dict[str, Any]:
    names = target_names(message)
    return {"targetVectors": names} if names else {}


def near_vector_argument(message: Any) -> dict[str, Any]:
    _no_selection(message, "near_vector")
    vector, targets = near_vector_input(message)
    return {"vector": vector, **_distances(message), **({"targetVectors": targets} if targets else {})}


def _move(move: Any) -> dict[str, Any]:
    return {"force": move.force, "concepts": list(move.concepts), "objects": [{"id": u} for u in move.uuids]}


def near_text_argument(message: Any) -> dict[str, Any]:
    _no_selection(message, "near_text")
    near: dict[str, Any] = {"concepts": list(message.query), **_distances(message), **_targets(message)}
    if message.HasField("move_to"):
        near["moveTo"] = _move(message.move_to)
    if message.HasField("move_away"):
        near["moveAwayFrom"] = _move(message.move_away)
    return near


def near_object_argument(message: Any) -> dict[str, Any]:
    _no_selection(message, "near_object")
    return {"id": message.id, **_distances(message), **_targets(message)}


def near_image_argument(message: Any) -> dict[str, Any]:
    _no_selection(message, "near_image")
    return {"image": message.image, **_distances(message), **_targets(message)}


def _search_operator(options: Any) -> dict[str, Any]:
    if options.operator == 3:
        raise QueryError("the AndCross search operator is not supported", "use And or Or")
    operator: dict[str, Any] = {"operator": "And" if options.operator == 2 else "Or"}
    if options.HasField("minimum_or_tokens_match"):
        operator["minimumOrTokensMatch"] = options.minimum_or_tokens_match
    return operator


def bm25_argument(message: Any) -> dict[str, Any]:
    bm25: dict[str, Any] = {"query": message.query}
    if len(message.properties):
        bm25["properties"] = list(message.properties)
    if message.HasField("search_operator"):
        bm25["searchOperator"] = _search_operator(message.search_operator)
    return bm25


def hybrid_argument(message: Any) -> dict[str, Any]:
    _no_selection(message, "hybrid")
    hybrid: dict[str, Any] = {"query": message.query}
    if message.use_alpha_param:
        if message.HasField("alpha_param"):
            hybrid["alpha"] = message.alpha_param
    else:
        hybrid["alpha"] = message.alpha
    if len(message.properties):
        hybrid["properties"] = list(message.properties)
    if message.fusion_type in _FUSION:
        hybrid["fusionType"] = _FUSION[message.fusion_type]
    targets = _targets(message)
    if message.HasField("vector_distance"):
        hybrid["maxVectorDistance"] = message.vector_distance
    if message.HasField("bm25_search_operator"):
        hybrid["bm25SearchOperator"] = _search_operator(message.bm25_search_operator)
    if message.HasField("near_text"):
        hybrid["searches"] = [{"nearText": near_text_argument(message.near_text)}]
    elif message.HasField("near_vector"):
        near = near_vector_argument(message.near_vector)
        hybrid["searches"] = [{"nearVector": near}]
        targets = targets or {k: v for k, v in near.items() if k == "targetVectors"}
    elif len(message.vectors) or message.vector_bytes or len(message.vector):
        vector, named = near_vector_input(message, "hybrid vector")
        hybrid["vector"] = vector
        targets = targets or ({"targetVectors": named} if named else {})
    return {**hybrid, **targets}


def search_arguments(collection: CompiledCollection, request: Any, limits: LimitsSpec) -> dict[str, Any]:
    """The GraphQL ``Get`` arguments a SearchRequest stands for."""
    unknown = unknown_fields.UnknownFieldSet(request)
    for position in range(len(unknown)):
        number = unknown[position].field_number
        if number in _LEFT_OUT:
            raise Unsupported(*_LEFT_OUT[number])
    for name in _UNSUPPORTED_NEAR:
        if request.HasField(name):
            raise Unsupported(f"{name} is not supported: searchd has no {name[5:]} vectorizer", "search with near_text, near_image, near_vector or near_object")
    if request.HasField("rerank"):
        raise Unsupported("rerank is not supported: searchd has no reranker modules", "remove rerank from the query")
    if request.tenant:
        raise QueryError(f"collection '{collection.name}' has no tenants (multi-tenancy is not supported)", "leave the tenant out")
    args: dict[str, Any] = {}
    if request.limit:
        args["limit"] = request.limit
    if request.offset:
        args["offset"] = request.offset
    if request.autocut:
        args["autocut"] = request.autocut
    if request.after:
        args["after"] = request.after
    if len(request.sort_by):
        args["sort"] = [{"path": list(s.path), "order": "asc" if s.ascending else "desc"} for s in request.sort_by]
    if request.HasField("filters"):
        args["where"] = where_of(collection, request.filters, limits)  # refused past maxFilterOperands / maxFilterDepth
    if request.HasField("group_by"):
        group = request.group_by
        args["groupBy"] = {"path": list(group.path), "groups": group.number_of_groups, "objectsPerGroup": group.objects_per_group}
    searches = {
        "hybrid_search": ("hybrid", hybrid_argument),
        "bm25_search": ("bm25", bm25_argument),
        "near_vector": ("nearVector", near_vector_argument),
        "near_object": ("nearObject", near_object_argument),
        "near_text": ("nearText", near_text_argument),
        "near_image": ("nearImage", near_image_argument),
    }
    for field, (name, convert) in searches.items():
        if request.HasField(field):
            args[name] = convert(getattr(request, field))
    return args


class Reply:
    """Encodes rows as SearchResults, showing what the request's metadata and properties ask for."""

    def __init__(self, protocol: Protocol, collection: CompiledCollection, request: Any) -> None:
        self.protocol = protocol
        self.collection = collection
        self.metadata = request.metadata if request.HasField("metadata") else protocol.MetadataRequest(uuid=True)
        requested = request.properties if request.HasField("properties") else None
        names: Sequence[str] | None = None
        if requested is not None and not requested.return_all_nonref_properties:
            if len(requested.ref_properties) or len(requested.object_properties):
                raise QueryError("references and object properties are not supported (searchd has neither)", "ask for the collection's declared properties")
            names = list(requested.non_ref_properties)
        self.properties: list[PropertySpec] = wanted_properties(collection, names)
        meta = self.metadata
        wanted_vectors = list(meta.vectors)
        for name in wanted_vectors:
            collection.vector(name)  # an unknown name: NotFound, with the names it has
        self.vector_names = list(collection.vectors) if meta.vector else wanted_vectors
        self.shown = Shown(
            objects=bool(self.properties) or meta.creation_time_unix or meta.last_update_time_unix or bool(self.vector_names),
            vectors=bool(self.vector_names),
            explain=meta.explain_score,
        )

    def result(self, row: Row, into: Any) -> None:
        meta, out = self.metadata, into.metadata
        out.id = row.id
        out.id_as_bytes = uuid_bytes(row.id)
        obj = row.object
        if obj is not None:
            fields = into.properties.non_ref_props.fields
            for prop in self.properties:
                value = obj.properties.get(prop.name)
                if value is not None:
                    set_value(fields[prop.name], prop, value)
            if meta.creation_time_unix:
                out.creation_time_unix, out.creation_time_unix_present = obj.created_ms, True
            if meta.last_update_time_unix:
                out.last_update_time_unix, out.last_update_time_unix_present = obj.updated_ms, True
            for name in self.vector_names:
                if name in obj.vectors:
                    data, kind = vector_bytes(obj.vectors[name])
                    out.vectors.add(name=name, vector_bytes=data, type=kind)
        if row.distance is not None:
            if meta.distance:
                out.distance, out.distance_present = row.distance, True
            if meta.certainty and row.vector is not None and row.vector.spec.index.distance is Distance.COSINE:
                out.certainty, out.certainty_present = 1.0 - row.distance / 2.0, True
        if meta.score and row.score is not None:
            out.score, out.score_present = row.score, True
        if meta.explain_score and row.explain is not None:
            out.explain_score, out.explain_score_present = row.explain, True


async def run_search(protocol: Protocol, context: QueryContext, request: Any) -> Any:
    """The SearchReply for a request, computed as its GraphQL twin would be."""
    collection = context.catalog.collection(request.collection)
    args = search_arguments(collection, request, context.catalog.spec.server.limits)
    reply = Reply(protocol, collection, request)
    answer = protocol.SearchReply()
    if args.get("groupBy") is None:
        for row in await get_rows(context, collection, args, reply.shown):
            reply.result(row, answer.results.add())
        return answer
    # groupBy reads the objects anyway: the group's value is one of their properties.
    shown = Shown(objects=True, vectors=reply.shown.vectors, explain=reply.shown.explain)
    for value, members in await grouped_rows(context, collection, args, shown):
        group = answer.group_by_results.add(name=value, number_of_objects=len(members))
        distances = [m.distance for m in members if m.distance is not None]
        if distances:
            group.min_distance, group.max_distance = min(distances), max(distances)
        for member in members:
            reply.result(member, group.objects.add())
    return answer
