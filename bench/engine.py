#!/usr/bin/env python3
"""Engine-core benchmark: searchd against chroma, pgvector, txtai, hnswlib and tantivy, measured in the same run.

    bash bench/setup.sh && bash scripts/pgvector.sh          # once: bench/.venv, and pgvector for PostgreSQL 15
    bench/.venv/bin/python bench/engine.py --searchd-rev HEAD   # full: 60,000 objects, 1,000 queries, 3 rounds
    bench/.venv/bin/python bench/engine.py --quick         # smoke: 10,000 objects, 200 queries, 1 round

Data: WordNet glosses with all-MiniLM-L6-v2 vectors (the data set's README); the first N corpus rows are
the objects (text = gloss, lemma = first lemma, pos, bucket = row index % 100, the vector), recall@10 is
against the exact top-10 (the shipped ground truth at N = 60,000, numpy otherwise; numpy over the allowed
rows for filtered searches).  Every server runs on 127.0.0.1 (PostgreSQL on a Unix socket) with
OMP/OPENBLAS/MKL threads = 1; every request loop is bounded in count and in time.

A round imports every system afresh and measures everything on it; each figure is the median over the
rounds (--rounds, default 3), with per-round values in bench/results-engine.json.  The systems take
turns within a round, so slow drift of the shared machine's load touches all of them.  Per round:

1. nearVector at recall@10 >= 0.95.  hnsw search width (ef / ef_search) is calibrated in round 1: the
   smallest value on a ladder whose recall over all queries is >= 0.95 (searchd: config `ef`, applied by
   POST /v1/config/reload; chroma: `hnsw:search_ef`, a new collection per step; pgvector: hnsw.ef_search;
   txtai: `efsearch`, a restarted server per step; hnswlib: set_ef).  1 client: one keep-alive connection,
   20 warm-up queries, then every query sequentially, bodies serialized before timing, answers parsed after.
   8 clients: 8 separate processes (one connection each, different query offsets) for a fixed time.  HTTP
   systems are timed through bench/common.py's LeanHTTP (prebuilt requests on a raw keep-alive socket, about
   0.06 ms of client CPU per request against httpx's 0.6 ms), so the load generator leaves the 2 cores to
   the server as psycopg does for pgvector.
   Beside QPS: server CPU per query = delta of utime+stime (+ reaped children, for PostgreSQL's backends)
   of the server process tree from /proc/PID/stat, divided by the queries.  In-process peers (hnswlib,
   tantivy) report the benchmark process's CPU; hnswlib's 8 clients are 8 threads (knn_query frees the GIL).
2. Filtered nearVector p50 with bucket < 1, 30, 90 (1 %, 30 %, 90 % of objects allowed), against the same
   system's unfiltered p50 on the same queries; recall@10 against the exact filtered top-10, and whether
   every answer had 10 hits (5 warm-up queries; each level stops after 15 s, recall then covers the queries done).
   searchd `where` LessThan; chroma `$lt`; pgvector `WHERE bucket < n` with a btree index on bucket and
   hnsw.iterative_scan = relaxed_order (pgvector >= 0.8); the plans PostgreSQL chose are recorded.
3. bm25 (searchd over HTTP, tantivy in process) with the first 6 words of each query entry's gloss.
4. hybrid (alpha 0.5) p50 ÷ the p50 of its slower leg (bm25 alone, nearVector alone), all timed interleaved
   per query: the legs at limit 10, and at hybrid's own depth (limit 100: hybrid fetches max(100, limit)
   candidates per leg, as Weaviate does).
5. Import: searchd POST /v1/batch/objects (500 per batch, `vector` inline), chroma collection.add through
   HttpClient (500 per batch), pgvector COPY + CREATE INDEX (hnsw m=16 ef_construction=64, btree on bucket)
   + ANALYZE; each from the first request until a nearVector of the last object returns it.
6. Disk per object after a clean stop (du of the data directory; pgvector: pg_total_relation_size), and VmRSS
   of the server after import (searchd, chroma), read once it holds still (two readings 1 s apart within 1 MB).
7. searchd restart after SIGKILL: process start -> /v1/.well-known/ready answers 200 and a nearVector of
   the last object returns it.
8. GET /v1/.well-known/live (chroma: /api/v2/heartbeat) from another client at ~20/s during the 8-client load.

Ratios are searchd ÷ peer (QPS: above 1 is better for searchd; latency, size, time: below 1).
"""

from __future__ import annotations

import os

# Single-threaded numerics here and in every server started from here (as bench/common.py sets): before numpy loads.
os.environ.update({"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "NUMEXPR_NUM_THREADS": "1"})

import argparse
import contextlib
import dataclasses
import functools
import json
import multiprocessing
import pwd
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.pool import Pool
from pathlib import Path
from typing import Any, Self

import numpy as np

# bench/ is sys.path[0] when this runs as a script (and in the spawned client processes, which get this sys.path).
from common import (
    DEFAULT_DATA,
    HERE,
    VENV_BIN,
    ClientJob,
    ClientResult,
    Dataset,
    K,
    LeanHTTP,
    Server,
    disk_bytes,
    environment,
    exact_top,
    free_port,
    git_state,
    load_dataset,
    loadavg,
    log,
    median,
    percentile_ms,
    recall_at_k,
    run_client,
    snapshot_searchd,
    system_busy_s,
    tree_cpu_s,
)

TARGET = 0.95
EF_LADDER = (10, 16, 20, 24, 32, 40, 48, 64, 80, 96, 128, 160, 200, 256, 400)
FILTER_LEVELS = (1, 30, 90)
BATCH = 500
CLIENTS = 8
PROBE_HZ = 20.0
SYSTEMS = ("hnswlib", "tantivy", "searchd", "chroma", "pgvector", "txtai")
PACKAGES = ("searchd", "numpy", "hnswlib", "chromadb", "txtai", "tantivy", "psycopg", "httpx", "uvicorn", "starlette", "graphql-core")
PG_BIN = Path(os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin"))


@dataclasses.dataclass(frozen=True)
class Plan:
    n: int
    nq: int  # nearVector / bm25 queries (1 client, and the calibration passes)
    rounds: int
    filter_queries: int
    hybrid_queries: int
    multi_s: float  # seconds of the 8-client load
    warmup: int = 20
    loop_budget_s: float = 120.0  # no timed loop runs longer
    filter_budget_s: float = 15.0  # nor one filtered level (broad filters can be slow): recall over the queries done
    max_per_client: int = 200_000


# -- recording -----------------------------------------------------------------------


class Record:
    """values[system][metric] = one value per round; medians are taken at the end."""

    def __init__(self) -> None:
        self.values: dict[str, dict[str, list[float]]] = {}
        self.notes: dict[str, list[str]] = {}
        self.skips: dict[str, str] = {}
        self.settings: dict[str, dict[str, Any]] = {}

    def add(self, system: str, metric: str, value: float | None) -> None:
        if value is not None:
            self.values.setdefault(system, {}).setdefault(metric, []).append(float(value))

    def med(self, system: str, metric: str) -> float | None:
        return median(self.values.get(system, {}).get(metric, []))

    def note(self, system: str, text: str) -> None:
        self.notes.setdefault(system, []).append(text)
        log(f"  [{system}] {text}")

    def skip(self, system: str, why: str) -> None:
        self.skips[system] = why
        log(f"  [{system}] SKIPPED: {why}")

    def setting(self, system: str, **values: Any) -> None:
        self.settings.setdefault(system, {}).update(values)


@dataclasses.dataclass
class Loop:
    """A timed loop: latencies of the timed requests, wall time, CPU of the server and of the clients."""

    latencies: list[float]
    elapsed: float
    server_cpu_s: float
    client_cpu_s: float
    other_cores: float  # machine CPU used by neither the server nor the clients, in cores
    outputs: list[Any] = dataclasses.field(default_factory=list)
    errors: int = 0
    first_error: str = ""

    @property
    def count(self) -> int:
        return len(self.latencies)

    @property
    def qps(self) -> float:
        return self.count / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def cpu_ms(self) -> float:
        return 1000.0 * self.server_cpu_s / self.count if self.count else float("nan")

    def record(self, rec: Record, system: str, prefix: str) -> None:
        rec.add(system, f"{prefix}.qps", self.qps)
        rec.add(system, f"{prefix}.p50_ms", percentile_ms(self.latencies, 50))
        rec.add(system, f"{prefix}.p99_ms", percentile_ms(self.latencies, 99))
        rec.add(system, f"{prefix}.cpu_ms", self.cpu_ms)
        rec.add(system, f"{prefix}.other_cores", self.other_cores)
        log(
            f"  [{system}] {prefix}: {self.count} queries, {self.qps:,.0f} QPS, p50 {percentile_ms(self.latencies, 50):.2f} ms, "
            f"p99 {percentile_ms(self.latencies, 99):.2f} ms, server CPU {self.cpu_ms:.3f} ms/q, other load {self.other_cores:.2f} cores"
            + (f", {self.errors} ERRORS ({self.first_error})" if self.errors else "")
        )


def sequential(
    search: Callable[[int], Any], count: int, cpu: Callable[[], float], plan: Plan, budget_s: float | None = None, warmup: int | None = None
) -> Loop:
    """Warm up, then call search(0..count-1) one after another; bounded by budget_s (default plan.loop_budget_s)."""
    budget = plan.loop_budget_s if budget_s is None else budget_s
    for i in range(min(plan.warmup if warmup is None else warmup, count)):
        search(i)
    outputs: list[Any] = []
    latencies: list[float] = []
    in_process = cpu is time.process_time
    cpu0, own0, busy0 = cpu(), time.process_time(), system_busy_s()
    start = time.perf_counter()
    for i in range(count):
        t = time.perf_counter()
        outputs.append(search(i))
        latencies.append(time.perf_counter() - t)
        if t - start > budget:
            break
    elapsed = time.perf_counter() - start
    server = cpu() - cpu0
    own = 0.0 if in_process else time.process_time() - own0
    other = max(0.0, system_busy_s() - busy0 - server - own) / elapsed
    return Loop(latencies, elapsed, server, own, other, outputs)


class Prober:
    """GET a health URL at ~PROBE_HZ from its own connection, in a thread, until stopped (at most max_s)."""

    def __init__(self, url: str, max_s: float) -> None:
        self.url = url
        self.max_s = max_s
        self.latencies: list[float] = []
        self.failures = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import httpx

        with httpx.Client(timeout=10.0, trust_env=False) as client:
            client.get(self.url)
            deadline = time.perf_counter() + self.max_s
            while not self._stop.is_set() and time.perf_counter() < deadline:
                t = time.perf_counter()
                try:
                    ok = client.get(self.url).status_code == 200
                except httpx.HTTPError:
                    ok = False
                self.latencies.append(time.perf_counter() - t)
                self.failures += 0 if ok else 1
                self._stop.wait(max(0.0, 1.0 / PROBE_HZ - (time.perf_counter() - t)))

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(15)


def concurrent(
    pool: Pool, jobs: Sequence[Any], cpu: Callable[[], float], probe_url: str | None = None, run: Callable[[Any], ClientResult] = run_client
) -> tuple[Loop, Prober | None]:
    """Run the client jobs (one per pool process, each through ``run``) together; server CPU from their common start to the end."""
    start_at = jobs[0].start_at
    pending = pool.map_async(run, jobs)
    time.sleep(max(0.0, start_at - time.time()))
    cpu0, busy0, own0 = cpu(), system_busy_s(), time.process_time()
    prober = Prober(probe_url, jobs[0].duration_s) if probe_url else None
    with prober if prober else contextlib.nullcontext():
        results: list[ClientResult] = pending.get(timeout=jobs[0].duration_s + 180)
    server = cpu() - cpu0
    elapsed = max(r.ended for r in results) - min(r.began for r in results)
    clients = sum(r.cpu_s for r in results) + time.process_time() - own0
    other = max(0.0, system_busy_s() - busy0 - server - clients) / max(elapsed, 1e-9)
    latencies = [x for r in results for x in r.latencies]
    errors = sum(r.errors for r in results)
    first = next((r.first_error for r in results if r.first_error), "")
    return Loop(latencies, elapsed, server, clients, other, errors=errors, first_error=first), prober


def http_jobs(base: str, requests: list[tuple[str, str, bytes | None]], plan: Plan, marker: bytes | None = None) -> list[ClientJob]:
    start_at = time.time() + 2.0
    step = max(1, len(requests) // CLIENTS)
    return [ClientJob("http", base, requests, c * step, start_at, plan.multi_s, plan.max_per_client, marker) for c in range(CLIENTS)]


def record_multi(rec: Record, system: str, loop: Loop, prober: Prober | None) -> None:
    loop.record(rec, system, "nv8")
    rec.add(system, "nv8.client_cpu_cores", loop.client_cpu_s / loop.elapsed if loop.elapsed else None)
    rec.add(system, "nv8.errors", loop.errors)
    if prober and prober.latencies:
        rec.add(system, "probe.p50_ms", percentile_ms(prober.latencies, 50))
        rec.add(system, "probe.p99_ms", percentile_ms(prober.latencies, 99))
        rec.add(system, "probe.max_ms", max(prober.latencies) * 1000)
        rec.add(system, "probe.failures", prober.failures)
        log(
            f"  [{system}] health probe during the 8-client load: {len(prober.latencies)} probes, "
            f"p50 {percentile_ms(prober.latencies, 50):.2f} ms, "
            f"p99 {percentile_ms(prober.latencies, 99):.2f} ms, max {max(prober.latencies) * 1000:.1f} ms, {prober.failures} failed"
        )


def wait_until(check: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.perf_counter() + timeout_s
    while time.perf_counter() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise RuntimeError(f"{what}: not within {timeout_s:.0f} s")


def http_client(base: str) -> Any:
    import httpx

    return httpx.Client(base_url=base, timeout=httpx.Timeout(300.0), headers={"Content-Type": "application/json"}, trust_env=False)


# -- the shared context ----------------------------------------------------------------


class Bench:
    """What every system needs: the plan, the data and its filtered ground truth, the record, the client pool."""

    def __init__(self, plan: Plan, data: Dataset, tmp: Path, pool: Pool) -> None:
        self.plan = plan
        self.data = data
        self.tmp = tmp
        self.pool = pool
        self.rec = Record()
        self.row_of = data.row_of
        self.buckets = np.arange(data.n) % 100
        nf = min(plan.filter_queries, data.nq)
        self.filter_truth: dict[int | None, np.ndarray] = {None: data.truth[:nf]}
        for level in FILTER_LEVELS:
            self.filter_truth[level] = exact_top(data.queries[:nf], data.corpus, allowed=self.buckets < level)
        self.start_ef = 32  # replaced by hnswlib's calibrated ef when hnswlib runs
        self.keyword_queries = [data.keyword_query(i) for i in range(data.nq)]

    @property
    def last(self) -> int:
        return self.data.n - 1

    def rows(self, ids: Sequence[str]) -> list[int]:
        return [self.row_of.get(i, -1) for i in ids]

    def workdir(self, name: str) -> Path:
        return Path(tempfile.mkdtemp(prefix=f"{name}-", dir=self.tmp))


def next_ef(ef: int) -> int | None:
    higher = [e for e in EF_LADDER if e > ef]
    return higher[0] if higher else None


def lower_ef(ef: int) -> int | None:
    lower = [e for e in EF_LADDER if e < ef]
    return lower[-1] if lower else None


class System:
    name = "?"

    def __init__(self, bench: Bench) -> None:
        self.bench = bench
        self.rec = bench.rec
        self.plan = bench.plan
        self.data = bench.data

    def setup(self) -> None:
        """Once, before round 1; raises Unavailable when the system cannot run here."""

    def run_round(self, r: int) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Once, at the end (also after a failure)."""


class Unavailable(Exception):
    """The system is not installed or cannot start here: reported and skipped."""


# -- filtered searches (searchd, chroma, pgvector) ----------------------------------------------


def run_filtered(
    system: System, search: Callable[[int | None, int], Any], parse: Callable[[Any], list[int]], cpu: Callable[[], float]
) -> None:
    """Unfiltered and bucket < 1/30/90 on the same queries; p50, recall vs the exact filtered top-10, full answers."""
    bench, rec, name = system.bench, system.rec, system.name
    nf = len(bench.filter_truth[None])
    p50: dict[int | None, float] = {}
    for level in (None, *FILTER_LEVELS):
        loop = sequential(functools.partial(search, level), nf, cpu, system.plan, system.plan.filter_budget_s, warmup=5)
        found = [parse(o) for o in loop.outputs]
        key = "filter_none" if level is None else f"filter{level}"
        p50[level] = percentile_ms(loop.latencies, 50)
        rec.add(name, f"{key}.p50_ms", p50[level])
        rec.add(name, f"{key}.p99_ms", percentile_ms(loop.latencies, 99))
        rec.add(name, f"{key}.cpu_ms", loop.cpu_ms)
        recall = recall_at_k(found, bench.filter_truth[level][: len(found)])
        full = sum(len(f) == K for f in found) / max(1, len(found))
        rec.add(name, f"{key}.recall", recall)
        rec.add(name, f"{key}.full", full)
        rec.add(name, f"{key}.queries", len(found))
        if level is not None:
            rec.add(name, f"{key}.vs_unfiltered", p50[level] / p50[None])
        stopped = f" (time budget: {len(found)}/{nf} queries)" if len(found) < nf else ""
        log(
            f"  [{name}] {key}: p50 {p50[level]:.2f} ms, recall@10 {recall:.4f}, {K} hits in {full:.1%} of answers, "
            f"CPU {loop.cpu_ms:.2f} ms/q{stopped}"
        )


def calibrate(
    system: System, recall_at: Callable[[int], float], start: int, apply: Callable[[int], None], max_steps: int = 6, down: bool = True
) -> int:
    """The smallest ladder ef with recall@10 >= TARGET, searched from `start` in at most max_steps measurements.

    Upwards from start until the target is reached; with `down`, downwards from a start that already reaches it.
    apply(ef) switches the system to an ef; the chosen ef is applied at the end.
    """

    def reaches(ef: int) -> bool:
        recall = recall_at(ef)
        system.rec.note(system.name, f"calibration: ef {ef} -> recall@10 {recall:.4f}")
        return recall >= TARGET

    ef, steps = start, 1
    if reaches(ef):
        while down and steps < max_steps and (lower := lower_ef(ef)) is not None:
            apply(lower)
            steps += 1
            if not reaches(lower):
                apply(ef)
                return ef
            ef = lower
        return ef
    while steps < max_steps and (higher := next_ef(ef)) is not None:
        apply(higher)
        steps += 1
        ef = higher
        if reaches(ef):
            return ef
    system.rec.note(system.name, f"calibration stopped at ef {ef} without reaching recall {TARGET}")
    return ef


# -- searchd ----------------------------------------------------------------------------


def graphql_body(query: str) -> bytes:
    return json.dumps({"query": query}).encode()


def where_clause(level: int | None) -> str:
    return "" if level is None else f', where: {{path: ["bucket"], operator: LessThan, valueInt: {level}}}'


class Searchd(System):
    name = "searchd"

    def __init__(self, bench: Bench, argv: list[str], env: dict[str, str]) -> None:
        super().__init__(bench)
        self.argv = argv
        self.env = env
        self.ef: int | None = None
        data = bench.data
        nf, nh = len(bench.filter_truth[None]), min(self.plan.hybrid_queries, data.nq)
        self.near = [self.near_body(data.query_text[i]) for i in range(data.nq)]
        self.filtered = {level: [self.near_body(data.query_text[i], level) for i in range(nf)] for level in (None, *FILTER_LEVELS)}
        self.bm25 = [self.get_body(f"bm25: {{query: {json.dumps(q)}}}", "score") for q in bench.keyword_queries]
        self.hybrid = [
            self.get_body(f"hybrid: {{query: {json.dumps(bench.keyword_queries[i])}, vector: {data.query_text[i]}, alpha: 0.5}}", "score")
            for i in range(nh)
        ]
        self.batches = list(self.import_batches())
        self.last_body = self.near_body(data.vec_text[bench.last])

    def setup(self) -> None:
        """Fail early (before any import) when this searchd cannot load its server or rejects the config."""
        work = self.bench.workdir("searchd-check")
        config = self.write_config(work, self.bench.start_ef)
        python = [sys.executable, "-c", "import sys, searchd.server, searchd.cli; sys.exit(searchd.cli.main(sys.argv[1:]))"]
        done = subprocess.run(
            [*python, "validate", str(config)],
            capture_output=True,
            text=True,
            env={**os.environ, **self.env},
            cwd=work,
            timeout=120,
            check=False,
        )
        if done.returncode != 0:
            lines = (done.stderr or done.stdout).strip().splitlines()
            raise Unavailable(f"searchd does not load, or rejects the benchmark config: {lines[-1] if lines else done.returncode}")
        shutil.rmtree(work, ignore_errors=True)

    @staticmethod
    def get_body(arguments: str, field: str) -> bytes:
        """{ Get { Gloss(<arguments>, limit: 10) { _additional { id <field> } } } } as a JSON request body."""
        return graphql_body("{ Get { Gloss(" + arguments + ", limit: 10) { _additional { id " + field + " } } } }")

    @classmethod
    def near_body(cls, vector_text: str, level: int | None = None) -> bytes:
        return cls.get_body("nearVector: {vector: " + vector_text + "}" + where_clause(level), "distance")

    def import_batches(self) -> Iterator[tuple[int, bytes]]:
        data = self.data
        for start in range(0, data.n, BATCH):
            rows = range(start, min(start + BATCH, data.n))
            objects = ",".join(
                f'{{"class":"Gloss","id":"{data.uuids[r]}","properties":{self.properties(r)},"vector":{data.vec_text[r]}}}' for r in rows
            )
            yield len(rows), ('{"objects":[' + objects + "]}").encode()

    def properties(self, row: int) -> str:
        entry = self.data.entries[row]
        return json.dumps({"text": entry["gloss"], "lemma": entry["lemmas"][0], "pos": entry["pos"], "bucket": row % 100})

    def config(self, ef: int) -> dict[str, Any]:
        return {
            "server": {"host": "127.0.0.1"},
            "collections": [
                {
                    "name": "Gloss",
                    "properties": [
                        {"name": "text", "type": "TEXT"},
                        {"name": "lemma", "type": "TEXT"},
                        {"name": "pos", "type": "TEXT", "tokenization": "field", "indexSearchable": False},
                        {"name": "bucket", "type": "INT"},
                    ],
                    "vectors": {
                        "v": {
                            "vectorizer": {"module": "none", "dimensions": 384},
                            "index": {"type": "hnsw", "distance": "cosine", "ef": ef},
                        }
                    },
                }
            ],
        }

    def write_config(self, work: Path, ef: int) -> Path:
        path = work / "searchd.yaml"
        path.write_text(json.dumps(self.config(ef), indent=2))  # JSON is YAML
        return path

    def serve_argv(self, work: Path, port: int) -> list[str]:
        config, data = str(work / "searchd.yaml"), str(work / "data")
        return [*self.argv, "serve", config, "--data", data, "--port", str(port), "--grpc-port", "0", "--no-access-log", "--log-level", "warning"]

    def start(self, work: Path) -> tuple[Server, str]:
        port = free_port()
        server = Server("searchd", self.serve_argv(work, port), work / "server.log", env=self.env, cwd=work)
        url = f"http://127.0.0.1:{port}"
        server.wait_http(url + "/v1/.well-known/ready", 900)
        return server, url

    @staticmethod
    def ids(content: bytes) -> list[str]:
        answer = json.loads(content)
        if answer.get("errors"):
            raise RuntimeError(f"GraphQL errors: {answer['errors']}")
        return [hit["_additional"]["id"] for hit in answer["data"]["Get"]["Gloss"]]

    def finds_last(self, client: Any) -> bool:
        response = client.post("/v1/graphql", content=self.last_body)
        return response.status_code == 200 and self.ids(response.content)[:1] == [self.data.uuids[self.bench.last]]

    def run_round(self, r: int) -> None:
        work = self.bench.workdir("searchd")
        self.write_config(work, self.ef or self.bench.start_ef)
        server, url = self.start(work)
        try:
            with http_client(url) as client:
                self.import_all(client)
                server.settle()
                self.rec.add(self.name, "rss_after_import_mb", server.settled_rss_mb())
                if self.ef is None:
                    self.ef = calibrate(
                        self, lambda ef: self.recall(client), self.bench.start_ef, lambda ef: self.reload_ef(client, work, ef)
                    )
                    self.rec.setting(self.name, ef=self.ef, maxConnections="16 (default)", efConstruction="128 (default)")
                self.queries(client, server, url)
            server = self.restart_after_kill(server, work)
        finally:
            server.stop()
        self.rec.add(self.name, "disk.bytes_per_object", disk_bytes(work / "data") / self.data.n)
        shutil.rmtree(work, ignore_errors=True)

    def import_all(self, client: Any) -> None:
        t0 = time.perf_counter()
        for count, body in self.batches:
            response = client.post("/v1/batch/objects", content=body)
            if response.status_code != 200:
                raise RuntimeError(f"batch import answered {response.status_code}: {response.text[:300]}")
            failed = [o for o in response.json() if o.get("result", {}).get("status") != "SUCCESS"]
            if failed or len(response.json()) != count:
                raise RuntimeError(f"batch import: {len(failed)} failed, e.g. {failed[:1]}")
        wait_until(lambda: self.finds_last(client), 600, "searchd: the last object searchable")
        seconds = time.perf_counter() - t0
        self.rec.add(self.name, "import.obj_s", self.data.n / seconds)
        log(f"  [searchd] import {self.data.n} objects in {seconds:.1f} s ({self.data.n / seconds:,.0f} obj/s)")

    def recall(self, client: Any) -> float:
        found = [self.bench.rows(self.ids(client.post("/v1/graphql", content=body).content)) for body in self.near]
        return recall_at_k(found, self.data.truth)

    def reload_ef(self, client: Any, work: Path, ef: int) -> None:
        self.write_config(work, ef)
        response = client.post("/v1/config/reload")
        if response.status_code != 200:
            raise RuntimeError(f"config reload to ef {ef} answered {response.status_code}: {response.text[:300]}")

    def queries(self, client: Any, server: Server, url: str) -> None:
        lean = LeanHTTP(url)  # the timed loops' client (bench/common.py says why); closed at the end

        def post(body: bytes) -> bytes:
            return lean.post("/v1/graphql", body)

        loop = sequential(lambda i: post(self.near[i]), self.data.nq, server.cpu_s, self.plan)
        loop.record(self.rec, self.name, "nv1")
        self.rec.add(self.name, "nv1.recall", recall_at_k([self.bench.rows(self.ids(o)) for o in loop.outputs], self.data.truth))
        jobs = http_jobs(url, [("POST", "/v1/graphql", b) for b in self.near], self.plan, marker=b'"errors"')
        record_multi(self.rec, self.name, *concurrent(self.bench.pool, jobs, server.cpu_s, url + "/v1/.well-known/live"))
        run_filtered(self, lambda level, i: post(self.filtered[level][i]), lambda o: self.bench.rows(self.ids(o)), server.cpu_s)
        loop = sequential(lambda i: post(self.bm25[i]), self.data.nq, server.cpu_s, self.plan)
        for o in loop.outputs:
            self.ids(o)  # raises on GraphQL errors
        loop.record(self.rec, self.name, "bm25")
        if "bm25_top10" not in self.rec.settings.get(self.name, {}):
            self.rec.setting(self.name, bm25_top10=[self.ids(o) for o in loop.outputs[:50]])
        self.run_hybrid(post, server)
        lean.close()

    def run_hybrid(self, post: Callable[[bytes], bytes], server: Server) -> None:
        """hybrid, its two legs alone (bm25, nearVector) at limit 10 and at hybrid's depth, interleaved per query; p50 of each.

        Hybrid fetches max(100, limit) candidates per leg (Weaviate's QUERY_HYBRID_MAXIMUM_RESULTS), so its legs as it
        runs them are limit-100 searches; both ratios are recorded.
        """
        deep = {leg: [b.replace(b"limit: 10)", b"limit: 100)") for b in bodies] for leg, bodies in (("bm25", self.bm25), ("nearVector", self.near))}
        times: dict[str, list[float]] = {"hybrid": [], "bm25": [], "nearVector": [], "bm25@100": [], "nearVector@100": []}
        for i in range(min(self.plan.warmup, len(self.hybrid))):
            post(self.hybrid[i])
        start = time.perf_counter()
        for i, body in enumerate(self.hybrid):
            legs = (("hybrid", body), ("bm25", self.bm25[i]), ("nearVector", self.near[i]), ("bm25@100", deep["bm25"][i]), ("nearVector@100", deep["nearVector"][i]))
            for leg, b in legs:
                t = time.perf_counter()
                self.ids(post(b))
                times[leg].append(time.perf_counter() - t)
            if time.perf_counter() - start > self.plan.loop_budget_s:
                break
        p50 = {leg: percentile_ms(t, 50) for leg, t in times.items()}
        slower = max(p50["bm25"], p50["nearVector"])
        slower_deep = max(p50["bm25@100"], p50["nearVector@100"])
        self.rec.add(self.name, "hybrid.p50_ms", p50["hybrid"])
        self.rec.add(self.name, "hybrid.bm25_p50_ms", p50["bm25"])
        self.rec.add(self.name, "hybrid.vector_p50_ms", p50["nearVector"])
        self.rec.add(self.name, "hybrid.vs_slower_leg", p50["hybrid"] / slower)
        self.rec.add(self.name, "hybrid.bm25_100_p50_ms", p50["bm25@100"])
        self.rec.add(self.name, "hybrid.vector_100_p50_ms", p50["nearVector@100"])
        self.rec.add(self.name, "hybrid.vs_slower_leg_as_run", p50["hybrid"] / slower_deep)
        log(
            f"  [searchd] hybrid p50 {p50['hybrid']:.2f} ms; at limit 10: bm25 {p50['bm25']:.2f} ms, nearVector {p50['nearVector']:.2f} ms "
            f"-> {p50['hybrid'] / slower:.2f}x the slower leg; at hybrid's depth (limit 100): bm25 {p50['bm25@100']:.2f} ms, "
            f"nearVector {p50['nearVector@100']:.2f} ms -> {p50['hybrid'] / slower_deep:.2f}x"
        )

    def restart_after_kill(self, server: Server, work: Path) -> Server:
        server.kill9()
        port = free_port()
        again = Server("searchd", self.serve_argv(work, port), work / "server.log", env=self.env, cwd=work)
        url = f"http://127.0.0.1:{port}"
        ready_s = again.wait_http(url + "/v1/.well-known/ready", 900)
        with http_client(url) as client:
            wait_until(lambda: self.finds_last(client), 900, "searchd after kill -9: the last object searchable")
        total = time.perf_counter() - again.started
        self.rec.add(self.name, "restart_kill9.ready_s", ready_s)
        self.rec.add(self.name, "restart_kill9.s", total)
        log(f"  [searchd] restart after kill -9: ready after {ready_s:.1f} s, a query works after {total:.1f} s")
        return again


# -- chroma ------------------------------------------------------------------------------


CHROMA_PREFIX = "/api/v2/tenants/default_tenant/databases/default_database/collections"


class Chroma(System):
    name = "chroma"

    def setup(self) -> None:
        try:
            import chromadb  # noqa: F401
        except ImportError as exc:
            raise Unavailable(f"chromadb is not importable: {exc}") from exc
        self.ef: int | None = None
        data = self.data
        self.near = [self.query_body(t) for t in data.query_text]
        nf = len(self.bench.filter_truth[None])
        self.filtered = {level: [self.query_body(data.query_text[i], level) for i in range(nf)] for level in (None, *FILTER_LEVELS)}
        self.last_body = self.query_body(data.vec_text[self.bench.last])
        self.metadatas = [{"bucket": r % 100, "lemma": e["lemmas"][0], "pos": e["pos"]} for r, e in enumerate(data.entries)]

    @staticmethod
    def query_body(vector_text: str, level: int | None = None) -> bytes:
        where = "null" if level is None else json.dumps({"bucket": {"$lt": level}})
        return f'{{"query_embeddings":[{vector_text}],"n_results":10,"include":["distances"],"where":{where}}}'.encode()

    @staticmethod
    def ids(content: bytes) -> list[str]:
        return list(json.loads(content)["ids"][0])

    def run_round(self, r: int) -> None:
        import chromadb

        work = self.bench.workdir("chroma")
        port = free_port()
        argv = [str(VENV_BIN / "chroma"), "run", "--path", str(work / "db"), "--host", "127.0.0.1", "--port", str(port)]
        server = Server("chroma", argv, work / "server.log", env={"ANONYMIZED_TELEMETRY": "False"})
        base = f"http://127.0.0.1:{port}"
        try:
            server.wait_http(base + "/api/v2/heartbeat", 180)
            client = chromadb.HttpClient(host="127.0.0.1", port=port, settings=chromadb.Settings(anonymized_telemetry=False))
            with http_client(base) as raw:
                cid = self.import_all(client, raw, self.ef or self.bench.start_ef, record=True)
                server.settle()
                self.rec.add(self.name, "rss_after_import_mb", server.settled_rss_mb())
                if self.ef is None:
                    holder = {"cid": cid}

                    def switch(ef: int) -> None:
                        client.delete_collection("gloss")
                        holder["cid"] = self.import_all(client, raw, ef, record=False)

                    self.ef = calibrate(
                        self, lambda ef: self.recall(raw, holder["cid"]), self.bench.start_ef, switch, max_steps=3, down=False
                    )
                    self.rec.setting(self.name, search_ef=self.ef, M="16 (default)", construction_ef="100 (default)")
                    cid = holder["cid"]
                self.queries(raw, server, base, cid)
        finally:
            server.stop()
        self.rec.add(self.name, "disk.bytes_per_object", disk_bytes(work / "db") / self.data.n)
        shutil.rmtree(work, ignore_errors=True)

    def import_all(self, client: Any, raw: Any, ef: int, record: bool) -> str:
        data = self.data
        t0 = time.perf_counter()
        collection = client.create_collection("gloss", metadata={"hnsw:space": "cosine", "hnsw:search_ef": ef}, embedding_function=None)
        for s in range(0, data.n, BATCH):
            e = min(s + BATCH, data.n)
            collection.add(
                ids=data.uuids[s:e],
                embeddings=data.corpus[s:e],
                documents=[x["gloss"] for x in data.entries[s:e]],
                metadatas=self.metadatas[s:e],
            )
        cid = str(collection.id)

        def finds_last() -> bool:
            response = raw.post(f"{CHROMA_PREFIX}/{cid}/query", content=self.last_body)
            return response.status_code == 200 and self.ids(response.content)[:1] == [data.uuids[self.bench.last]]

        wait_until(finds_last, 600, "chroma: the last object searchable")
        seconds = time.perf_counter() - t0
        if record:
            self.rec.add(self.name, "import.obj_s", data.n / seconds)
        log(
            f"  [chroma] import {data.n} objects (search_ef {ef}) in {seconds:.1f} s ({data.n / seconds:,.0f} obj/s)"
            + ("" if record else ", calibration only")
        )
        return cid

    def recall(self, raw: Any, cid: str) -> float:
        found = [self.bench.rows(self.ids(raw.post(f"{CHROMA_PREFIX}/{cid}/query", content=b).content)) for b in self.near]
        return recall_at_k(found, self.data.truth)

    def queries(self, raw: Any, server: Server, base: str, cid: str) -> None:
        path = f"{CHROMA_PREFIX}/{cid}/query"

        lean = LeanHTTP(base)  # the timed loops' client (bench/common.py says why); closed at the end

        def post(body: bytes) -> bytes:
            return lean.post(path, body)

        loop = sequential(lambda i: post(self.near[i]), self.data.nq, server.cpu_s, self.plan)
        loop.record(self.rec, self.name, "nv1")
        self.rec.add(self.name, "nv1.recall", recall_at_k([self.bench.rows(self.ids(o)) for o in loop.outputs], self.data.truth))
        jobs = http_jobs(base, [("POST", path, b) for b in self.near], self.plan)
        record_multi(self.rec, self.name, *concurrent(self.bench.pool, jobs, server.cpu_s, base + "/api/v2/heartbeat"))
        run_filtered(self, lambda level, i: post(self.filtered[level][i]), lambda o: self.bench.rows(self.ids(o)), server.cpu_s)
        lean.close()


# -- pgvector ----------------------------------------------------------------------------


NEAR_SQL = "SELECT id::text, embedding <=> %s::vector AS distance FROM gloss {where}ORDER BY distance LIMIT 10"


class Pgvector(System):
    """A throwaway PostgreSQL cluster on a Unix socket in a temporary directory, with the pgvector extension."""

    name = "pgvector"

    def setup(self) -> None:
        try:
            import psycopg  # noqa: F401
        except ImportError as exc:
            raise Unavailable(f"psycopg is not importable ({exc}): bench/.venv/bin/pip install -r bench/requirements.txt") from exc
        if not (PG_BIN / "initdb").exists():
            raise Unavailable(f"PostgreSQL binaries not found in {PG_BIN} (apt-get install postgresql-15, or set PG_BIN)")
        share = subprocess.run([str(PG_BIN / "pg_config"), "--sharedir"], capture_output=True, text=True, check=False).stdout.strip()
        if not (Path(share) / "extension" / "vector.control").exists():
            raise Unavailable(f"the pgvector extension is not installed in {share}/extension: run `bash scripts/pgvector.sh` (as root) first")
        self.ef: int | None = None
        self.root = self.bench.workdir("pgvector")
        self.owner = self.cluster_owner()
        self.pgdata, self.socket = self.root / "data", self.root / "socket"
        self.socket.mkdir()
        self.port = free_port()
        if self.owner:
            os.chmod(self.bench.tmp, 0o711)
            os.chmod(self.root, 0o711)
            uid, gid = self.owner
            os.chown(self.socket, uid, gid)
            os.chown(self.root, uid, gid)
        self.pg(["initdb", "-D", str(self.pgdata), "-U", "postgres", "--auth=trust", "--no-locale", "-E", "UTF8"])
        with open(self.pgdata / "postgresql.conf", "a", encoding="utf-8") as conf:
            conf.write(
                f"listen_addresses = ''\nunix_socket_directories = '{self.socket}'\nport = {self.port}\nshared_buffers = 1GB\n"
                "maintenance_work_mem = 2GB\nautovacuum = off\nmax_connections = 40\n"
            )
        self.pg(["pg_ctl", "-D", str(self.pgdata), "-l", str(self.root / "server.log"), "-w", "-t", "120", "start"])
        self.started = True
        self.conninfo = f"host={self.socket} port={self.port} dbname=postgres user=postgres"
        with self.connect() as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
            version = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchone()
            server = conn.execute("SHOW server_version").fetchone()
            workers = conn.execute("SHOW max_parallel_maintenance_workers").fetchone()
        self.version = str(version[0]) if version else "?"
        self.iterative = tuple(int(x) for x in self.version.split(".")[:2]) >= (0, 8)
        self.rec.setting(
            self.name,
            pgvector=self.version,
            postgresql=str(server[0]) if server else "?",
            m=16,
            ef_construction=64,
            iterative_scan="relaxed_order" if self.iterative else "not supported",
            max_parallel_maintenance_workers=str(workers[0]) if workers else "?",
            config="shared_buffers 1GB, maintenance_work_mem 2GB, autovacuum off (ANALYZE after import), Unix socket",
        )
        log(f"  [pgvector] PostgreSQL {server[0] if server else '?'} with pgvector {self.version} on {self.socket}")

    @staticmethod
    def cluster_owner() -> tuple[int, int] | None:
        """PostgreSQL refuses to run as root: as root, the cluster belongs to the postgres user."""
        if os.geteuid() != 0:
            return None
        try:
            entry = pwd.getpwnam("postgres")
        except KeyError as exc:
            raise Unavailable("running as root and there is no postgres user to own the cluster") from exc
        return entry.pw_uid, entry.pw_gid

    def pg(self, argv: list[str]) -> None:
        command = [str(PG_BIN / argv[0]), *argv[1:]]
        if self.owner:
            command = ["runuser", "-u", "postgres", "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=300)
        if done.returncode != 0:
            raise Unavailable(f"{argv[0]} failed ({done.returncode}): {(done.stderr or done.stdout)[-800:]}")

    def connect(self) -> Any:
        import psycopg

        return psycopg.connect(self.conninfo, autocommit=True)

    def postmaster_pid(self) -> int:
        return int((self.pgdata / "postmaster.pid").read_text().split()[0])

    def cpu_s(self) -> float:
        return tree_cpu_s(self.postmaster_pid())

    def close(self) -> None:
        if getattr(self, "started", False):
            with contextlib.suppress(Exception):
                self.pg(["pg_ctl", "-D", str(self.pgdata), "-m", "fast", "-w", "stop"])

    def run_round(self, r: int) -> None:
        with self.connect() as conn:
            conn.execute("DROP TABLE IF EXISTS gloss")
            conn.execute("CHECKPOINT")
            self.import_all(conn)
            size = conn.execute("SELECT pg_total_relation_size('gloss')").fetchone()
            self.rec.add(self.name, "disk.bytes_per_object", int(size[0]) / self.data.n if size else None)
            if self.iterative:
                conn.execute("SET hnsw.iterative_scan = relaxed_order")
            if self.ef is None:
                self.ef = calibrate(
                    self,
                    lambda ef: self.recall(conn),
                    self.bench.start_ef,
                    lambda ef: conn.execute(f"SET hnsw.ef_search = {ef}"),
                    max_steps=10,
                )
                self.rec.setting(self.name, ef_search=self.ef, plans=self.plans(conn))
            conn.execute(f"SET hnsw.ef_search = {self.ef}")
            self.queries(conn)

    def import_all(self, conn: Any) -> None:
        data = self.data
        t0 = time.perf_counter()
        conn.execute("CREATE TABLE gloss (id uuid PRIMARY KEY, lemma text, text text, pos text, bucket int, embedding vector(384))")
        with conn.cursor() as cur, cur.copy("COPY gloss (id, lemma, text, pos, bucket, embedding) FROM STDIN") as copy:
            for row, entry in enumerate(data.entries):
                copy.write_row((data.uuids[row], entry["lemmas"][0], entry["gloss"], entry["pos"], row % 100, data.vec_text[row]))
        copied = time.perf_counter() - t0
        conn.execute("CREATE INDEX gloss_embedding ON gloss USING hnsw (embedding vector_cosine_ops) WITH (m = 16, ef_construction = 64)")
        indexed = time.perf_counter() - t0
        conn.execute("CREATE INDEX gloss_bucket ON gloss (bucket)")
        conn.execute("ANALYZE gloss")
        sql = NEAR_SQL.format(where="")
        wait_until(
            lambda: conn.execute(sql, (data.vec_text[self.bench.last],)).fetchone()[0] == data.uuids[self.bench.last],
            120,
            "pgvector: the last row searchable",
        )
        seconds = time.perf_counter() - t0
        self.rec.add(self.name, "import.obj_s", data.n / seconds)
        self.rec.add(self.name, "import.copy_s", copied)
        self.rec.add(self.name, "import.hnsw_s", indexed - copied)
        log(
            f"  [pgvector] import {data.n} rows in {seconds:.1f} s ({data.n / seconds:,.0f} obj/s): "
            f"COPY {copied:.1f} s, hnsw index {indexed - copied:.1f} s"
        )

    def search(self, conn: Any, i: int, level: int | None = None, text: list[str] | None = None) -> list[str]:
        where = "" if level is None else f"WHERE bucket < {level} "
        rows = conn.execute(NEAR_SQL.format(where=where), ((text or self.data.query_text)[i],), prepare=True).fetchall()
        return [str(row[0]) for row in rows]

    def recall(self, conn: Any) -> float:
        return recall_at_k([self.bench.rows(self.search(conn, i)) for i in range(self.data.nq)], self.data.truth)

    def plans(self, conn: Any) -> dict[str, str]:
        """EXPLAIN of each query shape: does PostgreSQL use the hnsw index, the bucket index, or a scan?"""
        out = {}
        for level in (None, *FILTER_LEVELS):
            where = "" if level is None else f"WHERE bucket < {level} "
            lines = conn.execute("EXPLAIN " + NEAR_SQL.format(where=where).replace("%s", f"'{self.data.query_text[0]}'")).fetchall()
            text = " / ".join(str(x[0]).strip() for x in lines)
            out["unfiltered" if level is None else f"bucket < {level}"] = re.sub(r"'\[[^\]]*\]'", "'[query vector]'", text)
        for key, plan in out.items():
            log(f"  [pgvector] plan {key}: {plan[:160]}")
        return out

    def queries(self, conn: Any) -> None:
        loop = sequential(lambda i: self.search(conn, i), self.data.nq, self.cpu_s, self.plan)
        loop.record(self.rec, self.name, "nv1")
        self.rec.add(self.name, "nv1.recall", recall_at_k([self.bench.rows(o) for o in loop.outputs], self.data.truth))
        setup = (f"SET hnsw.ef_search = {self.ef}",)
        start_at = time.time() + 2.0
        params = [(t,) for t in self.data.query_text]
        step = max(1, len(params) // CLIENTS)
        jobs = [
            ClientJob(
                "pg",
                self.conninfo,
                params,
                c * step,
                start_at,
                self.plan.multi_s,
                self.plan.max_per_client,
                sql=NEAR_SQL.format(where=""),
                setup=setup,
            )
            for c in range(CLIENTS)
        ]
        record_multi(self.rec, self.name, *concurrent(self.bench.pool, jobs, self.cpu_s))
        run_filtered(self, lambda level, i: self.search(conn, i, level), self.bench.rows, self.cpu_s)


# -- txtai -------------------------------------------------------------------------------


class Txtai(System):
    """txtai's API server (uvicorn txtai.api:app) with external vectors, as bench/vectors.py runs it."""

    name = "txtai"
    server: Server | None = None  # set by setup(); close() runs even when setup() found txtai missing

    def setup(self) -> None:
        import importlib.metadata

        try:
            importlib.metadata.version("txtai")
            importlib.metadata.version("fastapi")
        except importlib.metadata.PackageNotFoundError as exc:
            raise Unavailable(f"txtai[api] is not installed: {exc}") from exc
        data = self.data
        self.adds = []
        for s in range(0, data.n, BATCH):
            rows = range(s, min(s + BATCH, data.n))
            # "text" carries the vector as JSON text; txtai_transform.transform turns it back into floats
            self.adds.append(("[" + ",".join(f'{{"id":"{data.uuids[r]}","text":"{data.vec_text[r]}"}}' for r in rows) + "]").encode())
        self.urls = ["/search?" + urllib.parse.urlencode({"query": t, "limit": K}) for t in data.query_text]
        self.server: Server | None = None
        self.base = ""
        self.ef: int | None = None

    def start(self, ef: int) -> None:
        work = self.bench.workdir("txtai")
        config = {
            "writable": True,
            "embeddings": {
                "method": "external",
                "transform": "txtai_transform.transform",
                "backend": "hnsw",
                "hnsw": {"m": 16, "efconstruction": 100, "efsearch": ef},
            },
        }
        (work / "config.yml").write_text(json.dumps(config))
        modules = work / "modules"
        modules.mkdir()
        shutil.copy(HERE / "txtai_transform.py", modules / "txtai_transform.py")
        port = free_port()
        env = {
            "CONFIG": str(work / "config.yml"),
            "ALLOW_RESOLVE_TRANSFORM": "True",
            "PYTHONPATH": str(modules),
            "TOKENIZERS_PARALLELISM": "false",
            "HF_HUB_OFFLINE": "1",
        }
        argv = [sys.executable, "-m", "uvicorn", "txtai.api:app", "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
        self.server = Server("txtai", argv, work / "server.log", env=env, cwd=work)
        self.base = f"http://127.0.0.1:{port}"
        self.server.wait_http(self.base + "/count", 300)
        t0 = time.perf_counter()
        with http_client(self.base) as client:
            for body in self.adds:
                response = client.post("/add", content=body)
                if response.status_code != 200:
                    raise RuntimeError(f"txtai /add answered {response.status_code}: {response.text[:300]}")
            if client.get("/index").status_code != 200:
                raise RuntimeError("txtai /index failed")
            count = int(client.get("/count").text)
        if count != self.data.n:
            raise RuntimeError(f"txtai indexed {count} documents, expected {self.data.n}")
        self.rec.note(
            self.name,
            f"server started, /add + /index of {count} vectors in {time.perf_counter() - t0:.1f} s "
            f"(efsearch {ef}; hnswlib builds with all cores)",
        )

    def restart(self, ef: int) -> None:
        if self.server:
            self.server.stop()
        self.start(ef)

    def get(self, client: Any, i: int) -> list[str]:
        response = client.get(self.urls[i])
        if response.status_code != 200:
            raise RuntimeError(f"txtai /search answered {response.status_code}: {response.text[:300]}")
        return [hit["id"] for hit in response.json()]

    def run_round(self, r: int) -> None:
        if self.server is None:
            self.start(self.bench.start_ef)

            def recall(ef: int) -> float:
                with http_client(self.base) as client:
                    return recall_at_k([self.bench.rows(self.get(client, i)) for i in range(self.data.nq)], self.data.truth)

            self.ef = calibrate(self, recall, self.bench.start_ef, self.restart, max_steps=3, down=False)
            self.rec.setting(
                self.name, efsearch=self.ef, m=16, efconstruction=100, how="API server: GET /search?query=<vector as JSON text>"
            )
        assert self.server is not None
        server = self.server
        with LeanHTTP(self.base) as lean:
            loop = sequential(lambda i: lean.request("GET", self.urls[i])[1], self.data.nq, server.cpu_s, self.plan)
        loop.record(self.rec, self.name, "nv1")
        self.rec.add(
            self.name, "nv1.recall", recall_at_k([self.bench.rows([h["id"] for h in json.loads(o)]) for o in loop.outputs], self.data.truth)
        )
        jobs = http_jobs(self.base, [("GET", u, None) for u in self.urls], self.plan)
        record_multi(self.rec, self.name, *concurrent(self.bench.pool, jobs, server.cpu_s))

    def close(self) -> None:
        if self.server:
            self.server.stop()


# -- in-process peers: hnswlib (the ceiling), tantivy (bm25) ---------------------------------------


class Hnswlib(System):
    name = "hnswlib"

    def setup(self) -> None:
        try:
            import hnswlib
        except ImportError as exc:
            raise Unavailable(f"hnswlib is not importable: {exc}") from exc
        graph = hnswlib.Index(space="cosine", dim=self.data.corpus.shape[1])
        graph.init_index(max_elements=self.data.n, ef_construction=100, M=16, random_seed=100)
        t0 = time.perf_counter()
        graph.add_items(self.data.corpus, np.arange(self.data.n), num_threads=os.cpu_count() or 1)
        graph.set_num_threads(1)
        self.graph = graph
        self.rec.note(self.name, f"built M=16 efC=100 over {self.data.n} vectors in {time.perf_counter() - t0:.1f} s (all cores)")
        queries = self.data.queries

        def recall(ef: int) -> float:
            graph.set_ef(ef)
            labels, _ = graph.knn_query(queries, k=K, num_threads=1)
            return recall_at_k(labels.tolist(), self.data.truth)

        self.ef = calibrate(self, recall, EF_LADDER[0], graph.set_ef, max_steps=len(EF_LADDER))
        graph.set_ef(self.ef)
        self.bench.start_ef = self.ef
        self.rec.setting(self.name, ef=self.ef, M=16, ef_construction=100, how="in process, 1 thread per query")

    def run_round(self, r: int) -> None:
        queries, graph = self.data.queries, self.graph
        loop = sequential(lambda i: graph.knn_query(queries[i], k=K)[0][0].tolist(), self.data.nq, time.process_time, self.plan)
        loop.record(self.rec, self.name, "nv1")
        self.rec.add(self.name, "nv1.recall", recall_at_k(loop.outputs, self.data.truth))
        self.threads(queries)

    def threads(self, queries: np.ndarray) -> None:
        """8 threads querying one at a time for plan.multi_s (knn_query releases the GIL)."""
        deadline = time.perf_counter() + self.plan.multi_s
        nq = len(queries)

        def client(c: int) -> list[float]:
            latencies: list[float] = []
            i = c * (nq // CLIENTS)
            while time.perf_counter() < deadline and len(latencies) < self.plan.max_per_client:
                t = time.perf_counter()
                self.graph.knn_query(queries[i % nq], k=K)
                latencies.append(time.perf_counter() - t)
                i += 1
            return latencies

        cpu0, busy0, t0 = time.process_time(), system_busy_s(), time.perf_counter()
        with ThreadPoolExecutor(CLIENTS) as pool:
            results = list(pool.map(client, range(CLIENTS)))
        elapsed = time.perf_counter() - t0
        cpu = time.process_time() - cpu0
        loop = Loop([x for r in results for x in r], elapsed, cpu, 0.0, max(0.0, system_busy_s() - busy0 - cpu) / elapsed)
        record_multi(self.rec, self.name, loop, None)


class Tantivy(System):
    """tantivy in process (as bench/search.py): fields text and lemma, the query parsed per search."""

    name = "tantivy"

    def setup(self) -> None:
        try:
            import tantivy
        except ImportError as exc:
            raise Unavailable(f"tantivy is not importable: {exc}") from exc
        builder = tantivy.SchemaBuilder()
        builder.add_text_field("id", stored=True, tokenizer_name="raw")
        builder.add_text_field("text", stored=False)
        builder.add_text_field("lemma", stored=False)
        index = tantivy.Index(builder.build())
        writer = index.writer(heap_size=200_000_000, num_threads=1)
        for row, entry in enumerate(self.data.entries):
            writer.add_document(tantivy.Document(id=self.data.uuids[row], text=entry["gloss"], lemma=entry["lemmas"][0]))
        writer.commit()
        writer.wait_merging_threads()
        index.reload()
        self.index = index
        self.searcher = index.searcher()
        self.rec.setting(self.name, fields="text, lemma (default tokenizer)", how="in process, 1 thread")

    def search(self, text: str) -> list[str]:
        query = self.index.parse_query(text.lower(), ["text", "lemma"])
        return [self.searcher.doc(address)["id"][0] for _, address in self.searcher.search(query, K).hits]

    def run_round(self, r: int) -> None:
        texts = self.bench.keyword_queries
        loop = sequential(lambda i: self.search(texts[i]), len(texts), time.process_time, self.plan)
        loop.record(self.rec, self.name, "bm25")
        if r == 0:
            self.rec.setting(self.name, bm25_top10=loop.outputs[:50])


# -- report ------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Figure:
    label: str
    metric: str
    fmt: str
    lower_is_better: bool = False
    cpu: str | None = None  # a CPU-per-query metric shown beside the value
    ratio: bool = True


FIGURES: list[Figure] = [
    Figure("nearVector QPS, 1 client (server CPU ms/query)", "nv1.qps", ",.0f", cpu="nv1.cpu_ms"),
    Figure("nearVector recall@10, 1 client", "nv1.recall", ".4f", ratio=False),
    Figure(
        "  other load during that loop (cores used by neither the system nor the client)",
        "nv1.other_cores",
        ".2f",
        lower_is_better=True,
        ratio=False,
    ),
    Figure("nearVector p50 ms, 1 client", "nv1.p50_ms", ".2f", lower_is_better=True),
    Figure("nearVector QPS, 8 clients (server CPU ms/query)", "nv8.qps", ",.0f", cpu="nv8.cpu_ms"),
    Figure("nearVector p50 ms, 8 clients", "nv8.p50_ms", ".2f", lower_is_better=True),
    Figure("nearVector p99 ms, 8 clients", "nv8.p99_ms", ".2f", lower_is_better=True),
    Figure("nearVector unfiltered p50 ms (filter query set)", "filter_none.p50_ms", ".2f", lower_is_better=True),
    *[
        fig
        for level in FILTER_LEVELS
        for fig in (
            Figure(f"filtered p50 ms, {level} % allowed", f"filter{level}.p50_ms", ".2f", lower_is_better=True),
            Figure(f"  filtered {level} % p50 ÷ own unfiltered p50", f"filter{level}.vs_unfiltered", ".2f", lower_is_better=True),
            Figure(f"  filtered {level} % recall@10 (exact filtered top-10)", f"filter{level}.recall", ".4f", ratio=False),
            Figure(f"  filtered {level} % answers with 10 hits", f"filter{level}.full", ".0%", ratio=False),
        )
    ],
    Figure("bm25 QPS, 1 client (server CPU ms/query)", "bm25.qps", ",.0f", cpu="bm25.cpu_ms"),
    Figure("bm25 p50 ms, 1 client", "bm25.p50_ms", ".2f", lower_is_better=True),
    Figure("hybrid p50 ms (alpha 0.5)", "hybrid.p50_ms", ".2f", lower_is_better=True),
    Figure("  hybrid p50 ÷ slower leg p50 (legs at limit 10)", "hybrid.vs_slower_leg", ".2f", lower_is_better=True, ratio=False),
    Figure("  hybrid p50 ÷ slower leg p50 (legs at hybrid's depth, limit 100)", "hybrid.vs_slower_leg_as_run", ".2f", lower_is_better=True, ratio=False),
    Figure("import objects/s (until searchable)", "import.obj_s", ",.0f"),
    Figure("disk bytes/object after a clean stop", "disk.bytes_per_object", ",.0f", lower_is_better=True),
    Figure("server RSS MB after import", "rss_after_import_mb", ",.0f", lower_is_better=True),
    Figure("restart after kill -9: ready s", "restart_kill9.ready_s", ".1f", lower_is_better=True, ratio=False),
    Figure("restart after kill -9: ready and a query works s", "restart_kill9.s", ".1f", lower_is_better=True, ratio=False),
    Figure("health probe p50 ms during 8-client load", "probe.p50_ms", ".2f", lower_is_better=True),
    Figure("health probe p99 ms during 8-client load", "probe.p99_ms", ".2f", lower_is_better=True),
]


def cell(rec: Record, system: str, fig: Figure) -> str:
    value = rec.med(system, fig.metric)
    if value is None:
        return ""
    text = format(value, fig.fmt)
    cpu = rec.med(system, fig.cpu) if fig.cpu else None
    return f"{text} ({cpu:.2f})" if cpu is not None else text


def ratio_text(value: float) -> str:
    return f"{value:.0f}x" if value >= 100 else f"{value:.2g}x"


def ratios(rec: Record, systems: Sequence[str], fig: Figure) -> str:
    mine = rec.med("searchd", fig.metric)
    if not fig.ratio or mine is None:
        return ""
    parts = []
    for peer in systems:
        theirs = rec.med(peer, fig.metric)
        if peer != "searchd" and theirs:
            parts.append(f"vs {peer}: {ratio_text(mine / theirs)}")
    return ", ".join(parts)


def table(rec: Record, systems: Sequence[str]) -> str:
    shown = [s for s in ("searchd", *systems) if s in rec.values and (s == "searchd" or s in systems)]
    shown = list(dict.fromkeys(shown))
    head = ["figure", *shown, "searchd ÷ peer"]
    lines = ["| " + " | ".join(head) + " |", "|---|" + "--:|" * len(shown) + "---|"]
    for fig in FIGURES:
        cells = [cell(rec, s, fig) for s in shown]
        if not any(cells):
            continue
        arrow = " ↓" if fig.lower_is_better else " ↑"
        lines.append("| " + " | ".join([fig.label + arrow, *cells, ratios(rec, shown, fig)]) + " |")
    return "\n".join(lines)


def overlap(a: Sequence[Sequence[str]], b: Sequence[Sequence[str]]) -> float | None:
    pairs = [(set(x), set(y)) for x, y in zip(a, b) if y]
    return float(np.mean([len(x & y) / len(y) for x, y in pairs])) if pairs else None


# -- main -----------------------------------------------------------------------------------


def make_plan(args: argparse.Namespace) -> Plan:
    if args.quick:
        return Plan(
            n=args.n or 10_000, nq=args.queries or 200, rounds=args.rounds or 1, filter_queries=100, hybrid_queries=100, multi_s=3.0
        )
    return Plan(n=args.n or 60_000, nq=args.queries or 1000, rounds=args.rounds or 3, filter_queries=300, hybrid_queries=200, multi_s=6.0)


def searchd_command(args: argparse.Namespace, tmp: Path, env: dict[str, Any]) -> tuple[list[str], dict[str, str]]:
    """The working tree's searchd, or a git archive snapshot of --searchd-rev run with PYTHONPATH."""
    env["searchd_source"] = git_state()
    if not args.searchd_rev:
        env["searchd_source"]["measured"] = "working tree"
        return [str(VENV_BIN / "searchd")], {}
    source = tmp / "searchd-src"
    commit = snapshot_searchd(args.searchd_rev, source)
    env["searchd_source"]["measured"] = f"snapshot of {args.searchd_rev} = {commit}"
    log(f"searchd: snapshot of {args.searchd_rev} = {commit}")
    return [sys.executable, "-m", "searchd"], {"PYTHONPATH": str(source)}


def build_systems(bench: Bench, wanted: set[str], searchd_argv: list[str], searchd_env: dict[str, str]) -> list[System]:
    factories: dict[str, Callable[[], System]] = {
        "hnswlib": lambda: Hnswlib(bench),
        "tantivy": lambda: Tantivy(bench),
        "searchd": lambda: Searchd(bench, searchd_argv, searchd_env),
        "chroma": lambda: Chroma(bench),
        "pgvector": lambda: Pgvector(bench),
        "txtai": lambda: Txtai(bench),
    }
    systems: list[System] = []
    for name in SYSTEMS:
        if name not in wanted:
            continue
        log(f"\n== setup: {name} == (load average {loadavg()})")
        system = factories[name]()
        try:
            system.setup()
            systems.append(system)
        except Unavailable as exc:
            bench.rec.skip(name, str(exc))
            system.close()
        except Exception as exc:  # noqa: BLE001 - reported; the other systems go on
            bench.rec.skip(name, f"setup failed: {type(exc).__name__}: {exc}")
            traceback.print_exc()
            system.close()
    return systems


def run_rounds(bench: Bench, systems: list[System]) -> None:
    failed: set[str] = set()
    for r in range(bench.plan.rounds):
        for system in systems:
            if system.name in failed:
                continue
            log(f"\n== round {r + 1}/{bench.plan.rounds}: {system.name} == (load average {loadavg()})")
            t0 = time.perf_counter()
            try:
                system.run_round(r)
            except Exception as exc:  # noqa: BLE001 - reported; the other systems go on
                failed.add(system.name)
                bench.rec.skip(system.name, f"round {r + 1} failed: {type(exc).__name__}: {exc}")
                traceback.print_exc()
            log(f"  ({system.name} round {r + 1}: {time.perf_counter() - t0:.0f} s)")


def report(bench: Bench, args: argparse.Namespace, env: dict[str, Any], elapsed: float) -> dict[str, Any]:
    rec = bench.rec
    shown = [s for s in SYSTEMS if s in rec.values]
    for key, other in (("searchd", "tantivy"),):
        a, b = rec.settings.get(key, {}).pop("bm25_top10", None), rec.settings.get(other, {}).pop("bm25_top10", None)
        if a and b:
            rec.setting(key, bm25_top10_overlap_with_tantivy=overlap(a, b))
    md = table(rec, shown)
    medians = {s: {m: median(v) for m, v in metrics.items()} for s, metrics in rec.values.items()}
    return {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "plan": dataclasses.asdict(bench.plan),
        "ground_truth": bench.data.truth_source,
        "elapsed_s": elapsed,
        "environment": env,
        "settings": rec.settings,
        "medians": medians,
        "rounds": rec.values,
        "notes": rec.notes,
        "skipped": rec.skips,
        "table_markdown": md,
        "loadavg_at_end": loadavg(),
    }


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smoke run: 10,000 objects, 200 queries, 1 round")
    parser.add_argument("--rounds", type=int, default=None, help="rounds (default 3; --quick: 1); each figure is the median")
    parser.add_argument("--n", type=int, default=None, help="objects (default 60000; --quick: 10000)")
    parser.add_argument("--queries", type=int, default=None, help="nearVector/bm25 queries (default 1000; --quick: 200)")
    parser.add_argument("--only", default=",".join(SYSTEMS), help=f"comma-separated systems: {','.join(SYSTEMS)}")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the wordnet-minilm data directory")
    parser.add_argument("--out", type=Path, default=HERE / "results-engine.json", help="JSON results")
    parser.add_argument(
        "--searchd-rev", default=None, help="benchmark searchd as committed at this git revision (e.g. HEAD) instead of the working tree"
    )
    args = parser.parse_args(argv)
    unknown = {s.strip() for s in args.only.split(",") if s.strip()} - set(SYSTEMS)
    if unknown:
        parser.error(f"unknown system(s) {', '.join(sorted(unknown))}; choose from {', '.join(SYSTEMS)}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    plan = make_plan(args)
    wanted = {s.strip() for s in args.only.split(",") if s.strip()}
    tmp = Path(tempfile.mkdtemp(prefix="searchd-engine-bench-"))
    env = environment(PACKAGES)
    began = time.perf_counter()
    log(f"machine: {env['nproc']} cores, {env['cpu']}, Python {env['python']}, load average {env['loadavg_at_start']}")
    log(f"plan: {plan}")
    data = load_dataset(args.data, plan.n, plan.nq)
    log(f"data: {data.n} objects x {data.corpus.shape[1]}, {data.nq} queries; ground truth: {data.truth_source}")
    systems: list[System] = []
    pool = multiprocessing.get_context("spawn").Pool(CLIENTS)
    bench = Bench(plan, data, tmp, pool)
    try:
        searchd_argv, searchd_env = searchd_command(args, tmp, env)
        systems = build_systems(bench, wanted, searchd_argv, searchd_env)
        run_rounds(bench, systems)
    except KeyboardInterrupt:
        log("interrupted: writing what was measured")
    finally:
        for system in systems:
            with contextlib.suppress(Exception):
                system.close()
        Server.stop_all()
        pool.terminate()
        shutil.rmtree(tmp, ignore_errors=True)
    result = report(bench, args, env, time.perf_counter() - began)
    log(f"\n== results: n={data.n}, {data.nq} queries, median of {plan.rounds} round(s), {result['elapsed_s'] / 60:.1f} min ==")
    log("cells: median value (server CPU ms/query); ↑ higher is better, ↓ lower is better; ratios are searchd ÷ peer\n")
    log(result["table_markdown"])
    log("\nsettings: " + json.dumps({s: {k: v for k, v in d.items() if k != "plans"} for s, d in bench.rec.settings.items()}))
    for name, why in bench.rec.skips.items():
        log(f"skipped {name}: {why}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, default=str))
    log(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    finally:
        Server.stop_all()
