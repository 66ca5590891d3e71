"""Issue #15, parts 2-4: the real weaviate-client 4.x reads searchd's collections and nodes over HTTP,
and a refused collection creation tells the integration which YAML to write.

Servers are real ``searchd serve`` processes on 127.0.0.1 (see tests/test_e2e_server.py).  The client
connects with ``skip_init_checks`` because only its HTTP calls are under test here (gRPC is #15 part 1).
Expected values come from the example YAML files read as plain data, not from searchd's own spec code.
"""

from __future__ import annotations

import json
import subprocess
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from searchd.config import load_spec
from searchd.config.spec import CollectionSpec
from searchd.modules.registry import default_registry
from searchd.server.classes import FLAT_SEARCH_CUTOFF
from tests.conftest import EXAMPLES
from tests.test_e2e_server import Server, StartServer, child_env, client, free_port, searchd_module
from tests.test_e2e_server import start_server as start_server  # noqa: PLC0414  (re-exported: the fixture, used by name)

with warnings.catch_warnings():
    # authlib (imported by weaviate-client) warns at import that its httpx integration moves to httpx2, after
    # adding an "always" filter for its own warnings: so its filter goes in first, then this one above it.
    authlib_deprecate = pytest.importorskip("authlib.deprecate", reason="weaviate-client 4.x is a test extra")
    warnings.filterwarnings("ignore", category=authlib_deprecate.AuthlibDeprecationWarning)
    weaviate = pytest.importorskip("weaviate", reason="weaviate-client 4.x is a test extra")
    from weaviate.classes.config import Configure, DataType, Property, Tokenization, VectorDistances
    from weaviate.collections.classes.config import _CollectionConfigCreate  # the body collections.create sends
    from weaviate.exceptions import UnexpectedStatusCodeError

EXAMPLE_CONFIGS = {
    "quickstart": EXAMPLES / "quickstart" / "searchd.yaml",
    "multimodal": EXAMPLES / "multimodal",
    "late-interaction": EXAMPLES / "late-interaction" / "searchd.yaml",
    "providers": EXAMPLES / "providers" / "searchd.yaml",
}
INDEX_TYPES = {"hnsw": "hnsw", "flat": "flat", "multivector": "hnsw", "annoy": "hnsw"}


def connect(server: Server) -> Any:
    return weaviate.connect_to_custom(
        http_host="127.0.0.1", http_port=server.port, http_secure=False, grpc_host="127.0.0.1", grpc_port=free_port(), grpc_secure=False, skip_init_checks=True
    )


@pytest.fixture
def v4(start_server: StartServer, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple[Server, Any]]:
    config: Path = request.param
    objects = (config if config.is_dir() else config.parent) / "objects.jsonl"
    server = start_server(config, tmp_path / "data", *(["--load", str(objects)] if objects.exists() else []))
    weaviate_client = connect(server)
    try:
        yield server, weaviate_client
    finally:
        weaviate_client.close()


def declared_collections(config: Path) -> list[dict[str, Any]]:
    files = sorted(config.rglob("*.yaml")) if config.is_dir() else [config]
    return [c for f in files for c in (yaml.safe_load(f.read_text(encoding="utf-8")) or {}).get("collections", [])]


def objects_per_class(config: Path) -> dict[str, int]:
    objects = (config if config.is_dir() else config.parent) / "objects.jsonl"
    counts: dict[str, int] = {}
    for line in objects.read_text(encoding="utf-8").splitlines() if objects.exists() else []:
        name = json.loads(line)["class"]
        counts[name] = counts.get(name, 0) + 1
    return counts


# -- GET /v1/schema through the client ------------------------------------------------


@pytest.mark.parametrize("v4", list(EXAMPLE_CONFIGS.values()), ids=list(EXAMPLE_CONFIGS), indirect=True)
def test_v4_client_reads_every_example_collection(v4: tuple[Server, Any], request: pytest.FixtureRequest) -> None:
    _, weaviate_client = v4
    config = EXAMPLE_CONFIGS[request.node.callspec.id]
    declared = declared_collections(config)
    assert sorted(weaviate_client.collections.list_all()) == sorted(c["name"] for c in declared)
    for collection in declared:
        got = weaviate_client.collections.get(collection["name"]).config.get()
        assert got.name == collection["name"] and (got.description or "") == collection.get("description", "")
        assert [(p.name, p.data_type.value) for p in got.properties] == [(p["name"], p["type"].lower()) for p in collection["properties"]]
        for prop, raw in zip(got.properties, collection["properties"]):
            text = raw["type"].startswith("TEXT")
            assert prop.tokenization == (Tokenization(raw.get("tokenization", "word")) if text else None), prop.name
            assert prop.index_searchable is (text and raw.get("indexSearchable", True)), prop.name
            assert prop.index_filterable is (raw["type"] != "BLOB" and raw.get("indexFilterable", True)), prop.name
        bm25 = collection.get("invertedIndex", {}).get("bm25", {})
        assert (got.inverted_index_config.bm25.k1, got.inverted_index_config.bm25.b) == (bm25.get("k1", 1.2), bm25.get("b", 0.75))
        assert got.inverted_index_config.stopwords.preset.value == collection.get("invertedIndex", {}).get("stopwords", {}).get("preset", "en")
        assert got.multi_tenancy_config.enabled is False and got.replication_config.factor == 1
        assert got.sharding_config is not None and got.sharding_config.actual_count == 1
        assert sorted(got.vector_config) == sorted(collection.get("vectors", {}))
        for name, vector in collection.get("vectors", {}).items():
            served = got.vector_config[name]
            module = vector["vectorizer"]["module"]
            assert str(getattr(served.vectorizer.vectorizer, "value", served.vectorizer.vectorizer)) == module
            if "model" in vector["vectorizer"]:
                assert served.vectorizer.model["model"] == vector["vectorizer"]["model"]
            if module.startswith("text2"):  # None: every TEXT property, in Weaviate's terms and searchd's
                assert served.vectorizer.source_properties == vector["vectorizer"].get("textFields"), name
            else:
                assert served.vectorizer.model.get("textFields") == vector["vectorizer"].get("textFields"), name
                assert served.vectorizer.model.get("imageFields") == vector["vectorizer"].get("imageFields"), name
            assert served.vectorizer.model.get("dimensions") == vector["vectorizer"].get("dimensions"), name
            index = vector.get("index", {})
            kind = index.get("type", "hnsw")
            config_got = served.vector_index_config
            assert type(config_got).__name__ == {"hnsw": "_VectorIndexConfigHNSW", "flat": "_VectorIndexConfigFlat"}[INDEX_TYPES[kind]]
            assert config_got.distance_metric.value == index.get("distance", "cosine")
            assert config_got.quantizer is None
            assert (config_got.multi_vector is not None) is (kind == "multivector")
            if kind in ("hnsw", "multivector"):
                assert (config_got.max_connections, config_got.ef_construction, config_got.ef) == (index.get("maxConnections", 16), index.get("efConstruction", 128), index.get("ef", 64))
                assert config_got.flat_search_cutoff == FLAT_SEARCH_CUTOFF


def test_served_values_of_the_quickstart(start_server: StartServer, tmp_path: Path) -> None:
    """Literal values, so a change in how the YAML maps shows here and not only in a generic comparison."""
    server = start_server(EXAMPLE_CONFIGS["quickstart"], tmp_path / "data")
    with connect(server) as weaviate_client:
        article = weaviate_client.collections.get("Article").config.get()
    props = {p.name: p for p in article.properties}
    assert props["tags"].data_type is DataType.TEXT_ARRAY and props["tags"].tokenization is Tokenization.FIELD
    assert props["wordCount"].index_filterable is False and props["wordCount"].index_range_filters is False
    assert props["rating"].index_range_filters is True and props["slug"].index_searchable is False
    assert article.inverted_index_config.stopwords.additions == ["how"] and article.inverted_index_config.stopwords.removals == ["not"]
    assert article.inverted_index_config.index_timestamps is True and article.inverted_index_config.index_null_state is True
    assert article.inverted_index_config.index_property_length is False
    text = article.vector_config["text"]
    assert text.vectorizer.vectorizer == "text2vec-hash" and text.vectorizer.source_properties == ["title", "body"]
    assert text.vectorizer.model == {"model": "hash-v1", "dimensions": 256, "vectorizeClassName": False, "weights": {"title": 2, "body": 1}}
    assert text.vector_index_config.distance_metric is VectorDistances.COSINE
    assert (text.vector_index_config.max_connections, text.vector_index_config.ef_construction, text.vector_index_config.ef) == (16, 128, 64)


def test_annoy_and_multivector_map_onto_types_clients_know(start_server: StartServer, tmp_path: Path) -> None:
    config = tmp_path / "config" / "searchd.yaml"
    config.parent.mkdir()
    config.write_text(
        """
collections:
  - name: Doc
    properties: [{name: text, type: TEXT}, {name: image, type: BLOB}]
    vectors:
      words:
        vectorizer: {module: text2vec-hash, dimensions: 64}
        index: {type: annoy, distance: manhattan, trees: 8, searchK: 100, mergeThreshold: 1000}
      tokens:
        vectorizer: {module: none, dimensions: 8}
        index: {type: multivector, distance: dot, maxConnections: 12, efConstruction: 100, ef: 50, candidates: 40}
      pictures:
        vectorizer: {module: multi2vec-local, textFields: [text], imageFields: [image], weights: {text: 1, image: 3}}
        index: {type: flat, distance: l2-squared}
      remote:
        vectorizer: {module: text2vec-nvidia, model: nvidia/nv-embedqa-e5-v5, baseURL: "http://nim:secret@127.0.0.1:9/v1"}
  - name: Plain
    properties: [{name: text, type: TEXT}]
""",
        encoding="utf-8",
    )
    server = start_server(config, tmp_path / "data")
    with connect(server) as weaviate_client:
        doc = weaviate_client.collections.get("Doc").config.get()
        plain = weaviate_client.collections.get("Plain").config.get()
    assert plain.vector_config == {} and [p.name for p in plain.properties] == ["text"]  # a collection without vectors
    words, tokens, pictures = (doc.vector_config[n] for n in ("words", "tokens", "pictures"))
    # annoy: approximate, so hnsw-shaped; the graph keys carry Weaviate's defaults (they do not apply).
    assert type(words.vector_index_config).__name__ == "_VectorIndexConfigHNSW"
    assert words.vector_index_config.distance_metric is VectorDistances.MANHATTAN
    assert (words.vector_index_config.max_connections, words.vector_index_config.ef) == (32, -1)
    assert words.vectorizer.source_properties is None  # every TEXT property, as in Weaviate
    multi = tokens.vector_index_config
    assert multi.multi_vector is not None and multi.multi_vector.aggregation == "maxSim" and multi.multi_vector.encoding is None
    assert (multi.distance_metric, multi.max_connections, multi.ef_construction, multi.ef) == (VectorDistances.DOT, 12, 100, 50)
    assert type(pictures.vector_index_config).__name__ == "_VectorIndexConfigFlat"
    assert pictures.vectorizer.model == {"textFields": ["text"], "imageFields": ["image"], "weights": {"textFields": [1], "imageFields": [3]}}
    with client(server) as http:
        raw = http.get("/v1/schema/Doc").json()["vectorConfig"]
    # What the mapping hides is still there, under "searchd": the YAML index block.
    assert raw["words"]["vectorIndexConfig"]["searchd"] == {"type": "annoy", "distance": "manhattan", "trees": 8, "searchK": 100, "mergeThreshold": 1000}
    assert raw["tokens"]["vectorIndexConfig"]["searchd"] == {"type": "multivector", "distance": "dot", "maxConnections": 12, "efConstruction": 100, "ef": 50, "candidates": 40}
    assert raw["tokens"]["vectorizer"] == {"none": {"dimensions": 8}}
    # A provider URL is shown (Weaviate shows it too), never the credentials in it.
    assert raw["remote"]["vectorizer"] == {"text2vec-nvidia": {"model": "nvidia/nv-embedqa-e5-v5", "vectorizeClassName": False, "baseURL": "http://127.0.0.1:9/v1"}}


def test_flat_search_cutoff_is_the_exact_scan_threshold() -> None:
    from searchd.index.base import EXACT_SCAN_MAX

    assert FLAT_SEARCH_CUTOFF == EXACT_SCAN_MAX


# -- GET /v1/nodes ----------------------------------------------------------------------


@pytest.mark.parametrize("v4", [EXAMPLE_CONFIGS["multimodal"]], ids=["multimodal"], indirect=True)
def test_nodes_through_the_client(v4: tuple[Server, Any]) -> None:
    server, weaviate_client = v4
    counts = objects_per_class(EXAMPLE_CONFIGS["multimodal"])
    assert counts == {"Artwork": 24}
    (node,) = weaviate_client.cluster.nodes(output="verbose")
    assert (node.status, node.version, node.stats.object_count, node.stats.shard_count) == ("HEALTHY", "1.30.0", 24, 1)
    assert [(s.collection, s.object_count, s.vector_indexing_status, s.loaded, s.node) for s in node.shards] == [("Artwork", 24, "READY", True, node.name)]
    (shard,) = weaviate_client.collections.get("Artwork").config.get_shards()
    assert (shard.name, shard.status, shard.vector_queue_size) == ("Artwork", "READY", 0)
    (minimal,) = weaviate_client.cluster.nodes()
    assert minimal.shards is None and minimal.stats is None and minimal.name == node.name
    with client(server) as http:
        body = http.get("/v1/nodes").json()
        assert body["nodes"][0]["batchStats"] == {"queueLength": 0, "ratePerSecond": 0} and "shards" not in body["nodes"][0]
        stored = http.post("/v1/objects", json={"class": "Artwork", "id": str(uuid.uuid4()), "properties": {"title": "one more"}, "vectors": {"external": [0.1, 0.2, 0.3, 0.4]}})
        assert stored.status_code == 200, stored.text
        one = http.get("/v1/nodes/Artwork", params={"output": "verbose"}).json()["nodes"][0]
        assert (one["stats"], [s["objectCount"] for s in one["shards"]]) == ({"objectCount": 25, "shardCount": 1}, [25])
        bad = http.get("/v1/nodes", params={"output": "everything"})
        assert bad.status_code == 422 and bad.json()["error"][0]["message"] == "output must be minimal or verbose, got 'everything' (use output=verbose for shards and object counts)"
        missing = http.get("/v1/nodes/Nope")
        assert missing.status_code == 404 and "collection 'Nope' is not declared" in missing.json()["error"][0]["message"]


# -- collection creation: refused, with the YAML to write --------------------------------


def create_body() -> dict[str, Any]:
    """Exactly what weaviate-client 4.x's collections.create sends for this collection."""
    config = _CollectionConfigCreate(
        name="article",
        description="News articles",
        properties=[
            Property(name="title", data_type=DataType.TEXT),
            Property(name="tags", data_type=DataType.TEXT_ARRAY, tokenization=Tokenization.FIELD),
            Property(name="words", data_type=DataType.INT, index_filterable=False),
            Property(name="photo", data_type=DataType.BLOB),
        ],
        vector_config=[
            Configure.Vectors.text2vec_jinaai(
                name="text", model="jina-embeddings-v3", dimensions=256, source_properties=["title"],
                vector_index_config=Configure.VectorIndex.hnsw(distance_metric=VectorDistances.DOT, ef_construction=64, max_connections=8),
            ),
            Configure.Vectors.multi2vec_jinaai(name="clip", model="jina-clip-v2", text_fields=["title"], image_fields=["photo"]),
            Configure.Vectors.self_provided(name="own", vector_index_config=Configure.VectorIndex.flat(distance_metric=VectorDistances.L2_SQUARED)),
            Configure.MultiVectors.self_provided(name="late"),
        ],
        inverted_index_config=Configure.inverted_index(bm25_k1=1.5, bm25_b=0.5),
    )
    body: dict[str, Any] = config._to_dict(emit_default_vector_index_type=True)
    return body


def schema_from_json(tmp_path: Path, body: Any, *args: str) -> subprocess.CompletedProcess[str]:
    source = tmp_path / f"class-{uuid.uuid4().hex[:8]}.json"
    source.write_text(json.dumps(body), encoding="utf-8")
    return subprocess.run([*searchd_module(), "schema-from-json", str(source), *args], capture_output=True, text=True, env=child_env(), timeout=60, check=False)


def spec_of(directory: Path) -> CollectionSpec:
    (collection,) = load_spec(directory, default_registry()).collections
    return collection


def test_schema_from_json_round_trip(start_server: StartServer, tmp_path: Path) -> None:
    converted = schema_from_json(tmp_path, create_body(), "--dimensions", "own=4", "--dimensions", "late=8")
    assert converted.returncode == 0, converted.stderr
    assert "warning: Article: vector 'text': vectorizeClassName is not supported" in converted.stderr
    document = yaml.safe_load(converted.stdout)
    assert document == {
        "collections": [
            {
                "name": "Article",
                "description": "News articles",
                "properties": [
                    {"name": "title", "type": "TEXT"},
                    {"name": "tags", "type": "TEXT[]", "tokenization": "field"},
                    {"name": "words", "type": "INT", "indexFilterable": False},
                    {"name": "photo", "type": "BLOB"},
                ],
                "invertedIndex": {"bm25": {"k1": 1.5, "b": 0.5}},
                "vectors": {
                    "text": {
                        "vectorizer": {"module": "text2vec-jinaai", "model": "jina-embeddings-v3", "dimensions": 256, "textFields": ["title"]},
                        "index": {"type": "hnsw", "distance": "dot", "maxConnections": 8, "efConstruction": 64},
                    },
                    "clip": {
                        "vectorizer": {"module": "multi2vec-jinaai", "model": "jina-clip-v2", "textFields": ["title"], "imageFields": ["photo"]},
                        "index": {"type": "hnsw", "distance": "cosine"},
                    },
                    "own": {"vectorizer": {"module": "none", "dimensions": 4}, "index": {"type": "flat", "distance": "l2-squared"}},
                    "late": {"vectorizer": {"module": "none", "dimensions": 8}, "index": {"type": "multivector", "distance": "cosine"}},
                },
            }
        ]
    }
    # The YAML is a valid config file as it is: validate it, serve it, read it back with the client.
    config = tmp_path / "config"
    config.mkdir()
    (config / "article.yaml").write_text(converted.stdout, encoding="utf-8")
    validated = subprocess.run([*searchd_module(), "validate", str(config)], capture_output=True, text=True, env=child_env(), timeout=60, check=False)
    assert validated.returncode == 0, validated.stdout + validated.stderr
    server = start_server(config, tmp_path / "data")
    with connect(server) as weaviate_client:
        served = weaviate_client.collections.get("Article").config.get()
    assert [(p.name, p.data_type, p.tokenization, p.index_filterable) for p in served.properties] == [
        ("title", DataType.TEXT, Tokenization.WORD, True),
        ("tags", DataType.TEXT_ARRAY, Tokenization.FIELD, True),
        ("words", DataType.INT, None, False),
        ("photo", DataType.BLOB, None, False),
    ]
    text, clip, own, late = (served.vector_config[n] for n in ("text", "clip", "own", "late"))
    assert (text.vectorizer.vectorizer.value, text.vectorizer.source_properties, text.vectorizer.model["model"], text.vectorizer.model["dimensions"]) == ("text2vec-jinaai", ["title"], "jina-embeddings-v3", 256)
    assert (text.vector_index_config.distance_metric, text.vector_index_config.max_connections, text.vector_index_config.ef_construction) == (VectorDistances.DOT, 8, 64)
    assert (clip.vectorizer.vectorizer.value, clip.vectorizer.model["textFields"], clip.vectorizer.model["imageFields"]) == ("multi2vec-jinaai", ["title"], ["photo"])
    assert own.vectorizer.vectorizer.value == "none" and own.vector_index_config.distance_metric is VectorDistances.L2_SQUARED
    assert late.vector_index_config.multi_vector is not None
    assert (served.inverted_index_config.bm25.k1, served.inverted_index_config.bm25.b) == (1.5, 0.5)
    # And back: GET /v1/schema's answer converts to the same collection (no --dimensions needed: the JSON has them).
    with client(server) as http:
        schema = http.get("/v1/schema").json()
    again = schema_from_json(tmp_path, schema)
    assert again.returncode == 0 and again.stderr == "", again.stderr
    (tmp_path / "again").mkdir()
    (tmp_path / "again" / "article.yaml").write_text(again.stdout, encoding="utf-8")
    assert spec_of(tmp_path / "again") == spec_of(config)


def test_schema_from_json_refuses_what_searchd_cannot_serve(tmp_path: Path) -> None:
    body = {
        "class": "Place",
        "properties": [{"name": "where", "dataType": ["geoCoordinates"]}, {"name": "owner", "dataType": ["Person"]}, {"name": "name", "dataType": ["text"], "tokenization": "gse"}],
        "multiTenancyConfig": {"enabled": True},
        "vectorConfig": {"v": {"vectorizer": {"none": {}}, "vectorIndexType": "hnsw"}},
    }
    result = schema_from_json(tmp_path, body)
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.splitlines() == [
        "error: Place: property 'where' has dataType 'geoCoordinates', which searchd does not store; use one of blob, boolean, date, int, number, text, text[], uuid",
        "error: Place: property 'owner' is a cross-reference to Person; searchd has no references (store the target's id as a UUID property)",
        "error: Place: property 'name' has tokenization 'gse'; searchd offers field, lowercase, trigram, whitespace, word",
        "error: Place: vector 'v' brings its own vectors: searchd needs their width; pass --dimensions v=N",
        "error: Place: multi-tenancy is not supported; use one collection per tenant, or a tenant property and filters",
    ]
    semantic = schema_from_json(tmp_path, {"class": "Bad", "properties": [{"name": "n", "dataType": ["int"]}], "vectorConfig": {"v": {"vectorizer": {"text2vec-jinaai": {"properties": ["n"]}}}}})
    assert semantic.returncode == 1 and "- name: Bad" in semantic.stdout
    assert "collections[0].vectors.v.vectorizer.textFields[0]" in semantic.stderr and "fix them in the YAML above" in semantic.stderr
    not_json = tmp_path / "broken.json"
    not_json.write_text("{nope", encoding="utf-8")
    broken = subprocess.run([*searchd_module(), "schema-from-json", "-"], input="{nope", capture_output=True, text=True, env=child_env(), timeout=60, check=False)
    assert broken.returncode == 1 and broken.stderr.startswith("standard input is not JSON")
    bad_flag = schema_from_json(tmp_path, {"class": "A"}, "--dimensions", "v=wide")
    assert bad_flag.returncode == 2 and "--dimensions takes NAME=N" in bad_flag.stderr


def test_client_create_gets_the_yaml_to_write(start_server: StartServer, tmp_path: Path) -> None:
    server = start_server(EXAMPLE_CONFIGS["quickstart"], tmp_path / "data")
    with connect(server) as weaviate_client:
        with pytest.raises(UnexpectedStatusCodeError) as refused:
            weaviate_client.collections.create(
                "Note",
                properties=[Property(name="text", data_type=DataType.TEXT)],
                vector_config=Configure.Vectors.text2vec_jinaai(name="text", model="jina-embeddings-v3"),
            )
        assert sorted(weaviate_client.collections.list_all()) == ["Article"]  # nothing changed
    assert refused.value.status_code == 405
    error: Any = refused.value.error
    message = error["error"][0]["message"]
    config = EXAMPLE_CONFIGS["quickstart"]
    assert message.startswith(f"the schema is declared in YAML and cannot be changed through POST /v1/schema; edit the config ({config}) instead, then validate it with 'searchd validate {config}'. ")
    block, note = message.split("(what 'searchd schema-from-json' writes):\n", 1)[1].split("\n# note: ")
    assert yaml.safe_load(block) == {
        "collections": [
            {
                "name": "Note",
                "properties": [{"name": "text", "type": "TEXT"}],
                "vectors": {"text": {"vectorizer": {"module": "text2vec-jinaai", "model": "jina-embeddings-v3"}, "index": {"type": "hnsw", "distance": "cosine"}}},
            }
        ]
    }
    assert note == "Note: vector 'text': vectorizeClassName is not supported (searchd embeds property values only)"
    with client(server) as http:
        plain = http.post("/v1/schema", content=b"not json")
        assert plain.status_code == 405 and plain.json()["error"][0]["message"].endswith("; 'searchd schema-from-json FILE' turns a class JSON into the YAML to add")
        replaced = http.put("/v1/schema/Article", json={"class": "Article", "properties": [{"name": "title", "dataType": ["text"]}]})
        assert replaced.status_code == 405 and "To serve class 'Article' as sent, write this YAML" in replaced.json()["error"][0]["message"]
        assert "- {name: title, type: TEXT}" in replaced.json()["error"][0]["message"]
        unsupported = http.post("/v1/schema", json={"class": "Geo", "properties": [{"name": "at", "dataType": ["geoCoordinates"]}]})
        assert unsupported.status_code == 405 and "class 'Geo' cannot be served as sent: Geo: property 'at' has dataType 'geoCoordinates'" in unsupported.json()["error"][0]["message"]


def test_schema_from_json_reads_the_legacy_form_and_weaviate_names() -> None:
    from searchd.config.fromjson import convert

    legacy = {
        "class": "Post",
        "vectorizer": "text2vec-jinaai",
        "moduleConfig": {"text2vec-jinaai": {"model": "jina-embeddings-v3", "vectorizeClassName": False}, "generative-openai": {}},
        "vectorIndexType": "dynamic",
        "vectorIndexConfig": {"distance": "dot", "ef": -1, "pq": {"enabled": True}},
        "properties": [
            {"name": "title", "dataType": ["string"], "moduleConfig": {"text2vec-jinaai": {"skip": False}}},
            {"name": "secret", "dataType": ["text"], "moduleConfig": {"text2vec-jinaai": {"skip": True}}, "indexInverted": False},
            {"name": "body", "dataType": ["text"], "textAnalyzer": {"asciiFold": True}},
        ],
        "replicationConfig": {"factor": 3},
    }
    multi = {
        "class": "Pic",
        "properties": [{"name": "caption", "dataType": ["text"]}, {"name": "image", "dataType": ["blob"]}],
        "vectorConfig": {
            "clip": {
                "vectorizer": {"multi2vec-jinaai": {"textFields": ["caption"], "imageFields": ["image"], "weights": {"textFields": [0.3], "imageFields": [0.7]}, "dimensions": 512}},
                "vectorIndexType": "hfresh",
                "vectorIndexConfig": {"distance": "cosine", "searchProbe": 64},
            }
        },
    }
    conversion = convert({"classes": [legacy, multi]})
    assert conversion.errors == []
    assert conversion.collections == [
        {
            "name": "Post",
            "properties": [
                {"name": "title", "type": "TEXT"},
                {"name": "secret", "type": "TEXT", "indexSearchable": False, "indexFilterable": False},
                {"name": "body", "type": "TEXT"},
            ],
            "vectors": {
                "default": {
                    "vectorizer": {"module": "text2vec-jinaai", "model": "jina-embeddings-v3", "textFields": ["title", "body"]},
                    "index": {"type": "hnsw", "distance": "dot"},
                }
            },
        },
        {
            "name": "Pic",
            "properties": [{"name": "caption", "type": "TEXT"}, {"name": "image", "type": "BLOB"}],
            "vectors": {
                "clip": {
                    "vectorizer": {"module": "multi2vec-jinaai", "dimensions": 512, "textFields": ["caption"], "imageFields": ["image"], "weights": {"caption": 0.3, "image": 0.7}},
                    "index": {"type": "hnsw", "distance": "cosine"},
                }
            },
        },
    ]
    assert conversion.warnings == [
        "Post: property 'body': textAnalyzer (ASCII folding, per-property stopwords) is not supported and is left out",
        "Post: vector 'default': vectorIndexType dynamic becomes hnsw (searchd offers hnsw, annoy, flat, multivector)",
        "Post: vector 'default': pq compression is not supported (vectors are kept as float32)",
        "Post: replicationConfig.factor > 1: a searchd process keeps one copy (replicate the data directory or run replicas on PostgreSQL)",
        "Post: generative-openai: generative and reranker modules are not supported and are left out",
        "Pic: vector 'clip': vectorIndexType hfresh becomes hnsw (searchd offers hnsw, annoy, flat, multivector)",
    ]


def test_schema_from_json_reads_standard_input(tmp_path: Path) -> None:
    body = json.dumps({"class": "Note", "properties": [{"name": "text", "dataType": ["text"]}], "vectorizer": "none"})
    result = subprocess.run([*searchd_module(), "schema-from-json", "-", "--dimensions", "default=3"], input=body, capture_output=True, text=True, env=child_env(), timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert yaml.safe_load(result.stdout) == {
        "collections": [{"name": "Note", "properties": [{"name": "text", "type": "TEXT"}], "vectors": {"default": {"vectorizer": {"module": "none", "dimensions": 3}, "index": {"type": "hnsw", "distance": "cosine"}}}}]
    }
