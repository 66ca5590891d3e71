"""langchain-weaviate's ``WeaviateVectorStore`` over a collection declared in YAML, against a real searchd.

The store writes with the v4 client's ``batch.dynamic()`` (gRPC BatchObjects, sized from /v1/nodes) and
``similarity_search`` is a gRPC hybrid search with the query text and its embedding.  The expected
documents come from a reference computed here from the texts alone: Weaviate's BM25 (k1 1.2, b 0.75),
cosine similarity of the embeddings, and relativeScoreFusion (min-max per leg).  Without an alpha the v4
client sends 0.7 itself (to a server whose version is below 1.36.6, as searchd's Weaviate API version is).
"""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from tests.grpc_support import connect, running
from tests.test_e2e_server import Server

langchain_weaviate = pytest.importorskip("langchain_weaviate", reason="the langchain-weaviate test extra is not installed")
fake = pytest.importorskip("langchain_core.embeddings.fake")

DIMENSIONS = 32
CONFIG = f"""\
server:
  host: 127.0.0.1
collections:
  - name: Note
    properties:
      - {{name: text, type: TEXT}}
      - {{name: chapter, type: INT}}
    vectors:
      default:
        vectorizer: {{module: none, dimensions: {DIMENSIONS}}}
        index: {{type: flat, distance: cosine}}
"""
# No English stopwords, so the reference BM25 needs no stopword list; some words repeat, so BM25 ranks.
TEXTS = [
    "red apples grow on orchard trees",
    "green pears ripen slowly",
    "orchard apples ripen early",
    "fast cars race on highways",
    "quiet rivers flow past old mills",
    "apples apples everywhere apples",
    "old maps show quiet rivers",
    "loud cities never sleep",
    "pears apples plums cherries",
    "highways cross wide rivers",
    "cherries ripen late summer",
    "mills grind grain slowly",
]
IDS = [str(uuid.uuid5(uuid.NAMESPACE_URL, f"langchain-note-{n}")) for n in range(len(TEXTS))]
K1, B = 1.2, 0.75
CLIENT_ALPHA = 0.7  # what weaviate-client 4.x sends when hybrid() is given no alpha


def tokens(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())  # Weaviate's word tokenization, lowercased


def bm25_scores(query: str) -> dict[int, float]:
    """Weaviate's BM25 over ``text``: idf ln(1 + (N - n + 0.5) / (n + 0.5)), summed over the query's distinct terms."""
    docs = [tokens(t) for t in TEXTS]
    average = sum(len(d) for d in docs) / len(docs)
    scores: dict[int, float] = {}
    for term in set(tokens(query)):
        holding = sum(1 for d in docs if term in d)
        if not holding:
            continue
        idf = math.log(1 + (len(docs) - holding + 0.5) / (holding + 0.5))
        for row, doc in enumerate(docs):
            tf = doc.count(term)
            if tf:
                scores[row] = scores.get(row, 0.0) + idf * tf * (K1 + 1) / (tf + K1 * (1 - B + B * len(doc) / average))
    return scores


def vector_scores(embedding: Any, query: str) -> dict[int, float]:
    """1 - cosine distance of the query's embedding to every text's."""
    docs = np.asarray(embedding.embed_documents(TEXTS), dtype=np.float32)
    q = np.asarray(embedding.embed_query(query), dtype=np.float32)
    similarity = docs @ q / (np.linalg.norm(docs, axis=1) * np.linalg.norm(q))
    return {row: float(value) for row, value in enumerate(similarity)}


def normalised(scores: dict[int, float]) -> dict[int, float]:
    low, high = min(scores.values()), max(scores.values())
    return {row: 1.0 if high == low else (value - low) / (high - low) for row, value in scores.items()}


def reference(embedding: Any, query: str, k: int, alpha: float) -> list[tuple[int, float]]:
    """The top k (row, score) of relativeScoreFusion over the BM25 leg and the vector leg."""
    fused: dict[int, float] = {}
    for weight, leg in ((1 - alpha, bm25_scores(query)), (alpha, vector_scores(embedding, query))):
        if weight > 0 and leg:
            for row, value in normalised(leg).items():
                fused[row] = fused.get(row, 0.0) + weight * value
    return sorted(fused.items(), key=lambda item: -item[1])[:k]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, tuple[Server, int], list[str]]]:
    """The store over the YAML-declared collection, the server, and the ids add_texts returned."""
    with running(tmp_path_factory.mktemp("langchain"), config_yaml=CONFIG) as server, connect(*server) as client:
        embedding = fake.DeterministicFakeEmbedding(size=DIMENSIONS)
        vector_store = langchain_weaviate.WeaviateVectorStore(client=client, index_name="Note", text_key="text", embedding=embedding)
        ids = vector_store.add_texts(TEXTS, metadatas=[{"chapter": n} for n in range(len(TEXTS))], ids=IDS)
        yield vector_store, server, ids


def stored(server: tuple[Server, int]) -> dict[str, dict[str, Any]]:
    import httpx

    body = httpx.get(f"{server[0].url}/v1/objects", params={"class": "Note", "limit": 100, "include": "vector"}, timeout=30, trust_env=False).json()
    return {o["id"]: o for o in body["objects"]}


def test_add_texts_stores_each_text_with_its_metadata_and_embedding(store: tuple[Any, tuple[Server, int], list[str]]) -> None:
    vector_store, server, ids = store
    assert ids == IDS
    objects = stored(server)
    assert sorted(objects) == sorted(IDS)
    embedding = vector_store.embeddings
    for n, object_id in enumerate(IDS):
        assert objects[object_id]["properties"] == {"text": TEXTS[n], "chapter": n}
        assert objects[object_id]["vector"] == pytest.approx(embedding.embed_query(TEXTS[n]), rel=1e-6)


@pytest.mark.parametrize(
    ("query", "k", "options"),
    [
        ("orchard apples ripen early", 4, {}),  # a stored text: both legs put it first
        ("apples ripen", 5, {}),
        ("quiet rivers", 3, {"alpha": 0.5}),
        ("highways", 4, {"alpha": 1.0}),  # the vector leg alone: the texts nearest the embedding of "highways"
    ],
)
def test_similarity_search_returns_the_reference_documents(store: tuple[Any, tuple[Server, int], list[str]], query: str, k: int, options: dict[str, Any]) -> None:
    vector_store = store[0]
    expected = reference(vector_store.embeddings, query, k, options.get("alpha", CLIENT_ALPHA))
    found = vector_store.similarity_search_with_score(query, k=k, **options)
    assert [(d.page_content, d.metadata) for d, _ in found] == [(TEXTS[row], {"chapter": row}) for row, _ in expected]
    assert [score for _, score in found] == pytest.approx([score for _, score in expected], abs=1e-5)
    documents = vector_store.similarity_search(query, k=k, **options)
    assert [d.page_content for d in documents] == [TEXTS[row] for row, _ in expected]
