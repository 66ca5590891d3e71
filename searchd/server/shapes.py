"""Weaviate's JSON shapes of objects and batch results (classes: ``searchd.server.classes``)."""

from __future__ import annotations

from typing import Any

from searchd.catalog import CompiledCollection
from searchd.errors import SearchdError
from searchd.records import StoredObject
from searchd.values import vector_json


def object_json(obj: StoredObject, include_vector: bool, collection: CompiledCollection | None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "class": obj.collection,
        "id": obj.id,
        "properties": obj.properties,
        "creationTimeUnix": obj.created_ms,
        "lastUpdateTimeUnix": obj.updated_ms,
    }
    if include_vector:
        body["vectors"] = {name: vector_json(collection, name, vec) for name, vec in obj.vectors.items()}
        default = collection.default_vector if collection is not None else None
        if default is not None and default.name in obj.vectors:
            body["vector"] = vector_json(collection, default.name, obj.vectors[default.name])
    return body


def batch_result(payload: Any, outcome: StoredObject | SearchdError, collection: CompiledCollection | None) -> dict[str, Any]:
    if isinstance(outcome, SearchdError):
        echo = {k: payload.get(k) for k in ("class", "id") if k in payload} if isinstance(payload, dict) else {}
        return {**echo, "result": {"status": "FAILED", "errors": {"error": [{"message": str(outcome)}]}}}
    return {**object_json(outcome, False, collection), "result": {"status": "SUCCESS"}}
