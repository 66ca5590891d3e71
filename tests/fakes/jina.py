"""Fake Jina AI embeddings API: POST /v1/embeddings and POST /v1/multi-vector (providers.md §1).

Strict like the real API: each model has its own field allow-list and anything else is a 422 ``extra_forbidden``,
so a client that passes here sends only what each model supports.
"""

from __future__ import annotations

import time
import uuid
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from starlette.responses import Response

from tests.fakes.base import (
    DEFAULT_API_KEY,
    FakeProvider,
    Handler,
    RecordedRequest,
    Reject,
    b64decode_strict,
    bearer_token,
    clip_tokens,
    encode_vector,
    json_response,
    token_count,
)
from tests.fakes.embeddings import (
    Vector,
    image_matrix,
    image_vector,
    late_chunk_vectors,
    text_vector,
    token_matrix,
    truncate_dims,
)

EMBEDDINGS_PATH = "/v1/embeddings"
MULTI_VECTOR_PATH = "/v1/multi-vector"
MAX_ITEMS = 512
MULTI_VECTOR_WIDTH = 128
IMAGE_TOKENS = 1000  # images are billed as tokens; the exact figure doesn't matter
EMBEDDING_TYPES = frozenset({"float", "base64", "binary", "ubinary"})

_BASE_FIELDS = frozenset({"model", "input", "embedding_type"})
_V3_TASKS = frozenset({"retrieval.query", "retrieval.passage", "text-matching", "classification", "separation"})
_V4_TASKS = frozenset({"retrieval.query", "retrieval.passage", "text-matching", "code.query", "code.passage"})
_BOOL_FIELDS = ("normalized", "late_chunking", "truncate", "return_multivector")


@dataclass(frozen=True)
class JinaModel:
    name: str
    dims: int  # full (default) size
    fields: frozenset[str]  # everything else in the body is extra_forbidden
    min_dims: int
    tasks: frozenset[str] = frozenset()
    dim_choices: frozenset[int] = frozenset()  # when set, the only accepted `dimensions`
    images: bool = False
    max_tokens: int = 8192
    path: str = EMBEDDINGS_PATH


MODELS: Mapping[str, JinaModel] = MappingProxyType(
    {
        m.name: m
        for m in (
            JinaModel("jina-embeddings-v2-base-en", 768, _BASE_FIELDS, min_dims=768),
            JinaModel("jina-embeddings-v2-small-en", 512, _BASE_FIELDS, min_dims=512),
            JinaModel(
                "jina-embeddings-v3",
                1024,
                _BASE_FIELDS | {"task", "dimensions", "normalized", "late_chunking", "truncate"},
                min_dims=32,
                tasks=_V3_TASKS,
            ),
            JinaModel("jina-clip-v1", 768, _BASE_FIELDS | {"normalized", "dimensions"}, min_dims=768, images=True),
            JinaModel(
                "jina-clip-v2",
                1024,
                _BASE_FIELDS | {"task", "dimensions", "normalized", "late_chunking", "truncate"},
                min_dims=64,
                tasks=_V3_TASKS,
                images=True,
            ),
            JinaModel(
                "jina-embeddings-v4",
                2048,
                _BASE_FIELDS | {"task", "dimensions", "late_chunking", "truncate", "return_multivector"},
                min_dims=128,
                tasks=_V4_TASKS,
                images=True,
                max_tokens=32768,
            ),
            JinaModel(
                "jina-colbert-v2",
                MULTI_VECTOR_WIDTH,
                _BASE_FIELDS | {"dimensions", "input_type"},
                min_dims=64,
                dim_choices=frozenset({128, 96, 64}),
                path=MULTI_VECTOR_PATH,
            ),
        )
    }
)


@dataclass(frozen=True)
class _Item:
    text: str | None = None
    image: bytes | None = None


def _rid() -> str:
    return uuid.uuid4().hex


def _short(value: Any) -> Any:
    # Echo inputs like the API does, without pasting a whole base64 image back.
    return value[:64] + "..." if isinstance(value, str) and len(value) > 80 else value


class FakeJina(FakeProvider):
    """Fake of api.jina.ai. ``rpm``/``tpm`` only feed the X-RateLimit-Remaining-* headers; nothing is throttled."""

    def __init__(self, api_keys: Iterable[str] = (DEFAULT_API_KEY,), latency: float = 0.0, rpm: int = 500, tpm: int = 1_000_000) -> None:
        self.rpm = rpm
        self.tpm = tpm
        self._usage: deque[tuple[float, int]] = deque()  # (monotonic time, tokens) of answered requests
        super().__init__(api_keys, latency)

    def routes(self) -> dict[str, Handler]:
        return {EMBEDDINGS_PATH: self._embeddings, MULTI_VECTOR_PATH: self._multi_vector}

    def error_response(self, status: int, message: str, *, headers: Mapping[str, str] | None = None) -> Response:
        return json_response({"detail": message}, status, headers)

    def reset(self) -> None:
        super().reset()
        with self._lock:
            self._usage.clear()

    # --- handlers ---------------------------------------------------------------------------------------

    def _embeddings(self, call: RecordedRequest) -> Response:
        body, model = self._common(call, EMBEDDINGS_PATH)
        items = self._items(model, body["input"])
        salt = body.get("task", "")
        dims = body.get("dimensions", model.dims)
        truncate = body.get("truncate", False)
        multivector = body.get("return_multivector", False)
        late = body.get("late_chunking", False)
        if multivector and "dimensions" in body:
            raise self._invalid(model, "dimensions", "dimensions cannot be combined with return_multivector", dims)
        if multivector and late:
            raise self._invalid(model, "late_chunking", "late_chunking cannot be combined with return_multivector", late)
        texts = [self._fit(model, i, it.text, truncate) for i, it in enumerate(items) if it.text is not None]
        used = sum(token_count(t) for t in texts) + IMAGE_TOKENS * sum(it.image is not None for it in items)

        rows: list[Vector]
        if late:
            if any(it.image is not None for it in items):
                raise self._invalid(model, "late_chunking", "late_chunking only supports text inputs", True)
            if sum(token_count(t) for t in texts) > model.max_tokens and not truncate:
                raise self._invalid(
                    model, "input", f"late_chunking concatenates the inputs, which exceed {model.max_tokens} tokens", len(texts)
                )
            rows = late_chunk_vectors(texts, model.dims, salt=salt)
        else:
            text_iter = iter(texts)
            rows = [self._one(it, next(text_iter) if it.text is not None else "", model, salt, multivector) for it in items]
        if not multivector and dims != model.dims:
            rows = [truncate_dims(r, dims) for r in rows]

        key, obj = ("embeddings", "embeddings") if multivector else ("embedding", "embedding")
        data = [{"object": obj, "index": i, key: self._encode(r, body.get("embedding_type", "float"))} for i, r in enumerate(rows)]
        payload = {"model": model.name, "object": "list", "usage": {"total_tokens": used, "prompt_tokens": used}, "data": data}
        return json_response(payload, headers=self._rate_headers(used))

    def _multi_vector(self, call: RecordedRequest) -> Response:
        body, model = self._common(call, MULTI_VECTOR_PATH)
        items = self._items(model, body["input"])
        # Queries are capped at 32 tokens, documents at the model context; the API cuts silently.
        limit = 32 if body.get("input_type") == "query" else model.max_tokens
        texts = [clip_tokens(it.text or "", limit) for it in items]
        dims = body.get("dimensions", model.dims)
        salt = body.get("input_type", "document")
        matrices = [truncate_dims(token_matrix(t, MULTI_VECTOR_WIDTH, salt=salt), dims) for t in texts]
        used = sum(token_count(t) for t in texts)
        data = [
            {"object": "embeddings", "index": i, "embeddings": self._encode(m, body.get("embedding_type", "float"))}
            for i, m in enumerate(matrices)
        ]
        payload = {"model": model.name, "object": "list", "usage": {"total_tokens": used}, "data": data}
        return json_response(payload, headers=self._rate_headers(used))

    # --- validation ---------------------------------------------------------------------------------------

    def _common(self, call: RecordedRequest, path: str) -> tuple[dict[str, Any], JinaModel]:
        """Auth, JSON object body, known model, field allow-list, value checks; returns the body and the model."""
        token = bearer_token(call.headers)
        if token is None:
            raise Reject(self.error_response(401, f"[RID: {_rid()}] Authentication required: missing API key (AUTH_MISSING_API_KEY)"))
        if token not in self.api_keys:
            raise Reject(self.error_response(401, f"[RID: {_rid()}] Invalid API key (AUTH_INVALID_API_KEY)"))
        body = call.body
        if not isinstance(body, dict):
            raise Reject(self.error_response(422, f"[RID: {_rid()}] Request body must be a JSON object"))
        name = body.get("model")
        if not isinstance(name, str):
            raise Reject(self._errors([("body -> model", "Field required", "missing", name)]))
        model = MODELS.get(name)
        if model is None or model.path != path:
            where = f"; use {model.path} for it" if model is not None else ""
            raise Reject(self.error_response(400, f"[RID: {_rid()}] Model '{name}' not found on {path}{where} (INPUT_MODEL_NOT_FOUND)"))
        extra = [
            (f"body -> {name} -> {k}", "Extra inputs are not permitted", "extra_forbidden", v)
            for k, v in body.items()
            if k not in model.fields
        ]
        if extra:
            raise Reject(self._errors(extra))
        self._check_values(model, body)
        return body, model

    def _check_values(self, model: JinaModel, body: dict[str, Any]) -> None:
        inputs = body.get("input")
        if inputs is None:
            raise self._invalid(model, "input", "Field required", None, "missing")
        if not isinstance(inputs, list):
            raise self._invalid(model, "input", "Input should be a valid list", _short(inputs), "list_type")
        if not inputs:
            raise self._invalid(model, "input", "Input list must contain at least 1 item", inputs, "too_short")
        if len(inputs) > MAX_ITEMS:
            raise self._invalid(model, "input", f"Each input list can contain at most {MAX_ITEMS} items", len(inputs), "too_long")
        for name in _BOOL_FIELDS:
            if name in body and not isinstance(body[name], bool):
                raise self._invalid(model, name, "Input should be a valid boolean", body[name], "bool_type")
        kinds = body.get("embedding_type", "float")
        kind_list = kinds if isinstance(kinds, list) and kinds else [kinds]
        if not all(isinstance(k, str) and k in EMBEDDING_TYPES for k in kind_list):
            raise self._invalid(model, "embedding_type", f"Input should be one of {sorted(EMBEDDING_TYPES)}", kinds, "enum")
        if "task" in body and body["task"] not in model.tasks:
            raise self._invalid(model, "task", f"Input should be one of {sorted(model.tasks)}", body["task"], "enum")
        if "dimensions" in body:
            dims = body["dimensions"]
            ok = isinstance(dims, int) and not isinstance(dims, bool)
            ok = ok and (dims in model.dim_choices if model.dim_choices else model.min_dims <= dims <= model.dims)
            if not ok:
                allowed = sorted(model.dim_choices) if model.dim_choices else f"{model.min_dims}..{model.dims}"
                raise self._invalid(model, "dimensions", f"dimensions must be in {allowed} for {model.name}", dims, "value_error")
        if "input_type" in body and body["input_type"] not in ("query", "document"):
            raise self._invalid(model, "input_type", "Input should be 'query' or 'document'", body["input_type"], "enum")

    def _items(self, model: JinaModel, inputs: list[Any]) -> list[_Item]:
        items = []
        for i, raw in enumerate(inputs):
            field = f"input -> {i}"
            if isinstance(raw, str):
                items.append(_Item(text=raw))
            elif isinstance(raw, dict) and len(raw) == 1 and isinstance(raw.get("text"), str):
                items.append(_Item(text=raw["text"]))
            elif isinstance(raw, dict) and len(raw) == 1 and isinstance(raw.get("image"), str):
                if not model.images:
                    raise self._invalid(model, field, f"{model.name} is a text-only model and does not accept images", "{image: ...}")
                items.append(_Item(image=self._image(model, field, raw["image"])))
            else:
                raise self._invalid(model, field, 'Each input must be a string, {"text": str} or {"image": str}', _short(raw))
        return items

    def _image(self, model: JinaModel, field: str, value: str) -> bytes:
        if value.startswith(("http://", "https://")):
            raise self._invalid(model, field, "fake cannot fetch URLs; send the image as base64", _short(value))
        # The real API documents raw base64; a data: URI is accepted too, as its base64 part.
        data = b64decode_strict(value.partition(",")[2] if value.startswith("data:") else value)
        if data is None:
            raise self._invalid(model, field, "image is neither an http(s) URL nor valid base64", _short(value))
        try:
            image_vector(data, 8)  # decode check only
        except ValueError as exc:
            raise self._invalid(model, field, f"base64 does not decode to an image: {exc}", _short(value)) from exc
        return data

    def _fit(self, model: JinaModel, index: int, text: str | None, truncate: bool) -> str:
        text = text or ""
        n = token_count(text)
        if n <= model.max_tokens:
            return text
        if truncate:
            return clip_tokens(text, model.max_tokens)
        raise self._invalid(
            model, f"input -> {index}", f"input has {n} tokens, more than the maximum of {model.max_tokens}; set truncate: true", n
        )

    def _invalid(self, model: JinaModel, field: str, message: str, value: Any, kind: str = "value_error") -> Reject:
        return Reject(self._errors([(f"body -> {model.name} -> {field}", message, kind, value)]))

    def _errors(self, errors: list[tuple[str, str, str, Any]]) -> Response:
        if len(errors) == 1 and errors[0][2] != "extra_forbidden":
            detail = f"[RID: {_rid()}] Validation error: '{errors[0][0]}' {errors[0][1]}"
        else:
            detail = f"[RID: {_rid()}] Validation errors in {len(errors)} fields"
        entries = [{"field": f, "message": m, "type": t, "input": v} for f, m, t, v in errors]
        return json_response({"detail": detail, "errors": entries}, 422)

    # --- output ---------------------------------------------------------------------------------------------

    @staticmethod
    def _one(item: _Item, text: str, model: JinaModel, salt: str, multivector: bool) -> Vector:
        # Images carry no task salt: the task adapters apply to text.
        if item.image is not None:
            return image_matrix(item.image, MULTI_VECTOR_WIDTH) if multivector else image_vector(item.image, model.dims)
        return token_matrix(text, MULTI_VECTOR_WIDTH, salt=salt) if multivector else text_vector(text, model.dims, salt=salt)

    @staticmethod
    def _encode(vector: Vector, kinds: str | list[str]) -> Any:
        # A list of embedding types gives an object keyed by type (the real shape is not documented).
        if vector.ndim == 2:
            if isinstance(kinds, list):
                return {k: [encode_vector(row, k) for row in vector] for k in kinds}
            return [encode_vector(row, kinds) for row in vector]
        if isinstance(kinds, list):
            return {k: encode_vector(vector, k) for k in kinds}
        return encode_vector(vector, kinds)

    def _rate_headers(self, used: int) -> dict[str, str]:
        now = time.monotonic()
        with self._lock:
            self._usage.append((now, used))
            while self._usage and self._usage[0][0] < now - 60:
                self._usage.popleft()
            requests = len(self._usage)
            tokens = sum(t for _, t in self._usage)
        return {
            "X-RateLimit-Remaining-Requests": str(max(0, self.rpm - requests)),
            "X-RateLimit-Remaining-Tokens": str(max(0, self.tpm - tokens)),
        }
