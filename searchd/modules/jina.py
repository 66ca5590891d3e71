"""Jina AI: text2vec-jinaai, multi2vec-jinaai, multi2multivec-jinaai, text2multivec-jinaai.

Jina validates each body against the model's own schema and rejects fields the model
does not take, so every request is built from the model's capabilities
(reference/providers.md §1).  Images go as raw base64; queries use the
``retrieval.query`` task and objects ``retrieval.passage`` where the model has tasks.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from searchd.config.spec import CollectionSpec, NamedVectorSpec
from searchd.modules.base import ModelInfo, ModuleInfo, ModuleRuntime
from searchd.modules.fields import as_text
from searchd.modules.provider import Provider
from searchd.modules.remote import Batcher, Item, RemoteVectorizer, Role, namespace, provider_client, rows

JINA = Provider(name="Jina AI", default_base_url="https://api.jina.ai", env_var="JINAAI_APIKEY", key_header="X-JinaAI-Api-Key", max_batch=512)
DOCS = "https://jina.ai/embeddings/"
TASKS: Mapping[Role, str] = {"document": "retrieval.passage", "query": "retrieval.query"}
LATE = frozenset({"lateChunking", "truncate"})


@dataclass(frozen=True)
class JinaModel:
    """What a Jina model's request schema allows."""

    info: ModelInfo
    tasks: bool = False
    normalized: bool = False
    send_dimensions: bool = False
    late_chunking: bool = False
    truncate: bool = False


def _model(name: str, dims: int, low: int, high: int, **caps: Any) -> JinaModel:
    options = frozenset(k for k, key in (("lateChunking", "late_chunking"), ("truncate", "truncate")) if caps.get(key))
    info = ModelInfo(name, dims, low, high, options=options, matryoshka=bool(caps.get("send_dimensions")))
    return JinaModel(info, **caps)


TEXT_MODELS = {
    m.info.name: m
    for m in (
        _model("jina-embeddings-v2-base-en", 768, 768, 768),
        _model("jina-embeddings-v2-small-en", 512, 512, 512),
        _model("jina-embeddings-v3", 1024, 32, 1024, tasks=True, normalized=True, send_dimensions=True, late_chunking=True, truncate=True),
        _model("jina-embeddings-v4", 2048, 128, 2048, tasks=True, send_dimensions=True, late_chunking=True, truncate=True),
    )
}
CLIP_MODELS = {
    m.info.name: m
    for m in (
        _model("jina-clip-v2", 1024, 64, 1024, normalized=True, send_dimensions=True, truncate=True),
        _model("jina-clip-v1", 768, 768, 768, normalized=True),
    )
}
V4_MULTI = _model("jina-embeddings-v4", 128, 128, 128, tasks=True, truncate=True)
COLBERT = JinaModel(ModelInfo("jina-colbert-v2", 128, 64, 128, allowed_dimensions=frozenset({128, 96, 64})), send_dimensions=True)


class JinaVectorizer(RemoteVectorizer):
    def __init__(self, collection: CollectionSpec, vector: NamedVectorSpec, settings: Mapping[str, Any], runtime: ModuleRuntime, module: ModuleInfo, model: JinaModel, **shape: Any) -> None:
        self.module = module
        self.model = model
        spec = vector.vectorizer
        self.chosen_dimensions = spec.dimensions if model.send_dimensions else None
        self.truncate = None if spec.truncate is None else spec.truncate != "NONE"
        client = provider_client(module, JINA, vector, settings, runtime)
        params = {"dimensions": self.chosen_dimensions, "truncate": self.truncate, "late": spec.late_chunking}
        batcher = Batcher(client, runtime.cache, namespace(module.name, model.info.name, **params), self.send, client.settings.batch_size)
        super().__init__(collection, vector, batcher, spec.dimensions or model.info.default_dimensions, **shape)

    def body(self, inputs: list[Any], role: Role) -> dict[str, Any]:
        model = self.model
        body: dict[str, Any] = {"model": model.info.name, "input": inputs, "embedding_type": "float"}
        if model.tasks:
            body["task"] = TASKS[role]
        if model.normalized:
            body["normalized"] = True
        if self.chosen_dimensions is not None:
            body["dimensions"] = self.chosen_dimensions
        if model.truncate and self.truncate is not None:
            body["truncate"] = self.truncate
        return body

    def wire_input(self, item: Item) -> Any:
        return item.value

    async def send(self, items: Sequence[Item], role: Role, keys: Mapping[str, str]) -> list[np.ndarray]:
        body = self.body([self.wire_input(item) for item in items], role)
        answer = await self.batcher.client.post("/v1/embeddings", body, self.headers(keys))
        return rows(answer.get("data") if isinstance(answer, dict) else None, "embedding")

    def headers(self, keys: Mapping[str, str]) -> dict[str, str]:
        key = self.batcher.client.api_key(keys)
        return {"Authorization": f"Bearer {key}"} if key else {}


class JinaTextVectorizer(JinaVectorizer):
    """text2vec-jinaai; with lateChunking each object is one document whose fields are its chunks."""

    def __init__(self, collection: CollectionSpec, vector: NamedVectorSpec, settings: Mapping[str, Any], runtime: ModuleRuntime, module: ModuleInfo, model: JinaModel) -> None:
        late = vector.vectorizer.late_chunking
        super().__init__(collection, vector, settings, runtime, module, model, multi_vector=late and vector.index.matrices)
        self.late_chunking = late

    def items_of(self, properties: Mapping[str, Any]) -> list[tuple[str, Item]]:
        if not self.late_chunking:
            return super().items_of(properties)
        chunks: list[str] = []
        for name in self.text_fields:
            value = properties.get(name)
            if value in (None, "", []) or self.weights[name] <= 0:
                continue
            if isinstance(value, list):
                chunks.extend(str(v) for v in value if str(v).strip())
            else:
                chunks.append(as_text(value))
        # One item per document: the chunks must reach Jina together, in order, and alone.
        return [("", Item("chunks", json.dumps(chunks)))] if chunks else []

    def combine(self, parts: Sequence[tuple[float, np.ndarray]]) -> np.ndarray | None:
        if self.late_chunking and parts and not self.multi_vector:
            # A single vector for a late-chunked document: the mean of its chunk vectors.
            return super().combine([(1.0, row) for _, matrix in parts for row in np.atleast_2d(matrix)])
        return super().combine([(1.0 if self.late_chunking else w, a) for w, a in parts])

    async def send(self, items: Sequence[Item], role: Role, keys: Mapping[str, str]) -> list[np.ndarray]:
        if not items or items[0].kind != "chunks":
            return await super().send(items, role, keys)
        out = []
        for item in items:
            body = {**self.body(json.loads(item.value), role), "late_chunking": True}
            answer = await self.batcher.client.post("/v1/embeddings", body, self.headers(keys))
            out.append(np.vstack(rows(answer.get("data") if isinstance(answer, dict) else None, "embedding")))
        return out


class JinaMultimodalVectorizer(JinaVectorizer):
    """multi2vec-jinaai (CLIP) and multi2multivec-jinaai (v4 multi-vector): text and image inputs."""

    def wire_input(self, item: Item) -> Any:
        return {"image": item.value} if item.kind == "image" else {"text": item.value}

    def body(self, inputs: list[Any], role: Role) -> dict[str, Any]:
        body = super().body(inputs, role)
        if self.multi_vector:
            body["return_multivector"] = True
        return body


class ColbertVectorizer(JinaVectorizer):
    """text2multivec-jinaai: jina-colbert-v2 through /v1/multi-vector."""

    async def send(self, items: Sequence[Item], role: Role, keys: Mapping[str, str]) -> list[np.ndarray]:
        body = {
            "model": self.model.info.name,
            "input": [item.value for item in items],
            "embedding_type": "float",
            "dimensions": self.dimensions,
            "input_type": "query" if role == "query" else "document",
        }
        answer = await self.batcher.client.post("/v1/multi-vector", body, self.headers(keys))
        return rows(answer.get("data") if isinstance(answer, dict) else None, "embeddings")


def _text(collection: CollectionSpec, vector: NamedVectorSpec, settings: Mapping[str, Any], runtime: ModuleRuntime) -> JinaTextVectorizer:
    return JinaTextVectorizer(collection, vector, settings, runtime, TEXT, TEXT_MODELS[vector.vectorizer.model or TEXT.default_model or ""])


def _clip(collection: CollectionSpec, vector: NamedVectorSpec, settings: Mapping[str, Any], runtime: ModuleRuntime) -> JinaMultimodalVectorizer:
    model = CLIP_MODELS[vector.vectorizer.model or MULTI.default_model or ""]
    return JinaMultimodalVectorizer(collection, vector, settings, runtime, MULTI, model, text_by_default=False, image_queries=True)


def _v4_multi(collection: CollectionSpec, vector: NamedVectorSpec, settings: Mapping[str, Any], runtime: ModuleRuntime) -> JinaMultimodalVectorizer:
    return JinaMultimodalVectorizer(collection, vector, settings, runtime, MULTI_MULTI, V4_MULTI, multi_vector=True, text_by_default=False, image_queries=True)


def _colbert(collection: CollectionSpec, vector: NamedVectorSpec, settings: Mapping[str, Any], runtime: ModuleRuntime) -> ColbertVectorizer:
    return ColbertVectorizer(collection, vector, settings, runtime, TEXT_MULTI, COLBERT, multi_vector=True)


TEXT = ModuleInfo(
    provider=JINA,
    name="text2vec-jinaai",
    title="Jina AI text embeddings (jina-embeddings-v2, v3, v4)",
    documentation=DOCS,
    modalities=frozenset({"text"}),
    models={name: m.info for name, m in TEXT_MODELS.items()},
    default_model="jina-embeddings-v2-base-en",
    factory=_text,
)
MULTI = ModuleInfo(
    provider=JINA,
    name="multi2vec-jinaai",
    title="Jina AI CLIP text + image embeddings (jina-clip-v2, v1)",
    documentation=DOCS,
    modalities=frozenset({"text", "image"}),
    models={name: m.info for name, m in CLIP_MODELS.items()},
    default_model="jina-clip-v2",
    factory=_clip,
)
MULTI_MULTI = ModuleInfo(
    provider=JINA,
    name="multi2multivec-jinaai",
    title="Jina AI multi-vector text + image embeddings (jina-embeddings-v4)",
    documentation=DOCS,
    modalities=frozenset({"text", "image"}),
    models={V4_MULTI.info.name: V4_MULTI.info},
    default_model=V4_MULTI.info.name,
    factory=_v4_multi,
    multi_vector=True,
)
TEXT_MULTI = ModuleInfo(
    provider=JINA,
    name="text2multivec-jinaai",
    title="Jina AI ColBERT late-interaction text embeddings (jina-colbert-v2)",
    documentation=DOCS,
    modalities=frozenset({"text"}),
    models={COLBERT.info.name: COLBERT.info},
    default_model=COLBERT.info.name,
    factory=_colbert,
    multi_vector=True,
)
MODULES = (TEXT, MULTI, MULTI_MULTI, TEXT_MULTI)
