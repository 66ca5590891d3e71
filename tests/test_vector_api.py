"""Vector indexes through the server: multi-vectors over REST and GraphQL, persistence across restarts."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import yaml
from starlette.testclient import TestClient

from searchd.config import load_spec
from searchd.config.spec import StorageSpec
from searchd.engine import StoredObject, effective_storage, open_store
from searchd.errors import ConfigError
from searchd.modules import default_registry
from tests.conftest import EXAMPLES, ON_BOTH_BACKENDS, ClientFactory, example_objects, graphql

# What starts a server runs on both storage backends (ON_BOTH_BACKENDS); the pure functions and config checks, once.
LATE = EXAMPLES / "late-interaction"


def naive_maxsim_distance(query: np.ndarray, document: np.ndarray) -> float:
    q = query / np.linalg.norm(query, axis=1, keepdims=True)
    d = document / np.linalg.norm(document, axis=1, keepdims=True)
    return -float(sum(max(float(row @ token) for token in d) for row in q))


@pytest.fixture
def late(client_factory: ClientFactory) -> TestClient:
    client = client_factory(LATE / "searchd.yaml")
    results = client.post("/v1/batch/objects", json={"objects": example_objects(LATE / "objects.jsonl")}).json()
    assert [r["result"]["status"] for r in results] == ["SUCCESS"] * 6
    return client


@ON_BOTH_BACKENDS
def test_multivector_search_scores_by_maxsim(late: TestClient) -> None:
    objects = example_objects(LATE / "objects.jsonl")
    query = np.asarray(objects[4]["vectors"]["colbert"][:2])  # "apples and": shares words with two passages
    body = graphql(late, "query($v: Vector!) { Get { Passage(nearVector: {vector: $v}, limit: 6) { text _additional { id distance certainty } } } }", {"v": query.tolist()})
    hits = body["data"]["Get"]["Passage"]
    expected = sorted(objects, key=lambda o: naive_maxsim_distance(query, np.asarray(o["vectors"]["colbert"])))
    assert [h["text"] for h in hits] == [o["properties"]["text"] for o in expected]
    assert [h["_additional"]["distance"] for h in hits] == pytest.approx(
        [naive_maxsim_distance(query, np.asarray(o["vectors"]["colbert"])) for o in expected], abs=1e-4
    )
    literal = graphql(late, f"{{ Get {{ Passage(nearVector: {{vector: {query.tolist()}}}, limit: 1) {{ text _additional {{ vectors {{ colbert }} }} }} }} }}")
    top = literal["data"]["Get"]["Passage"][0]
    assert top["text"] == expected[0]["properties"]["text"]
    assert np.allclose(top["_additional"]["vectors"]["colbert"], expected[0]["vectors"]["colbert"], atol=1e-5)


@ON_BOTH_BACKENDS
def test_multivector_input_is_checked(late: TestClient) -> None:
    flat = late.post("/v1/objects", json={"class": "Passage", "properties": {}, "vectors": {"colbert": [0.1] * 8}})
    assert flat.status_code == 422 and "multi-vector" in flat.json()["error"][0]["message"]
    ragged = late.post("/v1/objects", json={"class": "Passage", "properties": {}, "vectors": {"colbert": [[0.1] * 8, [0.1] * 7]}})
    assert ragged.status_code == 422 and "has 7 dimensions" in ragged.json()["error"][0]["message"]
    wrong = graphql(late, "{ Get { Passage(nearVector: {vector: [[1, 2]]}) { text } } }")
    assert "nearVector has 2 dimensions" in wrong["errors"][0]["message"]
    bad = graphql(late, '{ Get { Passage(nearVector: {vector: [[1, "a"]]}) { text } } }')
    assert "list of numbers" in bad["errors"][0]["message"]
    assert late.get("/v1/objects?class=Passage").json()["totalResults"] == 6


@ON_BOTH_BACKENDS
def test_single_vector_collection_refuses_a_matrix(multimodal_client: TestClient) -> None:
    body = graphql(multimodal_client, '{ Get { Artwork(nearVector: {vector: [[1, 0, 0, 0]], targetVectors: ["external"]}) { title } } }')
    assert "multi-vector" in body["errors"][0]["message"]


CONFIG = {
    "collections": [
        {
            "name": "Doc",
            "properties": [{"name": "n", "type": "INT"}],
            "vectors": {
                "h": {"vectorizer": {"module": "none", "dimensions": 16}, "index": {"type": "hnsw"}},
                "a": {"vectorizer": {"module": "none", "dimensions": 16}, "index": {"type": "annoy", "mergeThreshold": 100, "trees": 8}},
                "f": {"vectorizer": {"module": "none", "dimensions": 16}, "index": {"type": "flat"}},
            },
        }
    ]
}


def search_all(client: TestClient, query: list[float]) -> dict[str, list[str]]:
    found = {}
    for name in ("h", "a", "f"):
        body = graphql(client, "query($v: Vector!, $t: [String]) { Get { Doc(nearVector: {vector: $v, targetVectors: $t}, limit: 5) { _additional { id } } } }", {"v": query, "t": [name]})
        found[name] = [h["_additional"]["id"] for h in body["data"]["Get"]["Doc"]]
    return found


@ON_BOTH_BACKENDS
def test_restart_loads_saved_indexes_and_keeps_results(
    write_config: Callable[..., Path], client_factory: ClientFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = write_config(yaml.safe_dump(CONFIG))
    data = tmp_path / "shared-data"
    vectors = np.random.default_rng(3).normal(size=(300, 16))
    client = client_factory(config, data)
    objects = [{"class": "Doc", "id": f"00000000-0000-4000-8000-{i:012d}", "properties": {"n": i}, "vectors": {n: vectors[i].tolist() for n in "haf"}} for i in range(300)]
    assert all(r["result"]["status"] == "SUCCESS" for r in client.post("/v1/batch/objects", json={"objects": objects}).json())
    client.delete(f"/v1/objects/Doc/{objects[7]['id']}")
    query = vectors[7].tolist()
    before = search_all(client, query)
    assert objects[7]["id"] not in before["f"] and before["h"][:3] == before["f"][:3]
    client.__exit__(None, None, None)  # clean shutdown saves every index

    caplog.set_level(logging.INFO, logger="searchd.index")
    restarted = client_factory(config, data)
    assert search_all(restarted, query) == before
    messages = [r.getMessage() for r in caplog.records]
    assert sum("loaded Doc." in m for m in messages) == 3 and not any("rebuilt" in m for m in messages)


@ON_BOTH_BACKENDS
def test_writes_after_the_save_are_replayed_from_the_change_log(
    write_config: Callable[..., Path], client_factory: ClientFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = write_config(yaml.safe_dump(CONFIG))
    data = tmp_path / "shared-data"
    client = client_factory(config, data)
    vectors = np.random.default_rng(4).normal(size=(50, 16))
    objects = [{"class": "Doc", "id": f"00000000-0000-4000-8000-{i:012d}", "properties": {"n": i}, "vectors": {n: vectors[i].tolist() for n in "haf"}} for i in range(50)]
    client.post("/v1/batch/objects", json={"objects": objects})
    client.__exit__(None, None, None)
    # A write after the save (as when the process is killed later): the saved indexes catch up from the log, not rebuild.
    with open_store(effective_storage(StorageSpec()), data) as store:  # the backend the server used
        store.put_many([StoredObject("Doc", "00000000-0000-4000-8000-999999999999", {"n": -1}, {n: np.ones(16, np.float32) for n in "haf"})])
    caplog.set_level(logging.INFO, logger="searchd.index")
    restarted = client_factory(config, data)
    messages = [r.getMessage() for r in caplog.records]
    assert sum("loaded Doc." in m and "1 changed since" in m for m in messages) == 3 and not any("rebuilt" in m for m in messages)
    found = search_all(restarted, [1.0] * 16)
    assert all(ids[0] == "00000000-0000-4000-8000-999999999999" for ids in found.values())


@pytest.mark.parametrize(
    "index,message",
    [
        ({"type": "hnsw", "distance": "manhattan"}, "a hnsw index cannot compute manhattan distance"),
        ({"type": "annoy", "distance": "hamming"}, "a annoy index cannot compute hamming distance"),
        ({"type": "multivector", "distance": "l2-squared"}, "a multivector index cannot compute l2-squared distance"),
        ({"type": "ivf"}, "'ivf' is not one of"),
        ({"type": "hnsw", "ef": 0}, "0 is less than the minimum of 1"),
    ],
)
def test_index_settings_are_validated(write_config: Callable[..., Path], index: dict[str, object], message: str) -> None:
    config = write_config(yaml.safe_dump({"collections": [{"name": "Doc", "vectors": {"v": {"vectorizer": {"module": "none", "dimensions": 4}, "index": index}}}]}))
    with pytest.raises(ConfigError) as caught:
        load_spec(config, default_registry())
    assert [i.message for i in caught.value.issues if message in i.message]


def test_multivector_index_needs_matrices(write_config: Callable[..., Path]) -> None:
    config = write_config(
        yaml.safe_dump({"collections": [{"name": "Doc", "properties": [{"name": "t", "type": "TEXT"}], "vectors": {"v": {"vectorizer": {"module": "text2vec-hash"}, "index": {"type": "multivector"}}}}]})
    )
    with pytest.raises(ConfigError) as caught:
        load_spec(config, default_registry())
    (issue,) = caught.value.issues
    assert "produces one vector per object" in issue.message and issue.path == "collections[0].vectors.v.index.type"


@ON_BOTH_BACKENDS
def test_broad_filter_checks_candidates_instead_of_listing(write_config: Callable[..., Path], client_factory: ClientFactory) -> None:
    """More than 4,096 allowed ids: the allow-list is counted and candidates are checked in SQL."""
    config = write_config(
        yaml.safe_dump(
            {"collections": [{"name": "Doc", "properties": [{"name": "n", "type": "INT"}], "vectors": {"v": {"vectorizer": {"module": "none", "dimensions": 8}, "index": {"type": "hnsw", "ef": 128}}}}]}
        )
    )
    client = client_factory(config)
    rng = np.random.default_rng(5)
    vectors = rng.normal(size=(6000, 8))
    for start in range(0, 6000, 1000):
        objects = [{"class": "Doc", "id": f"00000000-0000-4000-8000-{i:012d}", "properties": {"n": i}, "vector": vectors[i].tolist()} for i in range(start, start + 1000)]
        assert client.post("/v1/batch/objects", json={"objects": objects}).status_code == 200
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    recalls = []
    for query in rng.normal(size=(20, 8)):
        body = graphql(client, "query($v: Vector!) { Get { Doc(nearVector: {vector: $v}, limit: 10, where: {path: [\"n\"], operator: LessThan, valueInt: 5000}) { n } } }", {"v": query.tolist()})
        found = [hit["n"] for hit in body["data"]["Get"]["Doc"]]
        assert len(found) == 10 and all(n < 5000 for n in found)
        distances = 1 - unit[:5000] @ (query / np.linalg.norm(query))
        recalls.append(len(set(found) & set(np.argsort(distances)[:10].tolist())) / 10)
    assert np.mean(recalls) >= 0.95
