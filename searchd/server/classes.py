"""A collection as Weaviate class JSON (GET /v1/schema), with every key today's clients read.

weaviate-client 4.x and the TypeScript client index into the class JSON without defaults
(``prop["indexSearchable"]``, ``vectorIndexConfig["cleanupIntervalSeconds"]``,
``shardingConfig["desiredCount"]`` ...), so every key is always present.  Values are what
searchd really does; where a Weaviate setting has no counterpart here it carries Weaviate's
default, which describes searchd's behaviour (one shard, one replica, no tenants, no compression).

Index types map onto the ones clients know:

- ``hnsw`` and ``flat`` are themselves.
- ``multivector`` is ``hnsw`` with ``multivector.enabled`` (MaxSim), as in Weaviate: candidates
  come from an HNSW index over the token vectors and are rescored exactly.
- ``annoy`` is reported as ``hnsw``: both are approximate indexes, which is what a client needs to
  know, and every client parses hnsw; ``flat`` would promise exact results.  The graph keys
  (maxConnections, efConstruction, ef) then carry Weaviate's defaults and mean nothing.

Every ``vectorIndexConfig`` also carries ``searchd``: the YAML ``index`` block as declared
(type and the parameters that type reads), so nothing is hidden behind the mapping.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit, urlunsplit

from searchd.catalog import CompiledCollection, CompiledVector
from searchd.config.capabilities import KnownModules
from searchd.config.fromjson import convert, validate_text
from searchd.config.spec import IndexSpec, IndexType, PropertySpec, PropertyType

# index.base.EXACT_SCAN_MAX: a filter allowing fewer objects is searched exactly (edges do not import
# index/; tests/test_schema_json.py holds the two equal).
FLAT_SEARCH_CUTOFF = 4096
# Weaviate's defaults for settings searchd has no counterpart of (entities/vectorindex/hnsw/config.go).
HNSW_DEFAULTS: dict[str, Any] = {
    "maxConnections": 32,
    "efConstruction": 128,
    "ef": -1,
    "dynamicEfMin": 100,
    "dynamicEfMax": 500,
    "dynamicEfFactor": 8,
    "cleanupIntervalSeconds": 300,
}
# Everything is in memory: Weaviate's "cache everything" value.
VECTOR_CACHE_MAX_OBJECTS = 1_000_000_000_000
RANGE_TYPES = (PropertyType.INT, PropertyType.NUMBER, PropertyType.DATE)
INVERTED_CLEANUP_SECONDS = 60  # Weaviate's default; searchd compacts nothing on a timer
SHARDING = {
    "virtualPerPhysical": 128,
    "desiredCount": 1,
    "actualCount": 1,
    "desiredVirtualCount": 128,
    "actualVirtualCount": 128,
    "key": "_id",
    "strategy": "hash",
    "function": "murmur3",
}


def property_json(prop: PropertySpec) -> dict[str, Any]:
    return {
        "name": prop.name,
        "dataType": [prop.type.weaviate_name],
        "description": prop.description,
        "tokenization": prop.tokenization.value if prop.type.is_text else None,
        "indexFilterable": prop.filterable,
        "indexSearchable": prop.searchable,
        # A filterable INT / NUMBER / DATE is a sorted column (and an SQL index): ranges use it.
        "indexRangeFilters": prop.filterable and prop.type in RANGE_TYPES,
    }


def _quantizers() -> dict[str, Any]:
    """No compression: vectors are kept as float32."""
    return {
        "pq": {
            "enabled": False,
            "bitCompression": False,
            "segments": 0,
            "centroids": 256,
            "trainingLimit": 100000,
            "encoder": {"type": "kmeans", "distribution": "log-normal"},
        },
        "bq": {"enabled": False},
        "sq": {"enabled": False, "trainingLimit": 100000, "rescoreLimit": 20},
    }


def _multivector(enabled: bool) -> dict[str, Any]:
    return {"enabled": enabled, "aggregation": "maxSim", "muvera": {"enabled": False, "ksim": 4, "dprojections": 16, "repetitions": 10}}


def declared_index(index: IndexSpec) -> dict[str, Any]:
    """The YAML ``index`` block: its type, distance and the parameters that type reads."""
    params: dict[str, Any] = {"type": index.type, "distance": index.distance.value}
    kind = index.kind
    if kind in (IndexType.HNSW, IndexType.MULTIVECTOR, IndexType.PGVECTOR):
        params.update(maxConnections=index.max_connections, efConstruction=index.ef_construction, ef=index.ef)
    if kind is IndexType.PGVECTOR:
        params.update(multivector=index.multivector)
    if kind is IndexType.ANNOY:
        params.update(trees=index.trees, searchK=index.search_k, mergeThreshold=index.merge_threshold)
    if index.matrices:
        params.update(candidates=index.candidates)
    return params


def vector_index(index: IndexSpec) -> tuple[str, dict[str, Any]]:
    """(vectorIndexType, vectorIndexConfig) in Weaviate's terms; see the module docstring."""
    kind = index.kind
    common = {"distance": index.distance.value, "vectorCacheMaxObjects": VECTOR_CACHE_MAX_OBJECTS, **_quantizers()}
    if kind is IndexType.FLAT:
        return "flat", {**common, "multivector": _multivector(False), "searchd": declared_index(index)}
    graph = dict(HNSW_DEFAULTS)
    if kind is not IndexType.ANNOY:
        graph.update(maxConnections=index.max_connections, efConstruction=index.ef_construction, ef=index.ef)
    return "hnsw", {
        **graph,
        **common,
        "skip": False,
        "flatSearchCutoff": FLAT_SEARCH_CUTOFF,
        "filterStrategy": "sweeping",
        "multivector": _multivector(index.matrices),
        "searchd": declared_index(index),
    }


def vectorizer_json(vector: CompiledVector) -> dict[str, Any]:
    """The vectorizer's settings as declared, under Weaviate's keys where they mean the same.

    text2* modules name their fields ``properties``; multi2* modules take ``textFields`` /
    ``imageFields`` with positional ``weights`` {textFields: [...], imageFields: [...]}.  Only
    declared settings are shown, as Weaviate does: no ``properties`` means every TEXT property for
    both, and a model's default width is its documented one.  Feeding this JSON back to
    ``searchd schema-from-json`` gives the same YAML, so a round trip never plans a re-vectorization.
    """
    spec = vector.spec.vectorizer
    settings: dict[str, Any] = {}
    if spec.model is not None:
        settings["model"] = spec.model
    if spec.dimensions is not None:
        settings["dimensions"] = spec.dimensions
    text, images = spec.text_fields, spec.image_fields
    if spec.module.startswith("text2"):
        if text is not None:
            settings["properties"] = list(text)
        settings["vectorizeClassName"] = False
        if spec.weights is not None:
            settings["weights"] = dict(spec.weights)  # by property name: a searchd setting
    elif not spec.brings_own_vectors:
        if text is not None:
            settings["textFields"] = list(text)
        if images is not None:
            settings["imageFields"] = list(images)
        if spec.weights is not None:
            settings["weights"] = {"textFields": [spec.weights.get(f, 0) for f in text or ()], "imageFields": [spec.weights.get(f, 0) for f in images or ()]}
    if spec.late_chunking:
        settings["lateChunking"] = True
    if spec.truncate is not None:
        settings["truncate"] = spec.truncate
    if spec.base_url is not None:
        settings["baseURL"] = _without_credentials(spec.base_url)
    return {spec.module: settings}


def _without_credentials(url: str) -> str:
    """A URL with any user:password@ left out: keys never appear in responses."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=parts.hostname + (f":{parts.port}" if parts.port else ""))) if parts.username and parts.hostname else url


def class_json(collection: CompiledCollection) -> dict[str, Any]:
    spec = collection.spec
    inverted = spec.inverted_index
    vectors = {}
    for name, vector in collection.vectors.items():
        index_type, index_config = vector_index(vector.spec.index)
        vectors[name] = {"vectorizer": vectorizer_json(vector), "vectorIndexType": index_type, "vectorIndexConfig": index_config}
    return {
        "class": spec.name,
        "description": spec.description,
        "properties": [property_json(p) for p in spec.properties],
        "vectorConfig": vectors,
        "invertedIndexConfig": {
            "bm25": {"k1": inverted.k1, "b": inverted.b},
            "stopwords": {
                "preset": inverted.stopword_preset,
                "additions": list(inverted.stopword_additions) or None,
                "removals": list(inverted.stopword_removals) or None,
            },
            "cleanupIntervalSeconds": INVERTED_CLEANUP_SECONDS,
            # Filters on _creationTimeUnix / _lastUpdateTimeUnix and IsNull always work; len(property) does not.
            "indexTimestamps": True,
            "indexNullState": True,
            "indexPropertyLength": False,
        },
        "moduleConfig": {},
        "multiTenancyConfig": {"enabled": False, "autoTenantCreation": False, "autoTenantActivation": False},
        "replicationConfig": {"factor": 1, "asyncEnabled": False, "deletionStrategy": "NoAutomatedResolution"},
        "shardingConfig": dict(SHARDING),
    }


def refusal_message(action: str, config_path: str, body: Any, modules: KnownModules) -> str:
    """Why a schema write is refused, and, for a class JSON that searchd can serve, the YAML to write instead."""
    message = (
        f"the schema is declared in YAML and cannot be changed through {action}; "
        f"edit the config ({config_path}) instead, then validate it with 'searchd validate {config_path}'"
    )
    if not isinstance(body, dict) or not isinstance(body.get("class"), str):
        return message + "; 'searchd schema-from-json FILE' turns a class JSON into the YAML to add"
    conversion = convert(body)
    if conversion.errors:
        return f"{message}; class '{body['class']}' cannot be served as sent: {'; '.join(conversion.errors)}"
    rendered = conversion.yaml()
    issues = validate_text(rendered, "<request body>", modules)
    if issues:
        found = "; ".join(f"{i.path}: {i.message}" for i in issues)
        return f"{message}; class '{body['class']}' converts to YAML that is not valid yet ({found}): run 'searchd schema-from-json' on it and fix the result"
    notes = "".join(f"\n# note: {w}" for w in conversion.warnings)
    return f"{message}. To serve class '{body['class']}' as sent, write this YAML in a file of the config (what 'searchd schema-from-json' writes):\n{rendered}{notes}"
