"""Thin route handlers: parse HTTP, call the engine, shape the answer."""

from __future__ import annotations

import asyncio
import time
from inspect import isawaitable
from typing import Any

import anyio.to_thread
import orjson
from graphql import ExecutionResult, execute
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from searchd import WEAVIATE_API_VERSION, __version__
from searchd.catalog import Catalog
from searchd.errors import InvalidInput, NotFound, NotReady, PayloadTooLarge
from searchd.modules.provider import header_keys
from searchd.query.cost import check_body
from searchd.query.document import Prepared
from searchd.query.plan import execute_plan
from searchd.query.response_size import check_response_size
from searchd.query.search import QueryContext
from searchd.query.served import CatalogGraphQL
from searchd.server.bodies import parse_json
from searchd.server.classes import class_json, refusal_message
from searchd.server.errors import error_response
from searchd.server.nodes import check_output, nodes_json, shard_statuses
from searchd.server.observe import query_kind
from searchd.server.openapi import openapi_document
from searchd.server.shapes import batch_result, object_json
from searchd.values import normalize_uuid

DEFAULT_LIST_LIMIT = 25  # Weaviate's documented default for GET /v1/objects
INLINE_PREPARE_CHARS = 16_384  # longer GraphQL documents are parsed in a worker thread


def _services(request: Request) -> Any:
    services = getattr(request.app.state, "services", None)
    if services is None:  # still opening indexes or loading --load files: answers now would be partial
        progress = request.app.state.readiness.as_json()
        raise NotReady(f"the server is not ready yet: {progress['phase']}", "wait until GET /v1/.well-known/ready answers 200")
    return services


def _catalog(request: Request) -> Catalog:
    # Read once per request: the whole request runs on this snapshot even if a reload swaps it.
    catalog: Catalog = _services(request).holder.current
    return catalog


async def _json(request: Request) -> Any:
    # orjson: five times faster than json on a batch of vectors, and strict (no NaN, no invalid UTF-8 or lone surrogates).
    return parse_json(await request.body())


def _int_param(request: Request, name: str, default: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise InvalidInput(f"query parameter '{name}' must be an integer, got {raw!r}", f"use e.g. {name}={default}") from None
    if value < 0:
        raise InvalidInput(f"query parameter '{name}' must not be negative", f"use e.g. {name}={default}")
    return value


# -- health and meta -------------------------------------------------------------


async def live(request: Request) -> Response:
    return Response(status_code=200)


async def ready(request: Request) -> Response:
    """200 once the indexes are open and the --load files are in; until then 503 with the start-up's progress."""
    progress = request.app.state.readiness.as_json()
    return JSONResponse(progress, status_code=200 if progress["ready"] else 503)


async def meta(request: Request) -> Response:
    catalog = _catalog(request)
    return JSONResponse(
        {
            "hostname": str(request.base_url).rstrip("/"),
            "version": WEAVIATE_API_VERSION,
            "searchdVersion": __version__,
            # The largest gRPC message (as the largest HTTP body); the v4 clients size their channel by it.
            "grpcMaxMessageSize": catalog.spec.server.limits.max_body_bytes,
            "modules": {name: module.meta() for name, module in catalog.modules_in_use().items()},
            "embeddingCache": _services(request).runtime.cache.stats().as_dict(),
        }
    )


async def openapi(request: Request) -> Response:
    return JSONResponse(openapi_document())


async def metrics(request: Request) -> Response:
    registry = request.app.state.metrics.registry  # answered while starting too: a long load is worth watching
    body = await anyio.to_thread.run_sync(generate_latest, registry)
    return Response(body, media_type=CONTENT_TYPE_LATEST)


# -- config (the YAML is applied by reloads; see searchd.reload) ------------------


async def config_status(request: Request) -> Response:
    return JSONResponse(_services(request).config.status())


async def config_reload(request: Request) -> Response:
    """Apply the config files as they are now; 200 when applied or unchanged, 422 invalid, 409 refused,
    202 waiting (another replica leads a reload: these files are applied after it)."""
    outcome = await asyncio.wrap_future(_services(request).config.submit("POST /v1/config/reload"))
    status = {"invalid": 422, "refused": 409, "waiting": 202}.get(outcome["result"], 200)
    body = {**outcome, **({"error": [{"message": m} for m in outcome["errors"]]} if outcome["errors"] else {})}
    return JSONResponse(body, status_code=status)


# -- schema (read-only: the YAML is the schema) -----------------------------------


async def schema(request: Request) -> Response:
    catalog = _catalog(request)
    return JSONResponse({"classes": [class_json(c) for c in catalog.collections.values()]})


async def schema_class(request: Request) -> Response:
    catalog = _catalog(request)
    return JSONResponse(class_json(catalog.collection(request.path_params["class_name"])))


async def schema_is_read_only(request: Request) -> Response:
    body: Any = None
    if request.method in ("POST", "PUT") and "rest" not in request.path_params:  # a class created or replaced
        try:
            body = parse_json(await request.body())  # depth-limited: the refusal walks the body
        except InvalidInput:
            pass  # refused either way; the message then points at schema-from-json
    message = refusal_message(f"{request.method} {request.url.path}", _services(request).config_path, body, _catalog(request).registry)
    return error_response(405, message)


async def nodes(request: Request) -> Response:
    catalog = _catalog(request)
    verbose = check_output(request.query_params.get("output"))
    class_name = request.path_params.get("class_name")
    collections = [catalog.collection(class_name)] if class_name else list(catalog.collections.values())
    services = _services(request)
    counts = {c.name: await anyio.to_thread.run_sync(services.engine.count, c.name) for c in collections} if verbose else {}
    follower = services.engine.follower
    members = await anyio.to_thread.run_sync(follower.members) if follower is not None else None
    return JSONResponse(nodes_json(collections, counts, _indexing(request), verbose, members))


def _indexing(request: Request) -> frozenset[str]:
    """Collections with a re-vectorization or reindex running."""
    return frozenset(p.collection for p in list(_services(request).config.rebuilds.values()) if p.state == "running")


async def schema_shards(request: Request) -> Response:
    collection = _catalog(request).collection(request.path_params["class_name"])
    return JSONResponse(shard_statuses(collection, collection.name in _indexing(request)))


# -- objects ---------------------------------------------------------------------


async def list_objects(request: Request) -> Response:
    catalog = _catalog(request)
    class_name = request.query_params.get("class")
    after = request.query_params.get("after") or None  # an empty cursor starts at the beginning
    limit = _int_param(request, "limit", DEFAULT_LIST_LIMIT)
    offset = _int_param(request, "offset", 0)
    most = catalog.spec.server.limits.query_limit_max
    if limit + offset > most:
        raise InvalidInput(f"limit + offset is {limit + offset}, above the maximum of {most}", "page with 'after', or a smaller limit and offset")
    if class_name is not None:
        catalog.collection(class_name)
    if after is not None:
        if class_name is None:
            raise InvalidInput("the 'after' cursor needs a 'class'", "add class=<Collection> to the query")
        if offset:
            raise InvalidInput("'after' and 'offset' cannot be combined", "page with after=<last id> only")
        after = normalize_uuid(after, "after")
    include_vector = "vector" in request.query_params.get("include", "").split(",")
    objects = await anyio.to_thread.run_sync(_services(request).engine.list_objects, class_name, limit, offset, after)
    body = [object_json(o, include_vector, catalog.collections.get(o.collection)) for o in objects]
    return JSONResponse({"objects": body, "totalResults": len(body), "deprecations": None})


async def create_object(request: Request) -> Response:
    catalog = _catalog(request)
    engine = _services(request).engine
    draft = engine.draft(catalog, await _json(request))
    stored = await engine.write(draft, require_new=True, keys=header_keys(request.headers))
    return JSONResponse(object_json(stored, True, catalog.collections.get(stored.collection)))


async def get_object(request: Request) -> Response:
    catalog = _catalog(request)
    class_name, object_id = request.path_params["class_name"], request.path_params["id"]
    stored = await anyio.to_thread.run_sync(_services(request).engine.get, catalog, class_name, object_id)
    include_vector = "vector" in request.query_params.get("include", "").split(",")
    return JSONResponse(object_json(stored, include_vector, catalog.collections.get(class_name)))


def _find_anywhere(services: Any, catalog: Catalog, object_id: str) -> tuple[str, Any]:
    """The collection holding ``object_id`` and the object: Weaviate's (deprecated) class-less lookup."""
    normalize_uuid(object_id)  # a malformed id is a 422 before any lookup
    for class_name in catalog.collections:
        try:
            return class_name, services.engine.get(catalog, class_name, object_id)
        except NotFound:
            continue
    raise NotFound(f"no object with id '{object_id}' in any collection", "check the id, or name its collection: /v1/objects/{className}/{id}")


async def get_object_without_class(request: Request) -> Response:
    catalog = _catalog(request)
    class_name, stored = await anyio.to_thread.run_sync(_find_anywhere, _services(request), catalog, request.path_params["id"])
    include_vector = "vector" in request.query_params.get("include", "").split(",")
    return JSONResponse(object_json(stored, include_vector, catalog.collections.get(class_name)))


async def head_object_without_class(request: Request) -> Response:
    await anyio.to_thread.run_sync(_find_anywhere, _services(request), _catalog(request), request.path_params["id"])
    return Response(status_code=204)


async def head_object(request: Request) -> Response:
    await anyio.to_thread.run_sync(_services(request).engine.get, _catalog(request), request.path_params["class_name"], request.path_params["id"])
    return Response(status_code=204)


async def replace_object(request: Request) -> Response:
    catalog = _catalog(request)
    engine = _services(request).engine
    class_name, object_id = request.path_params["class_name"], request.path_params["id"]
    catalog.collection(class_name)
    draft = engine.draft(catalog, await _json(request), class_name, object_id)
    stored = await engine.write(draft, keys=header_keys(request.headers))
    return JSONResponse(object_json(stored, True, catalog.collections.get(class_name)))


async def patch_object(request: Request) -> Response:
    catalog = _catalog(request)
    engine = _services(request).engine
    await engine.merge(catalog, request.path_params["class_name"], request.path_params["id"], await _json(request), header_keys(request.headers))
    return Response(status_code=204)


async def delete_object(request: Request) -> Response:
    catalog = _catalog(request)
    await anyio.to_thread.run_sync(_services(request).engine.delete, catalog, request.path_params["class_name"], request.path_params["id"])
    return Response(status_code=204)


async def batch_objects(request: Request) -> Response:
    catalog = _catalog(request)
    body = await _json(request)
    objects = body.get("objects") if isinstance(body, dict) else None
    if not isinstance(objects, list):
        raise InvalidInput("the batch body needs an 'objects' list", "send {\"objects\": [{\"class\": ..., \"properties\": {...}}, ...]}")
    most = catalog.spec.server.limits.max_batch_objects
    if len(objects) > most:
        raise PayloadTooLarge(f"the batch has {len(objects)} objects, more than the limit of {most}", "split it into smaller batches, or raise server.limits.maxBatchObjects")
    outcomes = await _services(request).engine.batch(catalog, objects, header_keys(request.headers))
    return JSONResponse(
        [batch_result(payload, outcome, catalog.collections.get(payload["class"] if isinstance(payload, dict) and isinstance(payload.get("class"), str) else "")) for payload, outcome in zip(objects, outcomes)]
    )


# -- GraphQL ---------------------------------------------------------------------


def _json_response(body: Any) -> Response:
    # orjson renders a result with hundreds of floats several times faster than json (same text, UTF-8 as is).
    return Response(orjson.dumps(body), media_type="application/json")


def graphql_for(request: Request, catalog: Catalog) -> CatalogGraphQL:
    """The catalog's GraphQL schema and document cache, kept by the server beside the catalogs it serves."""
    found: CatalogGraphQL | None = _services(request).graphql.of(catalog)
    assert found is not None  # a served catalog has collections
    return found


async def _prepare_graphql(request: Request, catalog: Catalog, body: Any) -> tuple[Prepared, dict[str, Any], Any]:
    """The parsed and validated document, the variables it runs with, and the operation named (LimitExceeded when over a limit)."""
    if not isinstance(body, dict) or not isinstance(body.get("query"), str) or not body["query"].strip():
        raise InvalidInput("the GraphQL request needs a non-empty 'query' string", "send {\"query\": \"{ Get { ... } }\"}")
    variables = body.get("variables")
    if variables is not None and not isinstance(variables, dict):
        raise InvalidInput("variables must be a JSON object", "send \"variables\": {\"name\": value}")
    documents = graphql_for(request, catalog).documents
    query = body["query"]
    # A long document not seen before is parsed in a worker thread, so the event loop keeps answering meanwhile.
    prepared = documents.prepare(query) if len(query) <= INLINE_PREPARE_CHARS else await anyio.to_thread.run_sync(documents.prepare, query)
    return prepared, {**(variables or {}), **prepared.variables}, body.get("operationName")


async def _execute_graphql(request: Request, catalog: Catalog, prepared: Prepared, inputs: dict[str, Any], operation: Any, deadline: float) -> dict[str, Any]:
    if prepared.document is None:
        return {"data": None, "errors": [error.formatted for error in prepared.errors]}
    graphql = graphql_for(request, catalog)
    started = time.perf_counter()
    context = QueryContext(catalog, _services(request).engine, header_keys(request.headers), deadline)
    plan = prepared.plan
    formatted = None
    if plan is not None and operation in (None, plan.operation.name.value if plan.operation.name else None):
        formatted = await execute_plan(plan, context, inputs, prepared.locate)
    if formatted is None:
        document = prepared.executable()
        assert document is not None  # prepared.document is
        result = execute(graphql.schema, document, context_value=context, variable_values=inputs, operation_name=operation)
        if isawaitable(result):
            result = await result
        assert isinstance(result, ExecutionResult)
        formatted = dict(result.formatted)
    outcome = "error" if formatted.get("errors") else "ok"
    _services(request).metrics.queries.labels(query_kind(prepared.document), outcome).observe(time.perf_counter() - started)
    return formatted


async def _run_graphql(request: Request, catalog: Catalog, bodies: list[Any]) -> list[dict[str, Any]]:
    """Run GraphQL queries (one, or a batch) in one query slot: each is costed first, and one over a limit refuses them all before any runs.

    The queries of a batch run one after the other, so each is held to the limits on its own and the
    batch as a whole to server.limits.queryTimeout.
    """
    limits = catalog.spec.server.limits

    async def work(deadline: float) -> list[dict[str, Any]]:
        items = [await _prepare_graphql(request, catalog, body) for body in bodies]
        documents = graphql_for(request, catalog).documents
        for prepared, inputs, operation in items:
            documents.cost(prepared, inputs, operation, _services(request).engine.size).check(limits)
        results = [await _execute_graphql(request, catalog, *item, deadline) for item in items]
        check_response_size(results, limits)  # before the encoder copies out every repeated string
        return results

    results: list[dict[str, Any]] = await _services(request).queries.run(limits, work)
    return results


async def _graphql_json(request: Request, catalog: Catalog) -> Any:
    check_body(await request.body(), catalog.spec.server.limits)  # before the JSON parser meets fifty thousand objects
    return await _json(request)


async def graphql_query(request: Request) -> Response:
    catalog = _catalog(request)
    return _json_response((await _run_graphql(request, catalog, [await _graphql_json(request, catalog)]))[0])


async def graphql_batch(request: Request) -> Response:
    catalog = _catalog(request)
    body = await _graphql_json(request, catalog)
    if not isinstance(body, list):
        raise InvalidInput("a GraphQL batch is a JSON array of {query, variables} objects", "send [{\"query\": ...}, ...]")
    return _json_response(await _run_graphql(request, catalog, body))


ROUTES = [
    # The router tries routes in order (a regex each): the query routes come first.
    Route("/v1/graphql", graphql_query, methods=["POST"]),
    Route("/v1/graphql/batch", graphql_batch, methods=["POST"]),
    Route("/v1/.well-known/live", live, methods=["GET"]),
    Route("/v1/.well-known/ready", ready, methods=["GET"]),
    Route("/v1/meta", meta, methods=["GET"]),
    Route("/metrics", metrics, methods=["GET"]),
    Route("/v1/openapi.json", openapi, methods=["GET"]),
    Route("/v1/config/status", config_status, methods=["GET"]),
    Route("/v1/config/reload", config_reload, methods=["POST"]),
    Route("/v1/schema", schema, methods=["GET"]),
    Route("/v1/schema", schema_is_read_only, methods=["POST", "PUT", "DELETE"]),
    Route("/v1/schema/{class_name}", schema_class, methods=["GET"]),
    Route("/v1/schema/{class_name}", schema_is_read_only, methods=["POST", "PUT", "DELETE", "PATCH"]),
    Route("/v1/schema/{class_name}/shards", schema_shards, methods=["GET"]),
    Route("/v1/schema/{class_name}/{rest:path}", schema_is_read_only, methods=["POST", "PUT", "DELETE", "PATCH"]),
    Route("/v1/nodes", nodes, methods=["GET"]),
    Route("/v1/nodes/{class_name}", nodes, methods=["GET"]),
    Route("/v1/objects", list_objects, methods=["GET"]),
    Route("/v1/objects", create_object, methods=["POST"]),
    # HEAD before GET: starlette's GET routes also answer HEAD, and Weaviate answers 204 here.
    Route("/v1/objects/{id}", head_object_without_class, methods=["HEAD"]),
    Route("/v1/objects/{id}", get_object_without_class, methods=["GET"]),
    Route("/v1/objects/{class_name}/{id}", head_object, methods=["HEAD"]),
    Route("/v1/objects/{class_name}/{id}", get_object, methods=["GET"]),
    Route("/v1/objects/{class_name}/{id}", replace_object, methods=["PUT"]),
    Route("/v1/objects/{class_name}/{id}", patch_object, methods=["PATCH"]),
    Route("/v1/objects/{class_name}/{id}", delete_object, methods=["DELETE"]),
    Route("/v1/batch/objects", batch_objects, methods=["POST"]),
]
