"""Weaviate's JSON shapes of objects and batch results (classes: ``searchd.server.classes``)."""

from __future__ import annotations

from typing import Any

from searchd.errors import SearchdError
from searchd.records import StoredObject


def object_json(obj: StoredObject, include_vector: bool, default_vector: str | None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "class": obj.collection,
        "id": obj.id,
        "properties": obj.properties,
        "creationTimeUnix": obj.created_ms,
        "lastUpdateTimeUnix": obj.updated_ms,
    }
    if include_vector:
        body["vectors"] = {name: vec.tolist() for name, vec in obj.vectors.items()}
        if default_vector and default_vector in obj.vectors:
            body["vector"] = obj.vectors[default_vector].tolist()
    return body


def batch_result(payload: Any, outcome: StoredObject | SearchdError, default_vector: str | None) -> dict[str, Any]:
    if isinstance(outcome, SearchdError):
        echo = {k: payload.get(k) for k in ("class", "id") if k in payload} if isinstance(payload, dict) else {}
        return {**echo, "result": {"status": "FAILED", "errors": {"error": [{"message": str(outcome)}]}}}
    return {**object_json(outcome, False, default_vector), "result": {"status": "SUCCESS"}}
