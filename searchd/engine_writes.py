"""The engine's write path: check → embed → store durably → index (searchd.engine_indexes), with the retries a
re-vectorization's swap calls for."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import anyio.to_thread

from searchd.catalog import Catalog, CompiledVector
from searchd.drafts import Draft, draft_object, stored_unchanged, supplied_vectors
from searchd.engine_indexes import ServedIndexes
from searchd.errors import AlreadyExists, ConfigChanged, InvalidInput, NotFound, SearchdError
from searchd.modules.base import NO_KEYS
from searchd.records import StoredObject
from searchd.serving import staging_stamp
from searchd.storage.base import StaleVectors
from searchd.values import check_properties, normalize_uuid

log = logging.getLogger("searchd.engine")

STORE_ATTEMPTS = 3  # embed-and-commit rounds for a write that keeps meeting re-vectorization swaps
# How long a write waits for this replica to swap to vectors another replica promoted (its re-index of them from the
# store); then it fails with a hint to send it again.  Polled: the swap happens on the config manager's loop.
SWAP_WAIT_S = 60.0
SWAP_POLL_S = 0.05


def _public(obj: StoredObject) -> StoredObject:
    return replace(obj, vectors={n: v for n, v in obj.vectors.items() if "#" not in n}) if any("#" in n for n in obj.vectors) else obj


def _now_ms() -> int:
    return int(time.time() * 1000)


class WritePath(ServedIndexes):
    """Puts, merges, deletes and batches: each stored in one transaction, then indexed under the write lock."""

    def draft(self, catalog: Catalog, payload: Any, class_name: str | None = None, object_id: str | None = None) -> Draft:
        """Check one object payload (Weaviate's object JSON) without touching storage."""
        return draft_object(catalog, payload, class_name, object_id)

    def unchanged(self, drafts: Sequence[Draft]) -> list[bool]:
        """Which drafts are stored already exactly as they are: one read per collection (a resumed import skips those)."""
        wanted: dict[str, list[str]] = {}
        for d in drafts:
            wanted.setdefault(d.collection.name, []).append(d.id)
        stored = {(name, found.id): found for name, ids in wanted.items() for found in self.store.get_many(name, ids).values()}
        return [(obj := stored.get((d.collection.name, d.id))) is not None and stored_unchanged(d, _public(obj)) for d in drafts]

    async def embed(self, drafts: Sequence[Draft], keys: Mapping[str, str] = NO_KEYS) -> list[SearchdError | None]:
        """Fill in missing vectors from the vectorizers, batched per named vector; one error slot per draft."""
        errors: list[SearchdError | None] = [None] * len(drafts)
        groups: dict[tuple[str, str], list[int]] = {}
        for position, draft in enumerate(drafts):
            for vector in draft.collection.vectors.values():
                if vector.vectorizer is not None and vector.name not in draft.vectors:
                    groups.setdefault((draft.collection.name, vector.name), []).append(position)
        work = [
            self._embed_into(drafts, positions, drafts[positions[0]].collection.vectors[vector_name], vector_name, errors, keys)
            for (_, vector_name), positions in groups.items()
        ]
        # A write during a re-vectorization is embedded for the new vectors too.
        for shadow in list(self._shadows.values()):
            positions = [p for p, d in enumerate(drafts) if d.collection.name == shadow.collection]
            if shadow.reembed and shadow.target is not None and positions:
                for position in positions:
                    drafts[position].staged.add(shadow.source)
                work.append(self._embed_into(drafts, positions, shadow.target, shadow.source, errors, keys))
        await asyncio.gather(*work)  # named vectors are embedded concurrently: their providers' latencies overlap
        return errors

    async def _embed_into(
        self, drafts: Sequence[Draft], positions: list[int], vector: CompiledVector, name: str, errors: list[SearchdError | None], keys: Mapping[str, str]
    ) -> None:
        assert vector.vectorizer is not None
        results = await vector.vectorizer.embed_objects([drafts[p].properties for p in positions], keys)
        for position, result in zip(positions, results):
            if isinstance(result, SearchdError):
                errors[position] = errors[position] or result
            elif result is not None:
                drafts[position].vectors[name] = result
                drafts[position].embedded.add(name)

    def commit(self, drafts: Sequence[Draft], require_new: bool = False) -> list[StoredObject | ConfigChanged]:
        """Store drafts durably in one transaction, then update the indexes.

        A draft whose vectors were made for settings no longer served fails alone with
        ``ConfigChanged`` (``store_drafts`` embeds it again).
        """
        with self._write_lock:
            # Strictly increasing per commit: updated_ms versions an object (see put_vectors_if_unchanged).
            now = self._last_commit_ms = max(_now_ms(), self._last_commit_ms + 1)
            settled = [self._settle(d) for d in drafts]
            drafts = [d for d in settled if isinstance(d, Draft)]
            pending: dict[str, list[str]] = {}
            for d in drafts:
                if d.created_ms is None:
                    pending.setdefault(d.collection.name, []).append(d.id)
            created = {(c, i): t for c, ids in pending.items() for i, t in self.store.created_times(c, ids).items()}
            if require_new and created:
                (collection, object_id), _ = next(iter(created.items()))
                raise AlreadyExists(f"id '{object_id}' already exists in '{collection}'", "use PUT or PATCH to change it, or omit id to get a new one")
            objects = [
                StoredObject(
                    d.collection.name,
                    d.id,
                    d.properties,
                    dict(d.vectors),
                    d.created_ms if d.created_ms is not None else created.get((d.collection.name, d.id), now),
                    now,
                )
                for d in drafts
            ]
            # On a shared store, what the vectors were made for: another replica may have promoted others since.
            made_for = self._made_for({d.collection.name for d in drafts}) if self.store.replication() is not None else None
            docs = self.store.put_many(objects, made_for)
            objects = [replace(o, doc=doc) for o, doc in zip(objects, docs)]
            self._index([d.staged for d in drafts], objects)
        stored = iter(objects)
        return [_public(next(stored)) if isinstance(d, Draft) else d for d in settled]

    def _made_for(self, collections: set[str]) -> dict[str, dict[str, str]]:
        """What the vectors this process serves (and so writes, once settled) were made for, per collection."""
        made: dict[str, dict[str, str]] = {c: {} for c in collections}
        for (collection, name), serving in self._indexes.items():
            if collection in made:
                made[collection][name] = staging_stamp(serving.vector)
        return made

    def _promoted_elsewhere(self, collections: set[str]) -> list[str]:
        """The vectors of ``collections`` whose stored ones another replica promoted for settings not served here yet."""
        made = self._made_for(collections)
        return [f"{c}.{n}" for c in sorted(collections) for n, stamp in self.store.vector_stamps(c).items() if made[c].get(n) != stamp]

    async def _until_swapped(self, collections: set[str], stale: StaleVectors, deadline: float) -> None:
        """Wait (until ``deadline``) for this replica to serve the settings of the vectors another replica promoted."""
        log.info("a write to %s waits for this replica to serve the vectors another replica promoted, to embed it for them", ", ".join(sorted(collections)))
        while True:
            if time.monotonic() >= deadline:
                raise StaleVectors(f"{stale.problem} within {SWAP_WAIT_S:.0f} s", "send the write again, or to the replica leading the reload") from stale
            await anyio.sleep(SWAP_POLL_S)  # at least once: the store refused, whatever this process's view of it says
            if not self._promoted_elsewhere(collections):
                return

    def _settle(self, draft: Draft) -> Draft | ConfigChanged:
        """The draft as it may be stored now (under the write lock), its vectors checked against the indexes in service.

        A re-vectorization may have ended since the draft was embedded: a vector staged
        for it becomes the vector; a vector made for settings no index serves any more
        means embedding again.
        """
        name = draft.collection.name
        if name not in self.holder.current.collections:
            return ConfigChanged(f"collection '{name}' was removed from the config while this object was written", "check the collection's name in the config")
        serving = {k[1]: s.vector for k, s in self._indexes.items() if k[0] == name}
        sources = {s.source for s in self._shadows.values() if s.collection == name and s.reembed}
        vectors = {n: v for n, v in draft.vectors.items() if n in serving or n in sources}
        promoted = set()
        for staged in draft.staged & draft.vectors.keys():
            final = self._promoted.get((name, staged))
            if final is not None and staged not in sources and final.name in serving and final.same_embedding(serving[final.name]):
                vectors[final.name] = draft.vectors[staged]
                promoted.add(final.name)
        for vector_name, vector in serving.items():
            made_for = draft.collection.vectors.get(vector_name)
            if vector_name in promoted or (made_for is None and vector.vectorizer is None):
                continue
            if made_for is None or not made_for.same_embedding(vector):  # a reindex alone keeps the vectors valid
                return ConfigChanged(f"the vector '{vector_name}' of '{name}' was rebuilt with new settings while this object was embedded", "send it again")
        return replace(draft, vectors=vectors)

    async def write(self, draft: Draft, require_new: bool = False, keys: Mapping[str, str] = NO_KEYS) -> StoredObject:
        (result,) = await self.store_drafts([draft], keys, require_new)
        if isinstance(result, SearchdError):
            raise result
        return result

    async def store_drafts(self, drafts: Sequence[Draft], keys: Mapping[str, str] = NO_KEYS, require_new: bool = False) -> list[StoredObject | SearchdError]:
        """Embed and commit; a draft that met a re-vectorization's swap half-way is drafted and embedded again."""
        results: list[StoredObject | SearchdError | None] = [None] * len(drafts)
        todo = list(enumerate(drafts))
        attempt, swap_deadline = 0, time.monotonic() + SWAP_WAIT_S
        while attempt < STORE_ATTEMPTS:
            errors = await self.embed([d for _, d in todo], keys)
            ready = [(p, d) for (p, d), e in zip(todo, errors) if e is None]
            for (position, _), error in zip(todo, errors):
                results[position] = error
            try:
                committed: list[StoredObject | ConfigChanged] = await anyio.to_thread.run_sync(self.commit, [d for _, d in ready], require_new)
                attempt += 1
            except StaleVectors as stale:
                # Another replica promoted vectors for settings this one does not serve yet, and nothing was stored: once
                # it serves them (a swap, in a moment), the drafts are embedded again for them.  No attempt is spent.
                await self._until_swapped({d.collection.name for _, d in ready}, stale, swap_deadline)
                committed = [ConfigChanged(stale.problem, stale.hint) for _ in ready]
            todo = []
            for (position, draft), result in zip(ready, committed):
                results[position] = result
                if isinstance(result, ConfigChanged) and attempt < STORE_ATTEMPTS:
                    try:
                        todo.append((position, self._redraft(draft)))
                    except SearchdError as exc:
                        results[position] = exc
            if not todo:
                break
        return [r for r in results if r is not None]

    def _redraft(self, draft: Draft) -> Draft:
        """``draft`` checked against the catalog served now, keeping only the vectors it was sent with."""
        try:
            collection = self.holder.current.collection(draft.collection.name)
        except NotFound as exc:  # removed meanwhile: the same answer as for a new write
            raise InvalidInput(exc.problem, exc.hint) from exc
        sent = {n: v for n, v in draft.vectors.items() if n not in draft.embedded and "#" not in n}
        vectors = supplied_vectors(collection, {"vectors": sent})
        return Draft(collection, draft.id, check_properties(collection, draft.properties), vectors, draft.created_ms)

    async def batch(self, catalog: Catalog, payloads: Sequence[Any], keys: Mapping[str, str] = NO_KEYS) -> list[StoredObject | SearchdError]:
        """Store every valid object; each bad one fails alone with its own error."""
        results: list[StoredObject | SearchdError | None] = [None] * len(payloads)
        drafts: list[tuple[int, Draft]] = []

        def check() -> None:
            for position, payload in enumerate(payloads):
                try:
                    drafts.append((position, self.draft(catalog, payload)))
                except SearchdError as exc:
                    results[position] = exc

        await anyio.to_thread.run_sync(check)  # checking a batch (decoding its images) takes milliseconds: off the event loop
        stored = await self.store_drafts([d for _, d in drafts], keys)
        for (position, _), result in zip(drafts, stored):
            results[position] = result
        return [r for r in results if r is not None]

    async def merge(self, catalog: Catalog, class_name: str, object_id: str, payload: Any, keys: Mapping[str, str] = NO_KEYS) -> StoredObject:
        """PATCH: merge properties (null removes one) and supplied vectors into the stored object."""
        existing = self.get(catalog, class_name, object_id)
        if not isinstance(payload, Mapping):
            raise InvalidInput("a PATCH body must be a JSON object", "send {\"properties\": {...}}")
        patch = payload.get("properties") or {}
        if not isinstance(patch, Mapping):
            raise InvalidInput("'properties' must be a JSON object", "send properties as {\"name\": value, ...}")
        merged = {**existing.properties, **patch}
        draft = self.draft(catalog, {**payload, "properties": merged}, class_name, existing.id)
        # Vectors the patch did not supply and no vectorizer recomputes are kept.
        own = {n for n, v in draft.collection.vectors.items() if v.vectorizer is None}
        kept = {n: v for n, v in existing.vectors.items() if n in own and n not in draft.vectors}
        draft = replace(draft, vectors={**kept, **draft.vectors}, created_ms=existing.created_ms)
        return await self.write(draft, keys=keys)

    def delete(self, catalog: Catalog, class_name: str, object_id: str) -> None:
        collection = catalog.collection(class_name)
        the_id = normalize_uuid(object_id)
        with self._write_lock:
            doc = self.store.delete(collection.name, the_id)
            if doc is None:
                raise NotFound(f"no object with id '{the_id}' in '{collection.name}'")
            self._unindex(collection.name, doc, the_id)
