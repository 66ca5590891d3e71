"""The part of every remote vectorizer that is not about one provider's wire format.

An object becomes *items* (one per non-empty text or image field).  Items are
looked up in the embedding cache; the misses are sent in provider-sized batches of
one kind (text or image), concurrently — ``ProviderClient`` bounds how many are in
flight.  A batch the provider rejects is split in halves until the bad item is
alone, so one bad object never fails the others.  Per-field results are then
combined by field weight (one vector) or stacked (a multi-vector).
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from searchd.config.spec import CollectionSpec, NamedVectorSpec
from searchd.errors import ProviderError, ProviderRejectedInput, QueryError, SearchdError
from searchd.modules.base import NO_KEYS, ModuleInfo, ModuleRuntime, Vector
from searchd.modules.cache import EmbeddingCache, cache_key
from searchd.modules.fields import as_text, field_weights, normalized_mean, text_fields_of
from searchd.modules.provider import Provider, ProviderClient, ProviderSettings

Kind = Literal["text", "image", "chunks"]  # chunks: a JSON list of one document's texts
Role = Literal["document", "query"]


@dataclass(frozen=True)
class Item:
    kind: Kind
    value: str  # the text, or the image as standard base64


# Sends one batch of same-kind items; returns one vector or matrix per item, in order.
SendBatch = Callable[[Sequence[Item], Role, Mapping[str, str]], Awaitable[list[np.ndarray]]]


def _unit_rows(array: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(array, axis=-1, keepdims=True)
    return (array / np.where(norms == 0, 1, norms)).astype(np.float32)


class Batcher:
    """Cache lookup, batching, concurrency and bisection for one vectorizer."""

    def __init__(self, client: ProviderClient, cache: EmbeddingCache, namespace: str, send: SendBatch, batch_size: int) -> None:
        self.client = client
        self._cache = cache
        self._namespace = namespace
        self._send = send
        self._batch_size = max(1, batch_size)

    def _key(self, item: Item, role: Role) -> bytes:
        return cache_key(f"{self._namespace}|{role}", item.kind, item.value)

    async def embed(self, items: Sequence[Item], role: Role, keys: Mapping[str, str]) -> list[np.ndarray | SearchdError]:
        unique = {self._key(item, role): item for item in items}
        # Single flight, keyed like the cache: two vectors embedding the same inputs with the same model at once
        # (or two writes of one object) send one request; the other waits for its answer.
        mine, theirs = self._cache.claim(unique)
        found: dict[bytes, np.ndarray | SearchdError] = {}
        try:
            found.update(self._cache.get_many(mine))  # after claiming: a flight that just landed is in the cache
            await self._fetch([(key, unique[key]) for key in mine if key not in found], role, keys, found)
        finally:
            self._cache.settle(mine, found)
        for key, future in theirs.items():
            vector = await asyncio.wrap_future(future)
            if vector is not None:
                found[key] = vector
        retry = [unique[key] for key in theirs if key not in found]  # their fetch failed: ours may not (other keys, a transient error)
        if retry:
            found.update(zip((self._key(item, role) for item in retry), await self.embed(retry, role, keys)))
        return [found[self._key(item, role)] for item in items]

    async def _fetch(self, missing: list[tuple[bytes, Item]], role: Role, keys: Mapping[str, str], found: dict[bytes, np.ndarray | SearchdError]) -> None:
        batches: list[list[tuple[bytes, Item]]] = []
        for kind in dict.fromkeys(item.kind for _, item in missing):  # batches hold one kind; a late-chunked document goes alone
            same = [pair for pair in missing if pair[1].kind == kind]
            size = 1 if kind == "chunks" else self._batch_size
            batches.extend(same[i : i + size] for i in range(0, len(same), size))
        outcomes = await asyncio.gather(*(self._send_split(batch, role, keys) for batch in batches))
        fresh: dict[bytes, np.ndarray] = {}
        for batch, results in zip(batches, outcomes):
            for (key, _), result in zip(batch, results):
                found[key] = result
                if isinstance(result, np.ndarray):
                    fresh[key] = result
        if fresh:
            self._cache.put_many(fresh)

    async def _send_split(self, batch: list[tuple[bytes, Item]], role: Role, keys: Mapping[str, str]) -> list[np.ndarray | SearchdError]:
        try:
            vectors = await self._send([item for _, item in batch], role, keys)
        except SearchdError as exc:
            if len(batch) == 1 or not isinstance(exc, ProviderRejectedInput):
                return [exc] * len(batch)
            half = len(batch) // 2
            first, second = await asyncio.gather(self._send_split(batch[:half], role, keys), self._send_split(batch[half:], role, keys))
            return [*first, *second]
        if len(vectors) != len(batch):
            error = ProviderError(f"{self.client.provider.name} returned {len(vectors)} embeddings for {len(batch)} inputs", "the provider or proxy at baseURL is not speaking its documented protocol")
            return [error] * len(batch)
        return [np.asarray(v, dtype=np.float32) for v in vectors]


class RemoteVectorizer:
    """A vectorizer whose embeddings come from a provider; modules supply ``send``."""

    def __init__(
        self,
        collection: CollectionSpec,
        vector: NamedVectorSpec,
        batcher: Batcher,
        dimensions: int,
        multi_vector: bool = False,
        text_by_default: bool = True,
        image_queries: bool = False,
    ) -> None:
        self._dimensions = dimensions
        self.multi_vector = multi_vector
        self.image_queries = image_queries
        self.batcher = batcher
        self.text_fields = text_fields_of(collection, vector, text_by_default)
        self.image_fields = vector.vectorizer.image_fields or ()
        self.weights = field_weights(vector, (*self.text_fields, *self.image_fields))

    @property
    def dimensions(self) -> int:
        return self._dimensions

    def items_of(self, properties: Mapping[str, Any]) -> list[tuple[str, Item]]:
        items: list[tuple[str, Item]] = []
        for name in self.text_fields:
            value = properties.get(name)
            if value not in (None, "", []) and self.weights[name] > 0:
                items.append((name, Item("text", as_text(value))))
        for name in self.image_fields:
            value = properties.get(name)
            if value and self.weights[name] > 0:
                items.append((name, Item("image", str(value))))
        return items

    def combine(self, parts: Sequence[tuple[float, np.ndarray]]) -> Vector | None:
        """One vector: the weighted mean of unit field vectors; a multi-vector: the rows of every field."""
        if not parts:
            return None
        if self.multi_vector:
            return np.vstack([weight * _unit_rows(np.atleast_2d(array)) for weight, array in parts]).astype(np.float32)
        return normalized_mean([(weight, _unit_rows(array)) for weight, array in parts])

    def _checked(self, result: np.ndarray | SearchdError) -> np.ndarray | SearchdError:
        """An embedding of another length than the configured one is this object's error, not a broken index."""
        if isinstance(result, np.ndarray) and (result.size == 0 or result.shape[-1] != self.dimensions):
            width = result.shape[-1] if result.ndim else 0
            return ProviderError(
                f"{self.batcher.client.provider.name} ({self.batcher.client.module}) returned {width}-dimensional embeddings, but this vector has {self.dimensions} dimensions",
                "set dimensions to the length the model returns, or check the model name and baseURL",
            )
        return result

    async def embed_objects(self, objects: Sequence[Mapping[str, Any]], keys: Mapping[str, str] = NO_KEYS) -> list[Vector | None | SearchdError]:
        per_object = [self.items_of(properties) for properties in objects]
        flat = [item for items in per_object for _, item in items]
        results = iter([self._checked(r) for r in await self.batcher.embed(flat, "document", keys)])
        out: list[Vector | None | SearchdError] = []
        for items in per_object:
            embedded = [(name, next(results)) for name, _ in items]
            error = next((r for _, r in embedded if isinstance(r, SearchdError)), None)
            out.append(error if error is not None else self.combine([(self.weights.get(n, 1.0), r) for n, r in embedded if isinstance(r, np.ndarray)]))
        return out

    async def _query(self, items: Sequence[Item], keys: Mapping[str, str]) -> Vector:
        results = [self._checked(r) for r in await self.batcher.embed(items, "query", keys)]
        for result in results:
            if isinstance(result, SearchdError):
                raise result
        combined = self.combine([(1.0, r) for r in results if isinstance(r, np.ndarray)])
        if combined is None:
            raise QueryError("the query has nothing to embed", "give at least one non-empty concept")
        return combined

    async def embed_text_query(self, texts: Sequence[str], keys: Mapping[str, str] = NO_KEYS) -> Vector:
        # Several concepts are averaged, as Weaviate does (stacked, for a multi-vector).
        return await self._query([Item("text", t) for t in texts if t.strip()], keys)

    async def embed_image_query(self, image: bytes, keys: Mapping[str, str] = NO_KEYS) -> Vector:
        if not self.image_queries:
            raise QueryError("this vector's module takes text queries only; nearImage needs an image module", "use nearText, or target a multi2vec vector")
        return await self._query([Item("image", base64.b64encode(image).decode())], keys)


def provider_client(module: ModuleInfo, provider: Provider, vector: NamedVectorSpec, settings: Mapping[str, Any], runtime: ModuleRuntime) -> ProviderClient:
    chosen = ProviderSettings.from_config(provider, settings, runtime.environ, vector.vectorizer.base_url)
    return ProviderClient(module.name, provider, chosen, runtime.pool, observe=runtime.on_provider_call)


def namespace(module: str, model: str, **parameters: Any) -> str:
    """The cache namespace: what, besides the input, decides the embedding."""
    return f"{module}|{model}|{json.dumps(parameters, sort_keys=True)}"


def rows(data: Any, field: str) -> list[np.ndarray]:
    """The embeddings of a provider answer ordered by ``index`` when the items carry one."""
    if not isinstance(data, list):
        raise ProviderError("the provider's answer has no embeddings list", "the provider or proxy at baseURL is not speaking its documented protocol")
    ordered = sorted(data, key=lambda d: d.get("index", 0)) if all(isinstance(d, dict) for d in data) else data
    out = []
    for entry in ordered:
        value = entry.get(field) or entry.get("embedding") or entry.get("embeddings") if isinstance(entry, dict) else entry
        if not value:
            raise ProviderError("the provider's answer has an empty embedding", "the provider or proxy at baseURL is not speaking its documented protocol")
        out.append(np.asarray(value, dtype=np.float32))
    return out
