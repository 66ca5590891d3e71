"""Fake NVIDIA NIM embeddings API: POST /v1/embeddings (providers.md §2).

Error shapes follow §2.6: 400 -> {"message"}; 401 -> no body, only WWW-Authenticate; everything else -> problem details.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from http import HTTPStatus
from types import MappingProxyType
from typing import Any

from starlette.responses import Response

from tests.fakes.base import (
    FakeProvider,
    Handler,
    RecordedRequest,
    Reject,
    b64decode_strict,
    bearer_token,
    clip_tokens,
    encode_vector,
    json_response,
    looks_like_base64_image,
    token_count,
)
from tests.fakes.embeddings import Vector, image_vector, text_vector, truncate_dims

EMBEDDINGS_PATH = "/v1/embeddings"
DIMS = 1024
MAX_IMAGE_BYTES = 200 * 1024
IMAGE_TOKENS = 256
WWW_AUTHENTICATE = (
    'Bearer error="invalid_token", error_description="Bearer token is malformed", '
    'error_uri="https://tools.ietf.org/html/rfc6750#section-3.1"'
)
_DATA_URI_RE = re.compile(r"^data:image/(png|jpeg|jpg);base64,(.*)$", re.DOTALL)
_COMMON_FIELDS = frozenset({"input", "model", "encoding_format", "user"})


@dataclass(frozen=True)
class NvidiaModel:
    name: str
    fields: frozenset[str]
    images: bool = False
    needs_input_type: bool = False  # asymmetric QA models: input_type or a -query/-passage name suffix
    max_tokens: int = 8192
    dims: int = DIMS
    dim_choices: frozenset[int] = frozenset()  # when set, the only accepted `dimensions` (Matryoshka sizes)


NVCLIP = NvidiaModel("nvidia/nvclip", _COMMON_FIELDS | {"truncate"}, images=True)
E5 = NvidiaModel("nvidia/nv-embedqa-e5-v5", _COMMON_FIELDS | {"input_type", "truncate"}, needs_input_type=True, max_tokens=512)
# Any other nvidia/* name: a text model with dynamic dimensions.
GENERIC_FIELDS = _COMMON_FIELDS | {"input_type", "truncate", "dimensions"}
# Dynamic embeddings ("Matryoshka"): 2048 by default, or one of the smaller sizes in `dimensions`.
LLAMA_EMBEDQA = NvidiaModel(
    "nvidia/llama-3.2-nv-embedqa-1b-v2", GENERIC_FIELDS, needs_input_type=True, dims=2048, dim_choices=frozenset({384, 512, 768, 1024, 2048})
)
MODELS: Mapping[str, NvidiaModel] = MappingProxyType({m.name: m for m in (NVCLIP, E5, LLAMA_EMBEDQA)})


def resolve_model(name: str) -> tuple[NvidiaModel, str | None] | None:
    """The model behind ``name`` and the input_type implied by a -query/-passage suffix; None if unknown."""
    for suffix in ("-query", "-passage"):
        if name.endswith(suffix) and name.removesuffix(suffix) in MODELS:
            return MODELS[name.removesuffix(suffix)], suffix[1:]
    if name in MODELS:
        return MODELS[name], None
    if name.startswith("nvidia/") and len(name) > len("nvidia/"):
        return NvidiaModel(name, GENERIC_FIELDS), None
    return None


class FakeNvidia(FakeProvider):
    """Fake of integrate.api.nvidia.com (or a self-hosted NIM)."""

    def routes(self) -> dict[str, Handler]:
        return {EMBEDDINGS_PATH: self._embeddings}

    def error_response(self, status: int, message: str, *, headers: Mapping[str, str] | None = None) -> Response:
        if status == 401:
            return Response(status_code=401, headers={"WWW-Authenticate": WWW_AUTHENTICATE, **(headers or {})})
        if status == 400:
            return json_response({"message": message}, 400, headers)
        try:
            title = HTTPStatus(status).phrase
        except ValueError:
            title = "Error"
        problem = {"type": "about:blank", "title": title, "status": status, "detail": message, "requestId": str(uuid.uuid4())}
        return json_response(problem, status, headers)

    # --- handler ----------------------------------------------------------------------------------------

    def _embeddings(self, call: RecordedRequest) -> Response:
        if bearer_token(call.headers) not in self.api_keys:
            raise Reject(self.error_response(401, "Unauthorized"))
        body = call.body
        if not isinstance(body, dict):
            raise self._unvalidated("model_attributes_type", (), "Input should be a valid dictionary", body)
        name = body.get("model")
        if not isinstance(name, str):
            raise self._unvalidated("missing", ("body", "model"), "Field required", name)
        resolved = resolve_model(name)
        if resolved is None:
            raise Reject(self.error_response(404, f"Model '{name}' not found"))
        model, implied_type = resolved
        for key, value in body.items():
            if key not in model.fields:
                raise self._unvalidated("extra_forbidden", ("body", key), "Extra inputs are not permitted", value)
        texts = self._inputs(body)
        input_type = self._input_type(model, body, implied_type)
        truncate = self._enum(body, "truncate", ("NONE", "START", "END"), "NONE")
        encoding = self._enum(body, "encoding_format", ("float", "base64"), "float")
        dims = self._dimensions(model, body)

        vectors: list[Vector] = []
        used = 0
        for text in texts:
            image = self._image(text) if model.images else None
            if image is not None:
                vectors.append(image_vector(image, model.dims))
                used += IMAGE_TOKENS
                continue
            if model.images and looks_like_base64_image(text):
                raise Reject(self.error_response(422, "Raw base64 is not supported; send images as data:image/png;base64,<data>"))
            text = self._fit(model, text, truncate)
            vectors.append(text_vector(text, model.dims, salt=input_type or ""))
            used += token_count(text)
        if dims != model.dims:
            vectors = [truncate_dims(v, dims) for v in vectors]
        data = [{"index": i, "embedding": encode_vector(v, encoding), "object": "embedding"} for i, v in enumerate(vectors)]
        return json_response({"object": "list", "data": data, "model": name, "usage": {"prompt_tokens": used, "total_tokens": used}})

    # --- validation -----------------------------------------------------------------------------------------

    def _unvalidated(self, kind: str, loc: tuple[Any, ...], msg: str, value: Any) -> Reject:
        # The hosted API wraps pydantic errors into one 400 message, e.g. for `dimensions` sent to nv-embedqa-e5-v5.
        detail = {"type": kind, "loc": loc, "msg": msg, "input": value}
        return Reject(self.error_response(400, f"Your request cannot be validated, it is incorrect. detail={detail!r}"))

    def _inputs(self, body: dict[str, Any]) -> list[str]:
        raw = body.get("input")
        if raw is None:
            raise self._unvalidated("missing", ("body", "input"), "Field required", None)
        texts = [raw] if isinstance(raw, str) else raw
        if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
            raise self._unvalidated("string_type", ("body", "input"), "Input should be a string or a list of strings", raw)
        if not texts:
            raise self._unvalidated("too_short", ("body", "input"), "List should have at least 1 item after validation, not 0", raw)
        return texts

    def _input_type(self, model: NvidiaModel, body: dict[str, Any], implied: str | None) -> str | None:
        value = body.get("input_type", implied)
        if value is not None and value not in ("query", "passage"):
            raise self._unvalidated("literal_error", ("body", "input_type"), "Input should be 'query' or 'passage'", value)
        if value is None and model.needs_input_type:
            raise Reject(
                self.error_response(400, f"'input_type' parameter is required for asymmetric model {model.name}: use 'query' or 'passage'")
            )
        return value if isinstance(value, str) else None

    def _enum(self, body: dict[str, Any], field: str, allowed: tuple[str, ...], default: str) -> str:
        value = body.get(field, default)
        if value not in allowed:
            raise self._unvalidated("literal_error", ("body", field), f"Input should be one of {', '.join(map(repr, allowed))}", value)
        return str(value)

    def _dimensions(self, model: NvidiaModel, body: dict[str, Any]) -> int:
        value = body.get("dimensions", model.dims)
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= model.dims:
            raise self._unvalidated("value_error", ("body", "dimensions"), f"dimensions must be an integer in 1..{model.dims}", value)
        if model.dim_choices and value not in model.dim_choices:
            raise self._unvalidated("value_error", ("body", "dimensions"), f"dimensions must be one of {sorted(model.dim_choices)}", value)
        return value

    def _image(self, value: str) -> bytes | None:
        """The image bytes of a nvclip data URI, None for a plain text; rejects other data: forms."""
        if not value.startswith("data:"):
            return None
        match = _DATA_URI_RE.match(value)
        if match is None:
            raise Reject(self.error_response(422, "Unsupported image format: expected data:image/(png|jpeg|jpg);base64,<data>"))
        data = b64decode_strict(match.group(2))
        if data is None:
            raise Reject(self.error_response(422, "Invalid base64 image data"))
        if len(data) > MAX_IMAGE_BYTES:
            raise Reject(self.error_response(413, f"Image of {len(data)} bytes exceeds {MAX_IMAGE_BYTES} bytes; upload it as an asset"))
        try:
            image_vector(data, 8)  # decode check only
        except ValueError as exc:
            raise Reject(self.error_response(422, f"Invalid image: {exc}")) from exc
        return data

    def _fit(self, model: NvidiaModel, text: str, truncate: str) -> str:
        n = token_count(text)
        if n <= model.max_tokens:
            return text
        if truncate == "NONE":
            raise Reject(self.error_response(400, f"Input length {n} exceeds maximum allowed token size {model.max_tokens}"))
        return clip_tokens(text, model.max_tokens, keep_end=truncate == "START")
