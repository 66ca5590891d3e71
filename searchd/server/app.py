"""Build the starlette app from a config path: spec → catalog → store → engine → routes."""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio.to_thread
from starlette.applications import Starlette
from starlette.datastructures import State
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect

from searchd.catalog import Catalog, CatalogHolder, compile_catalog
from searchd.config import load_spec
from searchd.config.spec import IndexType, Spec
from searchd.engine import Engine, ProgressReport, Store, cache_table, default_data_dir, effective_storage, open_store, storage_error
from searchd.errors import ConfigRefused, SearchdError
from searchd.modules.base import ModuleRuntime
from searchd.modules.cache import EmbeddingCache
from searchd.modules.keys import missing_key_warnings
from searchd.modules.provider import HttpPool
from searchd.modules.registry import default_registry
from searchd.query.served import ServedGraphQL
from searchd.reload.applied import plan_against_applied
from searchd.reload.leader import starting_point
from searchd.reload.manager import ConfigManager, served_spec
from searchd.server.auth import Authentication
from searchd.server.console import CONSOLE_ROUTES
from searchd.server.errors import client_gone_handler, http_error_handler, searchd_error_handler, unexpected_error_handler
from searchd.server.limits import BodySizeLimit, QueryGate, RateLimit
from searchd.server.observe import Metrics, RequestObserver
from searchd.server.readiness import Readiness
from searchd.server.routes import ROUTES

log = logging.getLogger("searchd")


@dataclass
class Services:
    """Everything a request needs, created once per app; closed at shutdown."""

    config_path: str
    holder: CatalogHolder
    store: Store
    engine: Engine
    runtime: ModuleRuntime
    config: ConfigManager
    metrics: Metrics
    graphql: ServedGraphQL  # each served catalog's GraphQL schema, built before the catalog serves
    queries: QueryGate = field(default_factory=QueryGate)  # how many GraphQL requests run at once, and for how long

    def close(self) -> None:
        try:
            self.config.close()
            self.engine.close()
        except SearchdError as exc:
            # A known cause (a full disk, a read-only store): one line, not "Application shutdown failed" and a traceback.
            # Saving the indexes only shortens the next start; every acknowledged write is already committed to the store.
            log.error(
                "stopping: could not finish saving the indexes: %s; nothing acknowledged is lost (every acknowledged write is in the "
                "object store, and the next start replays or rebuilds the indexes from it)",
                exc,
            )
        finally:
            self.runtime.cache.close()
            self.store.close()


def resolve_data_dir(spec: Spec, data_dir: str | Path | None) -> Path:
    """--data wins; then server.dataDir (relative to the config); then the default."""
    if data_dir is not None:
        return Path(data_dir)
    if spec.server.data_dir:
        return Path(spec.base_dir) / spec.server.data_dir
    return default_data_dir()


@dataclass
class Opening:
    """The quick part of a start done: the config checked and compiled, the store open; the indexes not yet."""

    config_path: str
    directory: Path
    store: Store
    runtime: ModuleRuntime
    metrics: Metrics
    graphql: ServedGraphQL
    catalog: Catalog
    allow_destructive: bool
    watch: bool

    def close(self) -> None:
        try:
            self.runtime.cache.close()
        finally:
            self.store.close()


def _check_vector_extension(spec: Spec, store: Store, config_path: str | Path, registry: Any) -> None:
    """A pgvector index needs the vector extension in the database: without it, the config is refused at its line."""
    check = getattr(store, "vector_extension_problem", None)  # the PostgreSQL store's (SQLite is refused by the config check)
    if check is None or not any(v.index.kind is IndexType.PGVECTOR for c in spec.collections for v in c.vectors):
        return
    problem = check()
    if problem is not None:
        load_spec(config_path, registry, vector_extension=problem)  # raises ConfigError, located


def begin_services(config_path: str | Path, data_dir: str | Path | None = None, allow_destructive: bool = False, watch: bool | None = None) -> Opening:
    """Check the config against the data directory (refusing a change that would drop data, unless allowed) and compile it.

    Quick: a bad or refused config stops a start before its port opens.
    """
    registry = default_registry()
    spec = load_spec(config_path, registry)
    directory = resolve_data_dir(spec, data_dir)
    storage = effective_storage(spec.server.storage)
    store = open_store(storage, directory)
    try:
        _check_vector_extension(spec, store, config_path, registry)
    except BaseException:
        store.close()
        raise
    metrics = Metrics()
    try:
        cache = EmbeddingCache(directory, cache_table(storage))
    except (OSError, sqlite3.Error) as exc:  # a full disk shows here first when the object store still opens
        store.close()
        raise storage_error(exc, directory, "the embedding cache") from exc
    except BaseException:
        store.close()
        raise
    runtime = ModuleRuntime(HttpPool(), cache, dict(os.environ), on_provider_call=metrics.observe_provider)
    graphql = ServedGraphQL()
    try:
        applied, plan = plan_against_applied(store.load_applied(), spec, store.count, store.property_count)
        shared, superseded = starting_point(store, spec, applied)  # replicas start on what the database serves
        if not superseded and plan.refused(spec.server.reload.allow_destructive or allow_destructive):
            raise ConfigRefused(plan.refusal_message(), f"or restore the config applied last (revision {applied.revision if applied else '?'})")
        served = shared or served_spec(spec, applied.spec if applied else None, {*plan.revectorize, *plan.reindex})
        catalog = compile_catalog(served, registry, runtime)
        graphql.prepare(catalog)
    except BaseException:
        runtime.cache.close()
        store.close()
        raise
    for warning in missing_key_warnings(catalog.modules_in_use(), spec.modules, runtime.environ):
        log.warning("%s", warning)
    return Opening(str(config_path), directory, store, runtime, metrics, graphql, catalog, allow_destructive, spec.server.reload.watch if watch is None else watch)


def finish_services(opening: Opening, progress: ProgressReport | None = None) -> Services:
    """Open (or rebuild) the indexes and apply the config: the slow part of a start, told to ``progress``."""
    try:
        holder = CatalogHolder(opening.catalog)
        engine = Engine(holder, opening.store, opening.directory, progress)
        engine.start_checkpoints()
        if progress is not None:
            progress("applying the config", 0, None)
        graphql = opening.graphql
        manager = ConfigManager(Path(opening.config_path), engine, opening.runtime, opening.allow_destructive, on_reload=opening.metrics.observe_reload, prepare_catalog=graphql.prepare)
        manager.start(watch=opening.watch)
        manager.submit("start").result()
    except BaseException:
        opening.close()
        raise
    log.info("serving %d collection(s) from %s with data in %s", len(holder.current.collections), opening.config_path, opening.directory)
    services = Services(opening.config_path, holder, opening.store, engine, opening.runtime, manager, opening.metrics, graphql)
    opening.metrics.watch(services)
    return services


def settle_heap() -> None:
    """Exempt what start-up built (modules, catalog, the indexes' id maps) from the garbage collector's full passes.

    They live as long as the server, and a full collection walks every tracked object: with some 65,000 of them
    after start-up, each one paused every request for tens of milliseconds (health probes' p99 under load).
    """
    gc.collect()
    gc.freeze()


def open_services(config_path: str | Path, data_dir: str | Path | None = None, allow_destructive: bool = False, watch: bool | None = None) -> Services:
    """Start on a config: the same plan → apply path as a reload, against the spec applied last time.

    A config whose changes would drop data is refused here (the server does not start)
    unless destructive changes are allowed.  Re-vectorizations resume in the background.
    """
    return finish_services(begin_services(config_path, data_dir, allow_destructive, watch))


class Startup:
    """A start whose slow part (indexes, then ``then``: the --load files) runs on a thread while the port is open.

    ``then`` is given the services, the readiness to report to and an event set when
    the server shuts down; data requests are answered once it returns.
    """

    def __init__(self, opening: Opening, then: Callable[[Services, Readiness, threading.Event], None] | None = None) -> None:
        self.opening = opening
        self.then = then
        self.readiness = Readiness()
        self.stopping = threading.Event()
        self.services: Services | None = None
        self.error: BaseException | None = None
        self.on_failure: Callable[[], None] = lambda: None
        self.address: tuple[str, int] | None = None  # where HTTP is served: a replica's name in /v1/nodes
        self._thread: threading.Thread | None = None

    def begin(self, state: State) -> None:
        def run() -> None:
            try:
                self.services = finish_services(self.opening, self.readiness.report)
                self._follow(self.services)
                if self.then is not None:
                    self.then(self.services, self.readiness, self.stopping)
            except BaseException as exc:  # the server cannot serve: say why, and stop it
                self.error = exc
                self.readiness.failed(str(exc))
                if isinstance(exc, SearchdError):
                    log.error("start-up failed: %s", exc)
                else:
                    log.exception("start-up failed")
                self.on_failure()
                return
            if not self.stopping.is_set():
                settle_heap()  # a served process only: tests that open services in process keep collecting everything
                state.services = self.services
                self.readiness.set_ready()

        self._thread = threading.Thread(target=run, name="searchd-startup", daemon=True)
        self._thread.start()

    def _follow(self, services: Services) -> None:
        """On a shared store: name this replica by its address, and stay not ready until it has caught up with
        what the other replicas wrote before it began following them."""
        follower = services.engine.follower
        if follower is None:
            return
        if self.address is not None:
            follower.advertise(*self.address)
        while (behind := follower.caught_up()) is not None and not self.stopping.wait(0.05):
            self.readiness.report("catching up with the other replicas' writes", *behind)

    def end(self) -> Services | None:
        """Stop loading (after the batch in hand) and wait for the thread; the services to close, if it opened them."""
        self.stopping.set()
        if self._thread is not None:
            self._thread.join()
        return self.services


@dataclass(frozen=True)
class Served:
    """What an edge beside HTTP (the gRPC server) serves from: the open services (None until start-up is done),
    the spec that holds meanwhile, the metrics and the readiness."""

    current: Callable[[], Services | None]
    spec: Callable[[], Spec]
    metrics: Metrics
    readiness: Readiness


Companion = Callable[[Served], contextlib.AbstractAsyncContextManager[Any]]


def create_app(services: Services | Startup, companions: Sequence[Companion] = ()) -> Starlette:
    """An app on open services, or on a ``Startup`` it runs when it starts (answering 503 "not ready" until it is done).

    ``companions`` run on its event loop from start-up to shutdown (the CLI's gRPC server is one); they open their
    ports at once, as HTTP does, and answer "not ready" until the services are open.
    """
    startup = services if isinstance(services, Startup) else None
    metrics = services.opening.metrics if isinstance(services, Startup) else services.metrics
    starting_spec = services.opening.catalog.spec if isinstance(services, Startup) else services.holder.current.spec

    def current() -> Services | None:
        opened: Services | None = getattr(app.state, "services", None)
        return opened

    def spec() -> Spec:
        # Until the services are open, auth and limits come from the config the start checked.
        opened = current()
        return opened.holder.current.spec if opened is not None else starting_spec

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            served = Served(current, spec, metrics, app.state.readiness)
            for companion in companions:
                await stack.enter_async_context(companion(served))
            if startup is not None:
                startup.begin(app.state)
            yield
        opened = await anyio.to_thread.run_sync(startup.end) if startup is not None else app.state.services
        if opened is not None:
            await opened.runtime.pool.aclose()
            await anyio.to_thread.run_sync(opened.close)

    app = Starlette(
        routes=[*ROUTES, *CONSOLE_ROUTES],
        middleware=[
            Middleware(RequestObserver, metrics=lambda: metrics),
            Middleware(Authentication, auth=lambda: spec().server.auth),
            Middleware(RateLimit, limits=lambda: spec().server.limits.rate_limit),
            Middleware(BodySizeLimit, limit=lambda: spec().server.limits.max_body_bytes),
        ],
        exception_handlers={
            SearchdError: searchd_error_handler,
            HTTPException: http_error_handler,
            ClientDisconnect: client_gone_handler,
            Exception: unexpected_error_handler,
        },
        lifespan=lifespan,
    )
    app.state.metrics = metrics
    if startup is None:
        app.state.services = services
        app.state.readiness = Readiness()
        app.state.readiness.set_ready()
    else:
        app.state.readiness = startup.readiness
    return app
