"""The BM25 index on its own: scores against a reference written here, persistence, damaged files, allow-lists.

The reference is a plain Python BM25 over its own copy of the documents.  It follows the
documented formula (searchd/index/bm25.py) in the documented order — per property, then per
query term in order of first occurrence, each term's contribution added to the running sum —
so its floats are the very floats the index must produce, and ties fall the same way.
"""

from __future__ import annotations

import json
import math
import random
import re
import shutil
import zlib
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from searchd.config.spec import CollectionSpec, InvertedIndexSpec, PropertySpec, PropertyType, Tokenization
from searchd.index import bm25
from searchd.index.base import AllowList
from searchd.index.bm25 import BM25Index, KeywordHit

SPEC = CollectionSpec(
    "Recipe",
    properties=(
        PropertySpec("title", PropertyType.TEXT),  # word tokenization: stopwords leave queries
        PropertySpec("tags", PropertyType.TEXT_ARRAY, tokenization=Tokenization.LOWERCASE),
        PropertySpec("notes", PropertyType.TEXT, index_searchable=False),  # not indexed at all
    ),
)
TOKENIZATION = {"title": "word", "tags": "lowercase"}
WORDS = ["bread", "oven", "rye", "flour", "starter", "sour", "loaf", "dense", "water", "crust", "Bake", "OVEN", "the", "a", "of", "and"]


def reference_tokens(value: Any, tokenization: str) -> list[str]:
    texts = value if isinstance(value, list) else [value]
    texts = [t for t in texts if isinstance(t, str)]
    if tokenization == "word":
        return [token for text in texts for token in re.findall(r"[a-z0-9]+", text.lower())]  # the test data is ASCII
    return [token for text in texts for token in text.lower().split()]


class Reference:
    def __init__(self) -> None:
        self.docs: dict[int, dict[str, list[str]]] = {}

    def upsert(self, doc: int, properties: Mapping[str, Any]) -> None:
        self.docs[doc] = {name: reference_tokens(properties.get(name), how) for name, how in TOKENIZATION.items()}

    def delete(self, doc: int) -> None:
        self.docs.pop(doc, None)

    def scores(
        self, query: str, properties: Sequence[tuple[str, float]], k1: float, b: float, stopwords: set[str], operator: str, minimum: int
    ) -> dict[int, tuple[float, str]]:
        """Each eligible doc's (score, explanation)."""
        total: dict[int, float] = {}
        explain: dict[int, str] = {}
        eligible: set[int] = set()
        for name, boost in properties:
            tokens = reference_tokens(query, TOKENIZATION[name])
            if TOKENIZATION[name] == "word":
                tokens = [t for t in tokens if t not in stopwords]
            wanted = Counter(tokens)
            holding = {doc: fields[name] for doc, fields in self.docs.items() if fields[name]}
            if not wanted or not holding:
                continue
            average = sum(len(t) for t in holding.values()) / len(holding)
            having = {term: sum(1 for t in holding.values() if term in t) for term in wanted}
            for doc, tokens_of_doc in holding.items():
                frequency_of = Counter(tokens_of_doc)
                matched = 0
                for term, repeats in wanted.items():
                    f = frequency_of[term]
                    if not f:
                        continue
                    matched += 1
                    idf = math.log(1.0 + (len(holding) - having[term] + 0.5) / (having[term] + 0.5))
                    total[doc] = total.get(doc, 0.0) + boost * repeats * idf * f / (f + k1 * (1.0 - b + b * len(tokens_of_doc) / average))
                    explain[doc] = explain.get(doc, "") + f", BM25F_{term}_frequency:{f}, BM25F_{term}_propLength:{len(tokens_of_doc)}"
                if matched >= (len(wanted) if operator == "And" else max(1, minimum)):
                    eligible.add(doc)
        return {doc: (total[doc], explain[doc]) for doc in eligible}

    def top(self, scores: Mapping[int, tuple[float, str]], k: int, allowed: set[int] | None) -> list[tuple[int, float, str]]:
        """The k best by score then doc, plus every doc tied with the k-th."""
        ranked = sorted(((doc, s, e) for doc, (s, e) in scores.items() if allowed is None or doc in allowed), key=lambda x: (-x[1], x[0]))
        if k <= 0 or not ranked:
            return []
        return [hit for hit in ranked if hit[1] >= ranked[min(k, len(ranked)) - 1][1]]


def random_properties(rng: random.Random) -> dict[str, Any]:
    props: dict[str, Any] = {"notes": "bread bread bread"}
    if rng.random() < 0.9:
        props["title"] = " ".join(rng.choices(WORDS, k=rng.randrange(0, 7))) if rng.random() < 0.95 else 42  # a non-string is skipped
    if rng.random() < 0.8:
        props["tags"] = [" ".join(rng.choices(WORDS, k=rng.randrange(1, 3))) for _ in range(rng.randrange(0, 4))]
    return props


def random_search(rng: random.Random) -> dict[str, Any]:
    words = rng.choices([*WORDS, "missing", "Rye,"], k=rng.randrange(1, 5))
    properties = rng.choice([None, [("title", 1.0)], [("tags", 1.0)], [("title", 2.0), ("tags", 1.0)], [("tags", 0.5), ("title", 1.0)]])
    return {
        "query": " ".join(words),
        "k": rng.randrange(0, 7),
        "properties": properties,
        "operator": rng.choice(["Or", "Or", "And"]),
        "minimum_match": rng.choice([1, 1, 2, 3]),
    }


def expected_hits(reference: Reference, index: BM25Index, search: Mapping[str, Any], allowed: set[int] | None) -> list[tuple[int, float, str]]:
    chosen = search["properties"] or [("title", 1.0), ("tags", 1.0)]
    scores = reference.scores(search["query"], chosen, index.k1, index.b, set(index.stopwords), search["operator"], search["minimum_match"])
    return reference.top(scores, search["k"], allowed)


def hits_of(index: BM25Index, search: Mapping[str, Any], allowed: AllowList | None = None, explain: bool = True) -> list[tuple[int, float, str]]:
    return [(h.id, h.score, h.explain) for h in index.search(**search, allowed=allowed, explain=explain)]


@pytest.fixture(params=["folds-often", "folds-rarely"])
def fold_policy(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "folds-often":
        # Tiny thresholds: searches fold the log and stale postings into the base all the time, and drop dead terms.
        monkeypatch.setattr(bm25, "LOG_SCAN_MAX", 6)
        monkeypatch.setattr(bm25, "_STALE_MIN", 1)
        monkeypatch.setattr(bm25, "_DEAD_TERMS_MIN", 0)
        monkeypatch.setattr(bm25, "TERM_CACHE_POSTINGS", 12)
    return str(request.param)


@pytest.mark.parametrize("seed", range(6))
def test_scores_match_the_reference_through_writes_and_deletes(seed: int, fold_policy: str) -> None:
    rng = random.Random(seed)
    index, reference = BM25Index(SPEC), Reference()
    searches = 0
    for _ in range(400):
        doc = rng.randrange(0, 30)
        action = rng.random()
        if action < 0.45:
            props = random_properties(rng)
            index.upsert(doc, props)
            reference.upsert(doc, props)
        elif action < 0.6:
            index.delete(doc)
            reference.delete(doc)
        elif action < 0.63:
            # What a reload does: query-time settings change in place.
            index.k1, index.b = rng.choice([1.2, 0.9, 2.0]), rng.choice([0.75, 0.0, 1.0])
            index.stopwords = rng.choice([InvertedIndexSpec().stopwords, frozenset(), frozenset({"bread"})])
        else:
            search = random_search(rng)
            listed = set(rng.sample(range(30), rng.randrange(0, 30))) if rng.random() < 0.3 else None
            allowed = AllowList.of(sorted(listed)) if listed is not None else None
            for _ in range(rng.choice([1, 3])):  # repeated: the second search builds the read caches, the third uses them
                assert hits_of(index, search, allowed) == expected_hits(reference, index, search, listed), search
                searches += 1
        assert len(index) == len(reference.docs)
        assert (doc in index) == (doc in reference.docs)
    assert searches > 150


def test_settings_changed_in_place_apply_to_the_next_search() -> None:
    rng = random.Random(4)
    index, reference = BM25Index(SPEC), Reference()
    for doc in range(1, 60):
        props = random_properties(rng)
        index.upsert(doc, props)
        reference.upsert(doc, props)
    search = {"query": "bread oven the rye", "k": 5, "properties": None, "operator": "Or", "minimum_match": 1}
    for k1, b, stopwords in [(1.2, 0.75, None), (2.0, 0.75, None), (2.0, 0.2, None), (2.0, 0.2, frozenset({"bread"}))]:
        index.k1, index.b = k1, b
        if stopwords is not None:
            index.stopwords = stopwords
        for _ in range(3):  # the later searches read what the earlier ones cached
            assert hits_of(index, search) == expected_hits(reference, index, search, None), (k1, b)


def test_scores_match_the_reference_on_a_larger_corpus() -> None:
    rng = random.Random(7)
    index, reference = BM25Index(SPEC), Reference()
    for doc in range(1, 800):
        props = random_properties(rng)
        index.upsert(doc, props)
        reference.upsert(doc, props)
    for doc in rng.sample(range(1, 800), 200):
        index.delete(doc)
        reference.delete(doc)
    for _ in range(60):
        search = random_search(rng) | {"k": rng.randrange(1, 40)}
        assert hits_of(index, search) == expected_hits(reference, index, search, None), search
        docs, scores = index.search_columns(**search)  # the arrays hybrid fuses: the same hits, in the same order
        assert list(zip(docs.tolist(), scores.tolist(), strict=True)) == [(doc, score) for doc, score, _ in hits_of(index, search, explain=False)]


def test_explanations_are_only_asked_for() -> None:
    index = BM25Index(SPEC)
    index.upsert(1, {"title": "rye bread", "tags": ["rye"]})
    index.upsert(2, {"title": "oven"})
    assert index.search("rye", 5) == [KeywordHit(1, index.search("rye", 5)[0].score, "")]
    [hit] = index.search("the rye", 5, explain=True)
    assert hit.explain == ", BM25F_rye_frequency:1, BM25F_rye_propLength:2, BM25F_rye_frequency:1, BM25F_rye_propLength:1"


def test_stopwords_leave_only_word_tokenized_queries() -> None:
    index = BM25Index(SPEC)
    index.upsert(1, {"title": "the loaf"})
    index.upsert(2, {"tags": ["the"]})
    assert [h.id for h in index.search("the", 5)] == [2]  # "the" is dropped from the title query, kept for tags
    index.stopwords = frozenset()
    assert sorted(h.id for h in index.search("the", 5)) == [1, 2]


def test_an_allow_list_restricts_hits_and_still_fills_k() -> None:
    index = BM25Index(SPEC)
    for doc in range(1, 101):
        index.upsert(doc, {"title": "bread " * (doc % 7 + 1) + "oven " * (doc % 3)})
    everything = [h.id for h in index.search("bread oven", 100)]
    allowed = AllowList.of(range(2, 101, 2))
    hits = index.search("bread oven", 10, allowed=allowed)
    assert len(hits) >= 10 and all(h.id % 2 == 0 for h in hits)
    assert [h.id for h in hits] == [doc for doc in everything if doc % 2 == 0][: len(hits)]
    assert index.search("bread", 10, allowed=AllowList.of([])) == []
    # A mask shorter than the docs: the docs past its end are not allowed.
    assert [h.id for h in index.search("bread", 10, allowed=AllowList(np.array([False, False, True])))] == [2]


def test_ties_with_the_kth_hit_all_come_back() -> None:
    index = BM25Index(SPEC)
    for doc in range(1, 8):
        index.upsert(doc, {"title": "rye"})
    index.upsert(8, {"title": "rye rye"})
    hits = index.search("rye", 2)
    assert [h.id for h in hits] == [8, 1, 2, 3, 4, 5, 6, 7]
    assert len({h.score for h in hits[1:]}) == 1
    assert index.search("rye", 0) == []


def test_membership_length_and_doc_range() -> None:
    index = BM25Index(SPEC)
    index.upsert(3, {})  # no searchable text: still an indexed object
    index.upsert(5000, {"title": "bread"})  # docs need not be dense
    assert len(index) == 2 and 3 in index and 5000 in index and 4 not in index and "3" not in index and -1 not in index
    index.delete(3)
    index.delete(3)
    index.delete(77)
    assert len(index) == 1 and 3 not in index
    with pytest.raises(ValueError, match="out of range"):
        index.upsert(-1, {"title": "bread"})
    assert BM25Index(SPEC).search("bread", 3) == []


def test_deleted_terms_leave_the_vocabulary_at_a_fold(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bm25, "_DEAD_TERMS_MIN", 0)
    monkeypatch.setattr(bm25, "LOG_SCAN_MAX", 0)
    index = BM25Index(SPEC)
    for doc in range(100):
        index.upsert(doc, {"title": f"common unique{doc}"})
    index.search("common", 1)  # folds the log
    assert len(index.properties["title"].vocab) == 101
    for doc in range(100):
        index.upsert(doc, {"title": "common"})
    assert len(index.search("common", 1)) == 100  # folds again: the unique terms have no postings left
    assert set(index.properties["title"].vocab.terms()) == {"common"}
    assert index.search("unique5", 1) == []
    index.upsert(7, {"title": "unique5"})
    assert [h.id for h in index.search("unique5", 1)] == [7]


def build_random_index(seed: int, docs: int = 300) -> BM25Index:
    rng = random.Random(seed)
    index = BM25Index(SPEC)
    for _ in range(docs):
        index.upsert(rng.randrange(1, docs // 2), random_properties(rng))
        if rng.random() < 0.2:
            index.delete(rng.randrange(1, docs // 2))
    return index


QUERIES = ["bread", "rye flour", "the oven oven", "sour loaf water crust", "starter", "missing", "bake OVEN"]


def all_hits(index: BM25Index) -> list[list[KeywordHit]]:
    return [
        index.search(q, k, properties=p, operator=o, explain=True)
        for q in QUERIES
        for k in (1, 5)
        for p in (None, [("tags", 2.0), ("title", 1.0)])
        for o in ("Or", "And")
    ]


def test_save_then_restore_gives_identical_results(tmp_path: Path) -> None:
    index = build_random_index(3)
    before = all_hits(index)
    index.save(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bm25.json", "bm25.npz"]
    header = json.loads((tmp_path / "bm25.json").read_text())
    assert header["format"] == "searchd-bm25" and header["version"] == bm25.FORMAT_VERSION
    with np.load(tmp_path / "bm25.npz", allow_pickle=False) as stored:  # plain arrays, no pickle inside
        assert all(stored[name].dtype != object for name in stored.files)
    restored = BM25Index.restore(SPEC, tmp_path)
    assert all_hits(restored) == all_hits(index) == before
    assert len(restored) == len(index) and all((doc in restored) == (doc in index) for doc in range(200))
    # Both go on alike under the same writes.
    rng = random.Random(9)
    for _ in range(100):
        doc, props = rng.randrange(1, 200), random_properties(rng)
        for target in (index, restored):
            target.upsert(doc, props)
            target.delete(doc + 1)
    assert all_hits(restored) == all_hits(index)


def test_an_empty_index_saves_and_restores(tmp_path: Path) -> None:
    BM25Index(SPEC).save(tmp_path)
    restored = BM25Index.restore(SPEC, tmp_path)
    assert len(restored) == 0 and restored.search("bread", 3) == []
    restored.upsert(1, {"title": "bread"})
    assert [h.id for h in restored.search("bread", 3)] == [1]


def test_a_term_with_any_characters_survives_a_restore(tmp_path: Path) -> None:
    spec = CollectionSpec("Codes", properties=(PropertySpec("code", PropertyType.TEXT, tokenization=Tokenization.FIELD),))
    index = BM25Index(spec)
    values = ["a\nb", "ümlaut ß", "\x00nul", "\ud800 lone surrogate", "emoji 🍞", "x" * 500]
    for doc, value in enumerate(values):
        index.upsert(doc, {"code": value})
    index.save(tmp_path)
    restored = BM25Index.restore(spec, tmp_path)
    assert [[h.id for h in restored.search(v, 3)] for v in values] == [[doc] for doc in range(len(values))]


def rewrite_arrays(directory: Path, change: Any, checksum: bool = True) -> None:
    """Change the saved arrays and (unless told not to) the header's checksum to match: a consistent but wrong save."""
    with np.load(directory / "bm25.npz", allow_pickle=True) as stored:
        arrays = {name: stored[name] for name in stored.files}
    change(arrays)
    np.savez(directory / "bm25.npz", **arrays)
    if checksum:
        crc = 0
        for name in sorted(arrays):
            crc = zlib.crc32(np.ascontiguousarray(arrays[name]).tobytes(), zlib.crc32(name.encode(), crc))
        rewrite_header(directory, lambda h: h.update(crc32=crc))


def rewrite_header(directory: Path, change: Any) -> None:
    header = json.loads((directory / "bm25.json").read_text())
    change(header)
    (directory / "bm25.json").write_text(json.dumps(header))


def _bump_freq(arrays: dict[str, np.ndarray]) -> None:
    arrays["p0_freqs"][0] += 1


def _doc_past_the_end(arrays: dict[str, np.ndarray]) -> None:
    arrays["p0_docs"][-1] = len(arrays["p0_lengths"])


def _terms_past_the_end(arrays: dict[str, np.ndarray]) -> None:
    arrays["p0_term_ends"][-1] += 1


def _terms_backwards(arrays: dict[str, np.ndarray]) -> None:
    arrays["p0_term_ends"][1] = arrays["p0_term_ends"][0] - 1


def _repeated_term(arrays: dict[str, np.ndarray]) -> None:
    # The vocabulary ["ab", "ab"] instead of whatever it was: two ids for one term.
    arrays["p0_terms"] = np.frombuffer(b"abab", dtype=np.uint8)
    arrays["p0_term_ends"] = np.array([2, 4], dtype=np.int64)
    arrays["p0_offsets"] = np.array([0, 1, len(arrays["p0_docs"])], dtype=np.int64)


def _repeat_a_term(directory: Path) -> None:
    rewrite_arrays(directory, _repeated_term)
    rewrite_header(directory, lambda h: h["properties"][0].update(terms=2))


def _write_npy(directory: Path) -> None:
    with open(directory / "bm25.npz", "wb") as out:
        np.save(out, np.arange(3))


DAMAGE: dict[str, tuple[Any, str]] = {  # what is done to a good save → what the error says
    "other format version": (lambda d: rewrite_header(d, lambda h: h.update(version=bm25.FORMAT_VERSION + 1)), "format version"),
    "no version": (lambda d: rewrite_header(d, lambda h: h.pop("version")), "format version"),
    "other format": (lambda d: rewrite_header(d, lambda h: h.update(format="something-else")), "not a searchd BM25 index header"),
    "header not JSON": (lambda d: (d / "bm25.json").write_bytes(b"\x80\x00 not json"), "can't decode"),
    "header not an object": (lambda d: (d / "bm25.json").write_text("[1, 2]"), "not a searchd BM25 index header"),
    "header with a wrong count": (lambda d: rewrite_header(d, lambda h: h.update(count=h["count"] + 1)), "'live' is int32"),
    "header with a huge size": (lambda d: rewrite_header(d, lambda h: h.update(size=bm25.MAX_DOC + 1)), "'p0_lengths' is int32"),
    "header with a wrong total length": (lambda d: rewrite_header(d, lambda h: h["properties"][0].update(totalLength=3)), "do not match the header's counts"),
    "header for other properties": (lambda d: rewrite_header(d, lambda h: h["properties"][0].update(name="body")), "covers"),
    "header with another tokenization": (lambda d: rewrite_header(d, lambda h: h["properties"][1].update(tokenization="field")), "covers"),
    "arrays truncated": (lambda d: (d / "bm25.npz").write_bytes((d / "bm25.npz").read_bytes()[: (d / "bm25.npz").stat().st_size // 2]), "unreadable"),
    "arrays empty": (lambda d: (d / "bm25.npz").write_bytes(b""), "unreadable"),
    "arrays a bare .npy": (_write_npy, "unreadable"),
    "arrays of another save": (lambda d: rewrite_arrays(d, _bump_freq, checksum=False), "checksum"),
    "arrays a pickle": (lambda d: (d / "bm25.npz").write_bytes(b"\x80\x04\x95" + b"\x00" * 40), "unreadable"),
    "an object array inside": (lambda d: rewrite_arrays(d, lambda a: a.update(p0_docs=np.array([None, 1], dtype=object)), checksum=False), "allow_pickle"),
    "an array missing": (lambda d: rewrite_arrays(d, lambda a: a.pop("p0_docs")), "lacks the array 'p0_docs'"),
    "an array of another dtype": (lambda d: rewrite_arrays(d, lambda a: a.update(p0_docs=a["p0_docs"].astype(np.int64))), "'p0_docs' is int64"),
    "frequencies that do not add up": (lambda d: rewrite_arrays(d, _bump_freq), "do not add up"),
    "a doc past the end": (lambda d: rewrite_arrays(d, _doc_past_the_end), "out of range"),
    "term boundaries past the end": (lambda d: rewrite_arrays(d, _terms_past_the_end), "term boundaries"),
    "term boundaries backwards": (lambda d: rewrite_arrays(d, _terms_backwards), "term boundaries"),
    "a term twice": (_repeat_a_term, "repeats a term"),
    "live docs unsorted": (lambda d: rewrite_arrays(d, lambda a: a.update(live=a["live"][::-1].copy())), "out of order"),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_restore_refuses_a_damaged_or_foreign_file(tmp_path: Path, damage: str) -> None:
    build_random_index(5).save(tmp_path)
    BM25Index.restore(SPEC, tmp_path)  # fine before the damage
    change, message = DAMAGE[damage]
    change(tmp_path)
    with pytest.raises(ValueError, match=re.escape(message)):
        BM25Index.restore(SPEC, tmp_path)


def test_restore_of_missing_files_raises_oserror(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        BM25Index.restore(SPEC, tmp_path)
    BM25Index(SPEC).save(tmp_path)
    (tmp_path / "bm25.npz").unlink()
    with pytest.raises(OSError):
        BM25Index.restore(SPEC, tmp_path)


def test_an_old_pickle_is_not_read(tmp_path: Path) -> None:
    (tmp_path / "bm25.pickle").write_bytes(b"\x80\x04\x95")  # what the previous format wrote
    with pytest.raises(OSError):
        BM25Index.restore(SPEC, tmp_path)


def test_any_flipped_byte_is_refused_or_harmless(tmp_path: Path) -> None:
    saved = tmp_path / "saved"
    saved.mkdir()
    index = build_random_index(11, docs=60)
    index.save(saved)
    want = all_hits(index)
    rng = random.Random(2)
    outcomes: Counter[str] = Counter()
    for name in ("bm25.npz", "bm25.json"):
        data = (saved / name).read_bytes()
        for position in sorted(rng.sample(range(len(data)), min(len(data), 150))):
            damaged = tmp_path / f"{name}-{position}"
            shutil.copytree(saved, damaged)
            flipped = bytearray(data)
            flipped[position] ^= rng.choice([0x01, 0x08, 0x80, 0xFF])
            (damaged / name).write_bytes(bytes(flipped))
            try:
                restored = BM25Index.restore(SPEC, damaged)
            except (ValueError, OSError):
                outcomes["refused"] += 1
            else:  # e.g. a zip timestamp
                assert all_hits(restored) == want, (name, position)
                outcomes["harmless"] += 1
    assert outcomes["refused"] > 100
