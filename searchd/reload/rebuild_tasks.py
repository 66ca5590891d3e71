"""The config manager's background rebuilds (searchd.reload.rebuild runs each): started, kept when a new
config would restart them as they run, cancelled, and promoted into the served spec when done."""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from typing import Any

from searchd.catalog import Catalog, compile_catalog
from searchd.config.spec import Spec
from searchd.errors import SearchdError
from searchd.modules.registry import default_registry
from searchd.reload.plan import Plan
from searchd.reload.rebuild import Progress, rebuild_keyword, rebuild_vector, vector_shadow
from searchd.reload.served import Key, with_vector
from searchd.reload.status import ReloadStatus
from searchd.serving import RETIRED_GRACE_S, staging_name, staging_stamp

log = logging.getLogger("searchd.reload")


class RebuildTasks(ReloadStatus):
    """The rebuilds that a reload or a follow starts (see ``apply``), each a task on the manager's loop."""

    async def _join_tasks(self) -> None:
        while self._tasks:
            await asyncio.gather(*self._tasks.values(), return_exceptions=True)

    def _announce(self) -> None:
        """Tell the other replicas the applied revision changed (an apply, or a rebuild's promotion)."""
        if self.coordinator is not None and self.applied is not None:
            self.coordinator.ledger.announce(self.applied.revision)

    async def stop_rebuilds(self) -> None:
        """Cancel every running rebuild (a leader that lost its lock: another replica resumes them)."""
        await self._cancel_rebuilds(set())

    def busy(self) -> bool:
        """Whether a rebuild runs, or one of the target's failed or stopped (its leader keeps the lock until a reload)."""
        return bool(self._tasks) or (self.target is not None and self.served is not None and self._stalled())

    @staticmethod
    def _rebuild_inputs(spec: Spec, key: Key) -> Any:
        # A vectorizer is compiled from its collection (fields, properties) and the module settings (keys, URLs).
        return (spec.find_collection(key[0]), spec.modules)

    def _unaffected(self, key: Key, spec: Spec, plan: Plan) -> bool:
        """Whether a running rebuild would restart exactly as it runs: then it goes on."""
        wanted = {*plan.revectorize, *plan.reindex, *((c, "") for c in plan.rebuild_keyword)}
        return key in wanted and self._inputs.get(key) == self._rebuild_inputs(spec, key)

    def _any_failed(self) -> bool:
        return any(p.state == "failed" for p in list(self.rebuilds.values()))

    def _stalled(self) -> bool:
        """Some rebuild failed, or a vector is served at other settings than the target's with no rebuild running for it."""
        if self._any_failed():
            return True
        assert self.target is not None and self.served is not None
        for collection in self.target.collections:
            served = self.served.find_collection(collection.name)
            for vector in collection.vectors:
                pending = served is None or served.find_vector(vector.name) != vector
                if pending and (collection.name, vector.name) not in self._tasks:
                    return True
        return False

    def _tasks_to_restart(self, plan: Plan) -> bool:
        return bool(plan.revectorize or plan.reindex or plan.rebuild_keyword)

    def _staging_names(self, final: Catalog, plan: Plan) -> list[tuple[str, str]]:
        return [(c, staging_name(v, staging_stamp(final.collections[c].vectors[v]))) for c, v in plan.revectorize]

    async def _cancel_rebuilds(self, keep: set[Key]) -> bool:
        """Cancel the running rebuilds not in ``keep``; whether there were any."""
        cancelled = {key: task for key, task in self._tasks.items() if key not in keep}
        for task in cancelled.values():
            task.cancel()
        await asyncio.gather(*cancelled.values(), return_exceptions=True)
        for key in cancelled:  # listed until the apply has started their replacements: status pollers see no gap
            if self.rebuilds[key].state == "cancelled":
                self.rebuilds[key].state = "restarting"
        return bool(cancelled)

    def _start_rebuilds(self, final: Catalog, plan: Plan, running: set[Key], embed: bool = True) -> None:
        """``embed``: False for a follower, whose changed vectors the leader embedded: they are re-indexed from the store."""
        for key in dict.fromkeys([*plan.revectorize, *plan.reindex]):
            if key in running:
                continue
            collection, name = key
            target = final.collections[collection].vectors[name]
            reembed = embed and key in plan.revectorize and target.vectorizer is not None
            progress = Progress(collection, name, "re-vectorize" if reembed else "reindex", self.engine.store.count(collection))
            shadow = vector_shadow(collection, target, reembed)
            assert self._lock is not None
            self._launch(key, progress, rebuild_vector(self.engine, shadow, target, progress, functools.partial(self._promoted, key), self._lock))
        for collection in plan.rebuild_keyword:
            if (collection, "") in running:
                continue
            spec = final.collections[collection].spec
            progress = Progress(collection, "bm25", "bm25", self.engine.store.count(collection))
            self._launch((collection, ""), progress, rebuild_keyword(self.engine, spec, progress, lambda: None))

    def _launch(self, key: Key, progress: Progress, work: Any) -> None:
        assert self.target is not None
        self.rebuilds[key] = progress
        self._inputs[key] = self._rebuild_inputs(self.target, key)
        loop = asyncio.get_running_loop()

        async def run() -> None:
            try:
                await work
                progress.state = "done"
                loop.call_later(RETIRED_GRACE_S, self.engine.release_retired)
                log.info("rebuild of %s.%s (%s) done: %d objects", progress.collection, progress.target, progress.kind, progress.done)
                if self.applied is not None and not any(k != key for k in self._tasks):
                    log.info("serving revision %s", self.applied.revision)
            except asyncio.CancelledError:
                progress.state = "cancelled"
                raise
            except Exception as exc:  # noqa: BLE001 (any failure: reported in status, the old index keeps serving)
                progress.state, progress.error = "failed", str(exc)
                log.error("rebuild of %s.%s failed: %s (the old index keeps serving; the next reload or start resumes)", progress.collection, progress.target, exc)
            finally:
                progress.finished = time.time()
                self._tasks.pop(key, None)

        self._tasks[key] = loop.create_task(run())

    def _promoted(self, key: Key) -> None:
        """Called under the engine's write lock once a rebuilt vector index replaced the old one."""
        assert self.served is not None and self.target is not None
        self.served = with_vector(self.served, self.target, key)
        catalog = compile_catalog(self.served, default_registry(), self.runtime)
        self._prepare_catalog(catalog)
        self.engine.open_indexes(catalog)
        self.engine.holder.swap(catalog)
        if self.coordinator is not None and not self.coordinator.ledger.leading:
            return  # a follower re-indexed what the leader promoted: the leader records it
        try:
            self.applied = self.engine.store.save_applied(self.served)
            self._announce()
        except (OSError, SearchdError) as exc:  # the swap stands; the next start plans against the older applied spec and redoes this rebuild
            log.error("could not record the applied config after the rebuild of %s.%s (%s)", *key, exc)
