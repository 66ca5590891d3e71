"""The offline modules: ``text2vec-hash`` and ``multi2vec-local``.

They are the embedded default (no key, no network, no download).  Vectors are
lexical (text) and perceptual (images), not semantic; see ``features``.
``multi2vec-local`` keeps text and image features in separate blocks of one
vector, so nearText compares wording and nearImage compares pictures, and the
per-field weights set how much each side counts for an object.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from searchd.config.spec import CollectionSpec, NamedVectorSpec
from searchd.errors import InvalidInput, QueryError, SearchdError
from searchd.modules.base import NO_KEYS, ModelInfo, ModuleInfo, ModuleRuntime, Vector
from searchd.modules.features import IMAGE_FEATURES, image_features, text_features
from searchd.modules.fields import as_text, field_weights, normalized_mean, text_fields_of


def _blob_bytes(value: str, field: str) -> bytes:
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidInput(f"property '{field}' is not valid base64: {exc}", "encode the file's bytes as standard base64") from exc


class LocalVectorizer:
    """Shared by both offline modules; ``image_block`` is 0 for text-only."""

    def __init__(self, collection: CollectionSpec, vector: NamedVectorSpec, dimensions: int, image_block: int, all_text_by_default: bool) -> None:
        self._dimensions = dimensions
        self._text_block = dimensions - image_block
        self._image_block = image_block
        self.text_fields = text_fields_of(collection, vector, all_text_by_default)
        self.image_fields = vector.vectorizer.image_fields or ()
        self.weights = field_weights(vector, (*self.text_fields, *self.image_fields))

    @property
    def dimensions(self) -> int:
        return self._dimensions

    def _text(self, text: str) -> np.ndarray:
        return np.concatenate([text_features(text, self._text_block), np.zeros(self._image_block, np.float32)])

    def _image(self, data: bytes) -> np.ndarray:
        return np.concatenate([np.zeros(self._text_block, np.float32), image_features(data)])

    def embed_object(self, properties: Mapping[str, Any]) -> Vector | None:
        parts: list[tuple[float, np.ndarray]] = []
        for field in self.text_fields:
            value = properties.get(field)
            if value not in (None, "", []):
                parts.append((self.weights[field], self._text(as_text(value))))
        for field in self.image_fields:
            value = properties.get(field)
            if value:
                parts.append((self.weights[field], self._image(_blob_bytes(value, field))))
        return normalized_mean(parts)

    async def embed_objects(self, objects: Sequence[Mapping[str, Any]], keys: Mapping[str, str] = NO_KEYS) -> list[Vector | None | SearchdError]:
        results: list[Vector | None | SearchdError] = []
        for properties in objects:
            try:
                results.append(self.embed_object(properties))
            except SearchdError as exc:
                results.append(exc)
        return results

    async def embed_text_query(self, texts: Sequence[str], keys: Mapping[str, str] = NO_KEYS) -> Vector:
        # Several concepts are averaged, as Weaviate does.
        vector = normalized_mean([(1.0, self._text(t)) for t in texts])
        if vector is None:
            raise QueryError("nearText concepts contain no words to search for", "give at least one concept with letters or digits")
        return vector

    async def embed_image_query(self, image: bytes, keys: Mapping[str, str] = NO_KEYS) -> Vector:
        if not self._image_block:
            raise QueryError("this vector's module embeds text only; nearImage needs an image module", "use nearText, or target a multi2vec vector")
        vector = normalized_mean([(1.0, self._image(image))])
        assert vector is not None  # image features are never all zero (the histogram sums to 1)
        return vector


def _text_hash(collection: CollectionSpec, vector: NamedVectorSpec, settings: Mapping[str, Any], runtime: ModuleRuntime) -> LocalVectorizer:
    dims = vector.vectorizer.dimensions or TEXT_HASH.models["hash-v1"].default_dimensions
    return LocalVectorizer(collection, vector, dims, image_block=0, all_text_by_default=True)


def _multi_local(collection: CollectionSpec, vector: NamedVectorSpec, settings: Mapping[str, Any], runtime: ModuleRuntime) -> LocalVectorizer:
    dims = vector.vectorizer.dimensions or MULTI_LOCAL.models["local-v1"].default_dimensions
    return LocalVectorizer(collection, vector, dims, image_block=IMAGE_FEATURES, all_text_by_default=False)


TEXT_HASH = ModuleInfo(
    name="text2vec-hash",
    title="Offline text feature-hashing module (lexical, not semantic)",
    documentation="https://github.com/searchd/searchd#offline-vectorizers",
    modalities=frozenset({"text"}),
    models={"hash-v1": ModelInfo("hash-v1", default_dimensions=256, min_dimensions=16, max_dimensions=4096)},
    default_model="hash-v1",
    factory=_text_hash,
)

MULTI_LOCAL = ModuleInfo(
    name="multi2vec-local",
    title="Offline text + image module (lexical text, perceptual images; not semantic)",
    documentation="https://github.com/searchd/searchd#offline-vectorizers",
    modalities=frozenset({"text", "image"}),
    models={"local-v1": ModelInfo("local-v1", default_dimensions=512, min_dimensions=IMAGE_FEATURES + 32, max_dimensions=4096)},
    default_model="local-v1",
    factory=_multi_local,
)

MODULES = (TEXT_HASH, MULTI_LOCAL)
