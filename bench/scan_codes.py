"""Recall of the int8 scan codes (searchd/index/codes.py) for the exact scan of a narrow filter.

A narrow filter's docs are ranked by their int8 codes, and the best ``rerank_count(k)`` are
re-ranked on their float vectors.  This measures recall@10 of that against the exact filtered
top-10, on two data sets (the WordNet/MiniLM corpus, and Gaussian clusters of another shape),
for filters letting 1 % and 5 % of the objects through, with the real ``ScanCodes`` class.

    SEARCHD_BENCH_DATA=/work/shared/data/wordnet-minilm .venv/bin/python bench/scan_codes.py [--queries 300]
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np

from searchd.config.spec import Distance
from searchd.index.base import distances, prepare
from searchd.index.codes import ScanCodes, rerank_count

K = 10


def wordnet(limit: int) -> tuple[np.ndarray, np.ndarray]:
    folder = Path(os.environ.get("SEARCHD_BENCH_DATA", "/work/shared/data/wordnet-minilm"))
    corpus = np.load(folder / "corpus.f16.npy")[:limit].astype(np.float32)
    return corpus, np.load(folder / "queries.f16.npy").astype(np.float32)


def clusters(n: int, dims: int = 128, seed: int = 5) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(64, dims)) * 4
    corpus = (centres[rng.integers(64, size=n)] + rng.normal(size=(n, dims)) * rng.uniform(0.3, 3.0, size=(n, 1))).astype(np.float32)
    queries = (centres[rng.integers(64, size=2000)] + rng.normal(size=(2000, dims))).astype(np.float32)
    return corpus, queries


def measure(name: str, corpus: np.ndarray, queries: np.ndarray, metric: Distance, count: int, rng: np.random.Generator) -> None:
    rows = np.stack([prepare(v, metric) for v in corpus]) if metric is Distance.COSINE else corpus
    codes = ScanCodes(corpus.shape[1], metric)
    docs = np.arange(len(rows), dtype=np.int64)
    codes.put(docs, rows)
    for share in (0.01, 0.05):
        found = []
        for query in queries[:count]:
            q = prepare(query, metric)
            allowed = np.sort(rng.choice(docs, size=int(len(docs) * share), replace=False))
            exact = allowed[np.argsort(distances(rows[allowed], q, metric), kind="stable")[:K]]
            candidates = codes.nearest(q, codes.held(allowed), rerank_count(K))
            got = candidates[np.argsort(distances(rows[candidates], q, metric), kind="stable")[:K]]
            found.append(len(set(got.tolist()) & set(exact.tolist())) / K)
        print(
            f"{name:34} {metric.value:10} {share:4.0%} allowed ({int(len(docs) * share):5} docs): recall@10 mean {np.mean(found):.4f}, "
            f"min {np.min(found):.2f}; codes {codes.nbytes / len(docs):.0f} B/object"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--n", type=int, default=60_000)
    args = parser.parse_args()
    rng = np.random.default_rng(1)
    corpus, queries = wordnet(args.n)
    measure("WordNet glosses, MiniLM 384-d", corpus, queries, Distance.COSINE, args.queries, rng)
    corpus, queries = clusters(args.n)
    for metric in (Distance.COSINE, Distance.DOT, Distance.L2_SQUARED):
        measure("Gaussian clusters 128-d", corpus, queries, metric, args.queries, rng)


if __name__ == "__main__":
    main()
