"""GET /v1/nodes: the replicas serving the store as a Weaviate cluster, one shard per collection.

On SQLite the cluster is this one process.  On PostgreSQL it is every live replica (``searchd.follower``),
each with ``seq`` (the last write of the change log it has applied) and ``lag`` (writes behind the
log, and seconds the oldest of them has waited); they share the store, so their shards are the same.

Clients read it for health and counts, and weaviate-client's ``batch.dynamic()`` sizes its batches
from ``batchStats``: searchd has no batch queue (a write is indexed before it is acknowledged), so
``queueLength`` is always 0 and ``ratePerSecond`` reports no queue draining either.
"""

from __future__ import annotations

import socket
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from searchd import WEAVIATE_API_VERSION, __version__
from searchd.catalog import CompiledCollection
from searchd.errors import InvalidInput
from searchd.follower import Member

OUTPUTS = ("minimal", "verbose")


def node_name() -> str:
    """The host's name, as Weaviate names a node after its host."""
    return socket.gethostname() or "searchd"


def check_output(raw: str | None) -> bool:
    """Whether ``output`` asks for the verbose form (shards and stats)."""
    output = raw or "minimal"
    if output not in OUTPUTS:
        raise InvalidInput(f"output must be minimal or verbose, got {output!r}", "use output=verbose for shards and object counts")
    return output == "verbose"


def shard_json(collection: CompiledCollection, node: str, objects: int, indexing: bool) -> dict[str, Any]:
    return {
        "name": collection.name,  # one shard per collection, named after it
        "class": collection.name,
        "node": node,
        "objectCount": objects,
        # INDEXING while a re-vectorization or reindex of one of its vectors runs in the background.
        "vectorIndexingStatus": "INDEXING" if indexing else "READY",
        "vectorQueueLength": 0,
        "compressed": False,
        "loaded": True,
    }


def nodes_json(
    collections: Iterable[CompiledCollection], counts: Mapping[str, int], indexing: frozenset[str], verbose: bool, members: Sequence[Member] | None = None
) -> dict[str, Any]:
    """The body of GET /v1/nodes; ``counts`` holds each collection's objects, ``indexing`` the collections being rebuilt,
    ``members`` the live replicas of a shared store (None: this process alone)."""
    collections = list(collections)
    nodes = []
    for member in members if members is not None else [None]:
        name = member.name if member is not None else node_name()
        node: dict[str, Any] = {
            "name": name,
            "status": "HEALTHY" if member is None or member.healthy else "UNHEALTHY",
            "version": WEAVIATE_API_VERSION,
            "gitHash": f"searchd-{member.version if member is not None else __version__}",
            "batchStats": {"queueLength": 0, "ratePerSecond": 0},
        }
        if member is not None:
            address = f"{member.host}:{member.port}" if member.port is not None else member.host
            node.update({"seq": member.applied, "lag": {"seqs": member.lag_seqs, "seconds": member.lag_seconds}, "address": address, "self": member.this})
        if verbose:
            shards = [shard_json(c, name, counts[c.name], c.name in indexing) for c in collections]
            node["stats"] = {"objectCount": sum(s["objectCount"] for s in shards), "shardCount": len(shards)}
            node["shards"] = shards
        nodes.append(node)
    return {"nodes": nodes}


def shard_statuses(collection: CompiledCollection, indexing: bool) -> list[dict[str, Any]]:
    """GET /v1/schema/{class}/shards: the collection's one shard."""
    return [{"name": collection.name, "status": "INDEXING" if indexing else "READY", "vectorQueueSize": 0}]
