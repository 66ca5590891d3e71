"""Rules JSON Schema cannot express, reported in the same located shape."""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from typing import Any

from searchd.config.capabilities import KnownModules, ModuleCapabilities
from searchd.config.loader import Locator, PathKey
from searchd.config.spec import (
    DATABASE_URL_ENV,
    CollectionSpec,
    Distance,
    IndexType,
    NamedVectorSpec,
    PropertySpec,
    PropertyType,
    Spec,
    StorageBackend,
    StorageSpec,
    VectorizerSpec,
)
from searchd.errors import ConfigIssue

RESERVED_PROPERTY_NAMES = frozenset({"id", "_id", "_additional"})

# What each index type can compute (hnswlib and annoy have no hamming; MaxSim is a dot product).
DISTANCES_BY_INDEX = {
    IndexType.FLAT: tuple(Distance),
    IndexType.HNSW: (Distance.COSINE, Distance.DOT, Distance.L2_SQUARED),
    IndexType.ANNOY: (Distance.COSINE, Distance.DOT, Distance.L2_SQUARED, Distance.MANHATTAN),
    IndexType.MULTIVECTOR: (Distance.COSINE, Distance.DOT),
    IndexType.PGVECTOR: (Distance.COSINE, Distance.DOT, Distance.L2_SQUARED),  # <=>, <#>, <-> (squared)
}
# pgvector's own bounds on its HNSW parameters (CREATE INDEX refuses values outside them).
PGVECTOR_MAX_M = 100
PGVECTOR_MAX_EF_CONSTRUCTION = 1000
PGVECTOR_MAX_EF_SEARCH = 1000


def semantic_issues(
    spec: Spec, locator: Locator, registry: KnownModules, vector_extension: str | None = "", environ: Mapping[str, str] | None = None
) -> list[ConfigIssue]:
    """``vector_extension``: why the database cannot hold a pgvector index (None: it can; "": not known, not checked).

    ``environ``: where $SEARCHD_DATABASE_URL may choose PostgreSQL for a config without server.storage (default: none).
    """
    postgres = spec.server.storage.backend is StorageBackend.POSTGRES or (spec.server.storage == StorageSpec() and bool((environ or {}).get(DATABASE_URL_ENV)))
    return [*_check_spec(spec, locator, registry), *_check_pgvector(spec, locator, vector_extension, postgres)]


def _check_pgvector(spec: Spec, locator: Locator, vector_extension: str | None, postgres: bool) -> Iterator[ConfigIssue]:
    """A pgvector index needs the postgres backend with the vector extension, and pgvector's bounds on its parameters."""
    for position, collection in enumerate(spec.collections):
        for vector in collection.vectors:
            index = vector.index
            if index.type != IndexType.PGVECTOR.value:  # (a valid type: the schema checked it)
                if index.multivector:
                    yield locator.issue(("collections", position, "vectors", vector.name, "index", "multivector"), "'multivector' is read by the pgvector index type only", "use index: {type: multivector}, or type: pgvector")
                continue
            path: PathKey = ("collections", position, "vectors", vector.name, "index")
            if not postgres:
                yield locator.issue(
                    (*path, "type"),
                    "a pgvector index lives in PostgreSQL, but this server keeps its objects in SQLite",
                    "set server.storage: {backend: postgres, url: ${DATABASE_URL}}, or use index type hnsw",
                )
            elif vector_extension:
                yield locator.issue((*path, "type"), f"the database cannot hold a pgvector index: {vector_extension}", "install pgvector (scripts/pgvector.sh) and run CREATE EXTENSION vector as a superuser, or use index type hnsw")
            if index.max_connections > PGVECTOR_MAX_M:
                yield locator.issue((*path, "maxConnections"), f"pgvector takes at most m = {PGVECTOR_MAX_M}, not {index.max_connections}", f"use {PGVECTOR_MAX_M} or less")
            if not 2 * index.max_connections <= index.ef_construction <= PGVECTOR_MAX_EF_CONSTRUCTION:
                yield locator.issue(
                    (*path, "efConstruction"),
                    f"pgvector needs efConstruction between 2 x maxConnections ({2 * index.max_connections}) and {PGVECTOR_MAX_EF_CONSTRUCTION}, not {index.ef_construction}",
                    "raise or lower efConstruction into that range",
                )
            if index.ef > PGVECTOR_MAX_EF_SEARCH:
                yield locator.issue((*path, "ef"), f"pgvector searches with ef at most {PGVECTOR_MAX_EF_SEARCH}, not {index.ef}", f"use {PGVECTOR_MAX_EF_SEARCH} or less")


def non_finite_issues(data: Any, locator: Locator) -> list[ConfigIssue]:
    """Every NaN or infinity left in the data, wherever it is (the schema refuses them where it expects a number).

    A second line of defence: a non-finite weight, k1 or limit poisons every score or
    vector it touches, so no place may let one through, not even one the schema leaves open.
    """
    found: list[ConfigIssue] = []

    def check(path: PathKey, value: Any) -> None:
        if isinstance(value, float) and not math.isfinite(value):
            found.append(locator.issue(path, f"{value} is not a finite number", "NaN and infinity are not allowed; write a finite number"))

    check((), data)
    stack: list[tuple[PathKey, Any]] = [((), data)] if isinstance(data, (dict, list)) else []
    while stack:  # paths are built for containers only: a scalar's is made when it is reported
        path, container = stack.pop()
        items = container.items() if isinstance(container, dict) else enumerate(container)
        for key, value in items:
            if isinstance(value, (dict, list)):
                stack.append(((*path, key), value))
            elif isinstance(value, float):
                check((*path, key), value)
    return found


def _check_storage(storage: StorageSpec, locator: Locator) -> Iterator[ConfigIssue]:
    """The database URL is a secret: no message repeats it."""
    path: PathKey = ("server", "storage", "url")
    written = locator.written(path)  # an unset ${VAR} there was reported already, and left the URL empty
    if storage.backend is StorageBackend.POSTGRES and not written:
        yield locator.issue(("server", "storage"), "the postgres backend needs a url", "add url: ${DATABASE_URL} and export DATABASE_URL=postgresql://user@host:5432/dbname")
    elif storage.backend is StorageBackend.SQLITE and storage.url:
        yield locator.issue(path, "a url is only read by the postgres backend", "add backend: postgres, or remove the url (SQLite lives in the data directory)")
    elif storage.url and not storage.url.startswith(("postgresql://", "postgres://")):
        yield locator.issue(path, "the database URL does not start with postgresql:// (its value is not shown: it may hold a password)", "export it as postgresql://user:password@host:5432/dbname")


def _check_spec(spec: Spec, locator: Locator, registry: KnownModules) -> Iterator[ConfigIssue]:
    yield from _check_storage(spec.server.storage, locator)
    seen: dict[str, int] = {}
    # What a collection's checks below find depends on its properties and vectors only (its name and position
    # only word the messages), and spec_from_data builds equal declarations once, as one object (the tuples of
    # them too): parts that passed once pass again.  By the objects' ids: the spec holds them, so no id is reused.
    passed: set[tuple[int, int]] = set()
    memo = _Passed()
    registry = dict(registry)  # a plain dict: the registry's own Mapping looks names up in Python
    declared = locator.data.get("collections") if isinstance(locator.data, dict) else None
    for index, collection in enumerate(spec.collections):
        path: PathKey = ("collections", index)
        folded = collection.name.lower()
        if folded in seen:
            here = locator.find((*path, "name"))[0]
            yield locator.issue(
                (*path, "name"),
                f"duplicate collection name '{collection.name}' (names are compared case-insensitively)",
                f"{locator.describe(('collections', seen[folded]), here)} already uses it; rename one",
            )
        else:
            seen[folded] = index
        parts = (id(collection.properties), id(collection.vectors))
        if parts in passed:
            continue
        raw = declared[index] if isinstance(declared, list) and index < len(declared) else None
        found = _check_collection(collection, path, locator, registry, memo, raw if isinstance(raw, dict) else {})
        if not found:
            passed.add(parts)
        yield from found


class _Passed:
    """What passed once and passes again wherever it stands (by the objects' ids, or by the values checked)."""

    def __init__(self) -> None:
        self.vectors: set[tuple[int, int]] = set()  # a vector with the collection's properties (the tuple of them)
        # A vector's index and model checks read these values only, never a name: (module, model, dimensions,
        # lateChunking, truncate, index type, distance, multivector).
        self.models: set[tuple[Any, ...]] = set()


_TEXT_ONLY_KEYS = ("tokenization", "indexSearchable")
_TEXT, _TEXT_ARRAY = PropertyType.TEXT, PropertyType.TEXT_ARRAY  # PropertyType.is_text, without its call (an Enum hashes in Python)


def _check_collection(collection: CollectionSpec, path: PathKey, locator: Locator, registry: KnownModules, passed: _Passed, raw: Mapping[str, Any]) -> list[ConfigIssue]:
    """``raw``: the collection as declared (whether a key was written is read from it)."""
    found: list[ConfigIssue] = []
    by_name: dict[str, PropertySpec] = {}
    declared_properties = raw.get("properties")
    for index, prop in enumerate(collection.properties):
        if prop.name in RESERVED_PROPERTY_NAMES:
            found.append(locator.issue((*path, "properties", index, "name"), f"property name '{prop.name}' is reserved", "rename the property"))
        if prop.type is not PropertyType.TEXT and prop.type is not PropertyType.TEXT_ARRAY:
            declared = declared_properties[index] if isinstance(declared_properties, list) and index < len(declared_properties) else None
            for key in _TEXT_ONLY_KEYS:
                if isinstance(declared, dict) and key in declared:
                    where_key = (*path, "properties", index, key)
                    found.append(locator.issue(where_key, f"'{key}' applies to TEXT and TEXT[] properties; '{prop.name}' is {prop.type.value}", f"remove '{key}'"))
        if prop.name in by_name:
            found.append(locator.issue((*path, "properties", index, "name"), f"duplicate property name '{prop.name}' in collection '{collection.name}'", "each property is declared once"))
        else:
            by_name[prop.name] = prop
    if len(collection.vectors) > 1:
        defaults = [v.name for v in collection.vectors if v.default]
        if len(defaults) > 1:
            found.append(locator.issue((*path, "vectors"), f"several vectors are marked default: {', '.join(defaults)}", "mark at most one named vector default: true"))
    for vector in collection.vectors:
        # A vector's checks depend on it and the collection's properties only: a pair that passed once passes again.
        pair = (id(vector), id(collection.properties))
        if pair in passed.vectors:
            continue
        vector_issues = _check_vector(collection, vector, (*path, "vectors", vector.name), locator, registry, passed.models, by_name)
        if not vector_issues:
            passed.vectors.add(pair)
        found.extend(vector_issues)
    return found


def _check_index(vector: NamedVectorSpec, path: PathKey, locator: Locator, registry: KnownModules) -> Iterator[ConfigIssue]:
    index = vector.index
    supported = DISTANCES_BY_INDEX[index.kind] if not index.multivector else DISTANCES_BY_INDEX[IndexType.MULTIVECTOR]
    if index.distance not in supported:
        yield locator.issue(
            (*path, "index", "distance"),
            f"a {index.type} index cannot compute {index.distance.value} distance",
            f"use one of {', '.join(d.value for d in supported)}, or index type flat",
        )
    module = registry.get(vector.vectorizer.module)
    late_chunked = vector.vectorizer.late_chunking  # a late-chunked document may keep one row per chunk
    matrices = index.matrices
    if matrices and module is not None and not module.brings_own_vectors and not module.multi_vector and not late_chunked:
        yield locator.issue(
            (*path, "index", "type"),
            f"module '{module.name}' produces one vector per object, but a multivector index needs one matrix per object",
            "use a multi-vector module, or module: none with objects that send matrices",
        )
    if module is not None and module.multi_vector and not matrices:
        yield locator.issue((*path, "index", "type"), f"module '{module.name}' produces multi-vectors", "set index: {type: multivector} (or {type: pgvector, multivector: true})")


def _check_vector(
    collection: CollectionSpec,
    vector: NamedVectorSpec,
    path: PathKey,
    locator: Locator,
    registry: KnownModules,
    passed_models: set[tuple[Any, ...]],
    by_name: Mapping[str, PropertySpec],
) -> list[ConfigIssue]:
    spec = vector.vectorizer
    index = vector.index
    # (The distance by its id: an Enum member hashes in Python, and members are singletons.)
    model_key = (spec.module, spec.model, spec.dimensions, spec.late_chunking, spec.truncate, index.type, id(index.distance), index.multivector)
    known = model_key in passed_models  # its index and model checks passed: they read nothing else
    found = [] if known else list(_check_index(vector, path, locator, registry))
    vpath: PathKey = (*path, "vectorizer")
    module = registry.get(spec.module)
    if module is None:
        found.append(locator.issue((*vpath, "module"), f"unknown module '{spec.module}'", "use one of: " + ", ".join(registry)))
        return found
    if module.brings_own_vectors:
        if spec.dimensions is None:
            found.append(locator.issue(vpath, "module 'none' needs 'dimensions': the length of the vectors objects will bring", "add e.g. dimensions: 384"))
        for key, value in (("model", spec.model), ("textFields", spec.text_fields), ("imageFields", spec.image_fields), ("weights", spec.weights)):
            if value is not None:
                found.append(locator.issue((*vpath, key), f"module 'none' does not take '{key}': objects bring their own vectors", f"remove '{key}' or choose a vectorizer module"))
        if not found:
            passed_models.add(model_key)
        return found
    if not known:
        found.extend(_check_model(module, spec, vpath, locator))
        if not found:
            passed_models.add(model_key)
    if spec.text_fields:
        found.extend(_check_fields(collection, vector, vpath, locator, "textFields", spec.text_fields, "text" in module.embeds, by_name))
    if spec.image_fields:
        found.extend(_check_fields(collection, vector, vpath, locator, "imageFields", spec.image_fields, "image" in module.embeds, by_name))
    text_fields = spec.text_fields if spec.text_fields is not None else (
        tuple(p.name for p in collection.properties if p.type.is_text) if module.name.startswith(("text2vec", "text2multivec")) else ()
    )
    fields = text_fields + spec.image_fields if spec.image_fields else text_fields
    if not fields:
        hint = "add textFields and/or imageFields" if "image" in module.modalities else "add a TEXT property or list textFields"
        found.append(locator.issue(vpath, f"vector '{vector.name}' has nothing to embed", hint))
    for name in spec.weights or {}:
        if name not in fields:
            found.append(
                locator.issue(
                    (*vpath, "weights", name),
                    f"weights names '{name}', which is not one of this vector's fields ({', '.join(fields) or 'none'})",
                    "weights are keyed by the names listed in textFields or imageFields",
                )
            )
    return found


OPTION_KEYS = {"late_chunking": "lateChunking", "truncate": "truncate"}


def _check_model(module: ModuleCapabilities, spec: VectorizerSpec, vpath: PathKey, locator: Locator) -> Iterator[ConfigIssue]:
    model = module.model(spec.model)
    if model is None:
        if module.open_models and spec.model:
            if spec.dimensions is None:
                yield locator.issue(vpath, f"model '{spec.model}' is not one searchd knows, so its vector length is unknown", "add dimensions: the length the model returns")
            return
        yield locator.issue((*vpath, "model"), f"module '{module.name}' has no model '{spec.model}'", "use one of: " + ", ".join(module.models))
        return
    if spec.dimensions is not None and not model.accepts_dimensions(spec.dimensions):
        yield locator.issue(
            (*vpath, "dimensions"),
            f"{spec.dimensions} is outside {model.name}'s range {model.describe_dimensions()}"
            if model.allowed_dimensions is None
            else f"{model.name} does not offer {spec.dimensions} dimensions; it offers {model.describe_dimensions()}",
            f"pick {model.describe_dimensions()}, or omit dimensions for {model.default_dimensions}",
        )
    for attribute, key in OPTION_KEYS.items():
        if getattr(spec, attribute) not in (None, False) and key not in model.options:
            takes = [name for name, m in module.models.items() if key in m.options]
            hint = f"models that take it: {', '.join(takes)}" if takes else f"module '{module.name}' does not take it; remove '{key}'"
            yield locator.issue((*vpath, key), f"model {model.name} does not take '{key}'", hint)
    if spec.truncate == "START" and module.name.endswith("jinaai"):
        yield locator.issue((*vpath, "truncate"), "Jina AI can only cut over-long input at the end", "use truncate: END or NONE")


def _check_fields(
    collection: CollectionSpec,
    vector: NamedVectorSpec,
    vpath: PathKey,
    locator: Locator,
    key: str,
    fields: tuple[str, ...],
    supported: bool,
    by_name: Mapping[str, PropertySpec],
) -> list[ConfigIssue]:
    """``by_name``: the collection's properties by name (the first of each)."""
    if not fields:
        return []
    if not supported:
        return [locator.issue((*vpath, key), f"module '{vector.vectorizer.module}' does not embed {key[:-6]}s", f"remove '{key}' or use a multi2vec module")]
    wanted = "TEXT or TEXT[]" if key == "textFields" else "BLOB"
    found = []
    for index, name in enumerate(fields):
        prop = by_name.get(name)
        if prop is None:
            known = ", ".join(p.name for p in collection.properties) or "none"
            found.append(locator.issue((*vpath, key, index), f"'{name}' is not a property of collection '{collection.name}'", f"declared properties: {known}"))
        elif (prop.type is _TEXT or prop.type is _TEXT_ARRAY if key == "textFields" else prop.type is PropertyType.BLOB) is False:
            found.append(locator.issue((*vpath, key, index), f"'{name}' is {prop.type.value}, but {key} need {wanted} properties", f"declare '{name}' as {wanted} or remove it from {key}"))
    return found
