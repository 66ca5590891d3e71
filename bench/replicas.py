#!/usr/bin/env python3
"""Replicas benchmark: nearVector QPS with 1, 2 and 3 searchd replicas on one PostgreSQL against one SQLite process,
import objects/s on each backend, and replication lag under a steady write load, measured in the same run.

    bench/.venv/bin/python bench/replicas.py                   # full: 60,000 objects, 3 rounds
    bench/.venv/bin/python bench/replicas.py --limit 5000 --rounds 1 --seconds 4 --lag-writes 60   # a quick look

Data: WordNet glosses with all-MiniLM-L6-v2 vectors ($SEARCHD_BENCH_DATA, see its README): the first --limit corpus
rows are the objects (gloss, first lemma, bucket = row % 100, the vector, hnsw cosine ef 64 on every system), the
query entries' vectors are the nearVector queries.  PostgreSQL 15 runs throwaway on a Unix socket (as root, owned
by the postgres user); every searchd runs with OMP/OPENBLAS threads = 1, --grpc-port 0, no access log.

Per round (each figure is the median over --rounds; per-round values in the JSON):

1. SQLite: one `searchd serve` imports every object (POST /v1/batch/objects, 500 a batch) -> import objects/s
   (first request until a nearVector of the last object finds it); then --clients client processes (one
   keep-alive connection each) send nearVector queries for --seconds: QPS, p50, and server CPU per query
   (utime+stime of the server process from /proc, divided by the queries answered).
2. PostgreSQL: a fresh database; replica A imports everything (import objects/s as above), replicas B and C start
   on it (each builds its indexes from the database: start -> ready is recorded), and each finds the last object.
   The same client processes then query A alone, then A and B, then A, B and C (clients dealt round-robin over
   the replicas), --seconds each.  CPU per query counts every replica and PostgreSQL (the postmaster's process tree).
3. Replication lag, A and B on PostgreSQL: a writer on A sends batches of 10 objects every 100 ms (the steady load)
   while a probe writes one object at a time to A and, from its acknowledgement, polls B with a nearVector of that
   object's vector, filtered to its id (an exact scan of B's index: the probes' random vectors lie far from every
   gloss, where an approximate search may not reach them), until B returns it: p50 and p99 of that wait over --lag-writes probes.

Ratios: PostgreSQL with n replicas / SQLite (QPS: above 1 is better), import PostgreSQL / SQLite, QPS n / 1 replicas.
On a 2-core machine, more replicas than cores only share the same cores: read the CPU per query beside the QPS.
"""

from __future__ import annotations

import os

os.environ.update({"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "NUMEXPR_NUM_THREADS": "1"})

import argparse
import json
import multiprocessing
import shutil
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from multiprocessing.pool import Pool
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repository: scripts.pgcluster
from common import (
    DEFAULT_DATA,
    VENV_BIN,
    ClientJob,
    ClientResult,
    Dataset,
    Server,
    environment,
    free_port,
    load_dataset,
    log,
    median,
    percentile_ms,
    run_client,
    tree_cpu_s,
    vector_json,
)

from scripts.pgcluster import PG_BIN, Cluster

BATCH = 500
EF = 64
LAG_LOAD_BATCH, LAG_LOAD_EVERY_S = 10, 0.1
READY_S = 900.0


def config(storage: dict[str, Any] | None) -> str:
    server: dict[str, Any] = {"host": "127.0.0.1", "reload": {"watch": False}}
    if storage:
        server["storage"] = storage
    return json.dumps(  # JSON is YAML
        {
            "server": server,
            "collections": [
                {
                    "name": "Gloss",
                    "properties": [{"name": "text", "type": "TEXT"}, {"name": "lemma", "type": "TEXT"}, {"name": "bucket", "type": "INT"}],
                    "vectors": {"v": {"vectorizer": {"module": "none", "dimensions": 384}, "index": {"type": "hnsw", "distance": "cosine", "ef": EF}}},
                }
            ],
        },
        indent=2,
    )


def near_body(vector_text: str, limit: int = 10, only: str | None = None) -> bytes:
    where = f', where: {{path: ["id"], operator: Equal, valueText: "{only}"}}' if only else ""
    query = f"{{ Get {{ Gloss(nearVector: {{vector: {vector_text}}}{where}, limit: {limit}) {{ _additional {{ id }} }} }} }}"
    return json.dumps({"query": query}).encode()


def object_json(object_id: str, entry: dict[str, Any], bucket: int, vector_text: str) -> str:
    properties = json.dumps({"text": entry["gloss"], "lemma": entry["lemmas"][0] if entry.get("lemmas") else "", "bucket": bucket})
    return f'{{"class": "Gloss", "id": "{object_id}", "properties": {properties}, "vector": {vector_text}}}'


def batches(data: Dataset) -> Iterator[tuple[int, bytes]]:
    for start in range(0, data.n, BATCH):
        rows = range(start, min(start + BATCH, data.n))
        objects = ",".join(object_json(data.uuids[i], data.entries[i], i % 100, data.vec_text[i]) for i in rows)
        yield len(rows), f'{{"objects": [{objects}]}}'.encode()


class Replicas:
    """searchd processes on one config, each with its own data directory."""

    def __init__(self, argv: list[str], env: dict[str, str], work: Path, storage: dict[str, Any] | None) -> None:
        self.argv, self.env, self.work = argv, env, work
        work.mkdir(parents=True)
        (work / "searchd.yaml").write_text(config(storage))
        self.servers: list[tuple[Server, str]] = []

    def start(self) -> tuple[Server, str, float]:
        """A new replica, ready; the seconds it took."""
        port = free_port()
        name = f"searchd-{len(self.servers)}"
        argv = [*self.argv, "serve", str(self.work / "searchd.yaml"), "--data", str(self.work / name), "--port", str(port), "--grpc-port", "0"]
        server = Server(name, [*argv, "--no-access-log", "--log-level", "warning"], self.work / f"{name}.log", env=self.env, cwd=self.work)
        url = f"http://127.0.0.1:{port}"
        took = server.wait_http(url + "/v1/.well-known/ready", READY_S)
        self.servers.append((server, url))
        return server, url, took

    def cpu_s(self) -> float:
        return sum(s.cpu_s() for s, _ in self.servers)

    def stop(self) -> None:
        for server, _ in self.servers:
            server.stop()


def http(base: str) -> Any:
    import httpx

    return httpx.Client(base_url=base, timeout=300.0, headers={"Content-Type": "application/json"}, trust_env=False)


def finds(client: Any, vector_text: str, object_id: str, only: bool = False) -> bool:
    """Whether B's nearVector returns the object first; ``only``: among that object alone (an exact scan of B's index).

    The lag probes' vectors are random, far from every gloss: an approximate search from the graph's entry point
    may not reach such an isolated node, which is the index's recall, not the replica's lag.
    """
    response = client.post("/v1/graphql", content=near_body(vector_text, 1, object_id if only else None))
    if response.status_code != 200:
        return False
    hits = (response.json().get("data") or {}).get("Get", {}).get("Gloss") or []
    return bool(hits) and hits[0]["_additional"]["id"] == object_id


def wait_finds(url: str, data: Dataset, row: int, timeout_s: float = 600.0) -> None:
    deadline = time.perf_counter() + timeout_s
    with http(url) as client:
        while not finds(client, data.vec_text[row], data.uuids[row]):
            if time.perf_counter() > deadline:
                raise RuntimeError(f"{url} does not find object {row} after {timeout_s:.0f} s")
            time.sleep(0.02)


def import_all(url: str, data: Dataset) -> float:
    """Objects per second, from the first batch until the last object is searchable."""
    started = time.perf_counter()
    with http(url) as client:
        for count, body in batches(data):
            response = client.post("/v1/batch/objects", content=body)
            results = response.json() if response.status_code == 200 else []
            if len(results) != count or any(r.get("result", {}).get("status") != "SUCCESS" for r in results):
                raise RuntimeError(f"batch import failed: HTTP {response.status_code}: {response.text[:300]}")
    wait_finds(url, data, data.n - 1)
    return data.n / (time.perf_counter() - started)


def query_load(pool: Pool, urls: Sequence[str], data: Dataset, clients: int, seconds: float, cpu: Any) -> dict[str, float]:
    """nearVector from ``clients`` processes dealt over ``urls``: QPS, p50 and server CPU ms per query."""
    requests = [("POST", "/v1/graphql", near_body(t)) for t in data.query_text]
    start_at = time.time() + 2.0
    step = max(1, len(requests) // clients)
    jobs = [ClientJob("http", urls[c % len(urls)], requests, c * step, start_at, seconds, 10**9, b'"errors"') for c in range(clients)]
    pending = pool.map_async(run_client, jobs)
    time.sleep(max(0.0, start_at - time.time()))
    cpu0 = cpu()
    results: list[ClientResult] = pending.get(timeout=seconds + 180)
    used = cpu() - cpu0
    done = sum(len(r.latencies) for r in results)
    elapsed = max(r.ended for r in results) - min(r.began for r in results)
    errors = sum(r.errors for r in results)
    if errors:
        log(f"    {errors} failed queries, e.g. {next(r.first_error for r in results if r.first_error)}")
    return {
        "qps": done / elapsed if elapsed else 0.0,
        "p50_ms": percentile_ms([x for r in results for x in r.latencies], 50),
        "cpu_ms_per_query": 1000.0 * used / done if done else float("nan"),
        "errors": float(errors),
    }


def lag(a: str, b: str, writes: int, seed: int) -> dict[str, float]:
    """Seconds from an acknowledged write on A until B's nearVector finds it, under a steady write load on A."""
    rng = np.random.default_rng(seed)
    stop = threading.Event()
    load_errors: list[str] = []

    def steady_load() -> None:
        with http(a) as client:
            n = 0
            while not stop.wait(LAG_LOAD_EVERY_S):
                objects = []
                for _ in range(LAG_LOAD_BATCH):
                    vector = rng.standard_normal(384).astype(np.float32)
                    n += 1
                    objects.append(object_json(str(uuid.uuid4()), {"gloss": f"load {n}", "lemmas": ["load"]}, n % 100, vector_json(vector / np.linalg.norm(vector))))
                response = client.post("/v1/batch/objects", content=f'{{"objects": [{",".join(objects)}]}}'.encode())
                if response.status_code != 200:
                    load_errors.append(response.text[:200])

    loader = threading.Thread(target=steady_load, daemon=True)
    loader.start()
    waits: list[float] = []
    try:
        with http(a) as writer, http(b) as reader:
            for i in range(writes):
                vector = rng.standard_normal(384).astype(np.float32)
                text = vector_json(vector / np.linalg.norm(vector))
                object_id = str(uuid.uuid4())
                body = f'{{"objects": [{object_json(object_id, {"gloss": f"probe {i}", "lemmas": ["probe"]}, i % 100, text)}]}}'
                response = writer.post("/v1/batch/objects", content=body.encode())
                if response.status_code != 200:
                    raise RuntimeError(f"probe write failed: {response.text[:300]}")
                acked = time.perf_counter()
                deadline = acked + 60.0
                while not finds(reader, text, object_id, only=True):
                    if time.perf_counter() > deadline:
                        raise RuntimeError(f"replica B did not find probe {i} within 60 s")
                    time.sleep(0.001)
                waits.append(time.perf_counter() - acked)
    finally:
        stop.set()
        loader.join(30)
    if load_errors:
        log(f"    the steady load had {len(load_errors)} failed batches, e.g. {load_errors[0]}")
    return {"p50_ms": percentile_ms(waits, 50), "p99_ms": percentile_ms(waits, 99), "max_ms": max(waits) * 1000.0, "probes": float(len(waits))}


def one_round(r: int, args: argparse.Namespace, data: Dataset, cluster: Cluster, pool: Pool, argv: list[str], env: dict[str, str], tmp: Path) -> dict[str, Any]:
    out: dict[str, Any] = {}
    log(f"round {r + 1}: SQLite")
    sqlite = Replicas(argv, env, tmp / f"sqlite-{r}", None)
    try:
        server, url, _ = sqlite.start()
        out["sqlite.import_per_s"] = import_all(url, data)
        server.settle()
        out["sqlite.query"] = query_load(pool, [url], data, args.clients, args.seconds, sqlite.cpu_s)
        log(f"  import {out['sqlite.import_per_s']:,.0f}/s; {out['sqlite.query']['qps']:,.0f} QPS, {out['sqlite.query']['cpu_ms_per_query']:.2f} ms CPU/query")
    finally:
        sqlite.stop()
    log(f"round {r + 1}: PostgreSQL")
    group = Replicas(argv, env, tmp / f"postgres-{r}", {"backend": "postgres", "url": "${REPLICAS_BENCH_DATABASE_URL}"})
    group.env = {**env, "REPLICAS_BENCH_DATABASE_URL": cluster.url(cluster.new_database())}
    try:
        _, a_url, _ = group.start()
        out["postgres.import_per_s"] = import_all(a_url, data)
        urls = [a_url]
        for name in ("b", "c"):
            _, url, took = group.start()
            out[f"postgres.{name}_ready_s"] = took
            wait_finds(url, data, data.n - 1)
            urls.append(url)
        for server, _ in group.servers:
            server.settle()
        log(f"  import {out['postgres.import_per_s']:,.0f}/s; replicas B and C ready in {out['postgres.b_ready_s']:.1f} s and {out['postgres.c_ready_s']:.1f} s")

        def cpu() -> float:
            return group.cpu_s() + tree_cpu_s(cluster.pid)

        for n in (1, 2, 3):
            out[f"postgres.query{n}"] = q = query_load(pool, urls[:n], data, args.clients, args.seconds, cpu)
            log(f"  {n} replica(s): {q['qps']:,.0f} QPS, p50 {q['p50_ms']:.1f} ms, {q['cpu_ms_per_query']:.2f} ms CPU/query (searchd + PostgreSQL)")
        out["lag"] = lag(urls[0], urls[1], args.lag_writes, seed=r)
        log(f"  replication lag A -> B: p50 {out['lag']['p50_ms']:.1f} ms, p99 {out['lag']['p99_ms']:.1f} ms over {args.lag_writes} probes")
    finally:
        group.stop()
    return out


def summary(rounds: list[dict[str, Any]]) -> dict[str, float | None]:
    def med(key: str, field: str | None = None) -> float | None:
        return median([(r[key][field] if field else r[key]) for r in rounds if key in r])

    s: dict[str, float | None] = {
        "sqlite.qps": med("sqlite.query", "qps"),
        "sqlite.cpu_ms_per_query": med("sqlite.query", "cpu_ms_per_query"),
        "sqlite.import_per_s": med("sqlite.import_per_s"),
        "postgres.import_per_s": med("postgres.import_per_s"),
        "postgres.replica_ready_s": med("postgres.b_ready_s"),
        "lag.p50_ms": med("lag", "p50_ms"),
        "lag.p99_ms": med("lag", "p99_ms"),
    }
    for n in (1, 2, 3):
        s[f"postgres{n}.qps"] = med(f"postgres.query{n}", "qps")
        s[f"postgres{n}.cpu_ms_per_query"] = med(f"postgres.query{n}", "cpu_ms_per_query")
    return s


def ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}" if a is not None and b else "n/a"


def print_summary(s: dict[str, float | None], rounds: int) -> None:
    def fmt(value: float | None, spec: str = ",.0f") -> str:
        return format(value, spec) if value is not None else "n/a"

    print(f"\nmedians over {rounds} round(s)")
    print(f"{'system':<26}{'QPS':>10}{'CPU ms/query':>14}{'QPS / SQLite':>14}{'QPS / 1 replica':>17}")
    print(f"{'SQLite, 1 process':<26}{fmt(s['sqlite.qps']):>10}{fmt(s['sqlite.cpu_ms_per_query'], '.2f'):>14}{'1.00':>14}{'':>17}")
    for n in (1, 2, 3):
        qps = s[f"postgres{n}.qps"]
        print(
            f"{f'PostgreSQL, {n} replica(s)':<26}{fmt(qps):>10}{fmt(s[f'postgres{n}.cpu_ms_per_query'], '.2f'):>14}"
            f"{ratio(qps, s['sqlite.qps']):>14}{ratio(qps, s['postgres1.qps']):>17}"
        )
    print(f"import objects/s: SQLite {fmt(s['sqlite.import_per_s'])}, PostgreSQL {fmt(s['postgres.import_per_s'])} (ratio {ratio(s['postgres.import_per_s'], s['sqlite.import_per_s'])})")
    print(f"a replica joining an imported database is ready in {fmt(s['postgres.replica_ready_s'], '.1f')} s")
    print(f"replication lag under a steady write load: p50 {fmt(s['lag.p50_ms'], '.1f')} ms, p99 {fmt(s['lag.p99_ms'], '.1f')} ms")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the WordNet/MiniLM data set ($SEARCHD_BENCH_DATA)")
    parser.add_argument("--limit", type=int, default=60_000, help="objects to import (the first N corpus rows)")
    parser.add_argument("--queries", type=int, default=1000, help="query vectors to cycle through")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, default=6, help="client processes in each query load, dealt over the replicas")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each query load")
    parser.add_argument("--lag-writes", type=int, default=300, help="probe writes for the replication lag")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results-replicas.json")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if not (PG_BIN / "initdb").exists():
        raise SystemExit(f"PostgreSQL is not installed ({PG_BIN / 'initdb'}): apt-get install postgresql-15, or set PG_BIN")
    env_info = environment(["psycopg", "httpx", "numpy"])
    log(f"machine: {env_info['nproc']} cores, load average {env_info['loadavg_at_start']}")
    data = load_dataset(args.data, args.limit, args.queries)
    log(f"data: {data.n} objects, {data.nq} queries")
    tmp = Path(tempfile.mkdtemp(prefix="searchd-replicas-bench-"))
    argv_ = [str(VENV_BIN / "searchd")] if (VENV_BIN / "searchd").exists() else [sys.executable, "-m", "searchd"]
    env: dict[str, str] = {}
    pool = multiprocessing.get_context("spawn").Pool(args.clients)
    # Durable, as PostgreSQL runs by default (import objects/s pays for its commits); the buffers a dedicated server has.
    cluster = Cluster(tmp / "pg", {"shared_buffers": "256MB", "max_connections": "100"}, durable=True)
    rounds: list[dict[str, Any]] = []
    try:
        for r in range(args.rounds):
            rounds.append(one_round(r, args, data, cluster, pool, argv_, env, tmp))
    except KeyboardInterrupt:
        log("interrupted: reporting what was measured")
    finally:
        Server.stop_all()
        cluster.stop()
        pool.terminate()
        shutil.rmtree(tmp, ignore_errors=True)
    s = summary(rounds)
    print_summary(s, len(rounds))
    args.out.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "environment": env_info, "rounds": rounds, "summary": s}, indent=2))
    log(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
