"""A replica's side of coordinated reloads (searchd.reload.leader drives these, under the manager's lock): serve
what the leader applied."""

from __future__ import annotations

from typing import Any

import anyio.to_thread

from searchd.catalog import compile_catalog
from searchd.config.revision import redacted
from searchd.config.spec import Spec
from searchd.modules.registry import default_registry
from searchd.reload.destructive import drop_removed
from searchd.reload.leader import FOLLOW
from searchd.reload.plan import classify
from searchd.reload.rebuild_tasks import RebuildTasks
from searchd.reload.served import served_spec
from searchd.storage.applied import Applied


class Following(RebuildTasks):
    """The calls a replica's Coordinator makes on its manager to serve what the leader applied."""

    async def reread_applied(self) -> None:
        """Plan against what the database holds now (another replica may have applied since)."""
        self.applied = await anyio.to_thread.run_sync(self.engine.store.load_applied)

    def follows(self, applied_revision: str) -> bool:
        return self.applied is not None and self.applied.revision == applied_revision

    async def follow(self, spec: Spec, applied: Applied) -> dict[str, Any]:
        """Serve what the leader applied: in-place changes at once, changed vectors re-indexed from the stored ones.

        Nothing is planned, refused or written: the leader did that.  ``spec`` is the stored spec with this replica's secrets.
        """
        plan = classify(redacted(self.served) if self.served is not None else None, redacted(spec))
        final = compile_catalog(spec, default_registry(), self.runtime)
        served = served_spec(spec, self.served, {*plan.revectorize, *plan.reindex})
        catalog = compile_catalog(served, default_registry(), self.runtime)
        self._prepare_catalog(final)
        self._prepare_catalog(catalog)
        keep = {key for key in self._tasks if self._unaffected(key, spec, plan)}
        await self._cancel_rebuilds(keep)
        if plan.destructive:
            await anyio.to_thread.run_sync(drop_removed, self.engine, self.served, spec, False)
        await anyio.to_thread.run_sync(self.engine.swap, catalog)
        self.target, self.served, self.applied = spec, served, applied
        self._start_rebuilds(final, plan, keep, embed=False)
        self.rebuilds = {k: p for k, p in self.rebuilds.items() if p.state == "running"}
        return self._record(FOLLOW, "followed", plan)
