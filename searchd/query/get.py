"""Resolvers for ``Get { <Class>(...) }``: pick the vector, embed the query, search, shape the result."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio.to_thread
import numpy as np
from graphql import GraphQLResolveInfo

from searchd.config.spec import Distance
from searchd.errors import InvalidInput, QueryError
from searchd.index import Hit
from searchd.storage import StoredObject

if TYPE_CHECKING:
    from searchd.catalog import Catalog, CompiledCollection, CompiledVector
    from searchd.engine import Engine

NEAR_ARGUMENTS = ("nearVector", "nearObject", "nearText", "nearImage")


@dataclass(frozen=True)
class QueryContext:
    """What resolvers see: the catalog snapshot the request started with, and the engine."""

    catalog: Catalog
    engine: Engine


def _target_vector(collection: CompiledCollection, near: Mapping[str, Any]) -> CompiledVector:
    targets = near.get("targetVectors")
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


def _max_distance(vector: CompiledVector, near: Mapping[str, Any]) -> float | None:
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


def _object_id_of(near: Mapping[str, Any]) -> str:
    if near.get("id"):
        return str(near["id"])
    beacon = near.get("beacon")
    if beacon:
        return str(beacon).rstrip("/").rsplit("/", 1)[-1]
    raise QueryError("nearObject needs an id or a beacon", "add id: \"<uuid>\"")


async def _query_vector(context: QueryContext, collection: CompiledCollection, vector: CompiledVector, kind: str, near: Mapping[str, Any]) -> np.ndarray:
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
        stored = context.engine.get(context.catalog, collection.name, _object_id_of(near))
        if vector.name not in stored.vectors:
            raise QueryError(f"object '{stored.id}' has no '{vector.name}' vector", "choose a target vector the object has")
        return stored.vectors[vector.name]
    if vector.vectorizer is None:
        raise QueryError(f"{kind} needs a vectorizer, but vector '{vector.name}' brings its own vectors (module: none)", "use nearVector, or target a vectorized vector")
    if kind == "nearText":
        return await vector.vectorizer.embed_text_query(list(near["concepts"]))
    if "image" not in vector.module.modalities:
        raise QueryError(f"nearImage needs an image module, but vector '{vector.name}' uses {vector.module.name}", "target a multi2vec vector")
    try:
        image = base64.b64decode(near["image"], validate=True)
    except (binascii.Error, ValueError) as exc:
        raise QueryError(f"nearImage.image is not valid base64 ({exc})", "send the image file's bytes as standard base64") from exc
    return await vector.vectorizer.embed_image_query(image)


def _limits(catalog: Catalog, args: Mapping[str, Any]) -> tuple[int, int]:
    limits = catalog.spec.server.limits
    limit = args.get("limit")
    offset = args.get("offset") or 0
    limit = limits.query_limit_default if limit is None else limit
    if limit < 0 or offset < 0:
        raise QueryError("limit and offset must not be negative", "use 0 or a positive number")
    if limit + offset > limits.query_limit_max:
        raise QueryError(f"limit + offset is {limit + offset}, above the maximum of {limits.query_limit_max}", "page with a smaller limit and offset")
    return limit, offset


def _result(collection: CompiledCollection, obj: StoredObject, hit: Hit | None, searched: CompiledVector | None) -> dict[str, Any]:
    shown = searched or collection.default_vector
    additional: dict[str, Any] = {
        "id": obj.id,
        "creationTimeUnix": str(obj.created_ms),
        "lastUpdateTimeUnix": str(obj.updated_ms),
        "vectors": {name: vec.tolist() for name, vec in obj.vectors.items()},
        "vector": obj.vectors[shown.name].tolist() if shown is not None and shown.name in obj.vectors else None,
        "distance": None,
        "certainty": None,
    }
    if hit is not None and searched is not None:
        additional["distance"] = hit.distance
        if searched.spec.index.distance is Distance.COSINE:
            additional["certainty"] = 1.0 - hit.distance / 2.0
    result: dict[str, Any] = {p.name: obj.properties.get(p.name) for p in collection.spec.properties}
    result["_additional"] = additional
    return result


def resolve_get(class_name: str) -> Callable[..., Awaitable[list[dict[str, Any]]]]:
    async def resolve(_root: Any, info: GraphQLResolveInfo, **args: Any) -> list[dict[str, Any]]:
        context: QueryContext = info.context
        try:
            return await _run(context, class_name, args)
        except InvalidInput as exc:  # e.g. a malformed id: a query error in GraphQL terms
            raise QueryError(exc.message, exc.hint) from exc

    return resolve


async def _run(context: QueryContext, class_name: str, args: Mapping[str, Any]) -> list[dict[str, Any]]:
    collection = context.catalog.collection(class_name)
    limit, offset = _limits(context.catalog, args)
    given = [k for k in NEAR_ARGUMENTS if args.get(k) is not None]
    if len(given) > 1:
        raise QueryError(f"only one of {', '.join(NEAR_ARGUMENTS)} may be given; got {', '.join(given)}", "keep one search argument")
    if not given:
        objects = await anyio.to_thread.run_sync(context.engine.store.list, collection.name, limit, offset)
        return [_result(collection, obj, None, None) for obj in objects]
    kind = given[0]
    near = args[kind]
    vector = _target_vector(collection, near)
    max_distance = _max_distance(vector, near)
    query = await _query_vector(context, collection, vector, kind, near)
    pairs = await anyio.to_thread.run_sync(context.engine.search, collection, vector, query, limit, offset, max_distance)
    return [_result(collection, obj, hit, vector) for obj, hit in pairs]

