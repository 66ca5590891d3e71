"""Applying config changes to a running server: load → validate → compile → classify → apply → swap.

Every trigger (the file watcher, SIGHUP, ``POST /v1/config/reload``, a start with a
changed config) goes through ``ConfigManager.reload``.  One reload runs at a time, on
the manager's own thread and event loop, where the background rebuilds run too, so
they do not depend on the HTTP server's loop.  The catalog is swapped as one
reference: a request in flight finishes on the catalog it started with.

While a named vector is re-vectorized or reindexed, the *served* spec keeps its old
settings (a new vector is left out) until its rebuild completes; the served spec is
what is persisted as applied, so a restart diffs against what the data really is.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio.to_thread
import watchfiles

from searchd.catalog import Catalog, compile_catalog
from searchd.config import load_spec
from searchd.config.loader import config_digest
from searchd.config.revision import redacted, revision
from searchd.config.spec import Spec
from searchd.engine import Engine
from searchd.errors import ConfigError, SearchdError
from searchd.modules.base import ModuleRuntime
from searchd.modules.registry import default_registry
from searchd.reload.destructive import drop_removed
from searchd.reload.following import Following
from searchd.reload.leader import POLL_S, Coordinator
from searchd.reload.plan import Plan, classify
from searchd.reload.served import served_spec
from searchd.reload.watcher import config_events, settled_digest

log = logging.getLogger("searchd.reload")

# What the edges import from the reload manager.
__all__ = ["ConfigManager", "served_spec"]


class ConfigManager(Following):
    """``prepare_catalog`` is called with every catalog compiled to serve, before it does; it raises to refuse one.

    The edges pass what they build per catalog (the server: its GraphQL schema), so a config
    whose schema cannot be built is refused before it serves, without reload/ knowing GraphQL.
    """

    def __init__(
        self,
        config_path: Path,
        engine: Engine,
        runtime: ModuleRuntime,
        allow_destructive: bool = False,
        on_reload: Callable[[str], None] | None = None,
        *,
        prepare_catalog: Callable[[Catalog], None],
    ) -> None:
        super().__init__(config_path, engine, runtime, on_reload, prepare_catalog)
        self.allow_destructive_once = allow_destructive
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._watcher: asyncio.Task[None] | None = None
        self._stop = threading.Event()
        self._loaded: str | None = None  # config_digest of the files the last reload read
        self._follower: asyncio.Task[None] | None = None

    # -- the manager's own loop ----------------------------------------------------

    def start(self, watch: bool) -> None:
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            self._lock = asyncio.Lock()
            if watch:
                self._watcher = loop.create_task(self._watch())
            if self.coordinator is not None:
                self._follower = loop.create_task(self._follow_replicas())
            loop.call_soon(ready.set)
            loop.run_forever()
            loop.run_until_complete(self.runtime.pool.aclose())
            loop.close()

        self._thread = threading.Thread(target=run, name="searchd-config", daemon=True)
        self._thread.start()
        ready.wait()

    def submit(self, trigger: str) -> concurrent.futures.Future[dict[str, Any]]:
        """Run a reload on the manager's loop; thread-safe (SIGHUP handlers, HTTP routes, the CLI)."""
        assert self._loop is not None, "start() first"
        return asyncio.run_coroutine_threadsafe(self.reload(trigger), self._loop)

    def wait_for_rebuilds(self) -> None:
        """Block until every background rebuild has ended (``searchd apply``, tests)."""
        assert self._loop is not None
        asyncio.run_coroutine_threadsafe(self._join_tasks(), self._loop).result()

    def close(self) -> None:
        if self._loop is None or self._thread is None:
            return

        async def stop() -> None:
            for task in [*self._tasks.values(), *(t for t in (self._watcher, self._follower) if t is not None)]:
                task.cancel()
            await asyncio.gather(*self._tasks.values(), return_exceptions=True)

        self._stop.set()
        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(timeout=30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=30)
        self._loop = None
        if self.coordinator is not None:
            self.coordinator.close(done=not self.busy())  # the leader lock, if held, goes with its session

    async def _watch(self) -> None:
        """Reload when what the config files hold changes.

        Any event in the watched directory is checked against the content last loaded,
        not against a path: editors that save by renaming, ``git checkout`` and a
        Kubernetes ConfigMap's symlink swap all change the content without touching the
        path the server was given; unrelated files in the directory change nothing.
        """
        watched = self.config_path if self.config_path.is_dir() else self.config_path.parent
        relevant = config_events(self.config_path, self.engine.data_dir)
        # watchfiles logs each batch of changes at INFO: a log file written inside the config directory would log
        # about its own growth forever.  Only config files pass the filter now, and our own lines say what a change did.
        logging.getLogger("watchfiles.main").setLevel(logging.WARNING)
        async for _ in watchfiles.awatch(watched, watch_filter=relevant, debounce=200, step=25, stop_event=self._stop):
            if await settled_digest(self.config_path) == self._loaded:
                continue
            try:
                await self.reload("file change")
            except Exception:  # a reload records its own failures; never let the watcher die
                log.exception("reload after a file change failed")

    async def _follow_replicas(self) -> None:
        """Follow the other replicas: on each announcement (or every POLL_S), read the ledger and act on it."""
        assert self.coordinator is not None
        while not self._stop.is_set():
            await anyio.to_thread.run_sync(self.coordinator.ledger.wait, POLL_S, abandon_on_cancel=True)
            try:
                assert self._lock is not None
                async with self._lock:
                    await self.coordinator.tick(self)
            except Exception:  # a database hiccup: the next poll tries again; never let the follower die
                log.exception("following the other replicas failed")

    # -- the one path every change takes ----------------------------------------------

    async def reload(self, trigger: str) -> dict[str, Any]:
        assert self._lock is not None
        async with self._lock:
            # Taken before reading: a change made while loading is seen by the watcher.
            self._loaded = await anyio.to_thread.run_sync(config_digest, self.config_path)
            try:
                spec = await anyio.to_thread.run_sync(load_spec, self.config_path, default_registry(), self.runtime.environ)
            except ConfigError as exc:
                return self._invalid(trigger, [i.render() for i in exc.issues])
            except SearchdError as exc:
                return self._invalid(trigger, [str(exc)])
            except Exception as exc:  # a loader bug: still shown in status, and the last good config serves
                log.exception("loading %s failed unexpectedly", self.config_path)
                return self._invalid(trigger, [f"{self.config_path}:1:1: <root>: the config could not be loaded ({type(exc).__name__}: {exc})"])
            self.files_spec, self.files_valid, self.files_problem = spec, True, None
            if self.coordinator is not None:
                return await self.coordinator.files_changed(self, spec, trigger)
            return await self.apply(spec, trigger)

    def plan(self, spec: Spec) -> Plan:
        # Counts are only taken to word what a destructive change would drop.
        return classify(self.applied.spec if self.applied else None, redacted(spec), self.engine.store.count, self.engine.store.property_count)

    async def apply(self, spec: Spec, trigger: str, lead: Coordinator | None = None) -> dict[str, Any]:
        """Plan ``spec`` against the applied spec and apply it; ``lead``: as the replicas' leader, recording it as their target."""
        if self.target is not None and revision(spec) == revision(self.target) and not self._stalled():
            # What is being applied already is: running rebuilds go on (a failed or stopped one is retried below).
            self.target = spec
            return self._record(trigger, "unchanged", Plan())
        plan = await anyio.to_thread.run_sync(self.plan, spec)
        allowed = spec.server.reload.allow_destructive or self.allow_destructive_once
        if plan.refused(allowed):
            self.files_problem = "it was refused: it would drop stored data (see lastReload.errors)"
            return self._record(trigger, "refused", plan, [plan.refusal_message()])
        if plan.empty and self.target is not None and not self._tasks_to_restart(plan):
            self.target = spec
            return self._record(trigger, "unchanged", plan)
        try:
            final = compile_catalog(spec, default_registry(), self.runtime)  # the vectorizers rebuilds embed with
            pending = {*plan.revectorize, *plan.reindex}
            served = served_spec(spec, self.applied.spec if self.applied else None, pending)
            catalog = compile_catalog(served, default_registry(), self.runtime)
            self._prepare_catalog(final)  # served once its rebuilds are done: refused now, not then
            self._prepare_catalog(catalog)
        except SearchdError as exc:
            self.files_problem = str(exc)
            return self._record(trigger, "invalid", plan, [str(exc)])
        if lead is not None:  # before anything changes: a leader that dies from here on is resumed by another replica
            await anyio.to_thread.run_sync(lead.begin, spec, list(plan.revectorize))
        keep = {key for key in self._tasks if self._unaffected(key, spec, plan)}
        failed = self._any_failed()
        cancelled = await self._cancel_rebuilds(keep)
        if plan.destructive:
            await anyio.to_thread.run_sync(drop_removed, self.engine, self.applied.spec if self.applied else None, spec)
        await anyio.to_thread.run_sync(self.engine.swap, catalog)
        first = self.served is None
        self.target, self.served = spec, served
        self.applied = await anyio.to_thread.run_sync(self.engine.store.save_applied, served)  # a file fsync, or a database round trip
        self._announce()
        if first or cancelled or failed:  # staged vectors a crash or a stopped re-vectorization left (a full scan: not on every reload)
            await anyio.to_thread.run_sync(self.engine.store.drop_staging_except, self._staging_names(final, plan))
        self._start_rebuilds(final, plan, keep)
        self.rebuilds = {k: p for k, p in self.rebuilds.items() if p.state == "running"}
        return self._record(trigger, "applied", plan)
