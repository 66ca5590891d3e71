"""Build the starlette app from a config path: spec → catalog → store → engine → routes."""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio.to_thread
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect

from searchd.catalog import CatalogHolder, compile_catalog
from searchd.config import load_spec
from searchd.config.spec import Spec
from searchd.engine import Engine, ObjectStore, default_data_dir, open_store, storage_error
from searchd.errors import ConfigRefused, SearchdError
from searchd.modules.base import ModuleRuntime
from searchd.modules.cache import EmbeddingCache
from searchd.modules.provider import HttpPool
from searchd.modules.registry import default_registry
from searchd.query.served import ServedGraphQL
from searchd.reload.applied import plan_against_applied
from searchd.reload.manager import ConfigManager, served_spec
from searchd.server.auth import Authentication
from searchd.server.errors import client_gone_handler, http_error_handler, searchd_error_handler, unexpected_error_handler
from searchd.server.limits import BodySizeLimit
from searchd.server.observe import Metrics, RequestObserver
from searchd.server.routes import ROUTES

log = logging.getLogger("searchd")


@dataclass
class Services:
    """Everything a request needs, created once per app; closed at shutdown."""

    config_path: str
    holder: CatalogHolder
    store: ObjectStore
    engine: Engine
    runtime: ModuleRuntime
    config: ConfigManager
    metrics: Metrics
    graphql: ServedGraphQL  # each served catalog's GraphQL schema, built before the catalog serves

    def close(self) -> None:
        try:
            self.config.close()
            self.engine.close()
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


def open_services(config_path: str | Path, data_dir: str | Path | None = None, allow_destructive: bool = False, watch: bool | None = None) -> Services:
    """Start on a config: the same plan → apply path as a reload, against the spec applied last time.

    A config whose changes would drop data is refused here (the server does not start)
    unless destructive changes are allowed.  Re-vectorizations resume in the background.
    """
    registry = default_registry()
    spec = load_spec(config_path, registry)
    directory = resolve_data_dir(spec, data_dir)
    store = open_store(directory)
    metrics = Metrics()
    try:
        cache = EmbeddingCache(directory)
    except (OSError, sqlite3.Error) as exc:  # a full disk shows here first when the object store still opens
        store.close()
        raise storage_error(exc, directory, "the embedding cache") from exc
    runtime = ModuleRuntime(HttpPool(), cache, dict(os.environ), on_provider_call=metrics.observe_provider)
    graphql = ServedGraphQL()
    try:
        applied, plan = plan_against_applied(directory, spec, store.count, store.property_count)
        if plan.refused(spec.server.reload.allow_destructive or allow_destructive):
            raise ConfigRefused(plan.refusal_message(), f"or restore the config applied last (revision {applied.revision if applied else '?'})")
        served = served_spec(spec, applied.spec if applied else None, {*plan.revectorize, *plan.reindex})
        catalog = compile_catalog(served, registry, runtime)
        graphql.prepare(catalog)
        holder = CatalogHolder(catalog)
        engine = Engine(holder, store, directory)
        engine.start_checkpoints()
        manager = ConfigManager(Path(config_path), engine, runtime, allow_destructive, on_reload=metrics.observe_reload, prepare_catalog=graphql.prepare)
        manager.start(watch=spec.server.reload.watch if watch is None else watch)
        manager.submit("start").result()
    except BaseException:
        runtime.cache.close()
        store.close()
        raise
    log.info("serving %d collection(s) from %s with data in %s", len(catalog.collections), config_path, directory)
    services = Services(str(config_path), holder, store, engine, runtime, manager, metrics, graphql)
    metrics.watch(services)
    return services


Companion = Callable[[Services], contextlib.AbstractAsyncContextManager[Any]]


def create_app(services: Services, companions: Sequence[Companion] = ()) -> Starlette:
    """The app; ``companions`` run on its event loop from start-up to shutdown (the CLI's gRPC server is one)."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            for companion in companions:
                await stack.enter_async_context(companion(services))
            yield
        await services.runtime.pool.aclose()
        await anyio.to_thread.run_sync(services.close)

    app = Starlette(
        routes=ROUTES,
        middleware=[
            Middleware(RequestObserver, metrics=lambda: services.metrics),
            Middleware(Authentication, auth=lambda: services.holder.current.spec.server.auth),
            Middleware(BodySizeLimit, limit=lambda: services.holder.current.spec.server.limits.max_body_bytes),
        ],
        exception_handlers={
            SearchdError: searchd_error_handler,
            HTTPException: http_error_handler,
            ClientDisconnect: client_gone_handler,
            Exception: unexpected_error_handler,
        },
        lifespan=lifespan,
    )
    app.state.services = services
    return app
