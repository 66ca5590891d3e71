"""The spec: the config as frozen dataclasses.  Built once from validated data, never mutated."""

from __future__ import annotations

import enum
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from functools import cached_property, partial
from types import MappingProxyType
from typing import Any, TypeVar

import orjson

DEFAULT_MAX_BODY_BYTES = 10 * 1024 * 1024
DEFAULT_QUERY_LIMIT = 100  # Weaviate's QUERY_DEFAULTS_LIMIT_GRAPHQL
MAX_QUERY_RESULTS = 10_000  # Weaviate's QUERY_MAXIMUM_RESULTS
# Vectorizer fields that change how the provider is reached, not the vectors it returns.
VECTORIZER_IN_PLACE = frozenset({"base_url"})
# Index fields read per query or per background merge (hnsw.py, annoy.py, multivector.py): a built index stays valid.
INDEX_SEARCH_TIME = frozenset({"ef", "search_k", "candidates", "merge_threshold"})


class PropertyType(enum.Enum):
    TEXT = "TEXT"
    TEXT_ARRAY = "TEXT[]"
    INT = "INT"
    NUMBER = "NUMBER"
    BOOLEAN = "BOOLEAN"
    DATE = "DATE"
    UUID = "UUID"
    BLOB = "BLOB"

    @property
    def weaviate_name(self) -> str:
        """The dataType Weaviate clients expect in GET /v1/schema."""
        return self.value.lower()

    @property
    def is_text(self) -> bool:
        return self in (PropertyType.TEXT, PropertyType.TEXT_ARRAY)


class Distance(enum.Enum):
    COSINE = "cosine"
    DOT = "dot"
    L2_SQUARED = "l2-squared"
    MANHATTAN = "manhattan"
    HAMMING = "hamming"


@dataclass(frozen=True)
class RateSpec:
    """A token bucket: ``requests_per_second`` on average, up to ``burst`` at once (None: the rate, rounded up)."""

    requests_per_second: float | None = None  # None: not limited
    burst: int | None = None

    @property
    def capacity(self) -> int:
        return self.burst if self.burst is not None else max(1, math.ceil(self.requests_per_second or 1))


@dataclass(frozen=True)
class RateLimitSpec:
    """Per-API-key request rates (each key has its own bucket; without keys, all requests share one)."""

    requests_per_second: float | None = None  # keys not named in ``keys``; None: not limited
    burst: int | None = None
    keys: Mapping[str, RateSpec] = field(default_factory=lambda: MappingProxyType({}))  # by the key's name

    def of(self, key_name: str) -> RateSpec | None:
        """The rate of a key, or None when it is not limited."""
        rate = self.keys.get(key_name, RateSpec(self.requests_per_second, self.burst))
        return rate if rate.requests_per_second is not None else None


@dataclass(frozen=True)
class LimitsSpec:
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    query_limit_default: int = DEFAULT_QUERY_LIMIT
    query_limit_max: int = MAX_QUERY_RESULTS
    max_batch_objects: int = 10_000
    max_query_depth: int = 30
    # The query cost model (searchd/query/cost.py) and the admission of queries (searchd/server/limits.py).
    max_query_tokens: int = 20_000
    max_query_cost: int = 500_000
    max_response_bytes: int = 256 * 1024 * 1024  # a GraphQL response's JSON (searchd/query/response_size.py)
    max_searches_per_query: int = 100
    max_filter_operands: int = 2_000
    max_filter_depth: int = 10
    max_concurrent_queries: int = 8
    queue_timeout: float = 10.0  # seconds a query waits for a slot
    query_timeout: float = 30.0  # seconds a query may run
    rate_limit: RateLimitSpec = RateLimitSpec()


@dataclass(frozen=True)
class ConnectionsSpec:
    """HTTP connection hygiene, bound at start; see searchd.server.connections."""

    max_connections: int | None = None  # None: derived from the open-file limit at start
    idle_timeout: float = 5.0
    header_timeout: float = 10.0
    body_timeout: float = 60.0


@dataclass(frozen=True)
class ReloadSpec:
    watch: bool = True  # apply config file changes as they are saved
    allow_destructive: bool = False  # apply changes that drop stored data (removed collections, properties, vectors; changed types)


class Role(enum.Enum):
    ADMIN = "admin"  # writes, deletes, config reload — and everything read may do
    READ = "read"  # queries, listings, status


@dataclass(frozen=True)
class ApiKeySpec:
    name: str  # shown in logs instead of the key
    key: str = field(repr=False)
    role: Role = Role.READ


@dataclass(frozen=True)
class AuthSpec:
    api_keys: tuple[ApiKeySpec, ...] = ()

    @property
    def enabled(self) -> bool:
        """With keys declared, anonymous access is off."""
        return bool(self.api_keys)


@dataclass(frozen=True)
class GrpcSpec:
    enabled: bool = True
    port: int = 50051  # Weaviate's default


# Used when the config has no server.storage: PostgreSQL at this URL (as SEARCHD_DATA stands in for server.dataDir).
DATABASE_URL_ENV = "SEARCHD_DATABASE_URL"


class StorageBackend(enum.Enum):
    SQLITE = "sqlite"  # objects.sqlite3 in the data directory (the default: needs nothing)
    POSTGRES = "postgres"  # a PostgreSQL database at ``url``


@dataclass(frozen=True)
class StorageSpec:
    backend: StorageBackend = StorageBackend.SQLITE
    url: str = field(default="", repr=False)  # from ${ENV}: it may hold a password, so it is never logged
    heartbeat_seconds: float = 5.0  # how often a replica on PostgreSQL says it is alive (searchd.follower)
    replica_expiry_seconds: float = 600.0  # a replica silent this long leaves /v1/nodes and loses its claim on the change log


@dataclass(frozen=True)
class ServerSpec:
    host: str = "127.0.0.1"
    port: int = 8080
    data_dir: str | None = None
    storage: StorageSpec = StorageSpec()
    limits: LimitsSpec = LimitsSpec()
    connections: ConnectionsSpec = ConnectionsSpec()
    reload: ReloadSpec = ReloadSpec()
    auth: AuthSpec = AuthSpec()
    grpc: GrpcSpec = GrpcSpec()


class Tokenization(enum.Enum):
    WORD = "word"
    LOWERCASE = "lowercase"
    WHITESPACE = "whitespace"
    FIELD = "field"
    TRIGRAM = "trigram"


@dataclass(frozen=True)
class PropertySpec:
    name: str
    type: PropertyType
    description: str = ""
    tokenization: Tokenization = Tokenization.WORD
    index_searchable: bool = True
    index_filterable: bool = True

    @property
    def searchable(self) -> bool:
        return self.type.is_text and self.index_searchable

    @property
    def filterable(self) -> bool:
        return self.type is not PropertyType.BLOB and self.index_filterable


# Weaviate's "en" preset (adapters/repos/db/inverted/stopwords/presets.go).
EN_STOPWORDS = frozenset(
    ["a", "an", "and", "are", "as", "at", "be", "but", "by", "for", "if", "in", "into", "is", "it", "no", "not", "of", "on", "or", "such", "that", "the", "their", "then", "there", "these", "they", "this", "to", "was", "will", "with"]
)


@dataclass(frozen=True)
class InvertedIndexSpec:
    k1: float = 1.2
    b: float = 0.75
    stopword_preset: str = "en"
    stopword_additions: tuple[str, ...] = ()
    stopword_removals: tuple[str, ...] = ()

    @property
    def stopwords(self) -> frozenset[str]:
        preset = EN_STOPWORDS if self.stopword_preset == "en" else frozenset()
        return (preset | set(self.stopword_additions)) - set(self.stopword_removals)


@dataclass(frozen=True)
class VectorizerSpec:
    module: str
    model: str | None = None
    dimensions: int | None = None
    text_fields: tuple[str, ...] | None = None
    image_fields: tuple[str, ...] | None = None
    weights: Mapping[str, float] | None = None
    late_chunking: bool = False
    truncate: str | None = None  # NONE | START | END: what a provider does with over-long input
    base_url: str | None = None  # overrides modules.<module>.baseURL for this vector

    @property
    def brings_own_vectors(self) -> bool:
        return self.module == "none"

    def embedding(self) -> VectorizerSpec:
        """Only what decides the vectors returned (``VECTORIZER_IN_PLACE`` fields at their defaults)."""
        return replace(self, base_url=None)


class IndexType(enum.Enum):
    FLAT = "flat"
    HNSW = "hnsw"
    ANNOY = "annoy"
    MULTIVECTOR = "multivector"
    PGVECTOR = "pgvector"  # HNSW inside PostgreSQL (pgvector): the index lives in the database, beside the objects


@dataclass(frozen=True)
class IndexSpec:
    """How a named vector is searched.  Parameters a type does not use are ignored by it."""

    type: str = "hnsw"
    distance: Distance = Distance.COSINE
    # hnsw (and the token index of multivector)
    max_connections: int = 16
    ef_construction: int = 128
    ef: int = 64
    # annoy
    trees: int = 32
    search_k: int = 0  # 0: trees * k * 25 (recall@10 ~0.95 on 30k MiniLM vectors with 32 trees, bench/RESULTS.md)
    merge_threshold: int = 5000  # delta rows that trigger a background merge into a sealed segment
    # multivector
    candidates: int = 64  # objects rescored with exact MaxSim per query, at least 2k
    # pgvector: one matrix per object (late interaction), kept as a table of token vectors and scored by MaxSim
    multivector: bool = False

    @property
    def kind(self) -> IndexType:
        return _member(IndexType, self.type)

    @property
    def matrices(self) -> bool:
        """Late interaction: each object carries a matrix (a multivector index, or pgvector with multivector: true)."""
        return self.kind is IndexType.MULTIVECTOR or (self.kind is IndexType.PGVECTOR and self.multivector)

    def built(self) -> IndexSpec:
        """Only what decides a built index's content (``INDEX_SEARCH_TIME`` fields at their defaults)."""
        defaults = IndexSpec()
        return replace(self, **{name: getattr(defaults, name) for name in INDEX_SEARCH_TIME})


@dataclass(frozen=True)
class NamedVectorSpec:
    name: str
    vectorizer: VectorizerSpec
    index: IndexSpec = IndexSpec()
    default: bool = False


@dataclass(frozen=True)
class CollectionSpec:
    name: str
    properties: tuple[PropertySpec, ...] = ()
    vectors: tuple[NamedVectorSpec, ...] = ()
    description: str = ""
    inverted_index: InvertedIndexSpec = InvertedIndexSpec()

    def find_property(self, name: str) -> PropertySpec | None:
        return next((p for p in self.properties if p.name == name), None)

    def find_vector(self, name: str) -> NamedVectorSpec | None:
        return next((v for v in self.vectors if v.name == name), None)

    @property
    def default_vector(self) -> NamedVectorSpec | None:
        """The vector an unnamed `vector` or a query without targetVectors addresses."""
        if len(self.vectors) == 1:
            return self.vectors[0]
        return next((v for v in self.vectors if v.default), None)


@dataclass(frozen=True)
class Spec:
    server: ServerSpec = ServerSpec()
    modules: Mapping[str, Mapping[str, Any]] = field(default_factory=lambda: MappingProxyType({}))
    collections: tuple[CollectionSpec, ...] = ()
    # Directory the config was read from; relative paths in it are resolved against this.
    base_dir: str = "."

    def find_collection(self, name: str) -> CollectionSpec | None:
        return self._by_name.get(name)

    @cached_property
    def revision(self) -> str:
        """A content hash of the effective config (``config/revision.py``), taken once."""
        from searchd.config.revision import content_revision  # revision.py reads the spec: imported when first asked

        return content_revision(self)

    @cached_property
    def _by_name(self) -> Mapping[str, CollectionSpec]:
        """Collections by name, the first of each name (a plan looks up every one: a scan each was quadratic)."""
        return MappingProxyType({c.name: c for c in reversed(self.collections)})


_E = TypeVar("_E", bound=enum.Enum)
_D = TypeVar("_D")


def _member(kind: type[_E], value: Any) -> _E:
    """``kind(value)`` without the Enum call's cost (~1 µs, several per collection: a large config has 100,000)."""
    member = kind._value2member_map_.get(value)
    return member if isinstance(member, kind) else kind(value)


def _assemble(kind: type[_D], values: dict[str, Any]) -> _D:
    """``kind(**values)`` for a frozen dataclass, without its ``__init__``, which sets each field through
    ``object.__setattr__``: 1.5 µs for six fields against 0.5 µs, and a large config builds 700,000 of these.
    ``values`` names every field (``tests/test_config_spec_build.py`` holds each builder to the constructor)."""
    built = object.__new__(kind)
    object.__setattr__(built, "__dict__", values)
    return built


def _frozen(mapping: Mapping[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(dict(mapping))


def _names(value: Any) -> tuple[str, ...] | None:
    return None if value is None else tuple(value)


_INDEX_KEYS = MappingProxyType(
    {
        "maxConnections": "max_connections",
        "efConstruction": "ef_construction",
        "ef": "ef",
        "trees": "trees",
        "searchK": "search_k",
        "mergeThreshold": "merge_threshold",
        "candidates": "candidates",
        "multivector": "multivector",
    }
)
# Every field of an IndexSpec at its default, for _assemble.
_INDEX_DEFAULTS = MappingProxyType({f.name: f.default for f in fields(IndexSpec)})


def _index_spec(data: Mapping[str, Any]) -> IndexSpec:
    values = dict(_INDEX_DEFAULTS)
    values["type"] = data.get("type", IndexSpec.type)
    values["distance"] = _member(Distance, data.get("distance", "cosine"))
    if len(data) > 2 or "type" not in data or "distance" not in data:  # most declare a type and a distance only
        values.update({_INDEX_KEYS[k]: v for k, v in data.items() if k in _INDEX_KEYS})
    return _assemble(IndexSpec, values)


def _inverted_index_spec(data: Mapping[str, Any]) -> InvertedIndexSpec:
    bm25 = data.get("bm25", {})
    stopwords = data.get("stopwords", {})
    return _assemble(
        InvertedIndexSpec,
        {
            "k1": float(bm25.get("k1", 1.2)),
            "b": float(bm25.get("b", 0.75)),
            "stopword_preset": stopwords.get("preset", "en"),
            "stopword_additions": tuple(stopwords.get("additions", ())),
            "stopword_removals": tuple(stopwords.get("removals", ())),
        },
    )


def _storage_spec(storage: Mapping[str, Any]) -> StorageSpec:
    return StorageSpec(
        StorageBackend(storage.get("backend", "sqlite")),
        storage.get("url", ""),
        float(storage.get("heartbeatSeconds", StorageSpec.heartbeat_seconds)),
        float(storage.get("replicaExpirySeconds", StorageSpec.replica_expiry_seconds)),
    )


def _connections_spec(data: Mapping[str, Any]) -> ConnectionsSpec:
    defaults = ConnectionsSpec()
    return ConnectionsSpec(
        max_connections=data.get("maxConnections"),
        idle_timeout=float(data.get("idleTimeout", defaults.idle_timeout)),
        header_timeout=float(data.get("headerTimeout", defaults.header_timeout)),
        body_timeout=float(data.get("bodyTimeout", defaults.body_timeout)),
    )


def _rate_limit_spec(data: Mapping[str, Any]) -> RateLimitSpec:
    keys = {name: RateSpec(rate.get("requestsPerSecond"), rate.get("burst")) for name, rate in data.get("keys", {}).items()}
    return RateLimitSpec(data.get("requestsPerSecond"), data.get("burst"), MappingProxyType(keys))


def _property_spec(p: Mapping[str, Any]) -> PropertySpec:
    return _assemble(
        PropertySpec,
        {
            "name": p["name"],
            "type": _member(PropertyType, p["type"]),
            "description": p.get("description", ""),
            "tokenization": _member(Tokenization, p["tokenization"]) if "tokenization" in p else Tokenization.WORD,
            "index_searchable": p.get("indexSearchable", True),
            "index_filterable": p.get("indexFilterable", True),
        },
    )


def _vector_spec(name: str, v: Mapping[str, Any]) -> NamedVectorSpec:
    vectorizer = v["vectorizer"]
    get = vectorizer.get
    built = {
        "module": vectorizer["module"],
        "model": get("model"),
        "dimensions": get("dimensions"),
        "text_fields": _names(get("textFields")),
        "image_fields": _names(get("imageFields")),
        "weights": _frozen(vectorizer["weights"]) if "weights" in vectorizer else None,
        "late_chunking": bool(get("lateChunking", False)),
        "truncate": get("truncate"),
        "base_url": get("baseURL"),
    }
    index = _index_spec(v["index"]) if "index" in v else IndexSpec()
    return _assemble(NamedVectorSpec, {"name": name, "vectorizer": _assemble(VectorizerSpec, built), "index": index, "default": bool(v.get("default", False))})


_T = TypeVar("_T")


class _Shared:
    """Builds each distinct declaration once.  A large generated config repeats the same properties and vectors
    in thousands of collections, and a frozen dataclass costs microseconds to build; the spec is immutable, so
    equal declarations (equal as JSON, so 1 and 1.0, or true and 1, stay apart) can share one object.

    Encoding a declaration to find its equal costs about as much as building it: when the first ``SAMPLE``
    look-ups found few repeats (a config whose collections share nothing), the rest are built without one."""

    SAMPLE = 512

    def __init__(self) -> None:
        self.built: dict[bytes, Any] = {}
        self.looked = 0
        self.found = 0

    @property
    def pays(self) -> bool:
        return self.looked < self.SAMPLE or 4 * self.found >= self.looked

    def get(self, kind: bytes, declaration: Any, build: Callable[[], _T], option: int = orjson.OPT_SORT_KEYS) -> _T:
        try:
            key = kind + orjson.dumps(declaration, option=option | orjson.OPT_PASSTHROUGH_DATETIME)
        except (TypeError, orjson.JSONEncodeError):
            return build()  # not plain JSON (a huge integer, a date that would read as its string): built every time
        self.looked += 1
        found: _T | None = self.built.get(key)
        if found is None:
            found = self.built[key] = build()
        else:
            self.found += 1
        return found


_Parts = tuple[tuple[PropertySpec, ...], InvertedIndexSpec, tuple[NamedVectorSpec, ...]]
_NO_INVERTED_INDEX = InvertedIndexSpec()


def _collection_parts(shared: _Shared | None, c: Mapping[str, Any]) -> _Parts:
    """A collection's properties, inverted index and vectors, each distinct declaration built once (None: no sharing)."""
    inverted = c.get("invertedIndex")
    if shared is None:
        vectors = tuple([_vector_spec(name, v) for name, v in c["vectors"].items()]) if "vectors" in c else ()
        properties = tuple([_property_spec(p) for p in c["properties"]]) if "properties" in c else ()
        return properties, _NO_INVERTED_INDEX if inverted is None else _inverted_index_spec(inverted), vectors
    inverted = inverted or {}
    return (
        tuple(shared.get(b"p", p, partial(_property_spec, p)) for p in c.get("properties", [])),
        shared.get(b"i", inverted, partial(_inverted_index_spec, inverted)),
        tuple(shared.get(b"v", [name, v], partial(_vector_spec, name, v)) for name, v in c.get("vectors", {}).items()),
    )


def spec_from_data(data: Mapping[str, Any], base_dir: str) -> Spec:
    """Build the spec from schema-valid data (shape errors are caught before this)."""
    server = data.get("server", {})
    limits = server.get("limits", {})
    shared = _Shared()
    collections = []
    # A folded reading (repeats.py) gives repeated parts as one object: found by identity first, with no encoding.
    # The data outlives this loop, so no id is reused meanwhile.
    by_identity: dict[tuple[int, int, int], _Parts] = {}
    declared_collections = data.get("collections", [])
    alone, identical = len(declared_collections) == 1, 0
    for c in declared_collections:
        if alone or not (identical or shared.pays):
            # Nothing to share with: one collection, or collections that share nothing (none found by identity either).
            properties, inverted_index, vectors = _collection_parts(None, c)
        else:
            # All three parts of a collection looked up at once, as they were written (key order kept: vectors keep
            # theirs), so that the many collections of a generated config that differ only in name cost one lookup each.
            declared = [c.get("properties"), c.get("invertedIndex"), c.get("vectors")]
            identity = (id(declared[0]), id(declared[1]), id(declared[2]))
            parts = by_identity.get(identity)
            if parts is None:
                parts = by_identity[identity] = shared.get(b"c", declared, partial(_collection_parts, shared, c), option=0)
            else:
                identical += 1
            properties, inverted_index, vectors = parts
        collections.append(
            _assemble(CollectionSpec, {"name": c["name"], "properties": properties, "vectors": vectors, "description": c.get("description", ""), "inverted_index": inverted_index})
        )
    return Spec(
        server=ServerSpec(
            host=server.get("host", "127.0.0.1"),
            port=server.get("port", 8080),
            data_dir=server.get("dataDir"),
            storage=_storage_spec(server.get("storage", {})),
            limits=LimitsSpec(
                max_body_bytes=limits.get("maxBodyBytes", DEFAULT_MAX_BODY_BYTES),
                query_limit_default=limits.get("queryLimitDefault", DEFAULT_QUERY_LIMIT),
                query_limit_max=limits.get("queryLimitMax", MAX_QUERY_RESULTS),
                max_batch_objects=limits.get("maxBatchObjects", 10_000),
                max_query_depth=limits.get("maxQueryDepth", 30),
                max_query_tokens=limits.get("maxQueryTokens", LimitsSpec.max_query_tokens),
                max_query_cost=limits.get("maxQueryCost", LimitsSpec.max_query_cost),
                max_response_bytes=limits.get("maxResponseBytes", LimitsSpec.max_response_bytes),
                max_searches_per_query=limits.get("maxSearchesPerQuery", LimitsSpec.max_searches_per_query),
                max_filter_operands=limits.get("maxFilterOperands", LimitsSpec.max_filter_operands),
                max_filter_depth=limits.get("maxFilterDepth", LimitsSpec.max_filter_depth),
                max_concurrent_queries=limits.get("maxConcurrentQueries", LimitsSpec.max_concurrent_queries),
                queue_timeout=limits.get("queueTimeout", LimitsSpec.queue_timeout),
                query_timeout=limits.get("queryTimeout", LimitsSpec.query_timeout),
                rate_limit=_rate_limit_spec(limits.get("rateLimit", {})),
            ),
            connections=_connections_spec(server.get("connections", {})),
            reload=ReloadSpec(
                watch=server.get("reload", {}).get("watch", True),
                allow_destructive=server.get("reload", {}).get("allowDestructive", False),
            ),
            auth=AuthSpec(
                tuple(ApiKeySpec(k["name"], k["key"], Role(k.get("role", "read"))) for k in server.get("auth", {}).get("apiKeys", []))
            ),
            grpc=GrpcSpec(enabled=server.get("grpc", {}).get("enabled", True), port=server.get("grpc", {}).get("port", 50051)),
        ),
        modules=_frozen({name: _frozen(settings) for name, settings in data.get("modules", {}).items()}),
        collections=tuple(collections),
        base_dir=base_dir,
    )
