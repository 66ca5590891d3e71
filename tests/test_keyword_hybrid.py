"""BM25, hybrid fusion, autocut, groupBy and moveTo through the server, against references computed here."""

from __future__ import annotations

import math
import re
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from searchd.query.fusion import Leg, LegHit, ScoredLeg, autocut, fused_top, ranked_fusion, relative_score_fusion
from tests.conftest import ON_BOTH_BACKENDS, ClientFactory, graphql

# What starts a server runs on both storage backends (ON_BOTH_BACKENDS); the pure functions and config checks, once.
STOP = {"a", "an", "and", "are", "as", "at", "be", "but", "by", "for", "if", "in", "into", "is", "it", "no", "not", "of", "on", "or", "such", "that", "the", "their", "then", "there", "these", "they", "this", "to", "was", "will", "with"}

DOCS = [
    ("Sourdough bread", "Bake the bread in a hot oven; bread needs a starter."),
    ("Rye bread", "Rye flour makes a dense and sour loaf."),
    ("Oven maintenance", "Clean the oven door and check the oven thermostat."),
    ("Sourdough starter care", "Feed the starter daily with flour and water."),
    ("Vector search", "Nearest neighbours of an embedding vector."),
    ("Keyword search", "BM25 ranks documents by term frequency and inverse document frequency."),
    ("Hybrid search", "Fuse keyword and vector search results."),
    ("Empty body", ""),
]
IDS = [f"00000000-0000-4000-8000-{i:012d}" for i in range(len(DOCS))]
VECTORS = np.random.default_rng(11).normal(size=(len(DOCS), 4))


def words(text: str) -> list[str]:
    return re.findall(r"[^\W_]+", text.lower())


def reference_bm25(query: str, props: dict[str, float], k1: float = 1.2, b: float = 0.75, operator: str = "Or", minimum: int = 1) -> dict[str, float]:
    """Per-property BM25 (own N and avgdl per property), summed with boosts — written independently of searchd."""
    q = Counter(t for t in words(query) if t not in STOP)
    scores: dict[str, float] = {}
    eligible: set[str] = set()
    for prop, boost in props.items():
        column = 0 if prop == "title" else 1
        docs = {IDS[i]: words(d[column]) for i, d in enumerate(DOCS) if words(d[column])}
        n_docs = len(docs)
        avg = sum(len(t) for t in docs.values()) / n_docs
        for object_id, tokens in docs.items():
            tf = Counter(tokens)
            matched = 0
            for term, repeats in q.items():
                if not tf[term]:
                    continue
                matched += 1
                n = sum(1 for t in docs.values() if term in t)
                idf = math.log(1 + (n_docs - n + 0.5) / (n + 0.5))
                scores[object_id] = scores.get(object_id, 0.0) + boost * repeats * idf * tf[term] / (tf[term] + k1 * (1 - b + b * len(tokens) / avg))
            if matched >= (len(q) if operator == "And" else minimum):
                eligible.add(object_id)
    return {i: s for i, s in scores.items() if i in eligible}


def config(k1: float = 1.2, b: float = 0.75) -> dict[str, Any]:
    return {
        "collections": [
            {
                "name": "Doc",
                "properties": [{"name": "title", "type": "TEXT"}, {"name": "body", "type": "TEXT"}, {"name": "kind", "type": "TEXT", "indexSearchable": False}],
                "invertedIndex": {"bm25": {"k1": k1, "b": b}},
                "vectors": {
                    "v": {"vectorizer": {"module": "none", "dimensions": 4}, "index": {"type": "flat"}},
                    "text": {"vectorizer": {"module": "text2vec-hash", "textFields": ["title", "body"]}, "index": {"type": "flat"}},
                },
            }
        ]
    }


@pytest.fixture
def make_docs(write_config: Callable[..., Path], client_factory: ClientFactory) -> Callable[..., TestClient]:
    def make(**settings: float) -> TestClient:
        client = client_factory(write_config(yaml.safe_dump(config(**settings))))
        objects = [
            {"class": "Doc", "id": IDS[i], "properties": {"title": t, "body": body, "kind": "food" if i < 4 else "search"}, "vectors": {"v": VECTORS[i].tolist()}}
            for i, (t, body) in enumerate(DOCS)
        ]
        assert all(r["result"]["status"] == "SUCCESS" for r in client.post("/v1/batch/objects", json={"objects": objects}).json())
        return client

    return make


def bm25(client: TestClient, args: str) -> list[tuple[str, float]]:
    body = graphql(client, f"{{ Get {{ Doc({args}) {{ _additional {{ id score explainScore }} }} }} }}")
    assert "errors" not in body, body
    return [(h["_additional"]["id"], float(h["_additional"]["score"])) for h in body["data"]["Get"]["Doc"]]


@ON_BOTH_BACKENDS
@pytest.mark.parametrize(
    "args,query,props,operator,minimum",
    [
        ('bm25: {query: "bread oven"}', "bread oven", {"title": 1.0, "body": 1.0}, "Or", 1),
        ('bm25: {query: "the bread", properties: ["body"]}', "the bread", {"body": 1.0}, "Or", 1),
        ('bm25: {query: "bread oven", properties: ["title^2", "body"]}', "bread oven", {"title": 2.0, "body": 1.0}, "Or", 1),
        ('bm25: {query: "starter flour", searchOperator: {operator: And}}', "starter flour", {"title": 1.0, "body": 1.0}, "And", 1),
        ('bm25: {query: "search vector keyword", searchOperator: {operator: Or, minimumOrTokensMatch: 2}}', "search vector keyword", {"title": 1.0, "body": 1.0}, "Or", 2),
        ('bm25: {query: "oven oven bread"}', "oven oven bread", {"title": 1.0, "body": 1.0}, "Or", 1),
    ],
)
def test_bm25_scores_equal_the_reference(make_docs: Callable[..., TestClient], args: str, query: str, props: dict[str, float], operator: str, minimum: int) -> None:
    got = bm25(make_docs(), args)
    expected = reference_bm25(query, props, operator=operator, minimum=minimum)
    assert {i for i, _ in got} == set(expected)
    for object_id, score in got:
        assert score == pytest.approx(expected[object_id], rel=1e-6)
    assert [s for _, s in got] == sorted((s for _, s in got), reverse=True)


@ON_BOTH_BACKENDS
def test_bm25_parameters_and_explain(make_docs: Callable[..., TestClient]) -> None:
    client = make_docs(k1=2.0, b=0.3)
    got = dict(bm25(client, 'bm25: {query: "bread"}'))
    expected = reference_bm25("bread", {"title": 1.0, "body": 1.0}, k1=2.0, b=0.3)
    assert got == pytest.approx(expected, rel=1e-6)
    body = graphql(client, '{ Get { Doc(bm25: {query: "bread"}, limit: 1) { title _additional { explainScore } } } }')
    top = body["data"]["Get"]["Doc"][0]
    assert top["title"] == "Sourdough bread"
    assert top["_additional"]["explainScore"] == ", BM25F_bread_frequency:1, BM25F_bread_propLength:2, BM25F_bread_frequency:2, BM25F_bread_propLength:11"


@ON_BOTH_BACKENDS
def test_bm25_follows_writes_and_deletes(make_docs: Callable[..., TestClient]) -> None:
    client = make_docs()
    assert client.delete(f"/v1/objects/Doc/{IDS[0]}").status_code == 204
    assert IDS[0] not in dict(bm25(client, 'bm25: {query: "bread"}'))
    client.put(f"/v1/objects/Doc/{IDS[1]}", json={"class": "Doc", "properties": {"title": "Pumpernickel", "body": "dark"}, "vectors": {"v": [0, 0, 0, 1]}})
    assert bm25(client, 'bm25: {query: "rye"}') == []
    assert [i for i, _ in bm25(client, 'bm25: {query: "pumpernickel"}')] == [IDS[1]]


@ON_BOTH_BACKENDS
def test_bm25_errors(make_docs: Callable[..., TestClient]) -> None:
    client = make_docs()
    for args, message in [
        ('bm25: {query: "x", properties: ["kind"]}', "'kind' is not a searchable property"),
        ('bm25: {query: "x", properties: ["nope"]}', "'nope' is not a searchable property"),
        ('bm25: {query: "x", properties: ["title^x"]}', "boost in 'title^x' is not a number"),
        ('bm25: {query: "x", searchOperator: {operator: And, minimumOrTokensMatch: 2}}', "minimumOrTokensMatch needs operator Or"),
        ('bm25: {query: "x"}, nearVector: {vector: [1, 2, 3, 4]}', "only one of"),
        ('bm25: {query: "x"}, sort: [{path: ["title"]}]', "sort cannot be combined with bm25"),
    ]:
        body = graphql(client, f"{{ Get {{ Doc({args}) {{ title }} }} }}")
        assert message in body["errors"][0]["message"] and body["errors"][0]["locations"]


def vector_ranking(query: list[float]) -> list[tuple[str, float]]:
    unit = VECTORS / np.linalg.norm(VECTORS, axis=1, keepdims=True)
    q = np.asarray(query) / np.linalg.norm(query)
    distances = 1 - unit @ q
    return sorted(((IDS[i], float(d)) for i, d in enumerate(distances)), key=lambda x: x[1])


@ON_BOTH_BACKENDS
@pytest.mark.parametrize("fusion", ["relativeScoreFusion", "rankedFusion"])
@pytest.mark.parametrize("alpha", [0.0, 0.3, 0.75, 1.0])
@pytest.mark.parametrize("explain", [True, False], ids=["explained", "fast-path"])
def test_hybrid_fusion_equals_hand_computation(make_docs: Callable[..., TestClient], fusion: str, alpha: float, explain: bool) -> None:
    client = make_docs()
    query_vector = [0.5, -0.2, 0.1, 0.9]
    keyword = sorted(reference_bm25("bread search", {"title": 1.0, "body": 1.0}).items(), key=lambda x: -x[1])
    vector = [(i, 1 - d) for i, d in vector_ranking(query_vector)]
    expected: dict[str, float] = {}
    for weight, leg in ((1 - alpha, keyword), (alpha, vector)):
        if weight == 0 or not leg:
            continue
        scores = [s for _, s in leg]
        for rank, (object_id, score) in enumerate(leg):
            if fusion == "rankedFusion":
                part = weight / (rank + 60)
            else:
                part = weight * (1.0 if max(scores) == min(scores) else (score - min(scores)) / (max(scores) - min(scores)))
            expected[object_id] = expected.get(object_id, 0.0) + part
    body = graphql(
        client,
        f'{{ Get {{ Doc(hybrid: {{query: "bread search", alpha: {alpha}, vector: {query_vector}, targetVectors: ["v"], fusionType: {fusion}}}) {{ _additional {{ id score{" explainScore" if explain else ""} }} }} }} }}',
    )
    hits = body["data"]["Get"]["Doc"]
    assert {h["_additional"]["id"] for h in hits} == set(expected)
    got = {h["_additional"]["id"]: float(h["_additional"]["score"]) for h in hits}
    assert got == pytest.approx(expected, abs=1e-6)
    assert [got[h["_additional"]["id"]] for h in hits] == sorted(got.values(), reverse=True)
    if explain and 0 < alpha < 1:
        top = hits[0]["_additional"]
        assert "Hybrid (Result Set vector,hybridVector) Document " + top["id"] in top["explainScore"]


# Scores a few 1e-8 apart round (to 7 decimals) to equal or to neighbouring values: ties and near-ties at the cut.
NEAR_TIES = st.sampled_from([0.5 + d for d in (-6e-8, -5e-8, -4e-8, -1e-8, 0.0, 1e-8, 4e-8, 5e-8, 6e-8, 1.5e-7)])
leg_hits = st.lists(st.tuples(st.integers(0, 30), st.sampled_from([0.0, 0.25, 0.5, 1.0, 2.0, -0.5]) | st.floats(-3, 3) | NEAR_TIES), max_size=25)


@settings(max_examples=300, deadline=None)
@given(keyword=leg_hits, vector=leg_hits, alpha=st.sampled_from([0.0, 0.25, 0.5, 0.75, 1.0]), ranked=st.booleans(), limit=st.integers(1, 40))
def test_fast_fusion_equals_the_explained_fusion(keyword: list[tuple[int, float]], vector: list[tuple[int, float]], alpha: float, ranked: bool, limit: int) -> None:
    """Hybrid without explainScore fuses in numpy (fused_top): same docs, order (ties by id) and scores as the dict-based fusion."""
    keyword, vector = list(dict(keyword).items()), list(dict(vector).items())  # a doc appears once per leg
    id_of = {doc: f"{(doc * 7919) % 31:08x}-0000-0000-0000-{doc:012x}" for doc in range(31)}  # ids do not sort like docs
    legs = [Leg("keyword,bm25", 1.0 - alpha, [LegHit(id_of[d], s) for d, s in keyword]), Leg("vector,hybridVector", alpha, [LegHit(id_of[d], s) for d, s in vector])]
    fuse = ranked_fusion if ranked else relative_score_fusion
    expected = [(f.id, f.score) for f in fuse([leg for leg in legs if leg.weight > 0], False)[:limit]]
    scored = [ScoredLeg(1.0 - alpha, [d for d, _ in keyword], [s for _, s in keyword]), ScoredLeg(alpha, [d for d, _ in vector], [s for _, s in vector])]
    assert [(id_of[doc], score) for doc, score in fused_top(scored, ranked, limit, id_of)] == expected


def test_fast_fusion_keeps_a_doc_that_rounds_up_into_the_cut() -> None:
    """C fuses to 0.49999997, under B's 0.5, but both round to 0.5 and C's own best score is higher: C makes the top 2."""
    id_of = {0: "a", 1: "b", 2: "c", 3: "z"}
    keyword, vector = [(0, 1.0), (1, 0.6), (2, 0.2), (3, 0.0)], [(0, 1.0), (1, 0.4), (2, 0.79999994), (3, 0.0)]
    legs = [Leg("keyword,bm25", 0.5, [LegHit(id_of[d], s) for d, s in keyword]), Leg("vector,hybridVector", 0.5, [LegHit(id_of[d], s) for d, s in vector])]
    expected = [(f.id, f.score) for f in relative_score_fusion(legs, False)[:2]]
    assert [i for i, _ in expected] == ["a", "c"]
    scored = [ScoredLeg(0.5, [d for d, _ in keyword], [s for _, s in keyword]), ScoredLeg(0.5, [d for d, _ in vector], [s for _, s in vector])]
    assert [(id_of[doc], score) for doc, score in fused_top(scored, False, 2, id_of)] == expected


@ON_BOTH_BACKENDS
def test_hybrid_defaults_and_gates(make_docs: Callable[..., TestClient]) -> None:
    client = make_docs()
    query_vector = [0.5, -0.2, 0.1, 0.9]
    default = graphql(client, f'{{ Get {{ Doc(hybrid: {{query: "bread", vector: {query_vector}, targetVectors: ["v"]}}) {{ _additional {{ id score }} }} }} }}')
    explicit = graphql(client, f'{{ Get {{ Doc(hybrid: {{query: "bread", vector: {query_vector}, targetVectors: ["v"], alpha: 0.75, fusionType: relativeScoreFusion}}) {{ _additional {{ id score }} }} }} }}')
    assert default == explicit
    nearest = vector_ranking(query_vector)
    cap = nearest[2][1] + 1e-6
    gated = graphql(client, f'{{ Get {{ Doc(hybrid: {{query: "bread", vector: {query_vector}, targetVectors: ["v"], maxVectorDistance: {cap}}}) {{ _additional {{ id }} }} }} }}')
    assert {h["_additional"]["id"] for h in gated["data"]["Get"]["Doc"]} == {i for i, _ in nearest[:3]}
    out_of_range = graphql(client, '{ Get { Doc(hybrid: {query: "bread", alpha: 1.5}) { title } } }')
    assert "alpha should be between 0.0 and 1.0" in out_of_range["errors"][0]["message"]
    filtered = graphql(client, f'{{ Get {{ Doc(hybrid: {{query: "bread search", vector: {query_vector}, targetVectors: ["v"]}}, where: {{path: ["kind"], operator: Equal, valueText: "search"}}) {{ kind }} }} }}')
    assert {h["kind"] for h in filtered["data"]["Get"]["Doc"]} == {"search"}


@ON_BOTH_BACKENDS
def test_hybrid_text_query_vectorized_by_the_module(make_docs: Callable[..., TestClient]) -> None:
    client = make_docs()
    body = graphql(client, '{ Get { Doc(hybrid: {query: "sourdough starter", alpha: 1, targetVectors: ["text"]}, limit: 1) { title } } }')
    assert body["data"]["Get"]["Doc"][0]["title"] == "Sourdough starter care"


def test_autocut_matches_weaviates_algorithm() -> None:
    assert autocut([0.1, 0.11, 0.12, 0.5, 0.51, 0.9], 1) == 3
    assert autocut([0.1, 0.11, 0.12, 0.5, 0.51, 0.9], 2) == 5
    assert autocut([0.3, 0.3, 0.3], 1) == 3
    assert autocut([0.2], 1) == 1


@ON_BOTH_BACKENDS
def test_autocut_group_by_and_move(make_docs: Callable[..., TestClient]) -> None:
    client = make_docs()
    vector = VECTORS[0].tolist()
    full = graphql(client, f'{{ Get {{ Doc(nearVector: {{vector: {vector}, targetVectors: ["v"]}}) {{ _additional {{ distance }} }} }} }}')["data"]["Get"]["Doc"]
    distances = [h["_additional"]["distance"] for h in full]
    cut = graphql(client, f'{{ Get {{ Doc(nearVector: {{vector: {vector}, targetVectors: ["v"]}}, autocut: 1) {{ _additional {{ distance }} }} }} }}')["data"]["Get"]["Doc"]
    assert len(cut) == autocut(distances, 1)
    grouped = graphql(
        client,
        f'{{ Get {{ Doc(nearVector: {{vector: {vector}, targetVectors: ["v"]}}, groupBy: {{path: ["kind"], groups: 2, objectsPerGroup: 3}}) '
        "{ kind _additional { group { id groupedBy { path value } count minDistance maxDistance hits { title _additional { id distance } } } } } } }",
    )["data"]["Get"]["Doc"]
    assert [g["_additional"]["group"]["groupedBy"]["value"] for g in grouped] == ["food", "search"] or [g["_additional"]["group"]["groupedBy"]["value"] for g in grouped] == ["search", "food"]
    for group in grouped:
        info = group["_additional"]["group"]
        hit_distances = [h["_additional"]["distance"] for h in info["hits"]]
        assert info["count"] == len(info["hits"]) == 3
        assert hit_distances == sorted(hit_distances) and info["minDistance"] == hit_distances[0] and info["maxDistance"] == hit_distances[-1]
    def distance_to_bread(move: str) -> float:
        query = '{ Get { Doc(nearText: {concepts: ["vector search"], targetVectors: ["text"]%s}, where: {path: ["id"], operator: Equal, valueText: "%s"}) { _additional { distance } } } }'
        return float(graphql(client, query % (move, IDS[0]))["data"]["Get"]["Doc"][0]["_additional"]["distance"])

    plain = distance_to_bread("")
    assert distance_to_bread(', moveTo: {concepts: ["sourdough bread"], force: 1}') < plain
    assert distance_to_bread(', moveAwayFrom: {concepts: ["sourdough bread"], force: 1}') > plain
    away = graphql(client, '{ Get { Doc(nearText: {concepts: ["x"], targetVectors: ["text"], moveTo: {concepts: ["y"], force: 2}}) { title } } }')
    assert "force must be between 0 and 1" in away["errors"][0]["message"]


@ON_BOTH_BACKENDS
def test_hybrid_with_an_image_for_the_vector_leg(multimodal_client: TestClient) -> None:
    """BM25 on the text, nearImage on the vector side: what Weaviate users ask for (weaviate#3110)."""
    import base64
    import io

    from PIL import Image, ImageDraw

    image = Image.new("RGB", (96, 96), (250, 250, 250))
    ImageDraw.Draw(image).ellipse((16, 16, 80, 80), fill=(220, 30, 40))
    out = io.BytesIO()
    image.save(out, format="PNG")
    picture = base64.b64encode(out.getvalue()).decode()
    query = '{ Get { Artwork(hybrid: {query: "square", alpha: %s, searches: [{nearImage: {image: "%s"}}]}, limit: 3) { title _additional { score explainScore } } } }'
    image_only = graphql(multimodal_client, query % (1.0, picture))["data"]["Get"]["Artwork"]
    assert image_only[0]["title"] == "Red circle on white"
    text_only = graphql(multimodal_client, query % (0.0, picture))["data"]["Get"]["Artwork"]
    assert all("square" in hit["title"].lower() for hit in text_only)
    both = graphql(multimodal_client, query % (0.5, picture))["data"]["Get"]["Artwork"]
    assert both[0]["title"] == "Red square on white"  # a square (keyword) that looks like the red picture (image)
    assert "Result Set vector,nearImage" in both[0]["_additional"]["explainScore"]
    assert "Result Set keyword,bm25" in both[0]["_additional"]["explainScore"]


def test_hybrid_keyword_ties_at_the_candidate_cut_are_chosen_by_id(write_config: Callable[..., Path], client_factory: ClientFactory) -> None:
    """150 docs tie on BM25 beyond the keyword leg's 100 candidates: the tied docs with the smallest ids make the cut,
    with or without explainScore (two code paths), and the fused results agree."""
    client = client_factory(write_config(yaml.safe_dump(config())))
    rng = np.random.default_rng(71)
    ids = [str(uuid.UUID(int=int(rng.integers(1, 2**62)) << 64 | i)) for i in range(170)]  # ids do not sort like docs
    objects = [
        {"class": "Doc", "id": ids[i], "properties": {"title": "loaf", "body": "bread" if i < 20 else "bread crust"}, "vectors": {"v": rng.normal(size=4).tolist()}}
        for i in range(170)
    ]
    assert all(r["result"]["status"] == "SUCCESS" for r in client.post("/v1/batch/objects", json={"objects": objects}).json())
    for alpha, limit in ((0.0, 100), (0.5, 40)):
        results = []
        for explain in ("", " explainScore"):
            arguments = f'query: "bread", alpha: {alpha}, vector: [0.3, -0.1, 0.8, 0.2], targetVectors: ["v"]'
            body = graphql(client, f"{{ Get {{ Doc(hybrid: {{{arguments}}}, limit: {limit}) {{ _additional {{ id score{explain} }} }} }} }}")
            results.append([(h["_additional"]["id"], h["_additional"]["score"]) for h in body["data"]["Get"]["Doc"]])
        assert results[0] == results[1]
        if alpha == 0.0:  # the keyword leg alone: its 100 candidates are the 20 best and the 80 smallest tied ids
            assert {object_id for object_id, _ in results[0]} == set(ids[:20]) | set(sorted(ids[20:])[:80])
