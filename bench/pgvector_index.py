#!/usr/bin/env python3
"""The pgvector index type against searchd's in-memory hnsw, both through searchd's HTTP API, in the same run.

    .venv/bin/python bench/pgvector_index.py                  # 60,000 objects, 1,000 queries, 3 rounds
    .venv/bin/python bench/pgvector_index.py --limit 5000 --queries 200 --rounds 1 --seconds 5   # a quick look

Needs PostgreSQL 15 with pgvector (scripts/pgvector.sh) and the data set of bench/benchdata.py
($SEARCHD_BENCH_DATA).  One throwaway cluster (scripts/pgcluster.py, shared_buffers raised to 1 GB) holds
two databases; two `searchd serve` processes keep their objects there, one collection each, alike but
for the index: `{type: pgvector}` (HNSW in the database) or `{type: hnsw}` (hnswlib in the process);
both m = 16, efConstruction = 64.  They run one at a time, so the cluster's CPU is the measured one's.

Per system: import (POST /v1/batch/objects, 500 a batch, until searchable), then `ef` calibrated once
(the smallest of a ladder reaching recall@10 >= 0.95 over the queries, applied by POST /v1/config/reload:
an in-place change), then each round measures
  * nearVector with 1 client (sequential, one keep-alive connection) and 8 clients (8 processes, a fixed time):
    QPS, p50, and server CPU per query = the searchd process's CPU plus PostgreSQL's (the postmaster's
    process tree, its backends included, from /proc) over the queries;
  * nearVector with `where: bucket < 1 / 30 / 90` (1 %, 30 %, 90 % of the objects allowed), 1 client:
    p50, recall@10 against the exact filtered top 10, and how many answers had fewer than 10 hits.
Figures are medians over the rounds; everything is written to bench/results-pgvector-index.json.
"""

from __future__ import annotations

import os

os.environ.update({"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "NUMEXPR_NUM_THREADS": "1"})

import argparse
import json
import multiprocessing
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from common import (
    DEFAULT_DATA,
    ClientJob,
    Dataset,
    K,
    Server,
    exact_top,
    free_port,
    load_dataset,
    log,
    median,
    percentile_ms,
    recall_at_k,
    run_client,
    tree_cpu_s,
)

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))
from scripts.pgcluster import Cluster  # (the repository's throwaway cluster, once REPO is on the path)

LADDER = [16, 24, 32, 40, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1000]
TARGET = 0.95
FILTERS = (1, 30, 90)
CLIENTS = 8
BATCH = 500
INDEXES = {"pgvector": "pgvector", "hnsw": "hnsw"}


def config(kind: str, ef: int) -> dict[str, Any]:
    return {
        "server": {"storage": {"backend": "postgres", "url": "${SEARCHD_DATABASE_URL}"}, "reload": {"watch": False}, "limits": {"maxConcurrentQueries": 16}},
        "collections": [
            {
                "name": "Gloss",
                "properties": [{"name": "text", "type": "TEXT"}, {"name": "bucket", "type": "INT"}],
                "vectors": {
                    "v": {
                        "vectorizer": {"module": "none", "dimensions": 384},
                        "index": {"type": kind, "distance": "cosine", "maxConnections": 16, "efConstruction": 64, "ef": ef},
                    }
                },
            }
        ],
    }


def body(vector_text: str, level: int | None = None) -> bytes:
    where = "" if level is None else f', where: {{path: ["bucket"], operator: LessThan, valueInt: {level}}}'
    return json.dumps({"query": f"{{ Get {{ Gloss(nearVector: {{vector: {vector_text}}}, limit: {K}{where}) {{ _additional {{ id }} }} }} }}"}).encode()


class Measured:
    """One searchd server over its own database, and the CPU it and PostgreSQL spend."""

    def __init__(self, kind: str, cluster: Cluster, data: Dataset, work: Path, python: str) -> None:
        import httpx

        self.kind, self.cluster, self.data = kind, cluster, data
        self.database = cluster.new_database()
        self.config_path = work / f"{kind}.yaml"
        self.config_path.write_text(yaml.safe_dump(config(kind, 64)))
        self.port = free_port()
        env = {"SEARCHD_DATABASE_URL": cluster.url(self.database)}
        argv = [python, "-m", "searchd", "serve", str(self.config_path), "--data", str(work / f"{kind}-data"), "--host", "127.0.0.1", "--port", str(self.port), "--grpc-port", "0"]
        self.server = Server(f"searchd-{kind}", argv, work / f"{kind}.log", env=env, cwd=work)
        self.base = f"http://127.0.0.1:{self.port}"
        self.server.wait_http(self.base + "/v1/.well-known/ready", 300)
        self.http = httpx.Client(base_url=self.base, timeout=120, trust_env=False, headers={"Content-Type": "application/json"})
        self.row_of = data.row_of
        self.ef = 64

    def cpu(self) -> float:
        postmaster = int((self.cluster.data / "postmaster.pid").read_text().split()[0])
        return tree_cpu_s(self.server.pid) + tree_cpu_s(postmaster)

    def import_all(self) -> float:
        data, started = self.data, time.perf_counter()
        for start in range(0, data.n, BATCH):
            rows = range(start, min(start + BATCH, data.n))
            objects = ",".join(
                f'{{"class":"Gloss","id":"{data.uuids[r]}","properties":{json.dumps({"text": data.entries[r]["gloss"], "bucket": r % 100})},"vector":{data.vec_text[r]}}}'
                for r in rows
            )
            response = self.http.post("/v1/batch/objects", content=('{"objects":[' + objects + "]}").encode())
            response.raise_for_status()
            if any(r["result"].get("status") != "SUCCESS" for r in response.json()):
                raise RuntimeError(f"{self.kind}: import refused objects: {response.text[:300]}")
        return data.n / (time.perf_counter() - started)

    def search(self, payload: bytes) -> tuple[list[int], float]:
        began = time.perf_counter()
        response = self.http.post("/v1/graphql", content=payload)
        took = time.perf_counter() - began
        answer = response.json()
        if response.status_code != 200 or "errors" in answer:
            raise RuntimeError(f"{self.kind}: {response.status_code} {response.text[:300]}")
        return [self.row_of[h["_additional"]["id"]] for h in answer["data"]["Get"]["Gloss"]], took

    def set_ef(self, ef: int) -> None:
        self.config_path.write_text(yaml.safe_dump(config(self.kind, ef)))
        result = self.http.post("/v1/config/reload").json()
        if result.get("result") not in ("applied", "unchanged"):
            raise RuntimeError(f"{self.kind}: reload to ef {ef}: {result}")
        self.ef = ef

    def calibrate(self, bodies: list[bytes]) -> dict[int, float]:
        tried: dict[int, float] = {}
        for ef in LADDER:
            self.set_ef(ef)
            tried[ef] = recall_at_k([self.search(b)[0] for b in bodies], self.data.truth)
            log(f"  [{self.kind}] ef {ef}: recall@10 {tried[ef]:.4f}")
            if tried[ef] >= TARGET:
                break
        return tried

    def one_client(self, bodies: list[bytes], seconds: float) -> dict[str, float]:
        cpu0, began, latencies = self.cpu(), time.perf_counter(), []
        for payload in bodies:
            latencies.append(self.search(payload)[1])
            if time.perf_counter() - began > seconds:
                break
        elapsed, cpu = time.perf_counter() - began, self.cpu() - cpu0
        return {"qps": len(latencies) / elapsed, "p50_ms": percentile_ms(latencies, 50), "cpu_ms_per_query": 1000 * cpu / len(latencies)}

    def many_clients(self, pool: Any, bodies: list[bytes], seconds: float) -> dict[str, float]:
        requests = [("POST", "/v1/graphql", b) for b in bodies]
        start_at, step = time.time() + 2.0, max(1, len(requests) // CLIENTS)
        jobs = [ClientJob("http", self.base, requests, c * step, start_at, seconds, 10**9, b'"errors"') for c in range(CLIENTS)]
        pending = pool.map_async(run_client, jobs)
        time.sleep(max(0.0, start_at - time.time()))
        cpu0 = self.cpu()
        results = pending.get(timeout=seconds + 180)
        cpu = self.cpu() - cpu0
        latencies = [x for r in results for x in r.latencies]
        elapsed = max(r.ended for r in results) - min(r.began for r in results)
        errors = sum(r.errors for r in results)
        return {"qps": len(latencies) / elapsed, "p50_ms": percentile_ms(latencies, 50), "cpu_ms_per_query": 1000 * cpu / len(latencies), "errors": errors}

    def filtered(self, level: int, bodies: list[bytes], truth: np.ndarray, seconds: float) -> dict[str, float]:
        found, latencies, began = [], [], time.perf_counter()
        for payload in bodies:
            rows, took = self.search(payload)
            found.append(rows)
            latencies.append(took)
            if time.perf_counter() - began > seconds:
                break
        return {
            "p50_ms": percentile_ms(latencies, 50),
            "recall": recall_at_k(found, truth[: len(found)]),
            "short_answers": sum(len(rows) < K for rows in found),
            "all_pass": float(all(r % 100 < level for rows in found for r in rows)),
        }

    def close(self) -> None:
        self.http.close()
        self.server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--limit", type=int, default=60_000, help="objects (the first N corpus rows)")
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each timed loop")
    parser.add_argument("--python", default=str(REPO / ".venv" / "bin" / "python"), help="the Python that runs searchd")
    parser.add_argument("--out", type=Path, default=HERE / "results-pgvector-index.json")
    args = parser.parse_args()

    data = load_dataset(args.data, args.limit, args.queries)
    buckets = np.arange(data.n) % 100
    truths = {level: exact_top(data.queries, data.corpus, allowed=buckets < level) for level in FILTERS}
    plain = [body(t) for t in data.query_text]
    filtered = {level: [body(t, level) for t in data.query_text] for level in FILTERS}
    results: dict[str, Any] = {"objects": data.n, "queries": data.nq, "rounds": args.rounds, "systems": {}}
    cluster = Cluster(settings={"shared_buffers": "1GB", "maintenance_work_mem": "512MB"})
    try:
        with tempfile.TemporaryDirectory(prefix="searchd-pgvector-bench-") as tmp, multiprocessing.get_context("spawn").Pool(CLIENTS) as pool:
            for kind in INDEXES:
                log(f"{kind}: importing {data.n} objects")
                system = Measured(kind, cluster, data, Path(tmp), args.python)
                try:
                    mine: dict[str, Any] = {"import_objects_per_s": system.import_all()}
                    log(f"  [{kind}] import: {mine['import_objects_per_s']:.0f} objects/s")
                    mine["calibration"] = system.calibrate(plain)
                    mine["ef"] = system.ef
                    rounds = []
                    for r in range(args.rounds):
                        log(f"  [{kind}] round {r + 1}")
                        rounds.append(
                            {
                                "nv1": system.one_client(plain, args.seconds),
                                "nv8": system.many_clients(pool, plain, args.seconds),
                                **{f"filter{level}": system.filtered(level, filtered[level], truths[level], args.seconds) for level in FILTERS},
                            }
                        )
                    mine["rounds"] = rounds
                    mine["median"] = {part: {m: median([x[part][m] for x in rounds]) for m in rounds[0][part]} for part in rounds[0]}
                    results["systems"][kind] = mine
                finally:
                    system.close()
    finally:
        cluster.stop()
    args.out.write_text(json.dumps(results, indent=2))
    log(f"\nmedians of {args.rounds} round(s), {data.n} objects, {data.nq} queries (written to {args.out})")
    log(f"{'':>22} " + " ".join(f"{k:>12}" for k in INDEXES) + "   pgvector / hnsw")
    for label, key in (("import objects/s", "import_objects_per_s"), ("ef (recall >= 0.95)", "ef")):
        values = [results["systems"][k][key] for k in INDEXES]
        log(f"{label:>22} " + " ".join(f"{v:>12.0f}" for v in values) + f"   {values[0] / values[1]:.2f}")
    for part in ("nv1", "nv8", *(f"filter{level}" for level in FILTERS)):
        for metric in results["systems"]["pgvector"]["median"][part]:
            values = [results["systems"][k]["median"][part][metric] for k in INDEXES]
            ratio = f"{values[0] / values[1]:.2f}" if values[1] else "-"
            log(f"{part + ' ' + metric:>22} " + " ".join(f"{v:>12.3f}" for v in values) + f"   {ratio}")


if __name__ == "__main__":
    main()
