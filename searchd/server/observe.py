"""Observability: Prometheus metrics, request ids and one structured access line per request.

Metrics live in a registry of the app's own (no process-global state), served at
``/metrics``.  Gauges that describe data (objects, index sizes, cache, rebuilds) are
read when Prometheus scrapes, not kept up to date on every write.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from graphql import DocumentNode, FieldNode, OperationDefinitionNode
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

if TYPE_CHECKING:
    from searchd.server.app import Services

access_log = logging.getLogger("searchd.access")

SEARCH_ARGUMENTS = ("hybrid", "bm25", "nearText", "nearImage", "nearVector", "nearObject")
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.http = Histogram(
            "searchd_http_request_duration_seconds", "HTTP requests by route template, method and status", ["route", "method", "status"],
            registry=self.registry, buckets=LATENCY_BUCKETS,
        )
        self.queries = Histogram(
            "searchd_query_duration_seconds", "GraphQL queries by kind (nearText, bm25, hybrid, … or list) and outcome", ["kind", "outcome"],
            registry=self.registry, buckets=LATENCY_BUCKETS,
        )
        self.provider_calls = Histogram(
            "searchd_vectorizer_request_duration_seconds", "Requests to embedding providers by module and outcome (ok, retried, refused, failed)",
            ["module", "outcome"], registry=self.registry, buckets=LATENCY_BUCKETS,
        )
        self.reloads = Counter("searchd_config_reloads_total", "Config reloads by result (applied, unchanged, invalid, refused)", ["result"], registry=self.registry)

    def observe_provider(self, module: str, outcome: str, seconds: float) -> None:
        self.provider_calls.labels(module, outcome).observe(seconds)

    def observe_reload(self, result: str) -> None:
        self.reloads.labels(result).inc()

    def watch(self, services: Services) -> None:
        self.registry.register(DataCollector(services))


class DataCollector(Collector):
    """Objects and index sizes per collection, the embedding cache, running rebuilds: read at scrape time."""

    def __init__(self, services: Services) -> None:
        self.services = services

    def collect(self) -> Iterator[Metric]:
        services = self.services
        catalog = services.holder.current
        objects = GaugeMetricFamily("searchd_objects", "Stored objects per collection", labels=["collection"])
        vectors = GaugeMetricFamily("searchd_index_vectors", "Vectors in each vector index", labels=["collection", "vector"])
        for name, collection in catalog.collections.items():
            objects.add_metric([name], services.store.count(name))
            for vector in collection.vectors:
                vectors.add_metric([name, vector], services.engine.index_size(name, vector))
        stats = services.runtime.cache.stats()
        cache = CounterMetricFamily("searchd_embedding_cache_lookups", "Embedding cache lookups by result", labels=["result"])
        cache.add_metric(["hit"], stats.hits)
        cache.add_metric(["miss"], stats.misses)
        entries = GaugeMetricFamily("searchd_embedding_cache_entries", "Embeddings kept in the cache", value=stats.entries)
        rebuild = GaugeMetricFamily("searchd_rebuild_remaining_objects", "Objects left in running rebuilds", labels=["collection", "target", "kind"])
        for progress in list(services.config.rebuilds.values()):  # a copy: the config manager's thread adds to it
            if progress.state == "running":
                rebuild.add_metric([progress.collection, progress.target, progress.kind], max(0, progress.total - progress.done))
        drift = GaugeMetricFamily("searchd_config_drift", "1 when this replica's config files do not hold the applied revision (see GET /v1/config/status)")
        drift.add_metric([], 1 if services.config.drift()["drift"] else 0)
        yield from (objects, vectors, cache, entries, rebuild, drift)
        follower = services.engine.follower
        if follower is not None:  # a replica on a shared store: how far behind the other replicas' writes it is
            lag_seqs, lag_seconds = follower.lag()
            yield GaugeMetricFamily("searchd_replication_applied_seq", "The last write of the change log applied to this replica's indexes", value=follower.applied)
            yield GaugeMetricFamily("searchd_replication_lag_writes", "Writes in the change log not yet applied to this replica's indexes", value=lag_seqs)
            yield GaugeMetricFamily("searchd_replication_lag_seconds", "How long the oldest write not yet applied here has waited", value=lag_seconds)
            yield CounterMetricFamily("searchd_replication_rebuilt_collections", "Collections rebuilt from the store since the start", value=follower.rebuilt)


def query_kind(document: DocumentNode) -> str:
    """What a GraphQL document searches with, for the metrics label: the first search argument, else list/aggregate."""
    kinds: list[str] = []
    for definition in document.definitions:
        if not isinstance(definition, OperationDefinitionNode):
            continue
        for top in definition.selection_set.selections:
            if not isinstance(top, FieldNode) or top.selection_set is None:
                continue
            for field in top.selection_set.selections:
                names = {a.name.value for a in getattr(field, "arguments", ()) or ()}
                found = next((k for k in SEARCH_ARGUMENTS if k in names), None)
                kinds.append(found or ("aggregate" if top.name.value == "Aggregate" else "list" if top.name.value == "Get" else "introspection"))
    return kinds[0] if len(set(kinds)) == 1 else ("mixed" if kinds else "introspection")


class JsonFormatter(logging.Formatter):
    """One JSON object per log line, with the request fields an access line carries."""

    FIELDS = ("request_id", "method", "path", "status", "duration_ms", "key")

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        line.update({f: getattr(record, f) for f in self.FIELDS if hasattr(record, f)})
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line)


def route_template(scope: Scope) -> str:
    """The route template a request was for: the one routing chose, or, for a request answered before
    routing (401 and 403 from authentication, 413 from the body limit), the one it would have chosen."""
    routed = getattr(scope.get("route"), "path", None)
    if isinstance(routed, str):
        return routed
    for route in getattr(scope.get("app"), "routes", ()):
        if isinstance(route, BaseRoute) and route.matches(scope)[0] is not Match.NONE:
            return str(getattr(route, "path", "unmatched"))
    return "unmatched"


class RequestObserver:
    """ASGI middleware: a request id (kept from X-Request-Id or made), the latency histogram, the access line."""

    def __init__(self, app: ASGIApp, metrics: Callable[[], Metrics]) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = next((value for name, value in scope["headers"] if name == b"x-request-id"), b"").decode("latin-1")
        request_id = given if 0 < len(given) <= 128 and given.isprintable() else uuid.uuid4().hex
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            self.metrics().http.labels(route_template(scope), scope["method"], str(status)).observe(elapsed)
            if access_log.isEnabledFor(logging.INFO):  # --no-access-log: not even the record's fields are built
                access_log.info(
                    "%s %s %d %.1fms",
                    scope["method"],
                    scope["path"],
                    status,
                    elapsed * 1000,
                    extra={"request_id": request_id, "method": scope["method"], "path": scope["path"], "status": status, "duration_ms": round(elapsed * 1000, 2), "key": state.get("api_key_name")},
                )
