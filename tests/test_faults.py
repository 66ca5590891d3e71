"""Fault injection (ISSUE #7 point 5 a, b): providers that fail, and a data directory that cannot be written.

(a) A real ``searchd serve`` child imports through text2vec-jinaai pointed at the fake Jina API on a
    loopback port.  ``maxConcurrency: 1`` makes the provider requests strictly sequential and
    ``batchSize: 4`` gives each group of 4 objects its own request, so a queue of faults maps onto
    known objects: each fault takes the next request, a pass-through slot (``fail_next(200)``) answers
    normally.  ``maxRetries: 2`` = 3 attempts per request.
(b) In-process (TestClient): "disk full" is ``PRAGMA max_page_count`` on the store's connection capped
    just above its size, "read-only" is ``PRAGMA query_only`` (the tests run as root: chmod would not
    stop a write).  Writes must fail with a 503 that names the storage, change nothing, and work again
    once the condition is lifted; after a restart the store passes integrity_check and the indexes agree
    with it.

Every wait is bounded; nothing leaves 127.0.0.1.
"""

from __future__ import annotations

import json
import re
import resource
import shutil
import signal
import sqlite3
import subprocess
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from starlette.testclient import TestClient

from searchd.server import create_app, open_services
from tests import test_e2e_server
from tests.conftest import ClientFactory, HttpResponse, wait_for
from tests.fakes import FakeJina, serving
from tests.fakes.embeddings import text_vector, truncate_dims
from tests.test_e2e_server import StartServer, client

start_server = test_e2e_server.start_server  # the fixture: servers started on free ports, stopped at teardown

KEY = "jina_faults-test-key-8d21"
TIMEOUT_S = 0.5  # the module's timeoutSeconds; a "never answers" fault sleeps NEVER_S (until the client hangs up)
NEVER_S = 5.0
ATTEMPTS = 3  # maxRetries: 2
GROUP = 4  # batchSize: objects per provider request
NS = uuid.UUID("0b7a3f0e-4d55-4f57-9a43-3f1d6c1e0a11")


# --- (a) provider faults during a batch import through the server -------------------------------------


@pytest.fixture(scope="module")
def served_jina() -> Iterator[tuple[FakeJina, str]]:
    fake = FakeJina(api_keys=[KEY])
    with serving(fake.app) as url:
        yield fake, url


@pytest.fixture
def jina(served_jina: tuple[FakeJina, str], monkeypatch: pytest.MonkeyPatch) -> tuple[FakeJina, str]:
    served_jina[0].reset()
    monkeypatch.setenv("JINAAI_APIKEY", KEY)  # the child's environment is a copy of ours
    return served_jina


def jina_config(directory: Path, url: str) -> Path:
    module = {
        "baseURL": url,
        "apiKey": "${JINAAI_APIKEY}",
        "timeoutSeconds": TIMEOUT_S,
        "maxRetries": ATTEMPTS - 1,
        "maxConcurrency": 1,
        "batchSize": GROUP,
    }
    config = {
        "server": {"host": "127.0.0.1", "reload": {"watch": False}},
        "modules": {"text2vec-jinaai": module},
        "collections": [
            {
                "name": "Doc",
                "properties": [{"name": "title", "type": "TEXT"}],
                "vectors": {
                    "v": {
                        "vectorizer": {"module": "text2vec-jinaai", "model": "jina-embeddings-v3", "dimensions": 64},
                        "index": {"type": "flat"},
                    }
                },
            }
        ],
    }
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "searchd.yaml"
    path.write_text(json.dumps(config), encoding="utf-8")
    return path


def expected_vector(title: str) -> np.ndarray:
    """What the fake answers for a passage embedded by jina-embeddings-v3 at 64 dimensions."""
    return truncate_dims(text_vector(title, 1024, salt="retrieval.passage"), 64)


def docs(tag: str, count: int) -> list[dict[str, Any]]:
    # Distinct words per object and per test: the embedding cache never answers for the provider.
    return [
        {
            "class": "Doc",
            "id": str(uuid.uuid5(NS, f"{tag}-{i}")),
            "properties": {"title": f"{tag} object {i} {uuid.uuid5(NS, f'{tag}-{i}').hex[:12]}"},
        }
        for i in range(count)
    ]


def queue(fake: FakeJina, plan: list[str]) -> dict[str, int]:
    """Queue one answer per provider request, in order; returns how many faults of each kind were queued."""
    counts: dict[str, int] = {}
    for step in plan:
        if step == "ok":
            fake.fail_next(200)  # below 400: answer normally
            continue
        counts[step] = counts.get(step, 0) + 1
        if step == "429":
            fake.fail_next(429, retry_after="0")
        elif step == "500":
            fake.fail_next(500)
        elif step == "malformed":
            fake.malformed_next()
        elif step == "timeout":
            fake.fail_next(200, delay=NEVER_S)
        else:
            raise AssertionError(step)
    return counts


def import_batch(http: httpx.Client, objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    response = http.post("/v1/batch/objects", json={"objects": objects})
    assert response.status_code == 200, response.text
    results: list[dict[str, Any]] = response.json()
    assert [r["id"] for r in results] == [o["id"] for o in objects]
    return results


def stored_vector(http: httpx.Client, object_id: str) -> np.ndarray | None:
    response = http.get(f"/v1/objects/Doc/{object_id}", params={"include": "vector"})
    assert response.status_code in (200, 404), response.text
    return None if response.status_code == 404 else np.asarray(response.json()["vectors"]["v"], dtype=np.float32)


def provider_outcomes(http: httpx.Client) -> dict[str, int]:
    """searchd_vectorizer_request_duration_seconds_count by outcome, from /metrics."""
    text = http.get("/metrics").text
    pattern = r'^searchd_vectorizer_request_duration_seconds_count\{module="text2vec-jinaai",outcome="(\w+)"\} ([0-9.e+]+)$'
    return {outcome: int(float(value)) for outcome, value in re.findall(pattern, text, flags=re.MULTILINE)}


def assert_healthy(http: httpx.Client, logs: Any) -> None:
    for path in ("/v1/.well-known/live", "/v1/.well-known/ready", "/v1/meta"):
        response = http.get(path)
        assert response.status_code == 200, f"{path}: {response.status_code} {response.text}\n{logs()}"


def test_transient_provider_faults_during_import_store_every_object_with_its_vector(
    tmp_path: Path,
    start_server: StartServer,
    jina: tuple[FakeJina, str],
) -> None:
    fake, url = jina
    server = start_server(jina_config(tmp_path / "config", url), tmp_path / "data")
    objects = docs("transient", 6 * GROUP)
    # Request by request: group 1 gets two 429s, group 2 a 500 then malformed JSON, group 3 one timeout,
    # group 4 malformed then a timeout, group 5 nothing, group 6 one 500. Never three in a row for one group.
    plan = ["429", "429", "ok", "500", "malformed", "ok", "timeout", "ok", "malformed", "timeout", "ok", "ok", "500", "ok"]
    injected = queue(fake, plan)
    assert injected == {"429": 2, "500": 2, "malformed": 2, "timeout": 2}

    with client(server) as http:
        results = import_batch(http, objects)
        assert [r["result"]["status"] for r in results] == ["SUCCESS"] * len(objects), json.dumps(results)[:2000]

        # Each group was retried until it got through, with the same body each time.
        calls = fake.requests
        assert len(calls) == len(plan), [c.body["input"] for c in calls]
        groups = [[o["properties"]["title"] for o in objects[i : i + GROUP]] for i in range(0, len(objects), GROUP)]
        expected_inputs = [groups[0]] * 3 + [groups[1]] * 3 + [groups[2]] * 2 + [groups[3]] * 3 + [groups[4]] + [groups[5]] * 2
        assert [c.body["input"] for c in calls] == expected_inputs

        for obj in objects:
            vector = stored_vector(http, obj["id"])
            assert vector is not None, f"{obj['id']} acknowledged but not stored\n{server.logs()}"
            assert np.allclose(vector, expected_vector(obj["properties"]["title"]), atol=1e-5), obj["properties"]["title"]

        outcomes = provider_outcomes(http)
        assert outcomes.get("ok") == 6 and outcomes.get("retried") == sum(injected.values()) and not outcomes.get("failed"), outcomes
        assert_healthy(http, server.logs)
    assert server.process.poll() is None, server.logs()


FAILURE_TEXT = {
    "500": "500 Internal Server Error",
    "429": "429 Rate limit exceeded",
    "malformed": "answered 200 with a body that is not JSON",
    "timeout": f"no answer within {TIMEOUT_S:g} s",
}


def test_persistent_provider_faults_fail_only_the_affected_objects_and_store_nothing_of_them(
    tmp_path: Path,
    start_server: StartServer,
    jina: tuple[FakeJina, str],
) -> None:
    fake, url = jina
    server = start_server(jina_config(tmp_path / "config", url), tmp_path / "data")
    objects = docs("persistent", 6 * GROUP)
    # Groups 1 and 3 are answered; groups 2, 4, 5, 6 get the same fault on every attempt.
    failing = {1: "500", 3: "429", 4: "malformed", 5: "timeout"}
    plan: list[str] = []
    for group in range(6):
        plan += [failing[group]] * ATTEMPTS if group in failing else ["ok"]
    injected = queue(fake, plan)
    assert injected == {kind: ATTEMPTS for kind in failing.values()}

    with client(server) as http:
        results = import_batch(http, objects)
        for position, (obj, result) in enumerate(zip(objects, results)):
            kind = failing.get(position // GROUP)
            status = result["result"]["status"]
            if kind is None:
                assert status == "SUCCESS", result
                vector = stored_vector(http, obj["id"])
                assert vector is not None and np.allclose(vector, expected_vector(obj["properties"]["title"]), atol=1e-5)
                continue
            assert status == "FAILED", f"object {position} should fail with {kind}: {result}"
            (error,) = result["result"]["errors"]["error"]
            message = error["message"]
            assert message.startswith(f"Jina AI (text2vec-jinaai) failed after {ATTEMPTS} attempt(s): {FAILURE_TEXT[kind]}"), message
            assert "maxRetries" in message and "timeoutSeconds" in message, message  # says what to change
            assert KEY not in message
            # Nothing half-stored: no object, and no vector hiding anywhere for it.
            assert http.get(f"/v1/objects/Doc/{obj['id']}").status_code == 404
        assert len(fake.requests) == len(plan)  # an unavailable provider is retried, never bisected

        count = http.post("/v1/graphql", json={"query": "{ Aggregate { Doc { meta { count } } } }"}).json()
        assert count["data"]["Aggregate"]["Doc"][0]["meta"]["count"] == 2 * GROUP, count
        outcomes = provider_outcomes(http)
        assert outcomes == {"ok": 2, "retried": 4 * (ATTEMPTS - 1), "failed": 4}, outcomes

        # The server stays healthy, and once the provider is back the failed objects go in, alone:
        # the ones stored before are not sent again (cached), the failed ones were never cached.
        assert_healthy(http, server.logs)
        fake.reset()
        failed_objects = [o for i, o in enumerate(objects) if i // GROUP in failing]
        again = import_batch(http, failed_objects)
        assert [r["result"]["status"] for r in again] == ["SUCCESS"] * len(failed_objects), json.dumps(again)[:2000]
        assert [c.body["input"] for c in fake.requests] == [
            [o["properties"]["title"] for o in failed_objects[i : i + GROUP]] for i in range(0, len(failed_objects), GROUP)
        ]
        for obj in objects:
            vector = stored_vector(http, obj["id"])
            assert vector is not None and np.allclose(vector, expected_vector(obj["properties"]["title"]), atol=1e-5)
        # A query embeds through the same provider client: it works too.
        title = objects[GROUP]["properties"]["title"]
        query = "{ Get { Doc(nearText: {concepts: [" + json.dumps(title) + "]}, limit: 1) { title } } }"
        found = http.post("/v1/graphql", json={"query": query}).json()
        assert found["data"]["Get"]["Doc"] == [{"title": title}], found
    assert server.process.poll() is None, server.logs()


# --- (b) disk full and read-only data directory at write time ---------------------------------------------

STORE_CONFIG = """\
collections:
  - name: Note
    properties:
      - {name: title, type: TEXT}
      - {name: body, type: TEXT}
      - {name: kind, type: TEXT}
    vectors:
      text:
        vectorizer: {module: text2vec-hash, dimensions: 64, textFields: [title]}
        index: {type: hnsw, distance: cosine}
"""


def notes(tag: str, count: int, body_bytes: int = 1500) -> list[dict[str, Any]]:
    out = []
    for i in range(count):
        object_id = str(uuid.uuid5(NS, f"note-{tag}-{i}"))
        token = "tok" + uuid.UUID(object_id).hex[:12]  # one word no other object has
        out.append(
            {
                "class": "Note",
                "id": object_id,
                "properties": {"title": f"{tag} note {token}", "body": f"{token} " + "x" * body_bytes, "kind": "note"},
            }
        )
    return out


def services_of(http: TestClient) -> Any:
    return http.app.state.services  # type: ignore[attr-defined]


def pragma(http: TestClient, statement: str) -> Any:
    """Run a PRAGMA on the object store's own connection, under its lock."""
    store = services_of(http).store
    with store._lock:
        return store._db.execute(statement).fetchall()


def cap_pages(http: TestClient, extra: int) -> int:
    ((page_count,),) = pragma(http, "PRAGMA page_count")
    ((cap,),) = pragma(http, f"PRAGMA max_page_count = {page_count + extra}")
    assert cap == page_count + extra, (cap, page_count)
    return int(page_count)


def gql(http: TestClient, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
    response = http.post("/v1/graphql", json={"query": query, "variables": variables})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert not body.get("errors"), body["errors"]
    data: dict[str, Any] = body["data"]
    return data


def bm25_ids(http: TestClient, token: str) -> list[str]:
    data = gql(http, "{ Get { Note(bm25: {query: " + json.dumps(token) + "}, limit: 3) { _additional { id } } } }")
    return [hit["_additional"]["id"] for hit in data["Get"]["Note"]]


def note_count(http: TestClient, where: bool = False) -> int:
    argument = '(where: {path: ["kind"], operator: Equal, valueText: "note"})' if where else ""
    return int(gql(http, "{ Aggregate { Note" + argument + " { meta { count } } } }")["Aggregate"]["Note"][0]["meta"]["count"])


def storage_failure(response: HttpResponse, *words: str) -> str:
    assert response.status_code == 503, f"{response.status_code} {response.text}"
    (error,) = response.json()["error"]
    message: str = error["message"]
    assert "object store" in message, message
    assert any(word in message for word in words), f"{message!r} names none of {words}"
    return message


def assert_unchanged(http: TestClient, acked: dict[str, dict[str, Any]], rejected: list[dict[str, Any]]) -> None:
    """Acknowledged objects readable as acknowledged; rejected ones absent from the store and every index."""
    for object_id, properties in acked.items():
        response = http.get(f"/v1/objects/Note/{object_id}")
        assert response.status_code == 200, response.text
        assert response.json()["properties"] == properties
    for obj in rejected:
        assert http.get(f"/v1/objects/Note/{obj['id']}").status_code == 404, obj["id"]
        token = obj["properties"]["title"].split()[-1]
        assert bm25_ids(http, token) == [], f"BM25 still finds rejected {obj['id']}"
        concept = json.dumps(obj["properties"]["title"])
        hits = gql(http, "{ Get { Note(nearText: {concepts: [" + concept + "]}, limit: 1) { _additional { id } } } }")
        assert obj["id"] not in [h["_additional"]["id"] for h in hits["Get"]["Note"]], f"the vector index still finds rejected {obj['id']}"
    assert note_count(http) == note_count(http, where=True) == len(acked)
    assert services_of(http).engine.index_size("Note", "text") == len(acked)


def import_ok(http: TestClient, objects: list[dict[str, Any]], acked: dict[str, dict[str, Any]]) -> None:
    response = http.post("/v1/batch/objects", json={"objects": objects})
    assert response.status_code == 200, response.text
    assert [r["result"]["status"] for r in response.json()] == ["SUCCESS"] * len(objects), response.text[:1000]
    acked.update({o["id"]: o["properties"] for o in objects})


@contextmanager
def serve_in_process(config: Path, data: Path) -> Iterator[TestClient]:
    with TestClient(create_app(open_services(config, data))) as http:
        yield http


def verify_after_restart(config: Path, data: Path, acked: dict[str, dict[str, Any]]) -> None:
    """A fresh server on the data dir: integrity ok, every acknowledged object there, indexes agree with the store."""
    with serve_in_process(config, data) as http:
        assert pragma(http, "PRAGMA integrity_check") == [("ok",)]
        listed = http.get("/v1/objects", params={"class": "Note", "limit": 1000, "include": "vector"}).json()["objects"]
        assert {o["id"]: o["properties"] for o in listed} == acked
        assert note_count(http) == note_count(http, where=True) == len(acked)
        for obj in listed:
            hits = gql(
                http,
                "query($v: Vector!) { Get { Note(nearVector: {vector: $v}, limit: 2) { _additional { id distance } } } }",
                {"v": obj["vector"]},
            )
            found = {h["_additional"]["id"]: h["_additional"]["distance"] for h in hits["Get"]["Note"]}
            assert obj["id"] in found and found[obj["id"]] < 1e-4, (obj["id"], found)
            assert bm25_ids(http, obj["properties"]["title"].split()[-1])[:1] == [obj["id"]]


def test_disk_full_at_write_time_is_a_clear_503_and_nothing_changes(
    client_factory: ClientFactory, write_config: Any, tmp_path: Path
) -> None:
    config = write_config(STORE_CONFIG)
    data = tmp_path / "data-full"
    acked: dict[str, dict[str, Any]] = {}
    http = client_factory(config, data)
    first = notes("before", 30)
    import_ok(http, first, acked)

    cap_pages(http, 2)  # room for a page or two, not for 40 objects of 1.5 KB: the batch fails part-way
    batch = notes("full", 40)
    storage_failure(http.post("/v1/batch/objects", json={"objects": batch}), "disk", "storage")
    big = notes("big", 1, body_bytes=64_000)[0]
    storage_failure(http.post("/v1/objects", json=big), "disk", "storage")
    # Replacing and patching a stored object with a larger one fails too, and the old version stays.
    target = first[0]
    bigger = {**target["properties"], "body": "y" * 64_000}
    storage_failure(
        http.put(f"/v1/objects/Note/{target['id']}", json={"class": "Note", "id": target["id"], "properties": bigger}), "disk", "storage"
    )
    storage_failure(http.patch(f"/v1/objects/Note/{target['id']}", json={"properties": {"body": "z" * 64_000}}), "disk", "storage")
    assert http.get("/v1/.well-known/ready").status_code == 200
    assert_unchanged(http, acked, [*batch, big])

    # Space again: the same writes now succeed.
    pragma(http, "PRAGMA max_page_count = 1073741823")
    import_ok(http, batch, acked)
    response = http.put(f"/v1/objects/Note/{target['id']}", json={"class": "Note", "id": target["id"], "properties": bigger})
    assert response.status_code == 200, response.text
    acked[target["id"]] = bigger
    assert_unchanged(http, acked, [big])
    assert pragma(http, "PRAGMA integrity_check") == [("ok",)]
    http.__exit__(None, None, None)  # a graceful stop: the indexes are saved
    verify_after_restart(config, data, acked)
    shutil.rmtree(data / "indexes")  # and once more, rebuilding every index from the store
    verify_after_restart(config, data, acked)


def test_disk_full_error_names_the_real_cause(client_factory: ClientFactory, write_config: Any, tmp_path: Path) -> None:
    http = client_factory(write_config(STORE_CONFIG), tmp_path / "data-cause")
    import_ok(http, notes("before", 10), {})
    cap_pages(http, 1)
    message = storage_failure(http.post("/v1/batch/objects", json={"objects": notes("full", 40)}), "disk")
    assert "database or disk is full" in message and "cannot rollback" not in message, message


def test_read_only_data_directory_at_write_time_is_a_clear_503_and_nothing_changes(
    client_factory: ClientFactory, write_config: Any, tmp_path: Path
) -> None:
    config = write_config(STORE_CONFIG)
    data = tmp_path / "data-ro"
    acked: dict[str, dict[str, Any]] = {}
    http = client_factory(config, data)
    first = notes("before", 20)
    import_ok(http, first, acked)

    pragma(http, "PRAGMA query_only = ON")
    batch = notes("readonly", 10)
    words = ("permission", "readonly", "read-only")
    storage_failure(http.post("/v1/batch/objects", json={"objects": batch}), *words)
    storage_failure(http.post("/v1/objects", json=notes("single", 1)[0]), *words)
    target = first[0]
    changed = {**target["properties"], "title": "changed title"}
    storage_failure(http.put(f"/v1/objects/Note/{target['id']}", json={"class": "Note", "id": target["id"], "properties": changed}), *words)
    storage_failure(http.patch(f"/v1/objects/Note/{target['id']}", json={"properties": {"title": "patched"}}), *words)
    storage_failure(http.delete(f"/v1/objects/Note/{first[1]['id']}"), *words)
    # Reads keep working while writes cannot.
    assert http.get("/v1/.well-known/ready").status_code == 200
    assert_unchanged(http, acked, batch)
    assert bm25_ids(http, target["properties"]["title"].split()[-1]) == [target["id"]]

    pragma(http, "PRAGMA query_only = OFF")
    import_ok(http, batch, acked)
    assert http.delete(f"/v1/objects/Note/{first[1]['id']}").status_code == 204
    del acked[first[1]["id"]]
    assert_unchanged(http, acked, [])
    http.__exit__(None, None, None)
    verify_after_restart(config, data, acked)


def test_store_file_is_consistent_for_an_outside_reader_after_the_faults(
    client_factory: ClientFactory, write_config: Any, tmp_path: Path
) -> None:
    """The rolled-back writes left nothing behind in the file itself (checked with a separate connection)."""
    data = tmp_path / "data-outside"
    http = client_factory(write_config(STORE_CONFIG), data)
    acked: dict[str, dict[str, Any]] = {}
    import_ok(http, notes("before", 15), acked)
    seq_before = services_of(http).store.write_seq()
    cap_pages(http, 1)
    storage_failure(http.post("/v1/batch/objects", json={"objects": notes("full", 40)}), "disk", "storage")
    pragma(http, "PRAGMA max_page_count = 1073741823")
    pragma(http, "PRAGMA query_only = ON")
    storage_failure(http.post("/v1/batch/objects", json={"objects": notes("ro", 5)}), "permission", "readonly")
    pragma(http, "PRAGMA query_only = OFF")
    outside = sqlite3.connect(f"file:{data / 'objects.sqlite3'}?mode=ro", uri=True)
    try:
        assert outside.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        ((tag,),) = outside.execute("SELECT tag FROM collections WHERE name = 'Note'").fetchall()
        ids = {row[0] for row in outside.execute(f"SELECT id FROM o{tag}")}
        vector_tags = [row[0] for row in outside.execute("SELECT tag FROM vector_tables WHERE collection = 'Note'")]
        assert vector_tags
        vector_ids = [{row[0] for row in outside.execute(f"SELECT o.id FROM v{v} AS v JOIN o{tag} AS o ON o.doc = v.doc")} for v in vector_tags]
        ((seq,),) = outside.execute("SELECT seq FROM sqlite_sequence WHERE name = 'changes'").fetchall()
    finally:
        outside.close()
    assert all(ids == found == set(acked) for found in vector_ids)
    assert int(seq) == seq_before  # the failed writes did not bump the sequence (a saved index stays current)


def test_stopping_when_nothing_can_be_written_logs_one_line_and_loses_nothing(write_config: Any, tmp_path: Path) -> None:
    """SIGTERM while no file can be written (a full disk, here the child's file-size limit lowered to 0 after the writes):
    the shutdown says in one line what failed and that nothing acknowledged is lost, shows no traceback, and finishes."""
    config, data, port = write_config(STORE_CONFIG), tmp_path / "data-stop", test_e2e_server.free_port()
    args = [*test_e2e_server.searchd_module(), "serve", str(config), "--data", str(data), "--host", "127.0.0.1", "--port", str(port), "--grpc-port", "0"]
    # The log goes through a pipe, which no file-size limit applies to; a thread drains it so the server never blocks on it.
    process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=test_e2e_server.child_env())
    assert process.stdout is not None
    stdout = process.stdout
    output: list[bytes] = []
    reader = threading.Thread(target=lambda: output.append(stdout.read()))
    reader.start()
    acked: dict[str, dict[str, Any]] = {}
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30.0, trust_env=False) as http:
            wait_for(lambda: _answers(http, "/v1/.well-known/ready") or process.poll() is not None, "the server to be ready")
            objects = notes("stop", 20)
            response = http.post("/v1/batch/objects", json={"objects": objects})
            assert response.status_code == 200 and [r["result"]["status"] for r in response.json()] == ["SUCCESS"] * 20, response.text[:500]
            acked.update({o["id"]: o["properties"] for o in objects})
        resource.prlimit(process.pid, resource.RLIMIT_FSIZE, (0, resource.RLIM_INFINITY))  # every write of a file now fails (EFBIG)
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        reader.join()
        stdout.close()
    log = output[0].decode("utf-8", "replace")
    # uvicorn re-raises SIGTERM after its graceful shutdown, so the exit status is -15, as for any stop.
    assert process.returncode in (0, -signal.SIGTERM), log
    assert "Traceback" not in log and "Application shutdown failed" not in log, log
    assert "Application shutdown complete" in log, log
    stopping = [line.split(" ERROR searchd: ", 1)[1] for line in log.splitlines() if " ERROR searchd: stopping" in line]
    expected = (
        f"stopping: could not finish saving the indexes: the object store has an I/O error on {data / 'objects.sqlite3'}: disk I/O error "
        "(check the disk (dmesg, SMART) and that the data directory is on a local file system); nothing acknowledged is lost (every "
        "acknowledged write is in the object store, and the next start replays or rebuilds the indexes from it)"
    )
    assert stopping == [expected], log
    verify_after_restart(config, data, acked)


def _answers(http: httpx.Client, path: str) -> bool:
    try:
        return http.get(path).status_code == 200
    except httpx.TransportError:
        return False
