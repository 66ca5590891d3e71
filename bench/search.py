"""Keyword, hybrid and filter benchmarks on the WordNet glosses (wordnet-minilm: see bench/benchdata.py).

    bench/.venv/bin/python bench/search.py [--n 60000] [--queries 500] [--quick] [--data DIR]

1. BM25 index time and QPS (one thread, sequential): searchd's BM25Index in-process,
   against tantivy (tantivy-py) and bm25s in the same run, plus top-10 agreement with tantivy.
2. Over HTTP on a real server: bm25, nearVector and hybrid latency p50/p95 (the cost of
   fusion = hybrid p50 / slower leg p50), and nearVector with selective / broad where
   filters against the unfiltered search.
Prints a table; writes bench/results-search.json.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from benchdata import bench_data, default_data_dir  # bench/ is sys.path[0] when this runs as a script

ROOT = Path(__file__).resolve().parents[1]
WORDS = re.compile(r"[^\W_]+")


def load(data: Path, n: int, queries: int) -> tuple[list[dict[str, Any]], np.ndarray, list[str], np.ndarray]:
    corpus = [json.loads(line) for _, line in zip(range(n), open(data / "corpus.jsonl", encoding="utf-8"))]  # noqa: SIM115 (held open for the life of a process)
    vectors = np.load(data / "corpus.f16.npy")[:n].astype(np.float32)
    entries = [json.loads(line) for _, line in zip(range(queries), open(data / "queries.jsonl", encoding="utf-8"))]  # noqa: SIM115 (held open for the life of a process)
    # Queries: a query entry's first lemma plus the first words of its gloss (what a user would type).
    texts = [" ".join([e["lemmas"][0], *WORDS.findall(e["gloss"])[:4]]) for e in entries]
    query_vectors = np.load(data / "queries.f16.npy")[:queries].astype(np.float32)
    return corpus, vectors, texts, query_vectors


def doc_text(entry: dict[str, Any]) -> str:
    return f"{entry['lemmas'][0]}: {entry['gloss']}"


def timed(fn: Callable[[str], Any], queries: list[str]) -> tuple[float, list[Any]]:
    started = time.perf_counter()
    results = [fn(q) for q in queries]
    return len(queries) / (time.perf_counter() - started), results


def bench_searchd_bm25(corpus: list[dict[str, Any]], queries: list[str]) -> tuple[dict[str, float], list[list[str]]]:
    from searchd.config.spec import CollectionSpec, PropertySpec, PropertyType
    from searchd.index.bm25 import BM25Index

    spec = CollectionSpec("Gloss", (PropertySpec("text", PropertyType.TEXT),))
    started = time.perf_counter()
    index = BM25Index(spec)
    for doc, entry in enumerate(corpus):  # the index is keyed by the store's integer doc
        index.upsert(doc, {"text": doc_text(entry)})
    build = time.perf_counter() - started
    qps, results = timed(lambda q: [corpus[h.id]["id"] for h in index.search(q, 10)], queries)
    return {"index_s": build, "qps": qps}, results


def bench_tantivy(corpus: list[dict[str, Any]], queries: list[str]) -> tuple[dict[str, float], list[list[str]]]:
    import tantivy

    builder = tantivy.SchemaBuilder()
    builder.add_text_field("id", stored=True, tokenizer_name="raw")
    builder.add_text_field("text", stored=False)
    schema = builder.build()
    started = time.perf_counter()
    index = tantivy.Index(schema)
    writer = index.writer(heap_size=200_000_000, num_threads=1)
    for entry in corpus:
        writer.add_document(tantivy.Document(id=entry["id"], text=doc_text(entry)))
    writer.commit()
    writer.wait_merging_threads()
    index.reload()
    build = time.perf_counter() - started
    searcher = index.searcher()

    def search(q: str) -> list[str]:
        query = index.parse_query(" ".join(WORDS.findall(q.lower())), ["text"])
        return [searcher.doc(address)["id"][0] for _, address in searcher.search(query, 10).hits]

    qps, results = timed(search, queries)
    return {"index_s": build, "qps": qps}, results


def bench_bm25s(corpus: list[dict[str, Any]], queries: list[str]) -> dict[str, float]:
    import bm25s

    started = time.perf_counter()
    retriever = bm25s.BM25(k1=1.2, b=0.75)
    retriever.index(bm25s.tokenize([doc_text(e) for e in corpus], stopwords="en", show_progress=False), show_progress=False)
    build = time.perf_counter() - started
    qps, _ = timed(lambda q: retriever.retrieve(bm25s.tokenize([q], stopwords="en", show_progress=False), k=10, show_progress=False, n_threads=1), queries)
    return {"index_s": build, "qps": qps}


def overlap(a: list[list[str]], b: list[list[str]]) -> float:
    return float(np.mean([len(set(x) & set(y)) / max(1, len(y)) for x, y in zip(a, b)]))


# -- HTTP -------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


CONFIG = """
collections:
  - name: Gloss
    properties:
      - {name: text, type: TEXT}
      - {name: pos, type: TEXT, tokenization: field}
      - {name: rank, type: INT}
    vectors:
      v:
        vectorizer: {module: none, dimensions: 384}
        index: {type: hnsw, distance: cosine, ef: 64}
"""


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {"p50_ms": 1000 * statistics.median(ordered), "p95_ms": 1000 * ordered[int(0.95 * (len(ordered) - 1))]}


def bench_http(corpus: list[dict[str, Any]], vectors: np.ndarray, texts: list[str], query_vectors: np.ndarray) -> dict[str, Any]:
    import httpx

    work = Path(tempfile.mkdtemp(prefix="searchd-bench-"))
    (work / "searchd.yaml").write_text(CONFIG)
    port = free_port()
    log = open(work / "server.log", "w")  # noqa: SIM115 (held open for the life of a process)
    server = subprocess.Popen([sys.executable, "-m", "searchd", "serve", str(work / "searchd.yaml"), "--data", str(work / "data"), "--port", str(port), "--grpc-port", "0", "--log-level", "warning"], stdout=log, stderr=log)
    base = f"http://127.0.0.1:{port}"
    results: dict[str, Any] = {}
    try:
        with httpx.Client(base_url=base, timeout=120) as client:
            for _ in range(300):
                try:
                    if client.get("/v1/.well-known/ready").status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.1)
            started = time.perf_counter()
            for start in range(0, len(corpus), 500):
                objects = [
                    {"class": "Gloss", "id": str(uuid.uuid5(uuid.NAMESPACE_OID, e["id"])), "properties": {"text": doc_text(e), "pos": e["pos"], "rank": start + i}, "vector": vectors[start + i].tolist()}
                    for i, e in enumerate(corpus[start : start + 500])
                ]
                response = client.post("/v1/batch/objects", json={"objects": objects})
                response.raise_for_status()
            results["import_objects_per_s"] = len(corpus) / (time.perf_counter() - started)

            def run(query: str, variables: dict[str, Any]) -> float:
                began = time.perf_counter()
                body = client.post("/v1/graphql", json={"query": query, "variables": variables}).json()
                elapsed = time.perf_counter() - began
                if body.get("errors"):
                    raise RuntimeError(body["errors"])
                return elapsed

            fields = "{ _additional { id } }"
            cases = {
                "bm25": (f"query($q: String!) {{ Get {{ Gloss(bm25: {{query: $q}}, limit: 10) {fields} }} }}", lambda i: {"q": texts[i]}),
                "nearVector": (f"query($v: Vector!) {{ Get {{ Gloss(nearVector: {{vector: $v}}, limit: 10) {fields} }} }}", lambda i: {"v": query_vectors[i].tolist()}),
                "hybrid": (f"query($q: String!, $v: Vector!) {{ Get {{ Gloss(hybrid: {{query: $q, vector: $v}}, limit: 10) {fields} }} }}", lambda i: {"q": texts[i], "v": query_vectors[i].tolist()}),
                "nearVector + where rank < 500 (selective)": (
                    f'query($v: Vector!) {{ Get {{ Gloss(nearVector: {{vector: $v}}, limit: 10, where: {{path: ["rank"], operator: LessThan, valueInt: 500}}) {fields} }} }}',
                    lambda i: {"v": query_vectors[i].tolist()},
                ),
                "nearVector + where pos = r (adverbs)": (
                    f'query($v: Vector!) {{ Get {{ Gloss(nearVector: {{vector: $v}}, limit: 10, where: {{path: ["pos"], operator: Equal, valueText: "r"}}) {fields} }} }}',
                    lambda i: {"v": query_vectors[i].tolist()},
                ),
                "nearVector + where pos = n (broad)": (
                    f'query($v: Vector!) {{ Get {{ Gloss(nearVector: {{vector: $v}}, limit: 10, where: {{path: ["pos"], operator: Equal, valueText: "n"}}) {fields} }} }}',
                    lambda i: {"v": query_vectors[i].tolist()},
                ),
                "listing where rank = x (indexed filter)": (f'query($r: FilterValue) {{ Get {{ Gloss(limit: 10, where: {{path: ["rank"], operator: Equal, valueInt: $r}}) {fields} }} }}', lambda i: {"r": i * 7}),
            }
            for name, (query, variables) in cases.items():
                for i in range(min(20, len(texts))):  # warm-up
                    run(query, variables(i))
                samples = [run(query, variables(i)) for i in range(len(texts))]
                results[name] = percentiles(samples)
            legs = max(results["bm25"]["p50_ms"], results["nearVector"]["p50_ms"])
            results["hybrid_p50_over_slower_leg_p50"] = results["hybrid"]["p50_ms"] / legs
            results["selective_filter_p50_over_unfiltered_p50"] = results["nearVector + where rank < 500 (selective)"]["p50_ms"] / results["nearVector"]["p50_ms"]
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(60)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=60_000)
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--quick", action="store_true", help="5,000 documents, 100 queries")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results-search.json"))
    parser.add_argument("--data", type=Path, default=default_data_dir(), help="the wordnet-minilm data directory (see bench/benchdata.py)")
    args = parser.parse_args()
    data = bench_data(args.data, needs=("corpus.jsonl", "corpus.f16.npy", "queries.jsonl", "queries.f16.npy"))
    if args.quick:
        args.n, args.queries = 5000, 100
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    corpus, vectors, texts, query_vectors = load(data, args.n, args.queries)
    report: dict[str, Any] = {"n": len(corpus), "queries": len(texts)}
    searchd_stats, searchd_results = bench_searchd_bm25(corpus, texts)
    report["bm25 searchd (in-process)"] = searchd_stats
    try:
        tantivy_stats, tantivy_results = bench_tantivy(corpus, texts)
        report["bm25 tantivy (in-process)"] = tantivy_stats
        report["top10 overlap searchd vs tantivy"] = overlap(searchd_results, tantivy_results)
    except ImportError as exc:
        report["bm25 tantivy (in-process)"] = f"skipped: {exc}"
    try:
        report["bm25 bm25s (in-process)"] = bench_bm25s(corpus, texts)
    except ImportError as exc:
        report["bm25 bm25s (in-process)"] = f"skipped: {exc}"
    report["http"] = bench_http(corpus, vectors, texts, query_vectors)
    Path(args.out).write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
