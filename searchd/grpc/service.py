"""The gRPC server: Weaviate's ``weaviate.v1.Weaviate`` service and ``grpc.health.v1.Health``, in the HTTP server's process.

Every call reads the catalog snapshot current when it starts, authenticates as the HTTP
edge does (``authorization: Bearer <key>`` metadata, the same keys and roles), takes
provider keys from ``x-…-api-key`` metadata as the HTTP edge takes them from headers,
and maps searchd's errors to status codes in one table, with the HTTP messages.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf.message import DecodeError
from prometheus_client import Histogram

from searchd.catalog import Catalog
from searchd.config.spec import Role
from searchd.errors import InvalidInput, LimitExceeded, RateLimited, SearchdError
from searchd.grpc.aggregate import run_aggregate
from searchd.grpc.batch import batch_delete, batch_objects
from searchd.grpc.protocol import Protocol, load_protocol
from searchd.grpc.search import Unsupported, run_search
from searchd.modules.provider import header_keys
from searchd.query.search import QueryContext
from searchd.server.app import Served, Services
from searchd.server.auth import find_key
from searchd.server.errors import escaped, status_of
from searchd.server.limits import too_large
from searchd.server.observe import LATENCY_BUCKETS, access_log

log = logging.getLogger("searchd.grpc")

# gRPC codes by the HTTP status the HTTP edge answers the same error with (searchd.server.errors holds the one table).
CODE_BY_STATUS = {
    404: grpc.StatusCode.NOT_FOUND,
    409: grpc.StatusCode.FAILED_PRECONDITION,  # a config refused as destructive
    413: grpc.StatusCode.RESOURCE_EXHAUSTED,
    422: grpc.StatusCode.INVALID_ARGUMENT,
    # A provider that refused the request (its key, its input) refuses it again: not UNAVAILABLE, which clients retry.
    502: grpc.StatusCode.FAILED_PRECONDITION,
    503: grpc.StatusCode.UNAVAILABLE,
}
SERVICE = "weaviate.v1.Weaviate"
HEALTH = "grpc.health.v1.Health"
SERVING, NOT_SERVING = 1, 2  # grpc.health.v1.HealthCheckResponse.ServingStatus


def code_of(exc: SearchdError) -> grpc.StatusCode:
    if isinstance(exc, Unsupported):
        return grpc.StatusCode.UNIMPLEMENTED
    if isinstance(exc, (LimitExceeded, RateLimited)):  # 422 / 429 over HTTP: a server.limits setting said no
        return grpc.StatusCode.RESOURCE_EXHAUSTED
    return CODE_BY_STATUS.get(status_of(exc), grpc.StatusCode.INTERNAL)


@dataclass(frozen=True)
class Oversized:
    """What the deserializer hands on instead of a message larger than server.limits.maxBodyBytes."""

    size: int


@dataclass(frozen=True)
class Undecodable:
    """What the deserializer hands on instead of bytes protobuf cannot decode (malformed, or nested past its 100 levels)."""

    message: str  # the message type expected


class Abort(Exception):
    """A call refused before it ran (authentication, authorization): its status and message."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Call:
    """What a handler gets: the snapshot the call started with, the engine, and the caller's provider keys."""

    catalog: Catalog
    services: Services
    keys: dict[str, str]

    @property
    def context(self) -> QueryContext:
        return QueryContext(self.catalog, self.services.engine, self.keys)


def authorize(catalog: Catalog, metadata: dict[str, str], needed: Role, method: str) -> str | None:
    """The caller's key name, as the HTTP edge checks it; Abort when it may not call ``method``."""
    auth = catalog.spec.server.auth
    if not auth.enabled:
        return None
    scheme, _, token = metadata.get("authorization", "").partition(" ")
    presented = token.strip() if scheme.lower() == "bearer" and token.strip() else None
    key = find_key(auth, presented) if presented else None
    if key is None:
        problem = "this server needs an API key" if presented is None else "the API key is not valid"
        raise Abort(grpc.StatusCode.UNAUTHENTICATED, f"{problem} (send 'Authorization: Bearer <key>' with a key declared under server.auth.apiKeys)")
    if needed is Role.ADMIN and key.role is not Role.ADMIN:
        raise Abort(grpc.StatusCode.PERMISSION_DENIED, f"key '{key.name}' has the read role; {method} needs an admin key")
    return key.name


Handler = Callable[[Call, Any], Awaitable[Any]]


class WeaviateService:
    """The handlers, bound to one Services and one compiled protocol."""

    def __init__(self, served: Served, protocol: Protocol) -> None:
        self.served = served
        self.protocol = protocol
        self.latency = Histogram(
            "searchd_grpc_request_duration_seconds", "gRPC calls by method and status code", ["method", "code"], registry=served.metrics.registry, buckets=LATENCY_BUCKETS
        )

    def _open(self) -> Services:
        """The open services; UNAVAILABLE (which clients retry) while the server starts, as HTTP answers 503."""
        services = self.served.current()
        if services is None:
            phase = self.served.readiness.as_json()["phase"]
            raise Abort(grpc.StatusCode.UNAVAILABLE, f"the server is not ready yet: {phase} (GET /v1/.well-known/ready shows its progress)")
        return services

    def _wrap(self, method: str, role: Role, handler: Handler) -> Callable[[Any, grpc.aio.ServicerContext[Any, Any]], Awaitable[Any]]:
        async def call(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            started = time.perf_counter()
            code = grpc.StatusCode.OK
            metadata = {k: v for k, v in context.invocation_metadata() or () if isinstance(v, str)}
            key_name: str | None = None
            try:
                services = self._open()
                catalog = services.holder.current  # the whole call runs on this snapshot
                key_name = authorize(catalog, metadata, role, f"{SERVICE}/{method}")
                if isinstance(request, Oversized):
                    raise too_large(catalog.spec.server.limits.max_body_bytes)
                if isinstance(request, Undecodable):
                    raise InvalidInput(
                        f"the request is not a valid {request.message} message (malformed, or nested more than 100 levels deep)",
                        "send a message of the weaviate.v1 protocol; a filter may nest at most server.limits.maxFilterDepth levels",
                    )
                return await handler(Call(catalog, services, header_keys(metadata)), request)
            except Abort as exc:
                code, message = exc.code, str(exc)
            except SearchdError as exc:
                code, message = code_of(exc), str(exc)
                if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.INTERNAL, grpc.StatusCode.FAILED_PRECONDITION):
                    log.error("%s failed: %s", method, exc)
            except Exception as exc:
                log.exception("unexpected error in %s", method)
                code, message = grpc.StatusCode.INTERNAL, f"internal error ({type(exc).__name__}); the server log has the details"
            finally:
                elapsed = time.perf_counter() - started
                self.latency.labels(method, code.name).observe(elapsed)
                path = f"/{SERVICE}/{method}"
                access_log.info(
                    "gRPC %s %s %.1fms", path, code.name, elapsed * 1000,
                    extra={"method": "gRPC", "path": path, "status": code.name, "duration_ms": round(elapsed * 1000, 2), "key": key_name},
                )
            await context.abort(code, escaped(message))  # details go out as UTF-8: never a lone surrogate

        return call

    async def _admitted(self, call: Call, run: Callable[[QueryContext], Awaitable[Any]]) -> Any:
        """A query in one of the HTTP edge's query slots, under server.limits.queryTimeout (as a GraphQL request runs)."""
        started = time.perf_counter()

        async def work(deadline: float) -> Any:
            return await run(dataclasses.replace(call.context, deadline=deadline))

        reply = await call.services.queries.run(call.catalog.spec.server.limits, work)
        reply.took = time.perf_counter() - started
        return reply

    async def search(self, call: Call, request: Any) -> Any:
        return await self._admitted(call, lambda context: run_search(self.protocol, context, request))

    async def aggregate(self, call: Call, request: Any) -> Any:
        return await self._admitted(call, lambda context: run_aggregate(self.protocol, context, request))

    async def batch_objects(self, call: Call, request: Any) -> Any:
        return await batch_objects(self.protocol, call.services.engine, call.catalog, request, call.keys)

    async def batch_delete(self, call: Call, request: Any) -> Any:
        """In a query slot under server.limits.queryTimeout: its filter scans the collection as a search's does."""

        async def work(_deadline: float) -> Any:
            return await batch_delete(self.protocol, call.services.engine, call.catalog, request)

        return await call.services.queries.run(call.catalog.spec.server.limits, work)

    async def batch_references(self, call: Call, request: Any) -> Any:
        raise Abort(
            grpc.StatusCode.UNIMPLEMENTED,
            "BatchReferences is not supported: searchd collections have no cross-reference properties (declare the data you search as properties in the YAML config)",
        )

    async def tenants_get(self, call: Call, request: Any) -> Any:
        collection = call.catalog.collection(request.collection)
        raise Abort(grpc.StatusCode.FAILED_PRECONDITION, f'multi-tenancy is not enabled for class "{collection.name}" (searchd collections have no tenants)')

    def _decoder(self, message: type[Any]) -> Callable[[bytes], Any]:
        def decode(data: bytes) -> Any:
            if len(data) > self.served.spec().server.limits.max_body_bytes:
                return Oversized(len(data))  # refused in the handler, with the HTTP edge's message
            try:
                return message.FromString(data)
            except DecodeError:  # refused in the handler too, once the caller is authenticated (grpc would answer UNKNOWN)
                return Undecodable(message.DESCRIPTOR.full_name)

        return decode

    def handlers(self) -> list[grpc.GenericRpcHandler]:
        p = self.protocol
        methods = {
            "Search": (Role.READ, self.search, p.SearchRequest, p.SearchReply),
            "Aggregate": (Role.READ, self.aggregate, p.AggregateRequest, p.AggregateReply),
            "TenantsGet": (Role.READ, self.tenants_get, p.TenantsGetRequest, p.TenantsGetReply),
            "BatchObjects": (Role.ADMIN, self.batch_objects, p.BatchObjectsRequest, p.BatchObjectsReply),
            "BatchDelete": (Role.ADMIN, self.batch_delete, p.BatchDeleteRequest, p.BatchDeleteReply),
            "BatchReferences": (Role.ADMIN, self.batch_references, p.BatchReferencesRequest, p.BatchReferencesReply),
        }
        weaviate = {
            name: grpc.unary_unary_rpc_method_handler(self._wrap(name, role, handler), request_deserializer=self._decoder(request), response_serializer=reply.SerializeToString)
            for name, (role, handler, request, reply) in methods.items()
        }
        health_reply = p.message("grpc.health.v1.HealthCheckResponse")

        async def check(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            # Open, as /v1/.well-known/ready is: the clients check it before they authenticate anything.  The service
            # name is not checked, as Weaviate does not: the TypeScript client sends the method's path in it.
            return health_reply(status=SERVING if self.served.current() is not None else NOT_SERVING)

        health = {
            "Check": grpc.unary_unary_rpc_method_handler(
                check, request_deserializer=p.message("grpc.health.v1.HealthCheckRequest").FromString, response_serializer=health_reply.SerializeToString
            )
        }
        return [grpc.method_handlers_generic_handler(SERVICE, weaviate), grpc.method_handlers_generic_handler(HEALTH, health)]


@contextlib.asynccontextmanager
async def grpc_server(served: Served, host: str, port: int) -> AsyncIterator[int]:
    """Serve gRPC on host:port while the context is open (on the running event loop, beside the HTTP server)."""
    limit = served.spec().server.limits.max_body_bytes
    server = grpc.aio.server(
        options=[
            # Not shared with another process: grpc's default SO_REUSEPORT would let a second server bind the same port.
            ("grpc.so_reuseport", 0),
            # Messages up to twice the limit reach the handler, which refuses those over it with the HTTP edge's
            # message; the transport refuses larger ones itself (RESOURCE_EXHAUSTED either way).
            ("grpc.max_receive_message_length", 2 * limit),
            ("grpc.max_send_message_length", -1),
        ]
    )
    service = WeaviateService(served, load_protocol())
    server.add_generic_rpc_handlers(service.handlers())
    try:
        bound = server.add_insecure_port(f"{host}:{port}")
    except RuntimeError as exc:
        raise OSError(f"gRPC cannot listen on {host}:{port}: address already in use or not available ({exc}); set server.grpc.port, or --grpc-port") from exc
    await server.start()
    log.info("gRPC (weaviate.v1) listening on %s:%d, messages up to %d bytes", host, bound, limit)
    try:
        yield bound
    finally:
        await server.stop(grace=5)
