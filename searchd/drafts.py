"""An object on its way in: a Weaviate object payload checked against the catalog, before embedding or storage."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from searchd.catalog import Catalog, CompiledCollection, CompiledVector
from searchd.errors import InvalidInput, NotFound
from searchd.records import StoredObject
from searchd.values import check_properties, normalize_uuid


@dataclass
class Draft:
    """An object on its way in: checked, not yet embedded or stored."""

    collection: CompiledCollection
    id: str
    properties: dict[str, Any]
    vectors: dict[str, np.ndarray] = field(default_factory=dict)
    created_ms: int | None = None
    staged: set[str] = field(default_factory=set)  # staging names this draft was embedded for (see Shadow)
    embedded: set[str] = field(default_factory=set)  # vectors a vectorizer made (the others were sent)


def draft_object(catalog: Catalog, payload: Any, class_name: str | None = None, object_id: str | None = None) -> Draft:
    """Check one object payload (Weaviate's object JSON) without touching storage."""
    if not isinstance(payload, Mapping):
        raise InvalidInput("an object must be a JSON object", "send {\"class\": ..., \"properties\": {...}}")
    name = payload.get("class") or class_name
    if not isinstance(name, str):
        raise InvalidInput("'class' must be a string naming a collection", "send e.g. \"class\": \"Article\"")
    if not name:
        raise InvalidInput("the object has no 'class'", "name the collection in \"class\"")
    if class_name and payload.get("class") and payload["class"] != class_name:
        raise InvalidInput(f"the body's class '{payload['class']}' differs from the URL's '{class_name}'", "make them the same")
    try:
        collection = catalog.collection(name)
    except NotFound as exc:
        raise InvalidInput(exc.problem, exc.hint) from exc
    raw_id = payload.get("id") or object_id
    if object_id and payload.get("id") and normalize_uuid(payload["id"]) != normalize_uuid(object_id):
        raise InvalidInput("the body's id differs from the URL's id", "make them the same, or leave id out of the body")
    the_id = normalize_uuid(raw_id) if raw_id else str(uuid.uuid4())
    properties = check_properties(collection, payload.get("properties"))
    return Draft(collection, the_id, properties, supplied_vectors(collection, payload))


def stored_unchanged(draft: Draft, stored: StoredObject) -> bool:
    """Whether storing ``draft`` would leave ``stored`` as it is (a resumed import skips it).

    Vectors a vectorizer makes are unchanged when the properties are and one is stored
    (a config change re-vectorizes stored objects by itself); every other vector must
    be stored exactly as sent, and none stored that was not sent.
    """
    if stored.properties != draft.properties:
        return False
    for name, vector in draft.collection.vectors.items():
        have = stored.vectors.get(name)
        sent = draft.vectors.get(name)
        if sent is not None:
            if have is None or have.shape != sent.shape or not np.array_equal(have, sent):
                return False
        elif (have is None) if vector.vectorizer is not None else (have is not None):
            return False
    return True


def check_vector(vector: CompiledVector, value: Any) -> np.ndarray:
    """A client-supplied vector (or, for a multivector index, matrix) checked against the config."""
    example = "[[0.1, 0.2, ...], [0.3, 0.4, ...]]" if vector.is_multi else "[0.1, 0.2, ...]"
    try:
        array = np.asarray(value)
    except ValueError:  # ragged rows
        array = np.asarray([], dtype=object)
    wanted_ndim = 2 if vector.is_multi else 1
    if array.dtype.kind not in "fiu" or array.ndim != wanted_ndim or array.size == 0:
        if vector.is_multi and isinstance(value, list) and value and all(isinstance(r, list) for r in value):
            lengths = sorted({len(r) for r in value} - {vector.dimensions})
            if lengths:
                raise InvalidInput(f"vector '{vector.name}' has {lengths[0]} dimensions in a row, but the config declares {vector.dimensions}", f"send exactly {vector.dimensions} numbers per row")
        shape = "a non-empty list of rows of numbers (a multi-vector)" if vector.is_multi else "a list of numbers"
        raise InvalidInput(f"vector '{vector.name}' must be {shape}", f"send e.g. {example}")
    if array.shape[-1] != vector.dimensions:
        raise InvalidInput(
            f"vector '{vector.name}' has {array.shape[-1]} dimensions, but the config declares {vector.dimensions}",
            f"send exactly {vector.dimensions} numbers{' per row' if vector.is_multi else ''}, or change dimensions in the YAML config",
        )
    with np.errstate(over="ignore"):  # beyond float32's range becomes inf, refused just below
        array = array.astype(np.float32)
    if not np.all(np.isfinite(array)):
        raise InvalidInput(f"vector '{vector.name}' contains NaN, infinity or a number beyond the 32-bit float range (about ±3.4e38)", "send finite numbers only")
    return array


def supplied_vectors(collection: CompiledCollection, payload: Mapping[str, Any]) -> dict[str, np.ndarray]:
    supplied: dict[str, np.ndarray] = {}
    if payload.get("vector") is not None:
        default = collection.default_vector
        if default is None:
            raise InvalidInput(
                f"collection '{collection.name}' has several named vectors and none is the default, so an unnamed 'vector' is ambiguous",
                f"send \"vectors\": {{name: [...]}} with one of: {', '.join(collection.vectors)}, or mark one default: true",
            )
        supplied[default.name] = check_vector(default, payload["vector"])
    named = payload.get("vectors") or {}
    if not isinstance(named, Mapping):
        raise InvalidInput("'vectors' must be an object of {name: [numbers]}", "send e.g. \"vectors\": {\"clip\": [0.1, ...]}")
    for name, value in named.items():
        if name not in collection.vectors:
            raise InvalidInput(
                f"collection '{collection.name}' has no named vector '{name}'",
                f"its named vectors are: {', '.join(collection.vectors) or 'none'}; declare it in the YAML config",
            )
        supplied[name] = check_vector(collection.vectors[name], value)
    return supplied
