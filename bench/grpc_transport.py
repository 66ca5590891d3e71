#!/usr/bin/env python3
"""gRPC against HTTP GraphQL on the same searchd and data (issue #15): nearVector QPS, p50 and server CPU, batch import.

    SEARCHD_BENCH_DATA=/path/to/wordnet-minilm .venv/bin/python bench/grpc_transport.py            # 60,000 objects, 1,000 queries, 3 rounds
    .venv/bin/python bench/grpc_transport.py --n 10000 --queries 200 --rounds 1 --seconds 5         # smoke

It runs with the project's own virtualenv (weaviate-client 4.x is a test extra).  Data: the WordNet/MiniLM
set of bench/benchdata.py (the first N corpus rows; text, lemma, pos, bucket and the 384-d vector), the
collection and its hnsw index as bench/engine.py declares them.  Each round, on fresh servers:

1. Import: one server takes every object through ``POST /v1/batch/objects`` (500 per request, bodies
   serialized before timing), another through the v4 client's ``collection.data.insert_many`` (500 per
   call: gRPC BatchObjects; the DataObjects are built before timing, their encoding is timed, as it is the
   client's transport).  Each until a nearVector of the last object returns it; objects/s and server CPU per
   object.  The order of the two alternates by round.
2. nearVector (limit 10, id and distance, no properties) on the gRPC-imported server, both ways:
   gRPC through the v4 client (``collection.query.near_vector``) and GraphQL through one keep-alive httpx
   connection (bodies serialized before timing, answers parsed after).  1 client: 20 warm-up queries, then
   every query in turn; 8 clients: 8 processes, each with its own client and connection, for --seconds.
   hnsw ef is calibrated in round 1 (the smallest ladder value with recall@10 >= 0.95 over gRPC, applied by
   config reload); recall@10 is reported for both.  Which protocol goes first alternates by round.

Beside QPS: server CPU per query (utime + stime of the server process over the loop, divided by the
queries), which the shared machine disturbs less than QPS, and the clients' CPU per query.  Each figure is
the median over the rounds (--rounds), per-round values in bench/results-grpc.json.  Servers listen on
127.0.0.1 only; every loop is bounded in count and time.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from multiprocessing.pool import Pool
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent

from common import (  # sets single-threaded numerics before numpy loads
    DEFAULT_DATA,
    ClientResult,
    Dataset,
    Server,
    environment,
    free_port,
    git_state,
    load_dataset,
    log,
    median,
    recall_at_k,
)
from engine import Loop, Plan, Record, concurrent, http_jobs, sequential
from engine import Searchd as EngineSearchd

BATCH = 500
CLIENTS = 8
TARGET = 0.95
EF_LADDER = (16, 24, 32, 48, 64, 96, 128, 200, 256, 400)
WARMUP = 20
BLOCK = 50  # 1-client queries per turn
PROTOCOLS = ("grpc", "graphql")


def config(ef: int) -> dict[str, Any]:
    """bench/engine.py's collection, so both benchmarks measure the same index (its method reads nothing of its instance)."""
    return EngineSearchd.config(None, ef)  # type: ignore[arg-type]


@dataclasses.dataclass
class Searchd:
    """One server on free ports (HTTP and gRPC), its directory and an httpx client."""

    server: Server
    work: Path
    port: int
    grpc_port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @classmethod
    def start(cls, tmp: Path, ef: int) -> Searchd:
        work = Path(tempfile.mkdtemp(prefix="searchd-", dir=tmp))
        (work / "searchd.yaml").write_text(json.dumps(config(ef), indent=2))
        port, grpc_port = free_port(), free_port()
        argv = [sys.executable, "-m", "searchd", "serve", str(work / "searchd.yaml"), "--data", str(work / "data"), "--port", str(port)]
        argv += ["--grpc-port", str(grpc_port), "--no-access-log", "--log-level", "warning"]
        server = Server("searchd", argv, work / "server.log", cwd=work)
        server.wait_http(f"http://127.0.0.1:{port}/v1/.well-known/ready", 900)
        return cls(server, work, port, grpc_port)

    def reload_ef(self, http: Any, ef: int) -> None:
        (self.work / "searchd.yaml").write_text(json.dumps(config(ef), indent=2))
        response = http.post("/v1/config/reload")
        if response.status_code != 200:
            raise RuntimeError(f"config reload to ef {ef} answered {response.status_code}: {response.text[:300]}")

    def stop(self) -> None:
        self.server.stop()
        shutil.rmtree(self.work, ignore_errors=True)


def connect(port: int, grpc_port: int) -> Any:
    import weaviate

    return weaviate.connect_to_custom(
        http_host="127.0.0.1", http_port=port, http_secure=False, grpc_host="127.0.0.1", grpc_port=grpc_port, grpc_secure=False, skip_init_checks=True
    )


def http_client(url: str) -> Any:
    import httpx

    return httpx.Client(base_url=url, timeout=300.0, headers={"Content-Type": "application/json"}, trust_env=False)


near_body = EngineSearchd.near_body  # { Get { Gloss(nearVector: {vector: …}, limit: 10) { _additional { id distance } } } }
graphql_ids = EngineSearchd.ids


def grpc_search(collection: Any, vector: list[float]) -> list[str]:
    from weaviate.classes.query import MetadataQuery

    found = collection.query.near_vector(vector, limit=10, return_metadata=MetadataQuery(distance=True), return_properties=[])
    return [str(o.uuid) for o in found.objects]


# -- the 8-client load (each client in its own process) ----------------------------------------------


@dataclasses.dataclass
class GrpcJob:
    port: int
    grpc_port: int
    vectors: list[list[float]]
    offset: int
    start_at: float
    duration_s: float


def import_client() -> None:
    """Each pool process loads weaviate-client when it starts, not inside a timed load."""
    import weaviate.classes.query  # noqa: F401


def run_grpc_client(job: GrpcJob) -> ClientResult:
    from weaviate.exceptions import WeaviateBaseError

    latencies: list[float] = []
    errors, first_error = 0, ""
    with connect(job.port, job.grpc_port) as client:
        gloss = client.collections.use("Gloss")
        for vector in job.vectors[job.offset : job.offset + 3]:  # open the channel
            grpc_search(gloss, vector)
        time.sleep(max(0.0, job.start_at - time.time()))
        cpu0, began = time.process_time(), time.time()
        deadline = time.perf_counter() + job.duration_s
        i = 0
        while time.perf_counter() < deadline:
            t = time.perf_counter()
            try:
                if len(grpc_search(gloss, job.vectors[(job.offset + i) % len(job.vectors)])) != 10:
                    errors += 1
                    first_error = first_error or "fewer than 10 hits"
            except WeaviateBaseError as exc:  # counted and reported, the load goes on
                errors += 1
                first_error = first_error or repr(exc)
            latencies.append(time.perf_counter() - t)
            i += 1
        return ClientResult(latencies, errors, first_error, began, time.time(), time.process_time() - cpu0)


# -- measuring (bench/engine.py's loops and record) ------------------------------------------------------


def merged(loops: Sequence[Loop]) -> Loop:
    """Loops run in turns (blocks, slices) as one: their counts, times and CPU added."""
    elapsed = sum(loop.elapsed for loop in loops)
    return Loop(
        latencies=[x for loop in loops for x in loop.latencies],
        elapsed=elapsed,
        server_cpu_s=sum(loop.server_cpu_s for loop in loops),
        client_cpu_s=sum(loop.client_cpu_s for loop in loops),
        other_cores=sum(loop.other_cores * loop.elapsed for loop in loops) / elapsed if elapsed else 0.0,
        outputs=[x for loop in loops for x in loop.outputs],
        errors=sum(loop.errors for loop in loops),
        first_error=next((loop.first_error for loop in loops if loop.first_error), ""),
    )


def record(rec: Record, protocol: str, prefix: str, loop: Loop) -> None:
    """engine's figures (QPS, p50, p99, server CPU ms/query, other load), the clients' CPU per query and the errors."""
    loop.record(rec, protocol, prefix)
    rec.add(protocol, f"{prefix}.client_cpu_ms", 1000 * loop.client_cpu_s / loop.count if loop.count else None)
    rec.add(protocol, f"{prefix}.errors", loop.errors)
    if loop.errors:
        log(f"  [{protocol}] {prefix}: {loop.errors} ERRORS ({loop.first_error})")


class Bench:
    def __init__(self, data: Dataset, tmp: Path, pool: Pool, plan: Plan) -> None:
        self.data = data
        self.tmp = tmp
        self.pool = pool
        self.plan = plan
        self.rec = Record()
        self.notes: list[str] = []
        self.ef: int | None = None
        self.row_of = data.row_of
        self.vectors = [v.tolist() for v in data.queries]
        self.near = [near_body(t) for t in data.query_text]
        self.last_body = near_body(data.vec_text[data.n - 1])
        self.last_vector = data.corpus[data.n - 1].tolist()
        self.http_batches = [self.http_batch(start) for start in range(0, data.n, BATCH)]
        self.grpc_batches = [self.grpc_batch(start) for start in range(0, data.n, BATCH)]

    def properties(self, row: int) -> dict[str, Any]:
        entry = self.data.entries[row]
        return {"text": entry["gloss"], "lemma": entry["lemmas"][0], "pos": entry["pos"], "bucket": row % 100}

    def http_batch(self, start: int) -> tuple[int, bytes]:
        rows = range(start, min(start + BATCH, self.data.n))
        objects = ",".join(
            f'{{"class":"Gloss","id":"{self.data.uuids[r]}","properties":{json.dumps(self.properties(r))},"vector":{self.data.vec_text[r]}}}' for r in rows
        )
        return len(rows), ('{"objects":[' + objects + "]}").encode()

    def grpc_batch(self, start: int) -> list[Any]:
        from weaviate.classes.data import DataObject

        rows = range(start, min(start + BATCH, self.data.n))
        return [DataObject(properties=self.properties(r), uuid=self.data.uuids[r], vector=self.data.corpus[r].tolist()) for r in rows]

    def rows(self, ids: Sequence[str]) -> list[int]:
        return [self.row_of.get(i, -1) for i in ids]

    def wait_searchable(self, find_last: Callable[[], list[str]]) -> None:
        deadline = time.perf_counter() + 600
        while time.perf_counter() < deadline:
            if find_last()[:1] == [self.data.uuids[self.data.n - 1]]:
                return
            time.sleep(0.05)
        raise RuntimeError("the last object is not searchable after 600 s")

    def import_http(self, searchd: Searchd) -> None:
        with http_client(searchd.url) as http:
            cpu0, t0 = searchd.server.cpu_s(), time.perf_counter()
            for count, body in self.http_batches:
                response = http.post("/v1/batch/objects", content=body)
                answer = response.json() if response.status_code == 200 else None
                if answer is None or len(answer) != count or any(o.get("result", {}).get("status") != "SUCCESS" for o in answer):
                    raise RuntimeError(f"batch import answered {response.status_code}: {response.text[:300]}")
            self.wait_searchable(lambda: graphql_ids(http.post("/v1/graphql", content=self.last_body).content))
            self.record_import("graphql", time.perf_counter() - t0, searchd.server.cpu_s() - cpu0)

    def import_grpc(self, searchd: Searchd) -> None:
        with connect(searchd.port, searchd.grpc_port) as client:
            gloss = client.collections.use("Gloss")
            cpu0, t0 = searchd.server.cpu_s(), time.perf_counter()
            for objects in self.grpc_batches:
                result = gloss.data.insert_many(objects)
                if result.errors:
                    raise RuntimeError(f"insert_many: {len(result.errors)} failed, e.g. {next(iter(result.errors.values()))}")
            self.wait_searchable(lambda: grpc_search(gloss, self.last_vector))
            self.record_import("grpc", time.perf_counter() - t0, searchd.server.cpu_s() - cpu0)

    def record_import(self, protocol: str, seconds: float, cpu_s: float) -> None:
        n = self.data.n
        self.rec.add(protocol, "import.obj_s", n / seconds)
        self.rec.add(protocol, "import.server_cpu_ms_per_100", 100_000 * cpu_s / n)
        log(f"  [{protocol}] import {n} objects in {seconds:.1f} s ({n / seconds:,.0f} obj/s), server CPU {100_000 * cpu_s / n:.1f} ms per 100 objects")

    def calibrate(self, searchd: Searchd, http: Any, gloss: Any) -> None:
        for ef in EF_LADDER:
            searchd.reload_ef(http, ef)
            recall = recall_at_k([self.rows(grpc_search(gloss, v)) for v in self.vectors], self.data.truth)
            self.notes.append(f"calibration: ef {ef} -> recall@10 {recall:.4f}")
            log(f"  {self.notes[-1]}")
            if recall >= TARGET:
                self.ef = ef
                return
        raise RuntimeError(f"recall {TARGET} not reached with ef up to {EF_LADDER[-1]}")

    def queries(self, searchd: Searchd, order: Sequence[str]) -> None:
        with connect(searchd.port, searchd.grpc_port) as client, http_client(searchd.url) as http:
            gloss = client.collections.use("Gloss")
            if self.ef is None:
                self.calibrate(searchd, http, gloss)
            one: dict[str, Callable[[int], list[str]]] = {
                "grpc": lambda i: grpc_search(gloss, self.vectors[i]),
                "graphql": lambda i: graphql_ids(http.post("/v1/graphql", content=self.near[i]).content),
            }
            for protocol in order:
                sequential(one[protocol], WARMUP, searchd.server.cpu_s, self.plan, warmup=0)
            # Interleaved in blocks, so that both protocols meet the same load of the shared machine.
            blocks: dict[str, list[Loop]] = {p: [] for p in order}
            for b, first in enumerate(range(0, self.data.nq, BLOCK)):
                count = min(BLOCK, self.data.nq - first)
                for protocol in order if b % 2 == 0 else order[::-1]:
                    search = one[protocol]
                    blocks[protocol].append(sequential(lambda i: search(first + i), count, searchd.server.cpu_s, self.plan, warmup=0))
            for protocol, loops in blocks.items():
                loop = merged(loops)
                record(self.rec, protocol, "nv1", loop)
                self.rec.add(protocol, "nv1.recall", recall_at_k([self.rows(ids) for ids in loop.outputs], self.data.truth))
        # The 8-client loads in slices, A B B A: a drift of the machine's load touches both alike.
        step = max(1, self.data.nq // CLIENTS)
        sliced = dataclasses.replace(self.plan, multi_s=self.plan.multi_s / 2)
        slices: dict[str, list[Loop]] = {p: [] for p in order}
        for protocol in (*order, *order[::-1]):
            if protocol == "grpc":
                start_at = time.time() + 3.0  # each client connects and warms up before
                jobs = [GrpcJob(searchd.port, searchd.grpc_port, self.vectors, c * step, start_at, sliced.multi_s) for c in range(CLIENTS)]
                loop, _ = concurrent(self.pool, jobs, searchd.server.cpu_s, run=run_grpc_client)
            else:
                requests = [("POST", "/v1/graphql", body) for body in self.near]
                loop, _ = concurrent(self.pool, http_jobs(searchd.url, requests, sliced, marker=b'"errors"'), searchd.server.cpu_s)
            slices[protocol].append(loop)
        for protocol, loops in slices.items():
            record(self.rec, protocol, "nv8", merged(loops))

    def round(self, r: int) -> None:
        order = PROTOCOLS if r % 2 == 0 else PROTOCOLS[::-1]
        log(f"round {r + 1}: {' then '.join(order)}")
        for protocol in order:
            searchd = Searchd.start(self.tmp, self.ef or 64)
            try:
                if protocol == "graphql":
                    self.import_http(searchd)
                    continue
                self.import_grpc(searchd)
                searchd.server.settle()
                self.queries(searchd, order)
            finally:
                searchd.stop()
        for _, metric, _ in ROWS:
            values = self.rec.values
            a, b = values.get("grpc", {}).get(metric, []), values.get("graphql", {}).get(metric, [])
            if len(a) == len(b) == r + 1 and b[-1]:
                self.rec.add("ratio", metric, a[-1] / b[-1])


ROWS = (
    ("nearVector QPS, 1 client ↑", "nv1.qps", 0),
    ("nearVector p50 ms, 1 client ↓", "nv1.p50_ms", 2),
    ("nearVector server CPU ms/query, 1 client ↓", "nv1.cpu_ms", 3),
    ("nearVector client CPU ms/query, 1 client ↓", "nv1.client_cpu_ms", 3),
    ("nearVector recall@10, 1 client ↑", "nv1.recall", 4),
    ("other load during the 1-client loop, cores ↓", "nv1.other_cores", 2),
    ("nearVector QPS, 8 clients ↑", "nv8.qps", 0),
    ("nearVector p50 ms, 8 clients ↓", "nv8.p50_ms", 2),
    ("nearVector server CPU ms/query, 8 clients ↓", "nv8.cpu_ms", 3),
    ("nearVector client CPU ms/query, 8 clients ↓", "nv8.client_cpu_ms", 3),
    ("other load during the 8-client loop, cores ↓", "nv8.other_cores", 2),
    ("import objects/s (insert_many ÷ POST /v1/batch/objects) ↑", "import.obj_s", 0),
    ("import server CPU ms per 100 objects ↓", "import.server_cpu_ms_per_100", 1),
)


def table(rec: Record) -> str:
    lines = ["| figure (median of the rounds) | gRPC (v4 client) | GraphQL / REST (HTTP) | gRPC ÷ HTTP, median of the rounds' ratios |"]
    lines.append("|---|--:|--:|--:|")
    for label, metric, digits in ROWS:
        a, b, ratio = rec.med("grpc", metric), rec.med("graphql", metric), rec.med("ratio", metric)
        cells = ["" if v is None else f"{v:,.{digits}f}" for v in (a, b)]
        lines.append(f"| {label} | {cells[0]} | {cells[1]} | {'' if ratio is None else f'{ratio:.2f}x'} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=60_000, help="objects (default 60000)")
    parser.add_argument("--queries", type=int, default=1000, help="nearVector queries (default 1000)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds (default 3); each figure is the median")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each 8-client load (default 10)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the wordnet-minilm data directory")
    parser.add_argument("--out", type=Path, default=HERE / "results-grpc.json", help="JSON results")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop the servers and clients on the way out (finally below)
    started = time.perf_counter()
    env = environment(("searchd", "weaviate-client", "grpcio", "protobuf", "httpx", "uvicorn"))
    log(f"loading {args.n} objects and {args.queries} queries from {args.data}; load average {env['loadavg_at_start']}")
    data = load_dataset(args.data, args.n, args.queries)
    pool = multiprocessing.get_context("spawn").Pool(CLIENTS, initializer=import_client)
    try:
        with tempfile.TemporaryDirectory(prefix="bench-grpc-") as tmp:
            plan = Plan(n=data.n, nq=data.nq, rounds=args.rounds, filter_queries=0, hybrid_queries=0, multi_s=args.seconds, warmup=WARMUP)
            bench = Bench(data, Path(tmp), pool, plan)
            for r in range(args.rounds):
                bench.round(r)
    finally:
        pool.terminate()
        Server.stop_all()
    log("\n" + table(bench.rec))
    result = {
        "args": {k: str(v) for k, v in vars(args).items()},
        "environment": env,
        "git": git_state(),
        "ef": bench.ef,
        "notes": bench.notes,
        "median": {p: {m: median(v) for m, v in sorted(metrics.items())} for p, metrics in bench.rec.values.items()},
        "rounds": bench.rec.values,
        "seconds": time.perf_counter() - started,
    }
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    log(f"\nwritten to {args.out} ({result['seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
