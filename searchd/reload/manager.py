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
import dataclasses
import functools
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio.to_thread
import watchfiles

from searchd.catalog import Catalog, compile_catalog
from searchd.config import load_spec
from searchd.config.loader import YAML_SUFFIXES, config_digest
from searchd.config.revision import redacted, revision
from searchd.config.spec import CollectionSpec, NamedVectorSpec, Spec
from searchd.engine import Engine
from searchd.errors import ConfigError, SearchdError
from searchd.index.persist import index_dir
from searchd.modules.base import ModuleRuntime
from searchd.modules.registry import default_registry
from searchd.reload.leader import FOLLOW, POLL_S, Coordinator, Shared, drift
from searchd.reload.plan import Plan, classify
from searchd.reload.rebuild import Progress, rebuild_keyword, rebuild_vector, staging_stamp, vector_shadow
from searchd.serving import RETIRED_GRACE_S, staging_name
from searchd.storage.applied import Applied

log = logging.getLogger("searchd.reload")
# The watcher reads a changed config again until it holds still (an editor saving in place truncates first).
SETTLE_S = 0.1
SETTLE_READS = 10

Key = tuple[str, str]


def served_spec(target: Spec, applied: Spec | None, pending: set[Key]) -> Spec:
    """``target`` with each pending vector at its applied settings (or absent, when it is new)."""
    collections = []
    for collection in target.collections:
        old = applied.find_collection(collection.name) if applied else None
        vectors: list[NamedVectorSpec] = []
        for vector in collection.vectors:
            if (collection.name, vector.name) not in pending:
                vectors.append(vector)
            elif old is not None and (previous := old.find_vector(vector.name)) is not None:
                vectors.append(previous)
        collections.append(dataclasses.replace(collection, vectors=tuple(vectors)))
    return dataclasses.replace(target, collections=tuple(collections))


def with_vector(served: Spec, target: Spec, key: Key) -> Spec:
    """The served spec once ``key``'s rebuild is complete: that vector at its target settings."""
    collection, name = key
    wanted = target.find_collection(collection)
    vector = wanted.find_vector(name) if wanted else None
    out: list[CollectionSpec] = []
    for c in served.collections:
        if c.name == collection and vector is not None:
            order = [v.name for v in wanted.vectors] if wanted else []
            merged = {v.name: v for v in c.vectors} | {name: vector}
            c = dataclasses.replace(c, vectors=tuple(merged[n] for n in order if n in merged))
        out.append(c)
    return dataclasses.replace(served, collections=tuple(out))


def config_events(config_path: Path, data_dir: Path) -> Callable[[watchfiles.Change, str], bool]:
    """The watcher's filter: only events that can change what the config files hold.

    That is a YAML file (or, for a single-file config, that file), or a hidden entry
    starting with ``..`` (a Kubernetes ConfigMap swaps its ``..data`` link and
    ``..<timestamp>`` directory).  Anything else in the directory (a server log, the
    data directory, editor swap files) is ignored, so it cannot trigger anything at all;
    what passes is still compared by content digest before a reload.
    """
    usual = watchfiles.DefaultFilter()
    single = None if config_path.is_dir() else {os.path.abspath(config_path), os.path.realpath(config_path)}
    inside_data = tuple({str(data_dir.absolute()) + os.sep, str(data_dir.resolve()) + os.sep})

    def relevant(change: watchfiles.Change, path: str) -> bool:
        path = os.path.abspath(path)
        if path.startswith(inside_data) or not usual(change, path):
            return False
        name = os.path.basename(path)
        if single is not None:
            return path in single or name.startswith("..")
        # A directory added or removed (a rename of one holding YAML files) has no suffix; a growing log file is only modified.
        return name.endswith(YAML_SUFFIXES) or name.startswith("..") or change is not watchfiles.Change.modified

    return relevant


class ConfigManager:
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
        self.config_path = config_path
        self._on_reload = on_reload
        self._prepare_catalog = prepare_catalog
        self.engine = engine
        self.runtime = runtime
        self.allow_destructive_once = allow_destructive
        self.applied: Applied | None = engine.store.load_applied()
        self.target: Spec | None = None
        self.served: Spec | None = None
        self.last: dict[str, Any] | None = None
        self.rebuilds: dict[Key, Progress] = {}
        self._tasks: dict[Key, asyncio.Task[None]] = {}
        self._inputs: dict[Key, Any] = {}  # what each running rebuild was started from (see _unaffected)
        self._lock: asyncio.Lock | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._watcher: asyncio.Task[None] | None = None
        self._stop = threading.Event()
        self._loaded: str | None = None  # config_digest of the files the last reload read
        # Replicas on one database coordinate reloads (searchd.reload.leader); None on SQLite.
        self.coordinator = Coordinator(engine.store.reload_ledger()) if isinstance(engine.store, Shared) else None
        self._follower: asyncio.Task[None] | None = None
        # The config files as last loaded valid (their secrets serve a spec read from the database), and whether they still are.
        self.files_spec: Spec | None = None
        self.files_valid = False
        self.files_problem: str | None = None  # why the files' revision does not serve, when it does not

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

    async def _join_tasks(self) -> None:
        while self._tasks:
            await asyncio.gather(*self._tasks.values(), return_exceptions=True)

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
            if await self._settled_digest() == self._loaded:
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

    async def _settled_digest(self) -> str:
        """The config's digest once two reads ``SETTLE_S`` apart agree (at most ``SETTLE_READS`` reads).

        An editor that saves in place truncates the file and then writes it: read in between, the config is
        empty or cut short, and its reload would fail.  A file still changing is read again instead.
        """
        digest = await anyio.to_thread.run_sync(config_digest, self.config_path)
        for _ in range(SETTLE_READS):
            await anyio.sleep(SETTLE_S)
            again = await anyio.to_thread.run_sync(config_digest, self.config_path)
            if again == digest:
                break
            digest = again
        return digest

    # -- status ------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        body = {
            "configPath": str(self.config_path),
            "revision": self.applied.revision if self.applied else None,
            "appliedAt": self.applied.applied_at if self.applied else None,
            "lastReload": self.last,
            "rebuilds": [p.as_dict() for p in list(self.rebuilds.values())],  # a copy: the manager's thread adds to it
            "drift": self.drift(),
        }
        if self.coordinator is not None:
            body["replicas"] = self.coordinator.status()
        return body

    def drift(self) -> dict[str, Any]:
        """Whether the config files hold the applied revision (with replicas: the one they all converge to)."""
        files = revision(self.files_spec) if self.files_spec is not None and self.files_valid else None
        if self.coordinator is not None:
            problem = self.files_problem or (self.coordinator.superseded_problem(self.files_spec) if files is not None and self.files_spec else None)
            return drift(files, self.coordinator.applied_revision, problem, self.coordinator.secrets)
        return drift(files, revision(self.target) if self.target is not None else None, self.files_problem, [])

    def record_outcome(self, trigger: str, result: str, problem: str | None = None) -> dict[str, Any]:
        """A reload that did not apply this replica's files (another replica leads, or they were superseded), and why."""
        self.files_problem = problem  # shown in the drift report: coordination, not an error
        if problem:
            log.info("config reload (%s): %s", trigger, problem)
        return self._record(trigger, result)

    def _record(self, trigger: str, result: str, plan: Plan | None = None, errors: list[str] | None = None) -> dict[str, Any]:
        self.last = {
            "at": time.time(),
            "trigger": trigger,
            "result": result,
            "errors": errors or [],
            "plan": plan.to_json() if plan else None,
            "revision": self.applied.revision if self.applied else None,
        }
        if self._on_reload is not None:
            self._on_reload(result)
        if errors:
            log.error("config reload (%s) %s: %s", trigger, result, "; ".join(errors))
        elif result == "applied" and plan is not None and (plan.revectorize or plan.reindex) and self.target is not None:
            # The applied revision is what serves (old vectors until the rebuilds swap in): name the target too.
            pending = ", ".join(f"{c}.{v}" for c, v in dict.fromkeys([*plan.revectorize, *plan.reindex]))
            log.info(
                "config reload (%s): applied revision %s; rebuilding %s in the background (serving revision %s until done)",
                trigger, revision(self.target), pending, self.last["revision"],
            )
        else:
            log.info("config reload (%s): %s, revision %s", trigger, result, self.last["revision"])
        return self.last

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

    def _invalid(self, trigger: str, errors: list[str]) -> dict[str, Any]:
        self.files_valid, self.files_problem = False, errors[0] if errors else None
        return self._record(trigger, "invalid", errors=errors)

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
            await anyio.to_thread.run_sync(self._drop, self.applied.spec if self.applied else None, spec)
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

    # -- replicas (searchd.reload.leader drives these, under the manager's lock) ------------------------

    def _announce(self) -> None:
        if self.coordinator is not None and self.applied is not None:
            self.coordinator.ledger.announce(self.applied.revision)

    async def reread_applied(self) -> None:
        """Plan against what the database holds now (another replica may have applied since)."""
        self.applied = await anyio.to_thread.run_sync(self.engine.store.load_applied)

    def follows(self, applied_revision: str) -> bool:
        return self.applied is not None and self.applied.revision == applied_revision

    async def stop_rebuilds(self) -> None:
        """Cancel every running rebuild (a leader that lost its lock: another replica resumes them)."""
        await self._cancel_rebuilds(set())

    def busy(self) -> bool:
        """Whether a rebuild runs, or one of the target's failed or stopped (its leader keeps the lock until a reload)."""
        return bool(self._tasks) or (self.target is not None and self.served is not None and self._stalled())

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
            await anyio.to_thread.run_sync(self._drop, self.served, spec, False)
        await anyio.to_thread.run_sync(self.engine.swap, catalog)
        self.target, self.served, self.applied = spec, served, applied
        self._start_rebuilds(final, plan, keep, embed=False)
        self.rebuilds = {k: p for k, p in self.rebuilds.items() if p.state == "running"}
        return self._record(FOLLOW, "followed", plan)

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

    def _drop(self, old: Spec | None, new: Spec, stored: bool = True) -> None:
        """Execute allowed destructive changes: drop what the new spec no longer declares (``stored``: in the store too;
        a follower only drops its own indexes, the leader dropped the data)."""
        if old is None:
            return
        store, data_dir = self.engine.store, self.engine.data_dir
        for collection in old.collections:
            wanted = new.find_collection(collection.name)
            if wanted is None:
                if stored:
                    log.warning("dropping collection %s and its %d objects (allowed destructive change)", collection.name, store.count(collection.name))
                    store.drop_collection(collection.name)
                self.engine.drop(collection.name)
                shutil.rmtree(data_dir / "indexes" / collection.name, ignore_errors=True)
                continue
            for prop in collection.properties:
                kept = wanted.find_property(prop.name)
                if stored and (kept is None or kept.type is not prop.type):
                    log.warning("dropping the values of %s.%s (allowed destructive change)", collection.name, prop.name)
                    store.drop_property(collection.name, prop.name)
            for vector in collection.vectors:
                kept_vector = wanted.find_vector(vector.name)
                # A brought vector whose settings change cannot be re-embedded: it is dropped.
                if kept_vector is None or (kept_vector.vectorizer.brings_own_vectors and kept_vector.vectorizer != vector.vectorizer):
                    if stored:
                        log.warning("dropping the vectors of %s.%s (allowed destructive change)", collection.name, vector.name)
                        store.drop_vectors(collection.name, vector.name)
                    self.engine.drop(collection.name, vector.name)
                    shutil.rmtree(index_dir(data_dir, collection.name, vector.name), ignore_errors=True)

    # -- background rebuilds ------------------------------------------------------------

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
