"""Build the starlette app from a config path: spec → catalog → store → engine → routes."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware

from searchd.catalog import CatalogHolder, compile_catalog
from searchd.config import load_spec
from searchd.config.spec import Spec
from searchd.engine import Engine
from searchd.errors import SearchdError
from searchd.modules.base import ModuleRuntime
from searchd.modules.cache import EmbeddingCache
from searchd.modules.provider import HttpPool
from searchd.modules.registry import default_registry
from searchd.server.errors import http_error_handler, searchd_error_handler, unexpected_error_handler
from searchd.server.limits import BodySizeLimit
from searchd.server.routes import ROUTES
from searchd.storage import ObjectStore
from searchd.storage.store import default_data_dir

log = logging.getLogger("searchd")


@dataclass
class Services:
    """Everything a request needs, created once per app; closed at shutdown."""

    config_path: str
    holder: CatalogHolder
    store: ObjectStore
    engine: Engine
    runtime: ModuleRuntime

    def close(self) -> None:
        try:
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


def open_services(config_path: str | Path, data_dir: str | Path | None = None, transport: httpx.AsyncBaseTransport | None = None) -> Services:
    """``transport`` replaces the network for provider calls (tests mount fakes there)."""
    spec = load_spec(config_path)
    directory = resolve_data_dir(spec, data_dir)
    store = ObjectStore(directory)
    try:
        runtime = ModuleRuntime(HttpPool(transport), EmbeddingCache(directory), dict(os.environ))
        catalog = compile_catalog(spec, default_registry(), runtime)
        holder = CatalogHolder(catalog)
        engine = Engine(holder, store, directory)
    except BaseException:
        store.close()
        raise
    log.info("serving %d collection(s) from %s with data in %s", len(catalog.collections), config_path, directory)
    return Services(str(config_path), holder, store, engine, runtime)


def create_app(services: Services) -> Starlette:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await services.runtime.pool.aclose()
        services.close()

    app = Starlette(
        routes=ROUTES,
        middleware=[Middleware(BodySizeLimit, limit=lambda: services.holder.current.spec.server.limits.max_body_bytes)],
        exception_handlers={
            SearchdError: searchd_error_handler,
            HTTPException: http_error_handler,
            Exception: unexpected_error_handler,
        },
        lifespan=lifespan,
    )
    app.state.services = services
    return app
