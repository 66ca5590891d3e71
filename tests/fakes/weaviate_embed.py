"""Fake Weaviate Embeddings API: POST /v1/embeddings/embed (providers.md §3).

Needs both a Bearer key and an X-Weaviate-Cluster-Url. ColModernVBERT embeds images only as documents and texts only
as search queries, like the real service. Errors are {"detail": ...}.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

from starlette.responses import Response

from tests.fakes.base import (
    FakeProvider,
    Handler,
    RecordedRequest,
    Reject,
    b64decode_strict,
    bearer_token,
    clip_tokens,
    json_response,
    looks_like_base64_image,
    token_count,
)
from tests.fakes.embeddings import Vector, image_matrix, text_vector, token_matrix, truncate_dims

EMBED_PATH = "/v1/embeddings/embed"
MULTI_VECTOR_WIDTH = 128
IMAGE_TOKENS = 256
QUERY_SALT = "query"
_FIELDS = frozenset({"input", "model", "is_search_query", "dimensions"})


@dataclass(frozen=True)
class WeaviateModel:
    name: str
    dims: int  # default (full) size; 0 for the multi-vector model
    dim_choices: frozenset[int] = frozenset()
    max_tokens: int = 8192  # longer inputs are cut from the right, silently
    multivector: bool = False


MODELS: Mapping[str, WeaviateModel] = MappingProxyType(
    {
        m.name: m
        for m in (
            WeaviateModel("Snowflake/snowflake-arctic-embed-l-v2.0", 1024, frozenset({1024, 256})),
            WeaviateModel("Snowflake/snowflake-arctic-embed-m-v1.5", 768, frozenset({768, 256}), max_tokens=512),
            WeaviateModel("ModernVBERT/colmodernvbert", 0, multivector=True),
        )
    }
)


def _valid_cluster_url(value: str) -> bool:
    parts = urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.hostname)


class FakeWeaviateEmbed(FakeProvider):
    """Fake of api.embedding.weaviate.io."""

    def routes(self) -> dict[str, Handler]:
        return {EMBED_PATH: self._embed}

    def error_response(self, status: int, message: str, *, headers: Mapping[str, str] | None = None) -> Response:
        return json_response({"detail": message}, status, headers)

    def _embed(self, call: RecordedRequest) -> Response:
        started = time.perf_counter()
        self._check_headers(call.headers)
        body = call.body
        if not isinstance(body, dict):
            raise self._reject(422, "request body must be a JSON object")
        name = body.get("model")
        model = MODELS.get(name) if isinstance(name, str) else None
        if model is None:
            raise self._reject(400, f"model {name!r} is not supported; available: {', '.join(MODELS)}")
        unknown = sorted(set(body) - _FIELDS)
        if unknown:
            raise self._reject(422, f"unknown fields: {', '.join(unknown)}")
        inputs = body.get("input")
        if not isinstance(inputs, list) or not inputs or not all(isinstance(t, str) for t in inputs):
            raise self._reject(422, "input must be a non-empty list of strings")
        query = body.get("is_search_query", False)
        if not isinstance(query, bool):
            raise self._reject(422, "is_search_query must be a boolean")

        if model.multivector:
            if "dimensions" in body:
                raise self._reject(422, f"dimensions is not supported by {model.name}")
            rows = [self._multi(model, i, item, query) for i, item in enumerate(inputs)]
            embeddings: list[Any] = [r.tolist() for r in rows]
            used = sum(IMAGE_TOKENS if not query else token_count(t) for t in inputs)
        else:
            dims = body.get("dimensions", model.dims)
            if isinstance(dims, bool) or dims not in model.dim_choices:
                raise self._reject(422, f"dimensions must be one of {sorted(model.dim_choices)} for {model.name}, got {dims!r}")
            texts = [clip_tokens(t, model.max_tokens) for t in inputs]
            salt = QUERY_SALT if query else ""
            embeddings = [truncate_dims(text_vector(t, model.dims, salt=salt), dims).tolist() for t in texts]
            used = sum(token_count(t) for t in texts)
        metadata = {
            "model": model.name,
            "time_taken_inference": round(time.perf_counter() - started, 6),
            "num_embeddings_inferred": len(embeddings),
            "usage": {"total_tokens": used},
        }
        return json_response({"embeddings": embeddings, "metadata": metadata})

    def _check_headers(self, headers: Mapping[str, str]) -> None:
        token = bearer_token(headers)
        if token is None:
            raise self._reject(401, "missing Authorization header: expected 'Bearer <Weaviate Cloud API key>'")
        if token not in self.api_keys:
            raise self._reject(401, "invalid Weaviate Cloud API key")
        cluster = headers.get("x-weaviate-cluster-url")
        if not cluster:
            raise self._reject(401, "missing X-Weaviate-Cluster-Url header")
        if not _valid_cluster_url(cluster):
            raise self._reject(400, f"invalid X-Weaviate-Cluster-Url {cluster!r}: expected an http(s) URL")

    def _multi(self, model: WeaviateModel, index: int, item: str, query: bool) -> Vector:
        """Texts only as queries, raw base64 images only as documents."""
        is_image = looks_like_base64_image(item)
        if query:
            if is_image:
                raise self._reject(422, f"input {index}: {model.name} embeds images only as documents, not as search queries")
            return token_matrix(clip_tokens(item, model.max_tokens), MULTI_VECTOR_WIDTH, salt=QUERY_SALT)
        data = b64decode_strict(item) if is_image else None
        if data is None:
            raise self._reject(
                422,
                f"input {index}: {model.name} embeds texts only as search queries (is_search_query: true); documents must be base64 images",
            )
        try:
            return image_matrix(data, MULTI_VECTOR_WIDTH)
        except ValueError as exc:
            raise self._reject(422, f"input {index}: base64 does not decode to an image: {exc}") from exc

    def _reject(self, status: int, message: str) -> Reject:
        return Reject(self.error_response(status, message))
