"""Many `searchd serve` processes on one PostgreSQL database (issue #16, replicas): real processes, one database.

Each replica has its own data directory (its saved indexes) and follows the others' writes through the
store's change log (searchd.follower).  Every check waits on a condition with a deadline, never a sleep:

- three replicas, writers on all three at once and readers on all three: every acknowledged object is then
  found through every replica by id, by nearVector of its own vector, by a where filter and by bm25; an update and
  a delete made through one replica reach the others;
- a replica SIGKILLed mid-import and restarted loses nothing, catches up (ready) and loads its saved indexes
  instead of rebuilding them (its log and its rebuild counter say so);
- /v1/nodes lists the live replicas with the change-log sequence each has applied; a killed one drops out
  once its heartbeat expires (a short replicaExpirySeconds in the config, not a sleep);
- a replica that stopped is the slower one: the other's trim spares what it needs, so it catches up on restart;
  one away longer than the expiry finds the log trimmed and rebuilds, and still finds everything.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import threading
import traceback
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from searchd.storage.pgreplicas import HEAD
from tests.conftest import wait_for
from tests.pgcluster import Cluster
from tests.test_e2e_server import HTTP_TIMEOUT_S, Server, child_env, free_port, searchd_module, wait_ready

DIMS = 16
ID_NAMESPACE = uuid.UUID("0b6f3c1e-8a54-4a43-9d3f-3a7f6e2c9d41")
CATCH_UP_S = 60.0  # generous: a replica a second behind is the norm, and the machine is shared
SEARCHES_PER_QUERY = 90  # under server.limits.maxSearchesPerQuery (100)
KINDS = {"v": "nearVector", "w": "nearVector with a where filter", "b": "bm25"}

CONFIG = """\
server:
  host: 127.0.0.1
  reload: {{watch: false}}
  storage: {{backend: postgres, url: "${{REPLICAS_DATABASE_URL}}", heartbeatSeconds: 0.2, replicaExpirySeconds: {expiry}}}
collections:
  - name: Article
    properties:
      - {{name: title, type: TEXT}}
      - {{name: serial, type: INT}}
    vectors:
      text:
        vectorizer: {{module: none, dimensions: {dims}}}
        index: {{type: flat, distance: cosine}}
"""


@dataclass
class Article:
    id: str
    serial: int
    token: str  # a title word no other object has
    vector: list[float]

    def payload(self) -> dict[str, Any]:
        return {"class": "Article", "id": self.id, "properties": {"title": f"replicated {self.token}", "serial": self.serial}, "vector": self.vector}


def article(serial: int, rng: random.Random) -> Article:
    object_id = str(uuid.uuid5(ID_NAMESPACE, f"article-{serial}"))
    return Article(object_id, serial, f"tok{uuid.UUID(object_id).hex[:12]}", [rng.uniform(-1, 1) for _ in range(DIMS)])


@dataclass
class Replicas:
    """Starts `searchd serve` processes on one database, each on a data directory of its own (kept across restarts)."""

    root: Path
    url: str
    expiry_s: float
    servers: list[Server] = field(default_factory=list)

    def config(self) -> Path:
        path = self.root / "config" / "searchd.yaml"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(CONFIG.format(expiry=self.expiry_s, dims=DIMS), encoding="utf-8")
        return path

    def start(self, name: str, ready: bool = True) -> Server:
        number = len(self.servers)
        stdout, stderr = self.root / f"{name}-{number}.stdout", self.root / f"{name}-{number}.stderr"
        port = free_port()
        args = [*searchd_module(), "serve", str(self.config()), "--data", str(self.root / name), "--host", "127.0.0.1", "--port", str(port), "--grpc-port", "0"]
        out, err = open(stdout, "wb"), open(stderr, "wb")  # noqa: SIM115 (the server process holds them)
        process = subprocess.Popen(args, stdout=out, stderr=err, stdin=subprocess.DEVNULL, cwd=self.root, env={**child_env(), "REPLICAS_DATABASE_URL": self.url})
        server = Server(process, port, stdout, stderr, [out, err])
        self.servers.append(server)
        if ready:
            wait_ready(server, CATCH_UP_S)
        return server

    def stop_all(self) -> None:
        for server in self.servers:
            server.stop()


@pytest.fixture
def replicas(pg_cluster: Cluster, tmp_path: Path) -> Iterator[Callable[..., Replicas]]:
    made: list[tuple[Replicas, str]] = []

    def make(expiry_s: float = 600.0) -> Replicas:
        database = pg_cluster.new_database()
        group = Replicas(tmp_path, pg_cluster.url(database), expiry_s)
        made.append((group, database))
        return group

    yield make
    for group, database in made:
        group.stop_all()
        pg_cluster.drop_database(database)


def log_of(server: Server) -> str:
    """The server's whole log (Server.logs keeps only its end, for failure messages)."""
    return server.stderr_path.read_text(encoding="utf-8", errors="replace")


def http(server: Server) -> httpx.Client:
    return httpx.Client(base_url=server.url, timeout=HTTP_TIMEOUT_S, trust_env=False)


def write_batch(client: httpx.Client, articles: list[Article]) -> list[Article]:
    """The articles the server acknowledged (HTTP 200 and each one's own SUCCESS)."""
    response = client.post("/v1/batch/objects", json={"objects": [a.payload() for a in articles]})
    assert response.status_code == 200, response.text
    results = response.json()
    return [a for a, r in zip(articles, results) if (r.get("result") or {}).get("status") == "SUCCESS" and r.get("id") == a.id]


class Writer(threading.Thread):
    """Writes batches through one replica until its serials run out or it is stopped; records what was acknowledged."""

    def __init__(self, server: Server, serials: range, batch: int, seed: int) -> None:
        super().__init__(name=f"writer-{server.port}", daemon=True)
        self.server, self.serials, self.batch = server, serials, batch
        self.rng = random.Random(seed)
        self.acked: list[Article] = []
        self.in_flight: list[Article] = []  # the batch sent when the server was killed: stored or not, never acknowledged
        self.batches = 0
        self.stop_requested = threading.Event()
        self.problems: list[str] = []
        self.lock = threading.Lock()

    def run(self) -> None:
        try:
            with http(self.server) as client:
                numbers = list(self.serials)
                for start in range(0, len(numbers), self.batch):
                    if self.stop_requested.is_set():
                        return
                    articles = [article(n, self.rng) for n in numbers[start : start + self.batch]]
                    try:
                        acked = write_batch(client, articles)
                    except httpx.TransportError:
                        self.in_flight = articles  # it may have committed before it was killed
                        return  # the server was killed: what it acknowledged before counts
                    with self.lock:
                        self.acked += acked
                        self.batches += 1
        except BaseException:  # noqa: BLE001 (reported by the test)
            self.problems.append(traceback.format_exc())

    def acknowledged(self) -> list[Article]:
        with self.lock:
            return list(self.acked)


class Reader(threading.Thread):
    """Searches one replica until stopped; every answer must be a 200 without GraphQL errors."""

    def __init__(self, server: Server, seed: int) -> None:
        super().__init__(name=f"reader-{server.port}", daemon=True)
        self.server = server
        self.rng = random.Random(seed)
        self.stop_requested = threading.Event()
        self.answered = 0
        self.failures: list[str] = []

    def run(self) -> None:
        with http(self.server) as client:
            while not self.stop_requested.is_set():
                vector = [self.rng.uniform(-1, 1) for _ in range(DIMS)]
                query = (
                    f"{{ Get {{ v: Article(nearVector: {{vector: {json.dumps(vector)}}}, limit: 5) {{ serial }} "
                    'k: Article(bm25: {query: "replicated"}, limit: 5) { serial } } }'
                )
                try:
                    response = client.post("/v1/graphql", json={"query": query})
                except httpx.TransportError as exc:
                    self.failures.append(repr(exc))
                    return
                if response.status_code != 200 or response.json().get("errors"):
                    self.failures.append(f"HTTP {response.status_code}: {response.text[:300]}")
                self.answered += 1


def graphql(client: httpx.Client, query: str) -> dict[str, Any]:
    response = client.post("/v1/graphql", json={"query": query})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert not body.get("errors"), body["errors"]
    data: dict[str, Any] = body["data"]
    return data


def missing_through(server: Server, articles: list[Article], gone: Sequence[Article] = (), everything: bool = True, unacknowledged: int = 0) -> list[str]:
    """What this replica does not (yet) answer right about ``articles`` (and the deleted ``gone``): empty when all is well.

    ``everything``: the articles are all the collection holds (the Aggregate count must match), but for up to
    ``unacknowledged`` more: a batch a killed server may have committed without answering.
    """
    problems: list[str] = []
    with http(server) as client:
        count = graphql(client, "{ Aggregate { Article { meta { count } } } }")["Aggregate"]["Article"][0]["meta"]["count"]
        if (not len(articles) <= count <= len(articles) + unacknowledged) if everything else count < len(articles):
            return [f"{server.url}: Aggregate count {count}, expected {len(articles)}" + (f" to {len(articles) + unacknowledged}" if unacknowledged else "")]
        for start in range(0, len(articles), SEARCHES_PER_QUERY // 3):
            chunk = articles[start : start + SEARCHES_PER_QUERY // 3]
            parts = []
            for i, a in enumerate(chunk):
                vector = json.dumps(a.vector)
                parts.append(f"v{i}: Article(nearVector: {{vector: {vector}}}, limit: 1) {{ _additional {{ id distance }} }}")
                parts.append(f'w{i}: Article(nearVector: {{vector: {vector}}}, where: {{path: ["serial"], operator: Equal, valueInt: {a.serial}}}, limit: 1) {{ _additional {{ id }} }}')
                parts.append(f'b{i}: Article(bm25: {{query: "{a.token}", properties: ["title"]}}, limit: 1) {{ _additional {{ id }} }}')
            found = graphql(client, "{ Get { " + " ".join(parts) + " } }")["Get"]
            for i, a in enumerate(chunk):
                for kind in ("v", "w", "b"):
                    hits = found[f"{kind}{i}"]
                    if not hits or hits[0]["_additional"]["id"] != a.id:
                        problems.append(f"{server.url}: {a.id} (serial {a.serial}) not found by {KINDS[kind]}: {hits}")
        for a in articles[:: max(1, len(articles) // 50)]:  # by id: a read of the store, the same for every replica
            if client.get(f"/v1/objects/Article/{a.id}").status_code != 200:
                problems.append(f"{server.url}: GET {a.id} is not 200")
        for a in gone:
            hits = graphql(client, f'{{ Get {{ Article(bm25: {{query: "{a.token}"}}) {{ serial }} }} }}')["Get"]["Article"]
            if hits:
                problems.append(f"{server.url}: deleted {a.id} still found by bm25: {hits}")
    return problems


def wait_all_found(servers: list[Server], articles: list[Article], gone: Sequence[Article] = (), unacknowledged: int = 0) -> None:
    for server in servers:
        last: list[str] = []

        def found(server: Server = server, last: list[str] = last) -> bool:
            last[:] = missing_through(server, articles, gone, unacknowledged=unacknowledged)
            return not last

        try:
            wait_for(found, f"every acknowledged object through {server.url}", CATCH_UP_S)
        except pytest.fail.Exception:
            pytest.fail("\n".join(last[:20]) + "\n" + server.logs())


def nodes(server: Server) -> list[dict[str, Any]]:
    with http(server) as client:
        response = client.get("/v1/nodes")
    assert response.status_code == 200, response.text
    listed: list[dict[str, Any]] = response.json()["nodes"]
    return listed


def listed_ports(listed: list[dict[str, Any]]) -> list[int]:
    """The HTTP ports listed; 0 for a replica whose heartbeat went out before it said where it serves (it has no port yet)."""
    return sorted(int(n["address"].rsplit(":", 1)[1]) if ":" in n["address"] else 0 for n in listed)


def head(url: str) -> int:
    with psycopg.connect(url) as db:
        row = db.execute(HEAD).fetchone()  # the last write, whether or not a trim has emptied the log since
    return int(row[0]) if row else 0


def metric(server: Server, name: str) -> float:
    with http(server) as client:
        text = client.get("/metrics").text
    values = [line.split()[-1] for line in text.splitlines() if line.startswith(name + " ")]
    assert values, f"no {name} in /metrics"
    return float(values[0])


# -- 1. writers and readers on three replicas --------------------------------------


def test_three_replicas_find_every_acknowledged_object_written_through_any_of_them(replicas: Callable[..., Replicas]) -> None:
    group = replicas()
    servers = [group.start(name) for name in ("a", "b", "c")]
    readers = [Reader(s, seed) for seed, s in enumerate(servers)]
    writers = [Writer(s, range(k * 1000, k * 1000 + 80), 8, seed=k) for k, s in enumerate(servers)]
    for thread in (*readers, *writers):
        thread.start()
    for writer in writers:
        writer.join(timeout=120)
        assert not writer.is_alive() and not writer.problems, writer.problems
    wait_for(lambda: all(r.answered > 0 for r in readers), "every reader to have an answer")
    for reader in readers:
        reader.stop_requested.set()
        reader.join(timeout=HTTP_TIMEOUT_S)
    assert [r.failures for r in readers] == [[], [], []]
    acked = [a for w in writers for a in w.acknowledged()]
    assert len(acked) == 240  # nothing refused: the writers' ids are all distinct
    wait_all_found(servers, acked)

    # An update through one replica and a delete through another reach every replica.
    changed = acked[0]
    renamed = Article(changed.id, changed.serial, "tokrenamed0001", changed.vector)
    with http(servers[1]) as client:
        assert write_batch(client, [renamed]) == [renamed]
    gone = acked[1:4]
    with http(servers[2]) as client:
        for a in gone:
            assert client.delete(f"/v1/objects/Article/{a.id}").status_code == 204
    remaining = [renamed, *acked[4:]]
    wait_all_found(servers, remaining, [changed, *gone])


# -- 2. kill -9 mid-import, restart ----------------------------------------------------


def test_a_replica_killed_mid_import_loses_nothing_and_catches_up_from_its_saved_indexes(replicas: Callable[..., Replicas]) -> None:
    group = replicas()
    a, b = group.start("a"), group.start("b")
    c = group.start("c")
    rng = random.Random(5)
    with http(a) as client:
        seeded = write_batch(client, [article(n, rng) for n in range(50)])
    wait_all_found([c], seeded)
    c.stop()  # saves its indexes: the restart below loads them
    c = group.start("c")
    assert "loaded Article.text index (50 vectors)" in log_of(c), c.logs()

    through_a = Writer(a, range(1000, 1200), 10, seed=1)
    through_c = Writer(c, range(2000, 2200), 10, seed=2)
    through_a.start()
    through_c.start()
    wait_for(lambda: through_c.batches >= 3, "three batches acknowledged through c")
    c.process.send_signal(signal.SIGKILL)  # mid-import: its writer has batches left
    c.process.wait(timeout=HTTP_TIMEOUT_S)
    through_c.join(timeout=HTTP_TIMEOUT_S)
    assert through_c.batches < 20, "the kill landed after c's import ended"
    written_before = [*seeded, *through_a.acknowledged(), *through_c.acknowledged()]
    restarted = group.start("c")
    # Ready means caught up: everything acknowledged before the restart is found at once, without waiting.
    assert missing_through(restarted, written_before, everything=False) == []
    through_a.join(timeout=120)
    assert not through_a.problems and not through_c.problems, (through_a.problems, through_c.problems)

    acked = [*seeded, *through_a.acknowledged(), *through_c.acknowledged()]
    # The batch c was answering when it was killed may have been committed: stored, but never acknowledged.
    wait_all_found([restarted, a, b], acked, unacknowledged=len(through_c.in_flight))
    logs = log_of(restarted)
    assert "loaded Article.text index (50 vectors)" in logs and "loaded Article BM25 index (50 objects)" in logs, logs[-3000:]
    assert "rebuilt" not in logs, logs[-3000:]
    assert metric(restarted, "searchd_replication_rebuilt_collections_total") == 0


# -- 3. /v1/nodes ------------------------------------------------------------------------


def test_nodes_lists_the_live_replicas_with_their_seq_and_a_killed_one_drops_out(replicas: Callable[..., Replicas]) -> None:
    group = replicas(expiry_s=3.0)
    servers = [group.start(name) for name in ("a", "b", "c")]
    rng = random.Random(9)
    with http(servers[0]) as client:
        acked = write_batch(client, [article(n, rng) for n in range(30)])
    written = head(group.url)

    def caught_up_everywhere() -> bool:
        for server in servers:
            listed = nodes(server)
            if listed_ports(listed) != sorted(s.port for s in servers):
                return False
            if any(n["seq"] < written or n["status"] != "HEALTHY" for n in listed):
                return False
        return True

    wait_for(caught_up_everywhere, "all three replicas listed with the last write's sequence", CATCH_UP_S)
    listed = nodes(servers[1])
    me = [n for n in listed if n["self"]]
    assert len(me) == 1 and me[0]["address"] == f"127.0.0.1:{servers[1].port}" and me[0]["name"].endswith(f":{servers[1].port}")
    assert all(n["lag"] == {"seqs": 0, "seconds": 0.0} for n in me)
    assert metric(servers[1], "searchd_replication_lag_writes") == 0
    assert metric(servers[1], "searchd_replication_applied_seq") >= written
    wait_all_found(servers, acked)

    servers[2].process.send_signal(signal.SIGKILL)
    servers[2].process.wait(timeout=HTTP_TIMEOUT_S)
    alive = sorted(s.port for s in servers[:2])
    wait_for(lambda: all(listed_ports(nodes(s)) == alive for s in servers[:2]), "the killed replica to drop out of /v1/nodes", CATCH_UP_S)


# -- 4. trimming the change log with a slower replica ------------------------------------


def trimmed_to(url: str) -> int:
    with psycopg.connect(url) as db:
        row = db.execute("SELECT value::bigint FROM searchd_meta WHERE key = 'trimmed'").fetchone()
    return int(row[0]) if row else 0


def test_trimming_never_takes_a_change_the_slower_replica_still_needs(replicas: Callable[..., Replicas]) -> None:
    group = replicas()
    a, b = group.start("a"), group.start("b")
    rng = random.Random(11)
    with http(a) as client:
        first = write_batch(client, [article(n, rng) for n in range(40)])
    wait_all_found([b], first)
    b.stop()  # b saves its indexes at the write it has applied, and stays registered: the slower replica
    b_saved = head(group.url)
    with http(a) as client:
        later = write_batch(client, [article(n, rng) for n in range(100, 160)])
    a.stop()  # a saves at a later write and trims the log: only as far as b still allows
    assert trimmed_to(group.url) == b_saved
    b = group.start("b")
    logs = log_of(b)
    assert "loaded Article.text index (40 vectors)" in logs and "60 changed since" in logs and "rebuilt" not in logs, logs[-3000:]
    a = group.start("a")
    wait_all_found([b, a], [*first, *later])


def test_a_replica_away_longer_than_the_expiry_rebuilds_what_the_trim_took(replicas: Callable[..., Replicas]) -> None:
    group = replicas(expiry_s=1.0)
    a, b = group.start("a"), group.start("b")
    rng = random.Random(13)
    with http(a) as client:
        first = write_batch(client, [article(n, rng) for n in range(20)])
    wait_all_found([b], first)
    b.stop()
    with psycopg.connect(group.url, autocommit=True) as db:  # wait until b's claim on the log has expired (the database's clock decides)

        def expired() -> bool:
            row = db.execute("SELECT count(*) FROM searchd_replicas WHERE heartbeat > now() - interval '1 second'").fetchone()
            return row is not None and row[0] == 1  # a alone

        wait_for(expired, "b's heartbeat to expire", CATCH_UP_S)
    with http(a) as client:
        later = write_batch(client, [article(n, rng) for n in range(100, 130)])
    a.stop()
    assert trimmed_to(group.url) == head(group.url)  # nothing spared for b any more
    b = group.start("b")
    assert "rebuilt Article.text flat index from the store: 50 vectors" in log_of(b), b.logs()
    wait_all_found([b], [*first, *later])
