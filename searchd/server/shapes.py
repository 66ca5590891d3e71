"""Weaviate's JSON shapes: objects, batch results and classes derived from the YAML spec."""

from __future__ import annotations

from typing import Any

from searchd.catalog import CompiledCollection
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


def class_json(collection: CompiledCollection) -> dict[str, Any]:
    spec = collection.spec
    return {
        "class": spec.name,
        "description": spec.description,
        "properties": [
            {
                "name": p.name,
                "dataType": [p.type.weaviate_name],
                "description": p.description,
                **({"tokenization": p.tokenization.value, "indexSearchable": p.searchable} if p.type.is_text else {}),
                "indexFilterable": p.filterable,
            }
            for p in spec.properties
        ],
        "vectorConfig": {
            name: {
                "vectorizer": {
                    vector.module.name: {
                        k: v
                        for k, v in {
                            "model": vector.spec.vectorizer.model,
                            "dimensions": vector.dimensions,
                            "textFields": list(vector.spec.vectorizer.text_fields or []) or None,
                            "imageFields": list(vector.spec.vectorizer.image_fields or []) or None,
                            "weights": dict(vector.spec.vectorizer.weights) if vector.spec.vectorizer.weights else None,
                        }.items()
                        if v is not None
                    }
                },
                "vectorIndexType": vector.spec.index.type,
                "vectorIndexConfig": {"distance": vector.spec.index.distance.value},
            }
            for name, vector in collection.vectors.items()
        },
        "invertedIndexConfig": {
            "bm25": {"k1": spec.inverted_index.k1, "b": spec.inverted_index.b},
            "stopwords": {
                "preset": spec.inverted_index.stopword_preset,
                "additions": list(spec.inverted_index.stopword_additions) or None,
                "removals": list(spec.inverted_index.stopword_removals) or None,
            },
        },
    }
