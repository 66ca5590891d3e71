"""Weaviate Embeddings: text2vec-weaviate (Snowflake Arctic) and multi2multivec-weaviate (ColModernVBERT).

The service authenticates with a Weaviate Cloud key *and* the cluster's URL
(reference/providers.md §3).  Queries set ``is_search_query``.  ColModernVBERT
embeds images as documents and text as queries, nothing else.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from searchd.config.spec import CollectionSpec, NamedVectorSpec
from searchd.errors import ProviderError
from searchd.modules.base import ModelInfo, ModuleInfo, ModuleRuntime
from searchd.modules.provider import Provider
from searchd.modules.remote import Batcher, Item, RemoteVectorizer, Role, namespace, provider_client

TEXT_SERVICE = Provider(
    name="Weaviate Embeddings", default_base_url="https://api.embedding.weaviate.io", env_var="WEAVIATE_APIKEY", key_header="X-Weaviate-Api-Key", max_batch=200
)
# Weaviate sends two images per request to the multimodal model.
IMAGE_SERVICE = Provider(
    name="Weaviate Embeddings", default_base_url="https://api.embedding.weaviate.io", env_var="WEAVIATE_APIKEY", key_header="X-Weaviate-Api-Key", max_batch=2
)
CLUSTER_ENV = "WEAVIATE_CLUSTER_URL"
CLUSTER_HEADER = "x-weaviate-cluster-url"
DOCS = "https://weaviate.io/developers/wcs/embeddings"

ARCTIC_L = ModelInfo("Snowflake/snowflake-arctic-embed-l-v2.0", 1024, 256, 1024, allowed_dimensions=frozenset({1024, 256}), matryoshka=True)
ARCTIC_M = ModelInfo("Snowflake/snowflake-arctic-embed-m-v1.5", 768, 256, 768, allowed_dimensions=frozenset({768, 256}), matryoshka=True)
COLMODERNVBERT = ModelInfo("ModernVBERT/colmodernvbert", 128, 128, 128)


class WeaviateEmbedVectorizer(RemoteVectorizer):
    def __init__(self, collection: CollectionSpec, vector: NamedVectorSpec, settings: Mapping[str, Any], runtime: ModuleRuntime, module: ModuleInfo, provider: Provider, **shape: Any) -> None:
        spec = vector.vectorizer
        model = module.model(spec.model)
        assert model is not None  # enforced by the semantic checks
        self.model = model
        self.send_dimensions = spec.dimensions if model.matryoshka and spec.dimensions else None
        self.cluster_url = settings.get("clusterUrl") or runtime.environ.get(CLUSTER_ENV)
        client = provider_client(module, provider, vector, settings, runtime)
        batcher = Batcher(client, runtime.cache, namespace(module.name, model.name, dimensions=self.send_dimensions), self.send, client.settings.batch_size)
        super().__init__(collection, vector, batcher, spec.dimensions or model.default_dimensions, **shape)

    def headers(self, keys: Mapping[str, str]) -> dict[str, str]:
        headers = {}
        key = self.batcher.client.api_key(keys)
        if key:
            headers["Authorization"] = f"Bearer {key}"
        cluster = keys.get(CLUSTER_HEADER) or self.cluster_url
        if not cluster:
            raise ProviderError(
                "Weaviate Embeddings needs the URL of your Weaviate Cloud cluster",
                f"set modules.{self.batcher.client.module}.clusterUrl or {CLUSTER_ENV}, or send the X-Weaviate-Cluster-Url header",
            )
        headers["X-Weaviate-Cluster-Url"] = cluster
        return headers

    async def send(self, items: Sequence[Item], role: Role, keys: Mapping[str, str]) -> list[np.ndarray]:
        body: dict[str, Any] = {"input": [item.value for item in items], "model": self.model.name}
        if role == "query":
            body["is_search_query"] = True
        if self.send_dimensions is not None:
            body["dimensions"] = self.send_dimensions
        answer = await self.batcher.client.post("/v1/embeddings/embed", body, self.headers(keys))
        embeddings = answer.get("embeddings") if isinstance(answer, dict) else None
        if not isinstance(embeddings, list) or not embeddings:
            raise ProviderError("Weaviate Embeddings answered without embeddings", "the service or proxy at baseURL is not speaking its documented protocol")
        return [np.asarray(e, dtype=np.float32) for e in embeddings]


def _text(collection: CollectionSpec, vector: NamedVectorSpec, settings: Mapping[str, Any], runtime: ModuleRuntime) -> WeaviateEmbedVectorizer:
    return WeaviateEmbedVectorizer(collection, vector, settings, runtime, TEXT, TEXT_SERVICE)


def _images(collection: CollectionSpec, vector: NamedVectorSpec, settings: Mapping[str, Any], runtime: ModuleRuntime) -> WeaviateEmbedVectorizer:
    return WeaviateEmbedVectorizer(collection, vector, settings, runtime, MULTI_MULTI, IMAGE_SERVICE, multi_vector=True, text_by_default=False)


TEXT = ModuleInfo(
    provider=TEXT_SERVICE,
    name="text2vec-weaviate",
    title="Weaviate Embeddings text models (Snowflake Arctic)",
    documentation=DOCS,
    modalities=frozenset({"text"}),
    models={m.name: m for m in (ARCTIC_L, ARCTIC_M)},
    default_model=ARCTIC_L.name,
    factory=_text,
)
MULTI_MULTI = ModuleInfo(
    provider=IMAGE_SERVICE,
    name="multi2multivec-weaviate",
    title="Weaviate Embeddings late-interaction document images (ModernVBERT/colmodernvbert)",
    documentation=DOCS,
    modalities=frozenset({"text", "image"}),
    object_modalities=frozenset({"image"}),
    query_modalities=frozenset({"text"}),
    models={COLMODERNVBERT.name: COLMODERNVBERT},
    default_model=COLMODERNVBERT.name,
    factory=_images,
    multi_vector=True,
)
MODULES = (TEXT, MULTI_MULTI)
