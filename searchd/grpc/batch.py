"""``Weaviate/BatchObjects`` and ``Weaviate/BatchDelete``: the write path the REST batch endpoint uses."""

from __future__ import annotations

import time
from typing import Any

import anyio.to_thread

from searchd import deadline
from searchd.catalog import Catalog
from searchd.engine import Engine
from searchd.errors import NotFound, PayloadTooLarge, QueryError, SearchdError
from searchd.grpc.codec import batch_properties, single_vector, typed_vector, uuid_bytes, where_of
from searchd.grpc.protocol import Protocol
from searchd.query.filters import parse_where


def object_payload(obj: Any) -> dict[str, Any]:
    """A BatchObject as the Weaviate object JSON the write path checks."""
    if obj.tenant:
        raise QueryError(f"collection '{obj.collection}' has no tenants (multi-tenancy is not supported)", "leave the tenant out")
    payload: dict[str, Any] = {"class": obj.collection, "properties": batch_properties(obj.properties) if obj.HasField("properties") else {}}
    if obj.uuid:
        payload["id"] = obj.uuid
    if obj.vector_bytes:
        payload["vector"] = single_vector(obj.vector_bytes, "vector_bytes")
    elif len(obj.vector):
        payload["vector"] = list(obj.vector)
    named = {}
    for entry in obj.vectors:
        array = typed_vector(entry, f"vector '{entry.name}'")
        if entry.name:
            named[entry.name] = array
        else:
            payload["vector"] = array
    if named:
        payload["vectors"] = named
    return payload


def check_batch_size(catalog: Catalog, count: int) -> None:
    most = catalog.spec.server.limits.max_batch_objects
    if count > most:
        raise PayloadTooLarge(f"the batch has {count} objects, more than the limit of {most}", "split it into smaller batches, or raise server.limits.maxBatchObjects")


async def batch_objects(protocol: Protocol, engine: Engine, catalog: Catalog, request: Any, keys: dict[str, str]) -> Any:
    started = time.perf_counter()
    check_batch_size(catalog, len(request.objects))
    payloads: list[Any] = []
    failed: dict[int, SearchdError] = {}

    def decode() -> None:
        for index, obj in enumerate(request.objects):
            try:
                payloads.append(object_payload(obj))
            except SearchdError as exc:
                failed[index] = exc
                payloads.append(None)

    await anyio.to_thread.run_sync(decode)  # thousands of objects take milliseconds to decode: off the event loop
    good = [(i, p) for i, p in enumerate(payloads) if p is not None]
    outcomes = await engine.batch(catalog, [p for _, p in good], keys)
    for (index, _), outcome in zip(good, outcomes):
        if isinstance(outcome, SearchdError):
            failed[index] = outcome
    reply = protocol.BatchObjectsReply(took=time.perf_counter() - started)
    for index in sorted(failed):
        reply.errors.add(index=index, error=str(failed[index]))
    return reply


async def batch_delete(protocol: Protocol, engine: Engine, catalog: Catalog, request: Any) -> Any:
    """Delete the objects a filter matches (at most server.limits.queryLimitMax per request, as Weaviate caps it).

    The service runs it in a query slot, as a search: finding the objects is a filtered scan.
    """
    started = time.perf_counter()
    collection = catalog.collection(request.collection)
    if request.HasField("tenant") and request.tenant:
        raise QueryError(f"collection '{collection.name}' has no tenants (multi-tenancy is not supported)", "leave the tenant out")
    if not request.HasField("filters"):
        raise QueryError("a batch delete needs filters", "send filters that match the objects to delete")
    where = parse_where(collection, where_of(collection, request.filters, catalog.spec.server.limits))
    cap = catalog.spec.server.limits.query_limit_max

    def run() -> list[tuple[str, str | None]]:
        matched = engine.list_objects(collection.name, cap, where=where, vectors=False)
        outcomes: list[tuple[str, str | None]] = []
        # Past server.limits.queryTimeout it stops between two deletes (each is whole): the objects left still
        # match, so sending the same request again finishes the job.
        for obj in deadline.checked(matched, every=1):
            if request.dry_run:
                outcomes.append((obj.id, None))
                continue
            try:
                engine.delete(catalog, collection.name, obj.id)
                outcomes.append((obj.id, None))
            except NotFound as exc:  # deleted meanwhile by another request
                outcomes.append((obj.id, str(exc)))
        return outcomes

    outcomes = await anyio.to_thread.run_sync(run)
    failed = sum(1 for _, error in outcomes if error is not None)
    reply = protocol.BatchDeleteReply(took=time.perf_counter() - started, matches=len(outcomes), failed=failed, successful=len(outcomes) - failed)
    if request.verbose:
        for object_id, error in outcomes:
            entry = reply.objects.add(uuid=uuid_bytes(object_id), successful=error is None)
            if error is not None:
                entry.error = error
    return reply
