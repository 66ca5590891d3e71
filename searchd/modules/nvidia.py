"""NVIDIA NIM: multi2vec-nvidia (nvclip) and text2vec-nvidia (reference/providers.md §2).

The hosted API and self-hosted NIM containers speak the same protocol, so ``baseURL``
points either way; a self-hosted NIM usually needs no key.  Texts and images go in
separate requests; images as ``data:image/...;base64,`` URIs, shrunk first when they
exceed the inline limit (nvclip sees 224×224 anyway).
"""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from searchd.config.spec import CollectionSpec, NamedVectorSpec
from searchd.errors import InvalidInput
from searchd.modules.base import ModelInfo, ModuleInfo, ModuleRuntime
from searchd.modules.provider import Provider
from searchd.modules.remote import Batcher, Item, RemoteVectorizer, Role, namespace, provider_client, rows

NVIDIA = Provider(name="NVIDIA NIM", default_base_url="https://integrate.api.nvidia.com", env_var="NVIDIA_APIKEY", key_header="X-Nvidia-Api-Key", max_batch=50)
DOCS = "https://docs.api.nvidia.com/nim/reference/"
INLINE_IMAGE_BYTES = 180_000  # NVIDIA's documented inline limit; larger images need its asset API
INPUT_TYPES: Mapping[Role, str] = {"document": "passage", "query": "query"}

NVCLIP = ModelInfo("nvidia/nvclip", 1024, 1024, 1024)
EMBEDQA = ModelInfo("nvidia/nv-embedqa-e5-v5", 1024, 1024, 1024, options=frozenset({"truncate"}))
# Dynamic embeddings: the service truncates to `dimensions` itself, so it is sent (other models reject the field).
LLAMA_EMBEDQA = ModelInfo(
    "nvidia/llama-3.2-nv-embedqa-1b-v2", 2048, 384, 2048, allowed_dimensions=frozenset({384, 512, 768, 1024, 2048}), options=frozenset({"truncate"}), matryoshka=True
)


def data_uri(b64: str) -> str:
    """A stored image as nvclip wants it: a data URI of a PNG or JPEG no larger than the inline limit."""
    from PIL import Image  # here, not at start: a server with no image module never loads Pillow (about 2 MB)

    raw = base64.b64decode(b64)
    try:
        image = Image.open(io.BytesIO(raw))
    except (OSError, Image.DecompressionBombError) as exc:
        raise InvalidInput(f"an image for nvclip could not be read ({exc})", "store PNG or JPEG images as base64") from exc
    kind = (image.format or "").lower()
    if kind in ("png", "jpeg") and len(raw) <= INLINE_IMAGE_BYTES:
        return f"data:image/{kind};base64,{b64}"
    small = image.convert("RGB")
    small.thumbnail((512, 512))
    for quality in (90, 75, 60):
        out = io.BytesIO()
        small.save(out, format="JPEG", quality=quality)
        if out.tell() <= INLINE_IMAGE_BYTES:
            break
    return f"data:image/jpeg;base64,{base64.b64encode(out.getvalue()).decode()}"


class NvidiaVectorizer(RemoteVectorizer):
    def __init__(self, collection: CollectionSpec, vector: NamedVectorSpec, settings: Mapping[str, Any], runtime: ModuleRuntime, module: ModuleInfo, **shape: Any) -> None:
        spec = vector.vectorizer
        self.model = spec.model or module.default_model or ""
        known = module.model(self.model)
        self.input_types = module.name == "text2vec-nvidia"
        self.truncate = (spec.truncate or "END") if self.input_types else None
        # Only to models known to take it: for an unknown model, dimensions states the length it returns.
        self.send_dimensions = spec.dimensions if known is not None and known.matryoshka else None
        client = provider_client(module, NVIDIA, vector, settings, runtime)
        parameters = {"truncate": self.truncate, **({"dimensions": self.send_dimensions} if self.send_dimensions else {})}
        batcher = Batcher(client, runtime.cache, namespace(module.name, self.model, **parameters), self.send, client.settings.batch_size)
        dimensions = spec.dimensions or (known.default_dimensions if known else 0)
        super().__init__(collection, vector, batcher, dimensions, **shape)

    async def send(self, items: Sequence[Item], role: Role, keys: Mapping[str, str]) -> list[np.ndarray]:
        body: dict[str, Any] = {
            "input": [data_uri(item.value) if item.kind == "image" else item.value for item in items],
            "model": self.model,
            "encoding_format": "float",
        }
        if self.input_types:
            body["input_type"] = INPUT_TYPES[role]
            body["truncate"] = self.truncate
        if self.send_dimensions:
            body["dimensions"] = self.send_dimensions
        key = self.batcher.client.api_key(keys)
        answer = await self.batcher.client.post("/v1/embeddings", body, {"Authorization": f"Bearer {key}"} if key else {})
        return rows(answer.get("data") if isinstance(answer, dict) else None, "embedding")


def _clip(collection: CollectionSpec, vector: NamedVectorSpec, settings: Mapping[str, Any], runtime: ModuleRuntime) -> NvidiaVectorizer:
    return NvidiaVectorizer(collection, vector, settings, runtime, MULTI, text_by_default=False, image_queries=True)


def _text(collection: CollectionSpec, vector: NamedVectorSpec, settings: Mapping[str, Any], runtime: ModuleRuntime) -> NvidiaVectorizer:
    return NvidiaVectorizer(collection, vector, settings, runtime, TEXT)


MULTI = ModuleInfo(
    provider=NVIDIA,
    name="multi2vec-nvidia",
    title="NVIDIA NIM multimodal embeddings (nvidia/nvclip or another NIM model)",
    documentation=DOCS,
    modalities=frozenset({"text", "image"}),
    models={NVCLIP.name: NVCLIP},
    default_model=NVCLIP.name,
    factory=_clip,
    open_models=True,
)
TEXT = ModuleInfo(
    provider=NVIDIA,
    name="text2vec-nvidia",
    title="NVIDIA NIM text embeddings (nvidia/nv-embedqa-e5-v5 or another NIM model)",
    documentation=DOCS,
    modalities=frozenset({"text"}),
    models={EMBEDQA.name: EMBEDQA, LLAMA_EMBEDQA.name: LLAMA_EMBEDQA},
    default_model=EMBEDQA.name,
    factory=_text,
    open_models=True,
)
MODULES = (MULTI, TEXT)
