"""BM25 inverted index over a collection's searchable TEXT / TEXT[] properties.

Scoring follows Weaviate's BlockMax engine (reference/weaviate-api.md §3): each
property is scored on its own — its own document count for idf and its own
average length — and an object's score is the boosted sum over properties:

    idf(t)   = ln(1 + (N_p - n_p(t) + 0.5) / (n_p(t) + 0.5))
    score    = Σ_p boost_p Σ_t q(t) · idf(t) · f / (f + k1 · (1 - b + b · L / avgL_p))

where q(t) is how often t occurs in the query.  ``And`` needs every query term in
one property; ``Or`` with ``minimum_match`` needs that many distinct terms in one
property.  Stopwords are dropped from queries on ``word``-tokenized properties.

Postings are term → {row: frequency}; at query time each term's postings become
numpy arrays (cached until the term changes) and scores accumulate in a dense array.
"""

from __future__ import annotations

import math
import pickle
import re
import threading
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from searchd.config.spec import CollectionSpec, Tokenization
from searchd.index.base import AllowList

_WORD = re.compile(r"[^\W_]+", re.UNICODE)
_ALNUM = re.compile(r"[\W_]+", re.UNICODE)


def tokenize(text: str, tokenization: Tokenization) -> list[str]:
    if tokenization is Tokenization.WORD:
        return _WORD.findall(text.lower())
    if tokenization is Tokenization.LOWERCASE:
        return text.lower().split()
    if tokenization is Tokenization.WHITESPACE:
        return text.split()
    if tokenization is Tokenization.FIELD:
        stripped = text.strip()
        return [stripped] if stripped else []
    joined = _ALNUM.sub("", text.lower())  # trigram
    return [joined[i : i + 3] for i in range(len(joined) - 2)] if len(joined) >= 3 else ([joined] if joined else [])


def tokenize_value(value: Any, tokenization: Tokenization) -> list[str]:
    if isinstance(value, list):
        return [token for item in value if isinstance(item, str) for token in tokenize(item, tokenization)]
    return tokenize(value, tokenization) if isinstance(value, str) else []


@dataclass(frozen=True)
class KeywordHit:
    id: int  # the doc
    score: float
    explain: str


@dataclass
class _Property:
    tokenization: Tokenization
    postings: dict[str, dict[int, int]] = field(default_factory=dict)
    terms_of: dict[int, Counter[str]] = field(default_factory=dict)
    lengths: dict[int, int] = field(default_factory=dict)
    total_length: int = 0
    cache: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)

    def remove(self, row: int) -> None:
        for term in self.terms_of.pop(row, ()):
            posting = self.postings[term]
            del posting[row]
            if not posting:
                del self.postings[term]
            self.cache.pop(term, None)
        self.total_length -= self.lengths.pop(row, 0)

    def add(self, row: int, tokens: list[str]) -> None:
        if not tokens:
            return
        counts = Counter(tokens)
        self.terms_of[row] = counts
        self.lengths[row] = len(tokens)
        self.total_length += len(tokens)
        for term, frequency in counts.items():
            self.postings.setdefault(term, {})[row] = frequency
            self.cache.pop(term, None)

    def arrays(self, term: str) -> tuple[np.ndarray, np.ndarray]:
        cached = self.cache.get(term)
        if cached is None:
            posting = self.postings.get(term, {})
            rows = np.fromiter(posting.keys(), dtype=np.int64, count=len(posting))
            frequencies = np.fromiter(posting.values(), dtype=np.float64, count=len(posting))
            cached = self.cache[term] = (rows, frequencies)
        return cached


class BM25Index:
    def __init__(self, collection: CollectionSpec) -> None:
        settings = collection.inverted_index
        self.k1 = settings.k1
        self.b = settings.b
        self.stopwords = settings.stopwords
        self.properties = {p.name: _Property(p.tokenization) for p in collection.properties if p.searchable}
        self._live: set[int] = set()  # docs; a doc is its own row in the arrays below
        self._size = 0  # one past the highest doc seen
        self._lengths_cache: dict[str, np.ndarray] = {}
        self._lock = threading.RLock()

    def __len__(self) -> int:
        return len(self._live)

    def __contains__(self, doc: object) -> bool:
        return doc in self._live

    # -- writes ----------------------------------------------------------------

    def upsert(self, doc: int, properties: Mapping[str, Any]) -> None:
        with self._lock:
            self._live.add(doc)
            self._size = max(self._size, doc + 1)
            for name, prop in self.properties.items():
                prop.remove(doc)
                prop.add(doc, tokenize_value(properties.get(name), prop.tokenization))
            self._lengths_cache.clear()

    def delete(self, doc: int) -> None:
        with self._lock:
            if doc not in self._live:
                return
            self._live.discard(doc)
            for prop in self.properties.values():
                prop.remove(doc)
            self._lengths_cache.clear()

    # -- search ----------------------------------------------------------------

    def query_terms(self, query: str, name: str) -> Counter[str]:
        prop = self.properties[name]
        tokens = tokenize(query, prop.tokenization)
        if prop.tokenization is Tokenization.WORD:
            tokens = [t for t in tokens if t not in self.stopwords]
        return Counter(tokens)

    def _lengths(self, name: str) -> np.ndarray:
        cached = self._lengths_cache.get(name)
        if cached is None:
            cached = np.zeros(self._size, dtype=np.float64)
            lengths = self.properties[name].lengths
            if lengths:
                cached[np.fromiter(lengths.keys(), np.int64, len(lengths))] = np.fromiter(lengths.values(), np.float64, len(lengths))
            self._lengths_cache[name] = cached
        return cached

    def search(
        self,
        query: str,
        k: int,
        properties: Sequence[tuple[str, float]] | None = None,
        operator: str = "Or",
        minimum_match: int = 1,
        allowed: AllowList | None = None,
        explain: bool = False,
    ) -> list[KeywordHit]:
        """Top-k objects by BM25, and any tied with the k-th; ``properties`` are (name, boost) pairs (default: every searchable one)."""
        with self._lock:
            chosen = properties if properties is not None else [(name, 1.0) for name in self.properties]
            size = self._size
            scores = np.zeros(size, dtype=np.float64)
            eligible = np.zeros(size, dtype=bool)
            terms_by_property: list[tuple[str, Counter[str]]] = []
            for name, boost in chosen:
                prop = self.properties[name]
                terms = self.query_terms(query, name)
                terms_by_property.append((name, terms))
                if not terms or not prop.lengths:
                    continue
                documents = len(prop.lengths)
                average = prop.total_length / documents
                lengths = self._lengths(name)
                matched = np.zeros(size, dtype=np.int32)
                for term, repeats in terms.items():
                    rows, frequencies = prop.arrays(term)
                    if not len(rows):
                        continue
                    idf = math.log(1.0 + (documents - len(rows) + 0.5) / (len(rows) + 0.5))
                    norm = self.k1 * (1.0 - self.b + self.b * lengths[rows] / average)
                    scores[rows] += boost * repeats * idf * frequencies / (frequencies + norm)
                    matched[rows] += 1
                needed = len(terms) if operator == "And" else max(1, minimum_match)
                eligible |= matched >= needed
            if allowed is not None:
                mask = np.zeros(size, dtype=bool)
                passing = allowed.mask[:size]
                mask[: len(passing)] = passing
                eligible &= mask
            candidates = np.flatnonzero(eligible)
            if not len(candidates) or k <= 0:
                return []
            if len(candidates) > k:
                # Keep everything tied with the k-th score so ties are broken by id, deterministically.
                kth = np.partition(-scores[candidates], k - 1)[k - 1]
                candidates = candidates[-scores[candidates] <= kth]
            # Every hit tied with the k-th comes back: the caller breaks ties by id.
            ranked = sorted(candidates.tolist(), key=lambda r: (-scores[r], r))
            return [KeywordHit(int(r), float(scores[r]), self._explain(int(r), terms_by_property) if explain else "") for r in ranked]

    def _explain(self, row: int, terms_by_property: list[tuple[str, Counter[str]]]) -> str:
        # Weaviate's per-object explanation: ", BM25F_<term>_frequency:<f>, BM25F_<term>_propLength:<len>".
        parts = []
        for name, terms in terms_by_property:
            prop = self.properties[name]
            counts = prop.terms_of.get(row, Counter())
            for term in terms:
                if counts.get(term):
                    parts.append(f", BM25F_{term}_frequency:{counts[term]}, BM25F_{term}_propLength:{prop.lengths[row]}")
        return "".join(parts)

    # -- persistence -----------------------------------------------------------

    def save(self, directory: Path) -> None:
        with self._lock:
            state = {"live": sorted(self._live), "size": self._size, "properties": {n: (p.postings, p.terms_of, p.lengths, p.total_length) for n, p in self.properties.items()}}
            with open(directory / "bm25.pickle", "wb") as out:
                pickle.dump(state, out, protocol=pickle.HIGHEST_PROTOCOL)

    @classmethod
    def restore(cls, collection: CollectionSpec, directory: Path) -> BM25Index:
        # Only files searchd itself wrote in its own data directory are unpickled.
        with open(directory / "bm25.pickle", "rb") as source:
            state = pickle.load(source)
        index = cls(collection)
        if set(state["properties"]) != set(index.properties):
            raise ValueError("saved BM25 index covers other properties")
        index._live, index._size = set(state["live"]), int(state["size"])
        for name, (postings, terms_of, lengths, total) in state["properties"].items():
            prop = index.properties[name]
            prop.postings, prop.terms_of, prop.lengths, prop.total_length = postings, terms_of, lengths, total
        return index
