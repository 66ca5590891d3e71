"""SIGKILL at random points of import, background merges and re-vectorizing reloads (ISSUE #7 point 5c).

20 rounds in three chains, each chain with its own config and data directory, all on 127.0.0.1:

- import (8 rounds, hnsw): a writer thread imports batches; the server is killed at a random moment.
- merge (6 rounds, annoy with the smallest mergeThreshold, 100, and 16 trees): batches of 20 every ~10 ms
  keep background merges (and, every few segments, a compaction of every live item)
  starting all the time; killed at a random moment.  (A restart's index fill starts merges too.)
- reload (6 rounds, flat, text2vec-jinaai against the fake Jina API on a loopback port): the chain starts
  with 1,000 objects; while the writer runs, the config file's dimensions are edited and
  POST /v1/config/reload starts a re-vectorization; killed at a random moment of it.  The fake answers
  after 0.15 s while a round runs, so the re-vectorization (>= 63 requests of 16, 4 at a time: >= 2.4 s)
  outlasts the longest kill delay (1 s): the kill always lands inside it.  After the restart (the fake at
  full speed again) the rebuild must resume and finish (bounded poll of /v1/config/status).  A write that
  straddles the end of a re-vectorization (found by these rounds) has its own test at the end.

A seeded random.Random picks every kill delay (another one picks the BM25 samples).  The writer records
an object as acknowledged only when its batch answered HTTP 200 and the object's own result is SUCCESS.
After each kill the server is restarted on the same data directory (that server carries the chain's next
round) and checked:

- no acknowledged object lost or changed; nothing stored that was never sent; each batch all or nothing;
- every stored object is found by nearVector with its own stored vector at distance ~0 (the exact index: all of them;
  hnsw and annoy, approximate and fed in a random order: at least 99 % per round);
- the vector index holds exactly as many vectors as the store holds objects (/metrics);
- Aggregate count, with and without a where filter, equals the number of stored objects;
- BM25 finds objects by a token only they have (the last acknowledged batch and a random sample);
- reload rounds: every stored vector has the new dimension, and the schema says so.

The totals are printed at the end (run with -s or -rP to see them); bench/RESULTS.md records a run.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import random
import signal
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from searchd.catalog import compile_catalog
from searchd.modules.registry import default_registry
from searchd.reload.rebuild import Progress, rebuild_vector, vector_shadow
from tests import test_e2e_server
from tests.conftest import BACKENDS, ClientFactory
from tests.fakes import FakeJina, serving
from tests.test_e2e_server import HTTP_TIMEOUT_S, Server, StartServer, client

pytestmark = pytest.mark.parametrize("storage_backend", BACKENDS, indirect=True)

start_server = test_e2e_server.start_server  # the fixture: servers started on free ports, stopped at teardown

SEED = 7_2026
ROUNDS = {"import": 8, "merge": 6, "reload": 6}
ID_NAMESPACE = uuid.UUID("5d2c8f7e-1b0a-4c3e-8f61-2a9d0c4b7e15")
REBUILD_DEADLINE_S = 60.0
FIRST_ACK_TIMEOUT_S = 20.0
RELOAD_SEED_OBJECTS = 1000
RELOAD_DIMS = (64, 80, 96, 112, 128, 144, 160)  # always a new size: no embedding is ever reused
GRAPHQL_CHUNK = 250
BM25_SAMPLE = 20


@dataclass(frozen=True)
class Kind:
    index: str
    module: str  # the vectorizer module
    dims: int
    batch_size: int
    pause_s: float  # between batches
    max_batches: int  # per round
    kill_after_s: tuple[float, float]  # uniform range, from the round's first acknowledgement (reload: from the reload)


# max_batches * pause_s (or the fake's latency) outlasts the longest kill delay: the writer is always mid-import at the kill,
# while the pause bounds how many objects a fast machine writes per round (and so the time the checks take).
KINDS = {
    "import": Kind("{type: hnsw, distance: cosine}", "text2vec-hash", 64, 5, 0.02, 200, (0.05, 0.8)),
    "merge": Kind("{type: annoy, distance: cosine, mergeThreshold: 100, trees: 16}", "text2vec-hash", 128, 20, 0.01, 300, (0.1, 0.8)),
    "reload": Kind(
        "{type: flat, distance: cosine}", "text2vec-jinaai, model: jina-embeddings-v3", RELOAD_DIMS[0], 10, 0.0, 200, (0.0, 1.0)
    ),
}
JINA_KEY = "jina_crash-rounds-key-41c7"
JINA_LATENCY_S = 0.15  # while a reload round runs; 0 once the server is killed

CONFIG = """\
server:
  host: 127.0.0.1
  reload: {{watch: false}}
modules:
  text2vec-jinaai:
    {{baseURL: "{jina_url}", apiKey: "${{JINAAI_APIKEY}}", batchSize: 16, maxConcurrency: 4, timeoutSeconds: 10, maxRetries: 2}}
collections:
  - name: Article
    properties:
      - {{name: title, type: TEXT}}
      - {{name: body, type: TEXT}}
      - {{name: kind, type: TEXT}}
    vectors:
      text:
        vectorizer: {{module: {module}, dimensions: {dims}, textFields: [title]}}
        index: {index}
"""


def object_for(chain: str, batch: int, position: int) -> dict[str, Any]:
    object_id = str(uuid.uuid5(ID_NAMESPACE, f"{chain}-{batch}-{position}"))
    hexed = uuid.UUID(object_id).hex
    # "t" + 12 hex digits: a BM25 token (and a vector) no other object has.
    title = f"crash t{hexed[:12]} t{hexed[12:24]}"
    return {
        "class": "Article",
        "id": object_id,
        "properties": {"title": title, "body": f"{chain} batch {batch} object {position}", "kind": "crash"},
    }


@dataclass
class Chain:
    name: str
    kind: Kind
    config: Path
    data: Path
    dims: int
    jina_url: str
    next_batch: int = 0
    sent: dict[str, int] = field(default_factory=dict)  # id -> batch number (sent, maybe not stored)
    batch_sizes: dict[int, int] = field(default_factory=dict)
    acked: dict[str, str] = field(default_factory=dict)  # id -> title
    last_acked_batch: list[str] = field(default_factory=list)

    def write_config(self) -> None:
        text = CONFIG.format(dims=self.dims, index=self.kind.index, module=self.kind.module, jina_url=self.jina_url)
        self.config.write_text(text, encoding="utf-8")

    def batch(self, size: int) -> tuple[int, list[dict[str, Any]]]:
        number = self.next_batch
        self.next_batch += 1
        objects = [object_for(self.name, number, p) for p in range(size)]
        self.batch_sizes[number] = size
        for obj in objects:
            self.sent[obj["id"]] = number
        return number, objects


class Writer(threading.Thread):
    """Imports batches until stopped or the server dies; only acknowledged objects enter ``chain.acked``."""

    def __init__(self, chain: Chain, url: str) -> None:
        super().__init__(name=f"crash-writer-{chain.name}", daemon=True)
        self.chain = chain
        self.url = url
        self.stop_requested = threading.Event()
        self.first_ack = threading.Event()
        self.lock = threading.Lock()
        self.acked_now = 0
        self.ended_by = "running"
        self.problems: list[str] = []

    def run(self) -> None:
        try:
            self._run()
        except BaseException:  # noqa: BLE001  (an exception escaping a thread would be lost)
            self.problems.append(traceback.format_exc())
            self.ended_by = "crash"

    def _run(self) -> None:
        chain, kind = self.chain, self.chain.kind
        with httpx.Client(base_url=self.url, timeout=HTTP_TIMEOUT_S, trust_env=False) as http:
            for _ in range(kind.max_batches):
                if self.stop_requested.is_set():
                    self.ended_by = "stopped"
                    return
                with self.lock:
                    _, objects = chain.batch(kind.batch_size)
                try:
                    response = http.post("/v1/batch/objects", json={"objects": objects})
                except httpx.TransportError:
                    self.ended_by = "transport-error"
                    return
                if response.status_code != 200:
                    self.problems.append(f"HTTP {response.status_code}: {response.text[:300]}")
                    self.ended_by = "http-error"
                    return
                results = response.json()
                ok = [o for o, r in zip(objects, results) if r.get("id") == o["id"] and (r.get("result") or {}).get("status") == "SUCCESS"]
                if len(ok) != len(objects) or len(results) != len(objects):
                    self.problems.append(f"not every object acknowledged: {json.dumps(results)[:300]}")
                with self.lock:
                    chain.acked.update({o["id"]: o["properties"]["title"] for o in ok})
                    chain.last_acked_batch = [o["id"] for o in ok]
                    self.acked_now += len(ok)
                self.first_ack.set()
                if kind.pause_s:
                    time.sleep(kind.pause_s)
        self.ended_by = "exhausted"


@dataclass
class Totals:
    rounds: dict[str, int] = field(default_factory=lambda: {k: 0 for k in ROUNDS})
    acknowledged: int = 0
    lost: int = 0
    changed: int = 0
    never_sent: int = 0
    partial_batches: int = 0
    nearvector_misses: int = 0  # approximate indexes may miss a few (reported); rounds over the bound count below
    nearvector_rounds_over_bound: int = 0
    index_count_mismatches: int = 0
    count_mismatches: int = 0
    bm25_misses: int = 0
    wrong_dimensions: int = 0
    checked_objects: int = 0
    in_flight_batches_stored: int = 0
    in_flight_batches_dropped: int = 0
    rebuild_running_at_kill: int = 0
    kill_delays: list[float] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)  # per chain
    phase_seconds: dict[str, float] = field(default_factory=lambda: {"write": 0.0, "restart": 0.0, "rebuild": 0.0, "verify": 0.0})

    def timed(self, phase: str, since: float) -> float:
        now = time.monotonic()
        self.phase_seconds[phase] = round(self.phase_seconds[phase] + now - since, 1)
        return now

    def disagreements(self) -> int:
        return self.nearvector_rounds_over_bound + self.index_count_mismatches + self.count_mismatches + self.bm25_misses + self.wrong_dimensions


def graphql_batch(http: httpx.Client, queries: list[dict[str, Any]], logs: Callable[[], str]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for start in range(0, len(queries), GRAPHQL_CHUNK):
        response = http.post("/v1/graphql/batch", json=queries[start : start + GRAPHQL_CHUNK])
        assert response.status_code == 200, f"GraphQL batch: HTTP {response.status_code}: {response.text[:500]}\n{logs()}"
        for answer in response.json():
            assert not answer.get("errors"), f"GraphQL errors: {answer['errors']}\n{logs()}"
            out.append(answer["data"])
    return out


def list_stored(http: httpx.Client, logs: Callable[[], str]) -> dict[str, dict[str, Any]]:
    stored: dict[str, dict[str, Any]] = {}
    after: str | None = None
    for _ in range(1000):
        params: dict[str, Any] = {"class": "Article", "limit": 500, "include": "vector"}
        if after is not None:
            params["after"] = after
        response = http.get("/v1/objects", params=params)
        assert response.status_code == 200, f"list: HTTP {response.status_code}: {response.text[:300]}\n{logs()}"
        page = response.json()["objects"]
        stored.update({o["id"]: o for o in page})
        if len(page) < 500:
            return stored
        after = page[-1]["id"]
    pytest.fail(f"listing did not end\n{logs()}")


def index_size(http: httpx.Client) -> int | None:
    for line in http.get("/metrics").text.splitlines():
        if line.startswith('searchd_index_vectors{collection="Article",vector="text"}'):
            return int(float(line.rsplit(" ", 1)[1]))
    return None


def verify(chain: Chain, server: Server, rng: random.Random, totals: Totals, label: str) -> None:
    """Everything acknowledged is there, and every index agrees with the store."""
    logs = server.logs
    problems: list[str] = []
    with client(server) as http:
        stored = list_stored(http, logs)
        lost = [i for i in chain.acked if i not in stored]
        changed = [i for i, title in chain.acked.items() if i in stored and stored[i]["properties"]["title"] != title]
        never_sent = [i for i in stored if i not in chain.sent]
        per_batch: dict[int, int] = {}
        for object_id in stored:
            if object_id in chain.sent:
                per_batch[chain.sent[object_id]] = per_batch.get(chain.sent[object_id], 0) + 1
        partial = {b: n for b, n in per_batch.items() if n != chain.batch_sizes[b]}
        totals.lost += len(lost)
        totals.changed += len(changed)
        totals.never_sent += len(never_sent)
        totals.partial_batches += len(partial)
        if lost or changed or never_sent or partial:
            problems.append(f"lost {lost[:5]} ({len(lost)}), changed {changed[:5]}, never sent {never_sent[:5]}, partial batches {partial}")

        # Every stored object is found by its own vector, at distance ~0.
        query = "query($v: Vector!) { Get { Article(nearVector: {vector: $v}, limit: 3) { _additional { id distance } } } }"
        ids = sorted(stored)
        answers = graphql_batch(http, [{"query": query, "variables": {"v": stored[i]["vector"]}} for i in ids], logs)
        misses = []
        for object_id, answer in zip(ids, answers):
            hits = {h["_additional"]["id"]: h["_additional"]["distance"] for h in answer["Get"]["Article"]}
            if hits.get(object_id, 1.0) > 1e-4:
                misses.append((object_id, hits))
        totals.nearvector_misses += len(misses)
        totals.checked_objects += len(ids)
        # An exact index finds every object by its own vector.  hnsw and annoy are approximate, and which of their
        # searches miss depends on the order of the inserts (random here): they are held to a recall bound instead;
        # that every stored object is in the index at all is the size check below.
        tolerated = 0 if "flat" in chain.kind.index else len(ids) // 100
        if len(misses) > tolerated:
            totals.nearvector_rounds_over_bound += 1
            problems.append(f"{len(misses)} of {len(ids)} objects not found by their own vector (at most {tolerated} may miss): {misses[:3]}")

        size = index_size(http)
        if size != len(stored):
            totals.index_count_mismatches += 1
            problems.append(f"the vector index holds {size} vectors, the store {len(stored)} objects")

        counts = graphql_batch(
            http,
            [
                {"query": "{ Aggregate { Article { meta { count } } } }"},
                {"query": '{ Aggregate { Article(where: {path: ["kind"], operator: Equal, valueText: "crash"}) { meta { count } } } }'},
            ],
            logs,
        )
        numbers = [c["Aggregate"]["Article"][0]["meta"]["count"] for c in counts]
        if numbers != [len(stored), len(stored)]:
            totals.count_mismatches += 1
            problems.append(f"Aggregate counts {numbers} (all, where kind = crash) for {len(stored)} stored objects")

        sample = list(dict.fromkeys([*[i for i in chain.last_acked_batch if i in stored], *rng.sample(ids, min(BM25_SAMPLE, len(ids)))]))
        bm25 = "{ Get { Article(bm25: {query: TOKEN}, limit: 2) { _additional { id } } } }"
        queries = [{"query": bm25.replace("TOKEN", json.dumps(stored[i]["properties"]["title"].split()[1]))} for i in sample]
        answers = graphql_batch(http, queries, logs)
        bm25_misses = [i for i, a in zip(sample, answers) if [h["_additional"]["id"] for h in a["Get"]["Article"]] != [i]]
        totals.bm25_misses += len(bm25_misses)
        if bm25_misses:
            problems.append(f"BM25 does not find {len(bm25_misses)} of {len(sample)} objects by their own token: {bm25_misses[:5]}")

        if chain.name == "reload":
            wrong = [i for i in ids if len(stored[i]["vector"]) != chain.dims]
            totals.wrong_dimensions += len(wrong)
            if wrong:
                problems.append(
                    f"{len(wrong)} objects without a {chain.dims}-dimensional vector: {[(i, len(stored[i]['vector'])) for i in wrong[:3]]}"
                )
    assert not problems, f"{label}: " + "\n".join(problems) + f"\n{logs()}"


def wait_for_rebuild(server: Server, dims: int, label: str) -> None:
    """Poll until no rebuild runs and the served schema has the new dimensions (bounded)."""
    deadline = time.monotonic() + REBUILD_DEADLINE_S
    status: dict[str, Any] = {}
    with client(server) as http:
        while time.monotonic() < deadline:
            status = http.get("/v1/config/status").json()
            failed = [r for r in status["rebuilds"] if r["state"] == "failed"]
            assert not failed, f"{label}: rebuild failed: {failed}\n{server.logs()}"
            if not any(r["state"] == "running" for r in status["rebuilds"]):
                served = http.get("/v1/schema/Article").json()["vectorConfig"]["text"]["vectorizer"]["text2vec-jinaai"]["dimensions"]
                if served == dims:
                    return
            time.sleep(0.05)
    pytest.fail(f"{label}: re-vectorization to {dims} dimensions not done within {REBUILD_DEADLINE_S}s: {status}\n{server.logs()}")


def kill(server: Server, label: str) -> None:
    os.kill(server.process.pid, signal.SIGKILL)
    status = server.process.wait(timeout=10)
    assert status == -signal.SIGKILL, f"{label}: server exited with {status}, not by SIGKILL\n{server.logs()}"


def crash_round(
    chain: Chain,
    server: Server,
    start_server: StartServer,
    kill_rng: random.Random,
    sample_rng: random.Random,
    totals: Totals,
    number: int,
    jina: FakeJina,
) -> Server:
    label = f"{chain.name} round {number} (seed {SEED})"
    acked_before = len(chain.acked)
    jina.latency = JINA_LATENCY_S if chain.name == "reload" else 0.0
    clock = time.monotonic()
    writer = Writer(chain, server.url)
    writer.start()
    try:
        assert writer.first_ack.wait(FIRST_ACK_TIMEOUT_S), (
            f"{label}: no batch acknowledged ({writer.ended_by}): {writer.problems}\n{server.logs()}"
        )
        if chain.name == "reload":
            chain.dims = RELOAD_DIMS[RELOAD_DIMS.index(chain.dims) + 1]
            chain.write_config()
            with client(server) as http:
                outcome = http.post("/v1/config/reload").json()
            assert outcome["result"] == "applied" and outcome["plan"]["revectorize"], f"{label}: {outcome}\n{server.logs()}"
        delay = kill_rng.uniform(*chain.kind.kill_after_s)
        totals.kill_delays.append(round(delay, 3))
        time.sleep(delay)
        if chain.name == "reload":
            with client(server) as http:
                rebuilds = http.get("/v1/config/status").json()["rebuilds"]
            totals.rebuild_running_at_kill += any(r["state"] == "running" for r in rebuilds)
        assert writer.is_alive(), f"{label}: the writer ended ({writer.ended_by}) before the kill\n{server.logs()}"
        kill(server, label)
    finally:
        jina.latency = 0.0
        writer.stop_requested.set()
        writer.join(timeout=HTTP_TIMEOUT_S + 10)
    assert not writer.is_alive(), f"{label}: the writer did not stop"
    assert not writer.problems, f"{label}: writer problems before the kill: {writer.problems[:3]}\n{server.logs()}"
    # The batch the kill cut short (the writer sends one at a time): it must be stored whole or not at all.
    in_flight = chain.next_batch - 1 if writer.ended_by == "transport-error" else None
    totals.rounds[chain.name] += 1
    totals.acknowledged += len(chain.acked) - acked_before

    clock = totals.timed("write", clock)
    restarted = start_server(chain.config, chain.data)
    clock = totals.timed("restart", clock)
    if chain.name == "reload":
        wait_for_rebuild(restarted, chain.dims, label)
        clock = totals.timed("rebuild", clock)
    verify(chain, restarted, sample_rng, totals, label)
    totals.timed("verify", clock)
    if in_flight is not None:  # verify checked all-or-nothing; count which way it went
        with client(restarted) as http:
            probe = object_for(chain.name, in_flight, 0)["id"]
            stored = http.get(f"/v1/objects/Article/{probe}").status_code == 200
        totals.in_flight_batches_stored += stored
        totals.in_flight_batches_dropped += not stored
    return restarted


def start_chain(name: str, tmp_path: Path, start_server: StartServer, totals: Totals, jina_url: str) -> tuple[Chain, Server]:
    directory = tmp_path / name
    directory.mkdir()
    kind = KINDS[name]
    chain = Chain(name, kind, directory / "searchd.yaml", directory / "data", kind.dims, jina_url)
    chain.write_config()
    server = start_server(chain.config, chain.data)
    if name == "reload":  # enough objects that a re-vectorization lasts longer than a moment
        with client(server) as http:
            for _ in range(RELOAD_SEED_OBJECTS // 500):
                _, objects = chain.batch(500)
                response = http.post("/v1/batch/objects", json={"objects": objects})
                assert response.status_code == 200, response.text[:500]
                assert all(r["result"]["status"] == "SUCCESS" for r in response.json())
                chain.acked.update({o["id"]: o["properties"]["title"] for o in objects})
        totals.acknowledged += RELOAD_SEED_OBJECTS
    return chain, server


def test_sigkill_rounds_lose_nothing_acknowledged_and_indexes_agree(
    tmp_path: Path,
    start_server: StartServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    kill_rng, sample_rng = random.Random(SEED), random.Random(SEED + 1)  # kill delays do not depend on what was stored
    totals = Totals()
    started = time.monotonic()
    monkeypatch.setenv("JINAAI_APIKEY", JINA_KEY)  # the children's environment is a copy of ours
    jina = FakeJina(api_keys=[JINA_KEY])
    with serving(jina.app) as jina_url:
        for name, rounds in ROUNDS.items():
            chain_started = time.monotonic()
            chain, server = start_chain(name, tmp_path, start_server, totals, jina_url)
            for number in range(1, rounds + 1):
                server = crash_round(chain, server, start_server, kill_rng, sample_rng, totals, number, jina)
            server.stop()
            totals.seconds[name] = round(time.monotonic() - chain_started, 1)
    summary = {
        "seed": SEED,
        "seconds": round(time.monotonic() - started, 1),
        **{k: v for k, v in totals.__dict__.items() if k != "kill_delays"},
        "disagreements": totals.disagreements(),
        "kill_delays_s": totals.kill_delays,
    }
    print("crash rounds:", json.dumps(summary))
    assert sum(totals.rounds.values()) == sum(ROUNDS.values()) == 20
    assert totals.lost == totals.changed == totals.never_sent == totals.partial_batches == 0
    assert totals.disagreements() == 0
    # The fake's latency makes a re-vectorization outlast the longest kill delay: every reload round killed one mid-way.
    assert totals.rebuild_running_at_kill == ROUNDS["reload"]


# --- found by the reload rounds: a write that straddles the end of a re-vectorization -----------------------

RACE_CONFIG = """
server: {reload: {watch: false}}
collections:
  - name: Note
    properties:
      - {name: body, type: TEXT}
    vectors:
      text:
        vectorizer: {module: text2vec-hash, dimensions: 64}
        index: {type: flat}
"""


def test_a_write_embedded_during_a_revectorization_and_committed_after_it_gets_the_new_vector(
    client_factory: ClientFactory, write_config: Any
) -> None:
    client = client_factory(write_config(RACE_CONFIG))
    notes = [{"class": "Note", "id": f"00000000-0000-4000-8000-{i:012d}", "properties": {"body": f"race note {i}"}} for i in range(6)]
    assert client.post("/v1/batch/objects", json={"objects": notes[:5]}).status_code == 200
    services = client.app.state.services  # type: ignore[attr-defined]
    engine, catalog = services.engine, services.holder.current
    spec = catalog.spec
    collection = spec.collections[0]
    wider = dataclasses.replace(collection.vectors[0], vectorizer=dataclasses.replace(collection.vectors[0].vectorizer, dimensions=80))
    target_spec = dataclasses.replace(spec, collections=(dataclasses.replace(collection, vectors=(wider,)),))
    target = compile_catalog(target_spec, default_registry()).collections["Note"].vectors["text"]

    # The re-vectorization has begun; a batch request is embedded now (old and staged new vector) ...
    shadow = vector_shadow("Note", target, reembed=True)
    engine.begin_shadow(shadow)
    draft = engine.draft(catalog, notes[5])
    assert asyncio.run(engine.embed([draft])) == [None]
    assert draft.vectors["text"].shape == (64,) and draft.vectors[shadow.source].shape == (80,)
    # ... the re-vectorization ends (staged vectors promoted, new index in service) ...
    asyncio.run(rebuild_vector(engine, shadow, target, Progress("Note", "text", "re-vectorize", 5), lambda: None))
    # ... and only then is the batch committed, as it would be from its worker thread.
    engine.commit([draft])  # the staged vector becomes the vector: the index now serves its settings

    stored = engine.store.get("Note", draft.id)
    assert stored is not None and stored.vectors["text"].shape == (80,), {n: v.shape for n, v in stored.vectors.items()}
    hits = engine.search_hits(catalog.collections["Note"], target, stored.vectors["text"], 1)
    assert hits and engine.ids("Note", [hits[0].id]) == [draft.id] and abs(hits[0].distance) < 1e-5
    assert not engine.store.ids_with_vector("Note", shadow.source, [draft.id]), "a staged vector was left behind"
