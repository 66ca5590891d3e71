"""Background rebuilds: re-vectorize, reindex, backfill BM25 — while the old index serves.

A re-vectorization walks the store in id order (a cursor, so a restart resumes:
objects already holding a staged vector are skipped), embeds through the target
vectorizer (and so through the embedding cache), and stores the new vectors under a
staging name, only on objects not rewritten meanwhile — a write during the rebuild
stages its own.  Then an index is built from the stored vectors beside the serving
one, the writes it missed are replayed, and it replaces the old one under the write
lock, with the catalog swap that makes the new vector settings visible.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import anyio.to_thread
import numpy as np

from searchd.catalog import CompiledVector
from searchd.config.spec import CollectionSpec, IndexType
from searchd.engine import Engine
from searchd.errors import ProviderUnavailable, SearchdError
from searchd.index.base import VectorIndex
from searchd.index.bm25 import BM25Index
from searchd.index.persist import fill_index, fill_keyword_index
from searchd.serving import Shadow, staging_name, staging_stamp

log = logging.getLogger("searchd.reload")

EMBED_BATCH = 256
# Steps embedded at once: enough to keep a provider's concurrent requests busy when one step is a single batch.
STEPS_IN_FLIGHT = 4
LOG_EVERY_S = 5.0
CATCH_UP_WAIT_S = 0.05  # before trying to promote again, when other replicas' writes are still being applied here


@dataclass
class Progress:
    collection: str
    target: str  # vector name, or "bm25"
    kind: str  # re-vectorize | reindex | bm25
    total: int
    done: int = 0
    failed: int = 0
    state: str = "running"  # running | done | failed | cancelled | restarting (a reload replaces it)
    error: str | None = None
    started: float = field(default_factory=time.time)
    finished: float | None = None
    logged: float = field(default_factory=time.monotonic)  # when progress was last logged

    def as_dict(self) -> dict[str, Any]:
        elapsed = (self.finished or time.time()) - self.started
        rate = self.done / elapsed if elapsed > 0 else 0.0
        remaining = max(0, self.total - self.done)
        return {
            "collection": self.collection,
            "target": self.target,
            "kind": self.kind,
            "state": self.state,
            "done": self.done,
            "total": self.total,
            "failed": self.failed,
            "ratePerSecond": round(rate, 1),
            "etaSeconds": round(remaining / rate, 1) if rate > 0 and self.state == "running" else None,
            "error": self.error,
        }


def vector_shadow(collection: str, target: CompiledVector, reembed: bool) -> Shadow:
    source = staging_name(target.name, staging_stamp(target)) if reembed else target.name
    return Shadow(collection, target.name, source, target, reembed)


async def rebuild_vector(
    engine: Engine,
    shadow: Shadow,
    target: CompiledVector,
    progress: Progress,
    done: Callable[[], None],
    exclusive: contextlib.AbstractAsyncContextManager[Any] | None = None,
) -> None:
    """Run one vector rebuild to the end; ``done`` swaps the catalog (under the write lock).

    The swap itself runs inside ``exclusive`` (the config manager's lock: a reload never
    plans against a spec that a swap is changing).
    """
    engine.begin_shadow(shadow)
    try:
        # A pgvector index is the database's: made (and filled from what is stored) here, then filled by each staged write.
        built = await anyio.to_thread.run_sync(engine.new_index, shadow.collection, shadow.source, target)
        # A re-vectorization inserts each step's new vectors as it goes (in a worker thread, beside the embedding).
        from_store = not shadow.reembed or await _Revectorization(engine, shadow, target, progress, built).run()
        if from_store and target.spec.index.kind is not IndexType.PGVECTOR:  # a reindex, or vectors staged before a restart: the index is filled from the stored vectors
            label = f"{shadow.collection}.{target.name} {target.spec.index.type}"
            await anyio.to_thread.run_sync(fill_index, built, engine.source(shadow.collection), shadow.source, target.dimensions, label, False, "built")
        while True:
            async with exclusive or contextlib.nullcontext():
                if await anyio.to_thread.run_sync(engine.finish_shadow, shadow, built, done):
                    break
            if not await _catch_up(engine, shadow, target):
                await anyio.sleep(CATCH_UP_WAIT_S)  # nothing to embed: another replica's write is on its way to the follower
    except BaseException:
        engine.abandon_shadow(shadow)
        raise
    if progress.kind == "reindex":
        progress.done = progress.total


class RebuildIncomplete(SearchdError):
    """A re-vectorization embedded some objects but not all: it is not promoted."""

    code = "rebuild_incomplete"


@dataclass
class _Revectorization:
    """Embeds every stored object for ``target`` in id order, STEPS_IN_FLIGHT steps at a time (the provider client bounds its requests)."""

    engine: Engine
    shadow: Shadow
    target: CompiledVector
    progress: Progress
    index: VectorIndex
    last_error: str = ""

    async def run(self) -> bool:
        """Whether the index must still be filled from the store: vectors were staged before this run (it resumes one).

        Objects staged during the run by writes are skipped here: those writes captured their vectors for the swap.
        """
        store, cursor = self.engine.store, ""
        resumed = await anyio.to_thread.run_sync(store.has_vectors, self.shadow.collection, self.shadow.source)
        slots = anyio.Semaphore(STEPS_IN_FLIGHT)
        try:
            async with anyio.create_task_group() as steps:
                while True:
                    await slots.acquire()
                    rows = await anyio.to_thread.run_sync(store.ids_after, self.shadow.collection, cursor, EMBED_BATCH)
                    if not rows:
                        slots.release()
                        break
                    cursor = rows[-1][0]
                    steps.start_soon(self._step, rows, slots)
        except BaseExceptionGroup as group:  # one step failed and the others were cancelled: report its error
            first = group.exceptions[0]
            while isinstance(first, BaseExceptionGroup):
                first = first.exceptions[0]
            raise first from None
        if self.progress.failed:
            # Promoting now would drop the failed objects' vectors (the old ones go with the old settings): the old index keeps
            # serving, what is staged is kept, and the next reload (or start) embeds only what is missing.
            raise RebuildIncomplete(
                f"{self.progress.failed} object(s) could not be embedded, so the old vectors keep serving; the last error: {self.last_error}",
                "fix the config or those objects, then reload: the objects already embedded are not embedded again",
            )
        return resumed

    async def _step(self, rows: list[tuple[str, int]], slots: anyio.Semaphore) -> None:
        assert self.target.vectorizer is not None
        store, collection, source, progress = self.engine.store, self.shadow.collection, self.shadow.source, self.progress
        try:
            staged = await anyio.to_thread.run_sync(store.ids_with_vector, collection, source, [r[0] for r in rows])
            todo = [(object_id, updated) for object_id, updated in rows if object_id not in staged]
            objects = await anyio.to_thread.run_sync(store.get_many, collection, [object_id for object_id, _ in todo], False)
            todo = [(object_id, updated) for object_id, updated in todo if object_id in objects]
            results = await self.target.vectorizer.embed_objects([objects[object_id].properties for object_id, _ in todo])
            ready = []
            for (object_id, updated), result in zip(todo, results):
                if isinstance(result, ProviderUnavailable):
                    raise result  # the provider is down: stop, keep what is staged, resume later
                result = _finite(object_id, result)
                if isinstance(result, SearchdError):
                    progress.failed += 1
                    self.last_error = str(result)
                    progress.error = f"{progress.failed} object(s) could not be embedded; the last: {result}"
                elif result is not None:
                    ready.append((object_id, updated, result))
            current = await anyio.to_thread.run_sync(store.put_vectors_if_unchanged, collection, source, ready)
            fresh = [(objects[object_id].doc, vector) for object_id, _, vector in ready if object_id in current]  # a rewrite captured its own
            await anyio.to_thread.run_sync(self.index.upsert_many, [f[0] for f in fresh], [f[1] for f in fresh])
            progress.done += len(rows)
            if time.monotonic() - progress.logged >= LOG_EVERY_S:
                progress.logged = time.monotonic()
                log.info("re-vectorizing %s.%s: %s", collection, self.target.name, _summary(progress))
        finally:
            slots.release()


def _finite(object_id: str, result: Any) -> Any:
    """An embedding, or an error when it holds NaN or infinity (a vector like that matches nothing and breaks the index)."""
    if isinstance(result, np.ndarray) and not np.isfinite(result).all():
        return SearchdError(f"object {object_id} was embedded as a vector with NaN or infinite values", "check the vectorizer's weights and the object's fields")
    return result


async def _catch_up(engine: Engine, shadow: Shadow, target: CompiledVector) -> bool:
    """Embed objects that were written while the rebuild began but embedded just before it; whether there were any."""
    assert target.vectorizer is not None
    object_ids = engine.take_unstaged(shadow)
    if not object_ids:
        return False
    objects = await anyio.to_thread.run_sync(engine.store.get_many, shadow.collection, object_ids, False)
    present = [objects[i] for i in object_ids if i in objects]
    results = await target.vectorizer.embed_objects([o.properties for o in present])
    rows = []
    for obj, result in zip(present, results):
        result = _finite(obj.id, result)
        if isinstance(result, SearchdError):
            raise result
        rows.append((obj.id, obj.updated_ms, result))
    await anyio.to_thread.run_sync(engine.stage, shadow, rows)
    return True


async def rebuild_keyword(engine: Engine, collection: CollectionSpec, progress: Progress, done: Callable[[], None]) -> None:
    shadow = Shadow(collection.name, None)
    engine.begin_shadow(shadow)
    try:
        built = await anyio.to_thread.run_sync(fill_keyword_index, BM25Index(collection), engine.source(collection.name), collection.name, False, "built")
        await anyio.to_thread.run_sync(engine.finish_shadow, shadow, built, done)
    except BaseException:
        engine.abandon_shadow(shadow)
        raise
    progress.done = progress.total


def _summary(progress: Progress) -> str:
    shown = progress.as_dict()
    eta = f", about {shown['etaSeconds']:.0f} s left" if shown["etaSeconds"] is not None else ""
    return f"{progress.done}/{progress.total} objects ({shown['ratePerSecond']}/s{eta})"
