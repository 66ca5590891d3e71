"""The OpenAPI 3.1 description of the REST API, served at /v1/openapi.json.

Written out by hand (the routes are few and their bodies are Weaviate's shapes), and
checked against the real route table by a test, so the two cannot drift apart.
"""

from __future__ import annotations

from typing import Any

from searchd import __version__

ERROR = {"$ref": "#/components/schemas/Error"}
OBJECT = {"$ref": "#/components/schemas/Object"}
UUID_PARAM = {"name": "id", "in": "path", "required": True, "schema": {"type": "string", "format": "uuid"}}
CLASS_PARAM = {"name": "class_name", "in": "path", "required": True, "schema": {"type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_]*$"}}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*statuses: int) -> dict[str, Any]:
    meaning = {
        401: "no valid API key (when server.auth declares keys)",
        403: "the key's role may not do this",
        404: "no such collection or object",
        405: "the schema is the YAML config",
        409: "the config change is refused",
        413: "the body or batch is over a limit",
        422: "the request is invalid or over a server.limits setting; the message says how to fix it",
        429: "more requests than the API key's rate allows (server.limits.rateLimit); see Retry-After",
        502: "an embedding provider refused",
        503: "storage or an embedding provider is unavailable, the server is still starting, or (GraphQL) no query slot came free in time or the query ran past server.limits.queryTimeout",
    }
    return {str(s): _json(ERROR, meaning[s]) for s in statuses}


def _op(summary: str, ok: dict[str, Any], *errors: int, body: dict[str, Any] | None = None, parameters: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    operation: dict[str, Any] = {"summary": summary, "responses": {**ok, **_errors(401, 403, 429, *errors)}}
    if body is not None:
        operation["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
    if parameters:
        operation["parameters"] = parameters
    return operation


def _read_only(summary: str) -> dict[str, Any]:
    return _op(summary, {}, 405)


OBJECT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "class": {"type": "string"},
        "id": {"type": "string", "format": "uuid"},
        "properties": {"type": "object"},
        "vector": {"type": "array", "items": {"type": "number"}},
        "vectors": {"type": "object", "additionalProperties": {"type": "array"}},
        "creationTimeUnix": {"type": "integer"},
        "lastUpdateTimeUnix": {"type": "integer"},
    },
}
OUTPUT_PARAM = {"name": "output", "in": "query", "schema": {"type": "string", "enum": ["minimal", "verbose"]}}
SHARD: dict[str, Any] = {
    "type": "object",
    "required": ["name", "class", "objectCount", "vectorIndexingStatus", "vectorQueueLength", "compressed", "loaded"],
    "properties": {
        "name": {"type": "string"},
        "class": {"type": "string"},
        "node": {"type": "string"},
        "objectCount": {"type": "integer", "minimum": 0},
        "vectorIndexingStatus": {"enum": ["READY", "INDEXING"]},
        "vectorQueueLength": {"type": "integer"},
        "compressed": {"type": "boolean"},
        "loaded": {"type": "boolean"},
    },
}
NODES: dict[str, Any] = {
    "type": "object",
    "required": ["nodes"],
    "properties": {
        "nodes": {
            "type": "array",
            "minItems": 1,
            "maxItems": 1,
            "items": {
                "type": "object",
                "required": ["name", "status", "version", "gitHash", "batchStats"],
                "properties": {
                    "name": {"type": "string"},
                    "status": {"enum": ["HEALTHY"]},
                    "version": {"type": "string"},
                    "gitHash": {"type": "string"},
                    "batchStats": {"type": "object", "required": ["queueLength", "ratePerSecond"]},
                    "stats": {"type": "object", "required": ["objectCount", "shardCount"]},
                    "shards": {"type": "array", "items": SHARD},
                },
            },
        }
    },
}
GRAPHQL_BODY: dict[str, Any] = {
    "type": "object",
    "required": ["query"],
    "properties": {"query": {"type": "string", "minLength": 1}, "variables": {"type": "object"}, "operationName": {"type": "string"}},
}
GRAPHQL_RESULT: dict[str, Any] = {"type": "object", "properties": {"data": {}, "errors": {"type": "array", "items": {"type": "object"}}}}

READINESS: dict[str, Any] = {
    "type": "object",
    "required": ["ready", "phase", "done", "total", "rate", "etaSeconds"],
    "properties": {
        "ready": {"type": "boolean"},
        "phase": {"type": "string"},
        "done": {"type": "integer"},
        "total": {"type": ["integer", "null"]},
        "rate": {"type": "number", "description": "per second, since the phase began"},
        "etaSeconds": {"type": ["number", "null"]},
        "error": {"type": "string", "description": "why the start failed (the server then stops)"},
    },
}

PATHS: dict[str, dict[str, Any]] = {
    "/v1/.well-known/live": {"get": {"summary": "Liveness (never needs a key)", "responses": {"200": {"description": "alive"}}}},
    "/v1/.well-known/ready": {
        "get": {
            "summary": "Readiness (never needs a key): 503 while the start opens indexes or loads --load files, with its progress",
            "responses": {"200": _json(READINESS, "ready"), "503": _json(READINESS, "not ready yet: the phase and its progress")},
        }
    },
    "/v1/meta": {"get": _op("Server version, modules in use, embedding cache figures", {"200": _json({"type": "object"}, "meta")})},
    "/v1/openapi.json": {"get": _op("This description", {"200": _json({"type": "object"}, "OpenAPI 3.1")})},
    "/metrics": {"get": _op("Prometheus metrics", {"200": {"description": "text exposition format", "content": {"text/plain": {"schema": {"type": "string"}}}}})},
    "/v1/config/status": {"get": _op("Applied revision, last reload, running rebuilds", {"200": _json({"type": "object"}, "status")})},
    "/v1/config/reload": {"post": _op("Apply the config files as they are now", {"200": _json({"type": "object"}, "applied or unchanged"), "202": _json({"type": "object"}, "waiting: another replica leads a reload; these files are applied after it")}, 409, 422)},
    "/v1/schema": {
        "get": _op("Every collection, as Weaviate classes", {"200": _json({"type": "object"}, "schema")}),
        "post": _read_only("Refused: the schema is the YAML config"),
        "put": _read_only("Refused: the schema is the YAML config"),
        "delete": _read_only("Refused: the schema is the YAML config"),
    },
    "/v1/schema/{class_name}": {
        "parameters": [CLASS_PARAM],
        "get": _op("One collection", {"200": _json({"type": "object"}, "class")}, 404),
        "post": _read_only("Refused: the schema is the YAML config"),
        "put": _read_only("Refused: the schema is the YAML config"),
        "patch": _read_only("Refused: the schema is the YAML config"),
        "delete": _read_only("Refused: the schema is the YAML config"),
    },
    "/v1/schema/{class_name}/shards": {
        "parameters": [CLASS_PARAM],
        "get": _op(
            "The collection's one shard and its status",
            {"200": _json({"type": "array", "minItems": 1, "maxItems": 1, "items": {"type": "object", "required": ["name", "status", "vectorQueueSize"]}}, "shards")},
            404,
        ),
    },
    "/v1/schema/{class_name}/{rest}": {
        "parameters": [CLASS_PARAM, {"name": "rest", "in": "path", "required": True, "schema": {"type": "string"}}],
        "post": _read_only("Refused: the schema is the YAML config"),
        "put": _read_only("Refused: the schema is the YAML config"),
        "patch": _read_only("Refused: the schema is the YAML config"),
        "delete": _read_only("Refused: the schema is the YAML config"),
    },
    "/v1/console/collections": {
        "get": _op(
            "What the console shows of each served collection: count, properties, named vectors, BM25 settings and the YAML block (file, line) it came from",
            {"200": _json({"type": "object", "required": ["collections"], "properties": {"collections": {"type": "array", "items": {"type": "object"}}}}, "the collections")},
        )
    },
    "/v1/nodes": {"get": _op("This node: status, version; with output=verbose one shard per collection and object counts", {"200": _json(NODES, "nodes")}, 422, parameters=[OUTPUT_PARAM])},
    "/v1/nodes/{class_name}": {
        "parameters": [CLASS_PARAM],
        "get": _op("This node, with only one collection's shard", {"200": _json(NODES, "nodes")}, 404, 422, parameters=[OUTPUT_PARAM]),
    },
    "/v1/objects": {
        "get": _op(
            "List objects (25 per page by default; `after` pages by id within a class)",
            {"200": _json({"type": "object", "properties": {"objects": {"type": "array", "items": OBJECT}, "totalResults": {"type": "integer"}}}, "a page")},
            404, 422,
            parameters=[
                {"name": "class", "in": "query", "schema": {"type": "string"}},
                {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 0}},
                {"name": "offset", "in": "query", "schema": {"type": "integer", "minimum": 0}},
                {"name": "after", "in": "query", "schema": {"type": "string", "format": "uuid"}},
                {"name": "include", "in": "query", "schema": {"type": "string", "enum": ["vector"]}},
            ],
        ),
        "post": _op("Create an object (embedded by its collection's vectorizers)", {"200": _json(OBJECT, "stored")}, 413, 422, 502, 503, body=OBJECT),
    },
    "/v1/objects/{id}": {
        "parameters": [UUID_PARAM],
        "head": _op("Whether an object exists in any collection (Weaviate's deprecated class-less form)", {"204": {"description": "exists"}}, 404, 422),
        "get": _op("Read an object from whichever collection holds it (Weaviate's deprecated class-less form)", {"200": _json(OBJECT, "the object")}, 404, 422,
                   parameters=[{"name": "include", "in": "query", "schema": {"type": "string", "enum": ["vector"]}}]),
    },
    "/v1/objects/{class_name}/{id}": {
        "parameters": [CLASS_PARAM, UUID_PARAM],
        "head": _op("Whether an object exists", {"204": {"description": "exists"}}, 404, 422),
        "get": _op("Read an object", {"200": _json(OBJECT, "the object")}, 404, 422,
                   parameters=[{"name": "include", "in": "query", "schema": {"type": "string", "enum": ["vector"]}}]),
        "put": _op("Replace an object", {"200": _json(OBJECT, "stored")}, 404, 413, 422, 502, 503, body=OBJECT),
        "patch": _op("Merge properties into an object (null removes one)", {"204": {"description": "merged"}}, 404, 413, 422, 502, 503, body=OBJECT),
        "delete": _op("Delete an object", {"204": {"description": "deleted"}}, 404, 422),
    },
    "/v1/batch/objects": {
        "post": _op(
            "Store many objects; each fails alone (result.errors) and the others are stored",
            {"200": _json({"type": "array", "items": {"type": "object"}}, "one result per object, in order")},
            413, 422,
            body={"type": "object", "required": ["objects"], "properties": {"objects": {"type": "array", "items": OBJECT}}},
        )
    },
    "/v1/graphql": {"post": _op("A GraphQL query (Get, Aggregate); errors come back in `errors`", {"200": _json(GRAPHQL_RESULT, "result")}, 413, 422, 503, body=GRAPHQL_BODY)},
    "/v1/graphql/batch": {
        "post": _op("Several GraphQL queries", {"200": _json({"type": "array", "items": GRAPHQL_RESULT}, "results")}, 413, 422, 503, body={"type": "array", "items": GRAPHQL_BODY})
    },
}


def openapi_document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {"title": "searchd", "version": __version__, "description": "Weaviate-compatible REST API of searchd; queries go through /v1/graphql."},
        "paths": PATHS,
        "components": {
            "schemas": {
                "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "array", "items": {"type": "object", "properties": {"message": {"type": "string"}}}}}},
                "Object": OBJECT_SCHEMA,
            },
            "securitySchemes": {"apiKey": {"type": "http", "scheme": "bearer", "description": "A key declared under server.auth.apiKeys"}},
        },
        "security": [{}, {"apiKey": []}],
    }
