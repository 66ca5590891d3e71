"""Reload with replicas (issue #16): real ``searchd serve`` processes on one PostgreSQL database.

Each replica has its own config directory and data directory; they share $SEARCHD_DATABASE_URL.
One replica at a time leads a config change (a PostgreSQL advisory lock); the others follow
what it applied, re-indexing changed vectors from the database; a leader SIGKILLed during a
re-vectorization is taken over by another replica, which resumes it; two different configs
given at once never mix; a replica whose files differ from the applied revision says so in
``GET /v1/config/status`` and in ``searchd_config_drift``.  Every wait polls a condition.
"""

from __future__ import annotations

import functools
import json
import os
import signal
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psycopg
import pytest

from searchd.config.spec import Spec
from searchd.records import StoredObject
from searchd.reload.leader import decide, drift
from searchd.reload.rebuild import EMBED_BATCH, STEPS_IN_FLIGHT
from searchd.storage.applied import new_applied
from searchd.storage.base import StaleVectors
from searchd.storage.ledger import Ledger, Target
from searchd.storage.pgreload import LEADER_LOCK, ReloadLedger
from searchd.storage.postgres import PostgresStore
from tests import pgcluster
from tests.conftest import ClientFactory, wait_for
from tests.fakes import FakeJina, serving
from tests.test_e2e_server import Server, StartServer, client
from tests.test_e2e_server import start_server as start_server  # noqa: PLC0414  (re-exported: the fixture, used by name)
from tests.test_reload_e2e import JINA as E2E_JINA
from tests.test_reload_e2e import expected_jina, passage_inputs

WAIT_S = 60.0  # three servers share two cores with the rest of the suite: generous, a bound and not an expectation

BASE = """\
server:
  host: 127.0.0.1
  reload: {watch: false}
collections:
  - name: Article
    properties:
      - {name: title, type: TEXT}
      - {name: body, type: TEXT}
    vectors:
      text:
        default: true
        vectorizer: {module: text2vec-hash, dimensions: 64, textFields: [title, body]}
        index: {type: hnsw, distance: cosine}
"""
# A new named vector: every stored object is embedded for it (offline: the hash vectorizer), then every replica indexes it.
NEW_VECTOR = (
    "        index: {type: hnsw, distance: cosine}\n",
    (
        "        index: {type: hnsw, distance: cosine}\n"
        "      title2:\n"
        "        vectorizer: {module: text2vec-hash, dimensions: 48, textFields: [title]}\n"
        "        index: {type: flat, distance: cosine}\n"
    ),
)
ARTICLES = [
    {"class": "Article", "id": f"20000000-0000-4000-8000-{i:012d}", "properties": {"title": f"article {i} on k{i:03d}z", "body": f"body {i % 7}"}}
    for i in range(60)
]
QUERIES = [
    '{ Get { Article(bm25: {query: "article"}, limit: 3) { title } } }',
    '{ Get { Article(nearText: {concepts: ["article 7 on k007z"]}, limit: 3) { title } } }',
    "{ Get { Article(limit: 3) { title } } }",
]

# The re-vectorization's config of tests/test_reload_e2e.py, four objects a request, so that it takes many requests.
JINA = E2E_JINA.replace("batchSize: 64", "batchSize: 4").replace("  host: 127.0.0.1\n", "  host: 127.0.0.1\n  reload: {{watch: false}}\n")
DOCS: list[dict[str, Any]] = [{"class": "Doc", "id": f"30000000-0000-4000-8000-{i:012d}", "properties": {"title": f"doc {i} on t{i:04d}q"}} for i in range(600)]


# -- replicas ------------------------------------------------------------------------------


@pytest.fixture
def database(pg_cluster: pgcluster.Cluster, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """One database every replica of the test shares (the children inherit $SEARCHD_DATABASE_URL)."""
    name = pg_cluster.new_database()
    monkeypatch.setenv("SEARCHD_DATABASE_URL", pg_cluster.url(name))
    yield pg_cluster.url(name)
    pg_cluster.drop_database(name)


@dataclass
class Replica:
    server: Server
    config: Path
    http: httpx.Client

    def write(self, text: str) -> None:
        self.config.write_text(text, encoding="utf-8")

    def status(self) -> dict[str, Any]:
        response = self.http.get("/v1/config/status")
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def reload(self) -> httpx.Response:
        return self.http.post("/v1/config/reload")

    def schema(self, cls: str) -> dict[str, Any]:
        response = self.http.get(f"/v1/schema/{cls}")
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def drift_metric(self) -> float:
        text = self.http.get("/metrics").text
        (line,) = [line for line in text.splitlines() if line.startswith("searchd_config_drift ")]
        return float(line.split()[1])

    def get(self, query: str) -> list[dict[str, Any]]:
        body = self.http.post("/v1/graphql", json={"query": query}).json()
        assert not body.get("errors"), f"{body}\n{self.server.logs()}"
        found: list[dict[str, Any]] = next(iter(body["data"]["Get"].values()))
        return found


StartReplica = Callable[..., Replica]


@pytest.fixture
def start_replica(database: str, tmp_path: Path, start_server: StartServer) -> Iterator[StartReplica]:
    """Start a replica on the test's database with ``text`` in a config directory of its own (``*extra``: serve's options)."""
    clients: list[httpx.Client] = []

    def start(name: str, text: str, *extra: str) -> Replica:
        config = tmp_path / name / "config" / "searchd.yaml"
        config.parent.mkdir(parents=True)
        config.write_text(text, encoding="utf-8")
        server = start_server(config, tmp_path / name / "data", *extra)
        clients.append(client(server))
        return Replica(server, config, clients[-1])

    yield start
    for http in clients:
        http.close()


def start_replicas(start_replica: StartReplica, tmp_path: Path, text: str, objects: list[dict[str, Any]], count: int = 3) -> list[Replica]:
    """``count`` replicas; the first imports ``objects`` before the others start."""
    load = tmp_path / "objects.jsonl"
    load.write_text("".join(json.dumps(o) + "\n" for o in objects), encoding="utf-8")
    return [start_replica(f"r{i}", text, *(["--load", str(load)] if i == 0 else [])) for i in range(count)]


def settled(replica: Replica) -> dict[str, Any]:
    """The replica's status once no rebuild runs and no reload waits; empty before."""
    now = replica.status()
    running = any(r["state"] == "running" for r in now["rebuilds"])
    waiting = (now["lastReload"] or {}).get("result") == "waiting" or now["replicas"]["waiting"]
    return {} if running or waiting else now


def settled_on(replica: Replica, unlike: str, cls: str, vector: str) -> dict[str, Any]:
    """The replica's settled status once it serves another revision than ``unlike``, with ``vector`` in ``cls``."""
    now = settled(replica)
    return now if now and now["revision"] != unlike and vector in replica.schema(cls)["vectorConfig"] else {}


class QueryLoad(threading.Thread):
    """Sends the queries to every replica in turn until stopped; records every failed request."""

    def __init__(self, replicas: list[Replica], queries: list[str]) -> None:
        super().__init__(name="replica-load", daemon=True)
        self.urls = [r.server.url for r in replicas]
        self.queries = queries
        self.stopped = threading.Event()
        self.sent = dict.fromkeys(self.urls, 0)
        self.failures: list[str] = []

    def run(self) -> None:
        clients = [httpx.Client(base_url=url, timeout=30.0, trust_env=False) for url in self.urls]
        try:
            while not self.stopped.is_set():
                for url, http in zip(self.urls, clients):
                    for query in self.queries:
                        try:
                            response = http.post("/v1/graphql", json={"query": query})
                            body = response.json()
                            if response.status_code != 200 or body.get("errors") or not next(iter(body["data"]["Get"].values())):
                                self.failures.append(f"{url} {query}: {response.status_code} {response.text[:300]}")
                        except (httpx.HTTPError, ValueError) as exc:
                            self.failures.append(f"{url} {query}: {exc!r}")
                        self.sent[url] += 1
        finally:
            for http in clients:
                http.close()

    def __enter__(self) -> QueryLoad:  # noqa: PYI034 (not subclassed)
        self.start()
        wait_for(lambda: all(n > 0 for n in self.sent.values()), "the load to reach every replica", WAIT_S)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopped.set()
        self.join(timeout=WAIT_S)


def applied_document(url: str) -> dict[str, Any]:
    with psycopg.connect(url) as db:
        ((document,),) = db.execute("SELECT document FROM searchd_applied").fetchall()
    body: dict[str, Any] = json.loads(bytes(document))
    return body


def ledger_target(url: str) -> tuple[str, float | None]:
    with psycopg.connect(url) as db:
        ((revision, finished),) = db.execute("SELECT revision, finished FROM searchd_reload").fetchall()
    return str(revision), finished


# -- a change reaches every replica; drift ---------------------------------------------------


def test_a_change_on_one_replica_reaches_all_three_under_load_and_drift_shows_until_their_files_match(
    database: str, tmp_path: Path, start_replica: StartReplica
) -> None:
    replicas = start_replicas(start_replica, tmp_path, BASE, ARTICLES)
    first, others = replicas[0], replicas[1:]
    before = first.status()["revision"]
    assert [r.status()["drift"]["drift"] for r in replicas] == [False, False, False]
    assert [r.drift_metric() for r in replicas] == [0.0, 0.0, 0.0]

    with QueryLoad(replicas, QUERIES) as load:
        changed = BASE.replace(*NEW_VECTOR)
        first.write(changed)
        response = first.reload()
        assert response.status_code == 200 and response.json()["result"] == "applied", response.text
        assert response.json()["plan"]["revectorize"] == [{"collection": "Article", "vector": "title2"}], response.text
        # Every replica ends on the leader's revision, the new vector indexed (the followers re-index it from the database).
        done = [wait_for(functools.partial(settled_on, r, before, "Article", "title2"), "the new vector on a replica", WAIT_S) for r in replicas]
        revisions = {s["revision"] for s in done}
        assert len(revisions) == 1, revisions
        sent_after = dict(load.sent)
        wait_for(lambda: all(load.sent[u] > sent_after[u] for u in sent_after), "more queries after the swap", WAIT_S)
    assert load.failures == [], load.failures[:5]
    assert all(n > 0 for n in load.sent.values()), load.sent

    for replica in replicas:
        found = replica.get('{ Get { Article(nearText: {concepts: ["article 11 on k011z"], targetVectors: ["title2"]}, limit: 1) { title } } }')
        assert found == [{"title": "article 11 on k011z"}], (replica.server.url, found)
    assert "title2" in {v for c in applied_document(database)["spec"]["collections"] for v in [x["name"] for x in c["vectors"]]}
    revision, finished = ledger_target(database)
    assert finished is not None and revisions == {revision}

    # The followers' files still hold the superseded revision: they serve the applied one and say so.
    lead = first.status()
    assert lead["drift"] == {"drift": False, "filesRevision": revision, "appliedRevision": revision, "message": None}, lead["drift"]
    assert first.drift_metric() == 0.0
    for replica in others:
        shown = replica.status()["drift"]
        assert shown["drift"] is True and shown["filesRevision"] == before and shown["appliedRevision"] == revision, shown
        assert f"the config files hold revision {before}, the applied revision is {revision}" in shown["message"], shown
        assert "superseded these files" in shown["message"], shown
        assert replica.drift_metric() == 1.0
        # An old replica restarting would not revert it: its reload (not an explicit one) keeps serving the applied revision.
        replica.write(changed)
        wait_for(lambda: not first.status()["replicas"]["leading"], "the leader to step down once done", WAIT_S)
        response = replica.reload()
        assert response.status_code == 200 and response.json()["result"] == "unchanged", response.text
        assert replica.status()["drift"]["drift"] is False and replica.drift_metric() == 0.0


def test_an_old_replica_restarting_does_not_revert_a_newer_config(database: str, tmp_path: Path, start_replica: StartReplica) -> None:
    replicas = start_replicas(start_replica, tmp_path, BASE, ARTICLES, count=2)
    old = replicas[1].status()["revision"]
    replicas[0].write(BASE.replace(*NEW_VECTOR))
    assert replicas[0].reload().json()["result"] == "applied"
    new = wait_for(functools.partial(settled_on, replicas[0], old, "Article", "title2"), "the change applied", WAIT_S)["revision"]

    # A third replica starts with the old files (a pod of the previous rollout): it serves the newer revision.
    late = start_replica("old", BASE)
    now = wait_for(lambda: settled(late), "the old replica settled", WAIT_S)
    assert now["revision"] == new and now["lastReload"]["trigger"] == "start", now["lastReload"]
    assert now["drift"]["drift"] is True and now["drift"]["filesRevision"] == old and now["drift"]["appliedRevision"] == new, now["drift"]
    assert "title2" in late.schema("Article")["vectorConfig"]
    assert ledger_target(database)[0] == new and applied_document(database)["revision"] == new

    # An explicit reload on it applies its files again (a deliberate roll-back): refused here, as it would drop the vector.
    wait_for(lambda: not replicas[0].status()["replicas"]["leading"], "the leader to step down once done", WAIT_S)
    response = late.reload()
    assert response.status_code == 409 and response.json()["result"] == "refused", response.text  # removing a vector drops data
    assert ledger_target(database)[0] == new
    assert "refused" in late.status()["drift"]["message"]


# -- two configs at once -------------------------------------------------------------------


def test_two_replicas_given_two_different_configs_at_once_apply_one_plan_never_a_mix(database: str, tmp_path: Path, start_replica: StartReplica) -> None:
    replicas = start_replicas(start_replica, tmp_path, BASE, ARTICLES)
    added = {"alpha": replicas[0], "beta": replicas[1]}
    for name, replica in added.items():
        replica.write(BASE.replace("      - {name: body, type: TEXT}\n", f"      - {{name: body, type: TEXT}}\n      - {{name: {name}, type: TEXT}}\n"))
    outcomes: dict[str, httpx.Response] = {}
    threads = [threading.Thread(target=lambda n=n, r=r: outcomes.__setitem__(n, r.reload())) for n, r in added.items()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=WAIT_S)
    assert {n: r.status_code for n, r in outcomes.items()}.keys() == set(added), outcomes

    # Each ends applied or refused (one that waited for the leader is applied after it: then it would drop the other's property).
    final = {n: wait_for(functools.partial(settled, r), f"{n}'s reload to end", WAIT_S)["lastReload"]["result"] for n, r in added.items()}
    assert sorted(final.values()) == ["applied", "refused"], final
    (winner,) = [n for n, result in final.items() if result == "applied"]
    (loser,) = [n for n, result in final.items() if result == "refused"]

    applied = applied_document(database)
    (article,) = applied["spec"]["collections"]
    assert [p["name"] for p in article["properties"]] == ["title", "body", winner]
    for replica in replicas:
        wait_for(functools.partial(lambda r: [p["name"] for p in r.schema("Article")["properties"]] == ["title", "body", winner], replica), "the winner on every replica", WAIT_S)
        assert settled(replica)
    assert {r.status()["revision"] for r in replicas} == {applied["revision"]}
    shown = added[loser].status()["drift"]
    assert shown["drift"] is True and shown["appliedRevision"] == applied["revision"] and "refused" in shown["message"], shown
    assert added[winner].status()["drift"]["drift"] is False
    assert [r.drift_metric() for r in (added[winner], added[loser], replicas[2])] == [0.0, 1.0, 1.0]


# -- the leader dies during a re-vectorization ---------------------------------------------


@pytest.fixture
def jina(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[FakeJina, str]]:
    monkeypatch.setenv("JINAAI_APIKEY", "test-key")  # read by the server children
    fake = FakeJina()
    with serving(fake.app) as url:
        yield fake, url
    fake.resume()


def staged_ids(url: str) -> set[str]:
    with psycopg.connect(url) as db:
        ((tag,),) = db.execute("SELECT tag FROM searchd_collections WHERE name = 'Doc'").fetchall()
        ((staging,),) = db.execute("SELECT tag FROM searchd_vector_tables WHERE collection = 'Doc' AND name LIKE 'text#%%'").fetchall()
        return {row[0] for row in db.execute(f"SELECT o.id FROM searchd_v{staging} AS v JOIN searchd_o{tag} AS o ON o.doc = v.doc")}


def test_the_leader_killed_during_a_revectorization_is_taken_over_and_no_query_fails(
    database: str, tmp_path: Path, start_replica: StartReplica, jina: tuple[FakeJina, str]
) -> None:
    fake, url = jina
    text = JINA.format(url=url)
    replicas = start_replicas(start_replica, tmp_path, text, DOCS)
    leader, others = replicas[0], replicas[1:]
    # Vector searches too, filtered and not: a replica that has not swapped yet answers them from its revision's index.
    queries = [
        '{ Get { Doc(bm25: {query: "doc"}, limit: 3) { title } } }',
        "{ Get { Doc(limit: 3) { title } } }",
        '{ Get { Doc(nearText: {concepts: ["doc 7 on t0007q"]}, limit: 3) { title } } }',
        '{ Get { Doc(nearText: {concepts: ["doc 7 on t0007q"]}, where: {path: ["id"], operator: Equal, valueText: "' + DOCS[7]["id"] + '"}) { title } } }',
    ]
    with QueryLoad(replicas[1:], queries) as load:
        fake.latency = 0.02
        leader.write(text.replace("dimensions: 256", "dimensions: 128"))
        response = leader.reload()
        assert response.status_code == 200 and response.json()["plan"]["revectorize"] == [{"collection": "Doc", "vector": "text"}], response.text
        serving = response.json()["revision"]  # what serves meanwhile (the old vectors), not the target
        wait_for(lambda: 0 < next((r["done"] for r in leader.status()["rebuilds"] if r["state"] == "running"), 0) < len(DOCS), "a step staged", WAIT_S)
        fake.pause()  # the re-vectorization stops half-way, for as long as it takes to kill its leader
        os.kill(leader.server.process.pid, signal.SIGKILL)
        assert leader.server.process.wait(timeout=WAIT_S) == -signal.SIGKILL
        staged = staged_ids(database)
        assert 0 < len(staged) < len(DOCS), len(staged)
        killed_at = len(fake.requests)
        fake.latency = 0.0
        fake.resume()

        # Another replica takes the lock, resumes the reload (embedding only what was not staged) and promotes it; both swap.
        def swapped(replica: Replica) -> bool:
            return bool(settled(replica)) and replica.schema("Doc")["vectorConfig"]["text"]["vectorizer"]["text2vec-jinaai"]["dimensions"] == 128

        for replica in others:
            wait_for(functools.partial(swapped, replica), "the re-vectorized vector on a surviving replica", WAIT_S)
    assert load.failures == [], load.failures[:5]
    revision, finished = ledger_target(database)
    assert finished is not None and revision != serving
    takers = [r for r in others if r.status()["lastReload"]["trigger"] == "takeover"]
    assert len(takers) == 1, [r.status()["lastReload"] for r in others]
    assert {r.status()["revision"] for r in others} == {applied_document(database)["revision"]}

    titles: dict[str, str] = {d["id"]: d["properties"]["title"] for d in DOCS}
    resent = [t for inputs in passage_inputs(fake.requests[killed_at:], 128) for t in inputs]
    assert not set(resent) & {titles[i] for i in staged}, "the new leader embedded objects the dead one had staged"
    # Only what was not staged (less, when the dead leader's embedding cache already held some).
    assert resent and set(resent) <= {t for i, t in titles.items() if i not in staged}
    for replica in others:
        for obj in DOCS[::97]:
            got = replica.http.get(f"/v1/objects/Doc/{obj['id']}", params={"include": "vector"}).json()
            np.testing.assert_allclose(got["vector"], expected_jina(obj["properties"]["title"], 128), atol=1e-5, err_msg=obj["id"])


# -- pure parts ---------------------------------------------------------------------------------


def target(revision: str, finished: float | None = 1.0) -> Target:
    return Target(revision, b"", (), "host:1", 0.0, finished)


@pytest.mark.parametrize(
    ("files", "forced", "seen", "expected"),
    [
        pytest.param("a", False, Ledger(None, frozenset(), None), "files", id="no-target-yet"),
        pytest.param("b", False, Ledger(target("b"), frozenset({"a", "b"}), "b"), "files", id="the-target"),
        pytest.param("c", False, Ledger(target("b"), frozenset({"a", "b"}), "b"), "files", id="never-applied"),
        pytest.param("a", False, Ledger(target("b"), frozenset({"a", "b"}), "b"), "target", id="superseded"),
        pytest.param("a", True, Ledger(target("b"), frozenset({"a", "b"}), "b"), "files", id="superseded-but-explicit"),
        pytest.param("a", False, Ledger(target("b", None), frozenset({"a", "b"}), "a"), "target", id="superseded-unfinished"),
    ],
)
def test_which_files_win(files: str, forced: bool, seen: Ledger, expected: str) -> None:
    assert decide(files, forced, seen) == expected


def test_drift_on_sqlite_shows_a_config_that_does_not_serve(client_factory: ClientFactory, write_config: Any) -> None:
    config = write_config(BASE)
    http = client_factory(config)
    assert http.get("/v1/config/status").json()["drift"]["drift"] is False
    config.write_text(BASE.replace("type: TEXT}\n    vectors", "type: TEXTS}\n    vectors"), encoding="utf-8")
    assert http.post("/v1/config/reload").status_code == 422
    shown = http.get("/v1/config/status").json()["drift"]
    assert shown["drift"] is True and shown["filesRevision"] is None and "cannot be loaded" in shown["message"], shown
    assert "searchd_config_drift 1.0" in http.get("/metrics").text
    config.write_text(BASE, encoding="utf-8")
    assert http.post("/v1/config/reload").json()["result"] == "unchanged"
    assert http.get("/v1/config/status").json()["drift"] == drift(shown["appliedRevision"], shown["appliedRevision"], None, [])
    assert "searchd_config_drift 0.0" in http.get("/metrics").text


def test_the_leader_lock_is_one_replicas_at_a_time_and_ends_with_its_session(database: str) -> None:
    with PostgresStore(database, None) as store:  # the tables the ledger reads beside its own
        store.save_applied(Spec())
    first, second = ReloadLedger(database), ReloadLedger(database)
    try:
        assert first.try_lead() and first.try_lead()  # taken, and still this replica's
        assert not second.try_lead()
        first.step_down()
        assert second.try_lead() and not first.try_lead()
        # The holder's session ends (a SIGKILL, a dropped connection): the lock goes with it, and the holder notices.
        with psycopg.connect(database, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND objid = %s", (LEADER_LOCK,))
        assert not second.still_leading() and not second.held
        assert wait_for(first.try_lead, "the lock to be free once its session ended", WAIT_S)

        first.begin(new_applied(Spec()), b"{}", [("Doc", "text")], "host:1")
        seen = second.read()
        assert seen.target is not None and seen.target.finished is None and seen.target.revectorize == (("Doc", "text"),)
        assert seen.history == {seen.target.revision} and seen.applied_revision == store_revision(database)
        first.finish(seen.target.revision)
        done = second.read().target
        assert done is not None and done.finished is not None
    finally:
        first.close()
        second.close()


def test_a_shared_store_refuses_vectors_made_for_other_settings_than_a_promotion_recorded(database: str, tmp_path: Path) -> None:
    ids = [f"60000000-0000-4000-8000-{i:012d}" for i in range(4)]

    def obj(n: int, **vectors: list[float]) -> StoredObject:
        return StoredObject("Doc", ids[n], {"n": n}, {k: np.asarray(v, dtype=np.float32) for k, v in vectors.items()}, n + 1, n + 1)

    old, new = {"Doc": {"v": "s-old"}}, {"Doc": {"v": "s-new"}}
    with PostgresStore(database, tmp_path / "leader") as leader, PostgresStore(database, tmp_path / "other") as other:
        leader.put_many([obj(0, v=[1, 0, 0, 0])], old)  # a table a write made records nothing: any writer may write it
        assert leader.vector_stamps("Doc") == {}
        leader.put_vectors_if_unchanged("Doc", "v#s-new", [(ids[0], 1, np.asarray([0, 1], dtype=np.float32))])
        leader.promote_vectors("Doc", "v#s-new", "v")
        assert leader.vector_stamps("Doc") == {"v": "s-new"}
        with psycopg.connect(database) as db:
            assert db.execute("SELECT name, stamp FROM searchd_vector_tables WHERE collection = 'Doc'").fetchall() == [("v", "s-new")]

        # The other replica has not heard of it: its write, embedded for the old settings, is refused and nothing is written.
        with pytest.raises(StaleVectors, match=r"promoted re-vectorized vectors of Doc\.v that this replica does not serve yet"):
            other.put_many([obj(1, v=[1, 1, 0, 0])], old)
        with pytest.raises(StaleVectors):
            other.put_many([obj(1)], {"Doc": {}})  # nor a write that knows no such vector (a new vector promoted)
        assert other.get("Doc", ids[1]) is None
        assert other.vector_stamps("Doc") == {"v": "s-new"}  # read under the write lock
        other.put_many([obj(1, v=[1, 1])], new)  # embedded again for the promoted settings
        other.put_many([obj(2, v=[2, 2])])  # a restore states nothing: nothing is checked
        found = other.get_many("Doc", ids[:3])
        assert {i: o.vectors["v"].tolist() for i, o in found.items()} == {ids[0]: [0.0, 1.0], ids[1]: [1.0, 1.0], ids[2]: [2.0, 2.0]}

        other.drop_vectors("Doc", "v")  # a dropped vector's record goes with its table
        assert other.vector_stamps("Doc") == {}
        other.put_many([obj(3, v=[3, 3, 3, 3])], old)
        assert other.get("Doc", ids[3]) is not None


def store_revision(url: str) -> str:
    return str(applied_document(url)["revision"])


# -- writes through another replica during a re-vectorization; a failed one ---------------------------------------


NEAR = "query($v: Vector!) { Get { Doc(nearVector: {vector: $v}, limit: 1) { title _additional { id distance } } } }"


def revectorized(replica: Replica, dims: int) -> dict[str, Any]:
    """The replica's settled status once its Doc.text vector has ``dims`` dimensions; empty before."""
    now = settled(replica)
    return now if now and replica.schema("Doc")["vectorConfig"]["text"]["vectorizer"]["text2vec-jinaai"]["dimensions"] == dims else {}


def running_rebuild(replica: Replica) -> bool:
    return any(r["state"] == "running" for r in replica.status()["rebuilds"])


def rebuild_progress(replica: Replica) -> tuple[int, int]:
    """(done, total) of the replica's running rebuild; it must run."""
    (running,) = [r for r in replica.status()["rebuilds"] if r["state"] == "running"]
    return int(running["done"]), int(running["total"])


class GatedJina(FakeJina):
    """The fake provider, where requests for ``dimensions`` (with an input holding ``marker``, if given: what the
    re-vectorization embeds) pass only while the gate allows: the leader's re-vectorization stops half-way while the
    other replica's writes (the old settings) go on."""

    def __init__(self, dimensions: int, marker: str | None = None) -> None:
        super().__init__()
        self.dimensions, self.marker = dimensions, marker
        self.allowed = 1_000_000  # how many more gated requests are answered before the gate holds the rest
        self.gate = threading.Condition()

    def _for_target(self, body: Any) -> bool:
        if not isinstance(body, dict) or body.get("dimensions") != self.dimensions:
            return False
        return self.marker is None or any(self.marker in str(text) for text in body.get("input") or ())

    def _embeddings(self, call: Any) -> Any:
        if self._for_target(call.body):
            with self.gate:
                assert self.gate.wait_for(lambda: self.allowed > 0, timeout=WAIT_S), "the gate stayed shut"
                self.allowed -= 1
        return super()._embeddings(call)

    def hold_after(self, count: int) -> None:
        with self.gate:
            self.allowed = count

    def open(self) -> None:
        with self.gate:
            self.allowed = 1_000_000
            self.gate.notify_all()

    def gated(self) -> int:
        return len(passage_inputs([r for r in self.requests if self._for_target(r.body)], self.dimensions))


def test_writes_through_another_replica_during_a_revectorization_get_the_new_vector(
    database: str, tmp_path: Path, start_replica: StartReplica, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JINAAI_APIKEY", "test-key")
    fake = GatedJina(128)
    with serving(fake.app) as url:
        text = JINA.format(url=url)
        docs = DOCS
        leader, writer = start_replicas(start_replica, tmp_path, text, docs, count=2)
        written: dict[str, str] = {}  # id -> title, of every object written through the non-leader replica

        def write(object_id: str, title: str) -> None:
            response = writer.http.put(f"/v1/objects/Doc/{object_id}", json={"class": "Doc", "id": object_id, "properties": {"title": title}})
            assert response.status_code == 200, response.text
            written[object_id] = title

        for n in range(5):
            write(f"40000000-0000-4000-8000-{n:012d}", f"written before {n} b{n:04d}x")
        requests = len(docs) // 4  # 4 objects a request, in steps of 256 objects: all but the last request are answered,
        fake.hold_after(requests - 1)  # so the steps without it are staged and the one with it waits
        leader.write(text.replace("dimensions: 256", "dimensions: 128"))
        response = leader.reload()
        assert response.status_code == 200 and response.json()["plan"]["revectorize"] == [{"collection": "Doc", "vector": "text"}], response.text
        wait_for(lambda: fake.gated() == requests, "the re-vectorization to wait for its last request", WAIT_S)
        # The answered steps are stored a moment after their last answer: wait until every step but the held one is (the
        # progress then counts every object but that step's, a figure no other moment shows).
        _, total = rebuild_progress(leader)  # the objects written before the reload count too
        steps = [min(EMBED_BATCH, total - start) for start in range(0, total, EMBED_BATCH)]
        assert len(steps) <= STEPS_IN_FLIGHT  # all of them embedded at once: only the held one waits
        wait_for(lambda: rebuild_progress(leader)[0] in {total - s for s in steps}, "every step without the held request staged", WAIT_S)
        staged = staged_ids(database)
        assert 0 < len(staged) < len(docs), len(staged)
        for n in range(5, 25):
            write(f"40000000-0000-4000-8000-{n:012d}", f"written during {n} d{n:04d}x")
        # Replaced objects: some the leader staged already (their staged vector is of the old content), some not yet.
        replaced = [d["id"] for d in docs if d["id"] in staged][:10] + [d["id"] for d in docs if d["id"] not in staged][:10]
        for n, object_id in enumerate(replaced):
            write(object_id, f"replaced during {n} r{n:04d}x")
        fake.open()
        for replica in (leader, writer):
            wait_for(functools.partial(revectorized, replica, 128), "the re-vectorized vector on both replicas", WAIT_S)
        for n in range(1000, 1005):
            write(f"40000000-0000-4000-8000-{n:012d}", f"written after {n} a{n:04d}x")

        for replica in (leader, writer):
            for object_id, title in written.items():
                expected = expected_jina(title, 128)
                got = replica.http.get(f"/v1/objects/Doc/{object_id}", params={"include": "vector"}).json()
                np.testing.assert_allclose(got.get("vector", []), expected, atol=1e-5, err_msg=f"{object_id} {title} on {replica.server.url}")
                # The replica's index holds it too: a search with that vector finds the object first.
                body = replica.http.post("/v1/graphql", json={"query": NEAR, "variables": {"v": expected.tolist()}}).json()
                (hit,) = body["data"]["Get"]["Doc"]
                assert (hit["_additional"]["id"], hit["title"]) == (object_id, title) and hit["_additional"]["distance"] == pytest.approx(0.0, abs=1e-5)


def leader_lock_held(url: str) -> bool:
    with psycopg.connect(url) as db:
        return db.execute("SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND objid = %s AND granted", (LEADER_LOCK,)).fetchone() is not None


def test_a_failed_revectorization_lets_go_of_the_leader_lock_and_every_replica_reports_it(
    database: str, tmp_path: Path, start_replica: StartReplica, jina: tuple[FakeJina, str]
) -> None:
    fake, url = jina
    text = JINA.format(url=url)
    leader, other = start_replicas(start_replica, tmp_path, text, DOCS[:40], count=2)
    probe = DOCS[3]
    old_vector = leader.http.get(f"/v1/objects/Doc/{probe['id']}", params={"include": "vector"}).json()["vector"]
    fake.fail_next(400, times=1_000_000)  # the provider refuses every request from now on
    leader.write(text.replace("dimensions: 256", "dimensions: 128"))
    response = leader.reload()
    assert response.status_code == 200 and response.json()["plan"]["revectorize"] == [{"collection": "Doc", "vector": "text"}], response.text

    def failed(replica: Replica) -> dict[str, Any]:
        rebuilds = [r for r in replica.status()["rebuilds"] if r["target"] == "text"]
        return next((r for r in rebuilds if r["state"] == "failed"), {})

    def reported(replica: Replica) -> str:
        target = replica.status()["replicas"]["target"]
        return str(target["failed"] or "") if target is not None and target["finished"] is None else ""

    report = wait_for(functools.partial(failed, leader), "the rebuild to fail on the leader", WAIT_S)
    assert "400" in (report.get("error") or ""), report
    wait_for(lambda: not leader_lock_held(database), "the leader lock to be released", WAIT_S)
    for replica in (leader, other):
        message = wait_for(functools.partial(reported, replica), f"the failure reported on {replica.server.url}", WAIT_S)
        assert message.startswith("Doc.text (re-vectorize): ") and "400" in message, message
        assert replica.schema("Doc")["vectorConfig"]["text"]["vectorizer"]["text2vec-jinaai"]["dimensions"] == 256
        got = replica.http.get(f"/v1/objects/Doc/{probe['id']}", params={"include": "vector"}).json()["vector"]
        np.testing.assert_allclose(got, old_vector, atol=1e-6)
        body = replica.http.post("/v1/graphql", json={"query": NEAR, "variables": {"v": old_vector}}).json()
        assert [h["_additional"]["id"] for h in body["data"]["Get"]["Doc"]] == [probe["id"]], body  # the old index serves
    # The lock is free: the other replica leads the next attempt, once the provider works again, and both swap.
    fake.reset()
    other.write(text.replace("dimensions: 256", "dimensions: 128"))
    response = other.reload()
    assert response.status_code == 200 and response.json()["plan"]["revectorize"] == [{"collection": "Doc", "vector": "text"}], response.text
    for replica in (leader, other):
        wait_for(functools.partial(revectorized, replica, 128), "the re-vectorized vector on both replicas", WAIT_S)
        assert replica.status()["replicas"]["target"]["failed"] is None
        got = replica.http.get(f"/v1/objects/Doc/{probe['id']}", params={"include": "vector"}).json()["vector"]
        np.testing.assert_allclose(got, expected_jina(probe["properties"]["title"], 128), atol=1e-5)


# -- the last window: another replica promoted, this one has not swapped yet ------------------------------------


FOUND = "query($v: Vector!) { Get { Doc(nearVector: {vector: $v}, limit: 1%s) { title _additional { id distance } } } }"


def nearest_is(replica: Replica, vector: np.ndarray, object_id: str) -> bool:
    body = replica.http.post("/v1/graphql", json={"query": NEAR, "variables": {"v": vector.tolist()}}).json()
    assert not body.get("errors"), body
    return [h["_additional"]["id"] for h in body["data"]["Get"]["Doc"]] == [object_id]


def promoted_at(url: str, after: int) -> bool:
    """Whether a change to the whole of Doc (a promotion) was logged after change ``after``."""
    with psycopg.connect(url) as db:
        return db.execute("SELECT 1 FROM searchd_changes WHERE collection = 'Doc' AND doc = -1 AND seq > %s", (after,)).fetchone() is not None


@dataclass(frozen=True)
class Change:
    """A re-vectorization: the config edit, and the vectors it makes (from ``field``, at ``dimensions``)."""

    edit: tuple[str, str]
    dimensions: int
    field: str

    def vector(self, obj: dict[str, Any]) -> np.ndarray:
        return expected_jina(obj["properties"][self.field], self.dimensions)

    def served(self, replica: Replica) -> dict[str, Any]:
        """The replica's settled status once it serves the change; empty before."""
        now = settled(replica)
        shown = replica.schema("Doc")["vectorConfig"]["text"]["vectorizer"]["text2vec-jinaai"] if now else {}
        return now if shown and shown["dimensions"] == self.dimensions and shown["properties"] == [self.field] else {}


NOTED = "note "  # what the notes (embedded once the vector reads them instead of the titles) hold, and the titles do not


def noted(i: int, object_id: str, title: str) -> dict[str, Any]:
    return {"class": "Doc", "id": object_id, "properties": {"title": title, "note": f"{NOTED}{i} of {title} n{i:04d}y"}}


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(Change(("dimensions: 256", "dimensions: 128"), 128, "title"), id="other-dimensions"),
        # The same dimensions, other vectors: only what the database records tells them apart.
        pytest.param(Change(("textFields: [title]", "textFields: [note]"), 256, "note"), id="other-field"),
    ],
)
def test_a_replica_that_has_not_swapped_yet_answers_from_its_revision_and_embeds_a_write_again_for_the_promoted_one(
    database: str, tmp_path: Path, start_replica: StartReplica, monkeypatch: pytest.MonkeyPatch, change: Change
) -> None:
    """The leader promotes re-vectorized vectors while the other replica cannot learn of the new revision: the test
    holds a lock on the ledger's table of revisions, which every replica reads to follow (and nothing else needs).  In
    that window the other replica still answers searches, filtered ones too, from the revision it serves, and a write
    through it is stored with the promoted settings' vector once it has swapped: never the old one."""
    monkeypatch.setenv("JINAAI_APIKEY", "test-key")
    fake = GatedJina(change.dimensions, NOTED if change.field == "note" else None)
    with serving(fake.app) as url:
        text = JINA.format(url=url).replace("type: flat", "type: hnsw")  # its filtered searches scan stored vectors exactly
        text = text.replace("      - {name: title, type: TEXT}\n", "      - {name: title, type: TEXT}\n      - {name: note, type: TEXT}\n")
        docs = [noted(i, d["id"], d["properties"]["title"]) for i, d in enumerate(DOCS[:40])]
        leader, other = start_replicas(start_replica, tmp_path, text, docs, count=2)
        probe = docs[5]
        old = expected_jina(probe["properties"]["title"], 256).tolist()
        fake.hold_after(0)  # the re-vectorization waits at its first request
        leader.write(text.replace(*change.edit))
        response = leader.reload()
        assert response.status_code == 200 and response.json()["plan"]["revectorize"] == [{"collection": "Doc", "vector": "text"}], response.text
        wait_for(lambda: fake.gated() >= 1, "the re-vectorization to wait for the provider", WAIT_S)
        with psycopg.connect(database, autocommit=True) as db:
            ((before,),) = db.execute("SELECT COALESCE(max(seq), 0) FROM searchd_changes").fetchall()
        leads = noted(101, "50000000-0000-4000-8000-000000000002", "written through the leader l0002x")
        window = noted(100, "50000000-0000-4000-8000-000000000001", "written in the window w0001x")
        outcome: dict[str, httpx.Response] = {}

        def write() -> None:
            with httpx.Client(base_url=other.server.url, timeout=WAIT_S, trust_env=False) as http:
                outcome["put"] = http.put(f"/v1/objects/Doc/{window['id']}", json=window)

        writer = threading.Thread(target=write, name="window-write")
        hold = psycopg.connect(database)
        try:
            hold.execute("LOCK TABLE searchd_revisions IN ACCESS EXCLUSIVE MODE")  # no replica reads the ledger until released
            fake.open()
            wait_for(lambda: promoted_at(database, int(before)), "the leader to promote the re-vectorized vectors", WAIT_S)
            log = other.server.stderr_path
            wait_for(lambda: "rebuilt collection Doc from the store" in log.read_text(encoding="utf-8"), "the other replica to hear of the promotion", WAIT_S)
            assert not change.served(other), "the other replica swapped while the ledger was held"

            # Searches on the replica that has not swapped: its served revision's vectors answer them, filtered or not.
            for where in ("", f', where: {{path: ["id"], operator: Equal, valueText: "{probe["id"]}"}}'):
                body = other.http.post("/v1/graphql", json={"query": FOUND % where, "variables": {"v": old}}).json()
                assert not body.get("errors"), body
                (hit,) = body["data"]["Get"]["Doc"]
                assert hit["_additional"]["id"] == probe["id"] and hit["_additional"]["distance"] == pytest.approx(0.0, abs=1e-5), (where, hit)

            # A write through the leader meanwhile: the other replica hears of it, and indexes it once it swaps.
            response = leader.http.put(f"/v1/objects/Doc/{leads['id']}", json=leads)
            assert response.status_code == 200, response.text
            # A write through the other replica: acknowledged once it can be stored with the promoted settings' vector.
            writer.start()
            waits = "waits for this replica to serve"
            wait_for(lambda: "put" in outcome or waits in log.read_text(encoding="utf-8"), "the write to be stored or to wait", WAIT_S)
            # Not acknowledged while this replica cannot swap: stored now, it would keep the old settings' vector for good.
            assert "put" not in outcome, outcome["put"].text
        finally:
            hold.close()  # the lock goes with the session: the replicas follow the new revision
        writer.join(timeout=WAIT_S)
        assert outcome["put"].status_code == 200, outcome["put"].text
        for replica in (leader, other):
            wait_for(functools.partial(change.served, replica), "the re-vectorized vector on both replicas", WAIT_S)
        for replica in (leader, other):
            for written in (window, leads, probe):
                expected = change.vector(written)
                got = replica.http.get(f"/v1/objects/Doc/{written['id']}", params={"include": "vector"}).json()
                np.testing.assert_allclose(got.get("vector", []), expected, atol=1e-5, err_msg=f"{written['id']} on {replica.server.url}")
                # The replica's index holds it too, once the change log reached it (a write through the other one).
                wait_for(functools.partial(nearest_is, replica, expected, written["id"]), f"{written['id']} in the index of {replica.server.url}", WAIT_S)
