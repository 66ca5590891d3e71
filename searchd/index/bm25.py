"""BM25 inverted index over a collection's searchable TEXT / TEXT[] properties.

Scoring follows Weaviate's BlockMax engine (reference/weaviate-api.md §3): each
property is scored on its own — its own document count for idf and its own
average length — and an object's score is the boosted sum over properties:

    idf(t)   = ln(1 + (N_p - n_p(t) + 0.5) / (n_p(t) + 0.5))
    score    = Σ_p boost_p Σ_t q(t) · idf(t) · f / (f + k1 · (1 - b + b · L / avgL_p))

where q(t) is how often t occurs in the query.  ``And`` needs every query term in
one property; ``Or`` with ``minimum_match`` needs that many distinct terms in one
property.  Stopwords are dropped from queries on ``word``-tokenized properties.
k1, b and stopwords are read at query time, so a reload may set them in place.

Layout, per property (no Python object per posting or per doc):

- ``vocab``: term → term id (ids are dense; ``searchd.index.vocab``).
- the *base*: postings sorted by term id, as three numpy arrays — ``offsets``
  (term id t's postings are ``docs[offsets[t]:offsets[t+1]]``, ``freqs`` alike).
- the *log*: postings written since the base was built, appended as ``array('i')``
  blocks (one block per upsert: the doc's distinct terms) of term, doc and frequency.
- per doc, dense over docs: ``lengths`` (tokens; 0: not in this property), ``slot``
  (where its current postings are: ``BASE``, a log position, or ``GONE``) and
  ``log_count`` (the size of its current log block).

An upsert or delete never touches the base: a base posting counts only while its doc's
slot is ``BASE``, a log posting only while it lies inside its doc's current block.  A
search scans the (short) log for its terms; when the log grows past ``LOG_SCAN_MAX``
postings or many base postings are stale, the next search or save folds everything
into a new base (a stable sort by term id, so already sorted postings stay in place).

A search touches only the postings of its terms (no array as long as the collection):
each doc's score is summed in (property, term) order with ``np.bincount``, the same
float additions in the same order as the formula above, so scores do not depend on how
postings happen to be split between base and log.  Once two searches in a row see no
write in between, a property keeps ``k1 · (1 - b + b · L / avgL)`` by doc and the
scored postings of recent terms (``TERM_CACHE_POSTINGS`` at most) until the next
write or change of k1 / b.

Saved as ``bm25.json`` (format name and version, counts, a CRC-32 of the arrays) beside
``bm25.npz`` (plain numeric arrays, read without pickle).  ``restore`` checks them
against each other and raises ValueError (OSError when a file is missing) instead of
loading anything unexpected: the caller then rebuilds the index from the store.
"""

from __future__ import annotations

import json
import math
import threading
from array import array
from bisect import bisect_right
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import repeat
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from searchd import deadline
from searchd.config.spec import CollectionSpec, InvertedIndexSpec, Tokenization
from searchd.index.base import AllowList, distinct
from searchd.index.bm25_files import checked_array, checksum, header_count, load_arrays, read_property
from searchd.index.tokens import tokenize, tokenize_value
from searchd.index.vocab import Vocabulary

FORMAT_NAME = "searchd-bm25"
FORMAT_VERSION = 1
HEADER_FILE = "bm25.json"
ARRAYS_FILE = "bm25.npz"

BASE = -1  # slot: the doc's current postings are in the base
GONE = -2  # slot: the doc has no postings in this property
MAX_DOC = 2**31 - 2  # docs are stored as int32
LOG_SCAN_MAX = 16_384  # log postings a search scans before it folds the log into the base
TERM_CACHE_POSTINGS = 131_072  # postings whose scores a property keeps between searches (2 float64 each)
_STALE_MIN = 1_024  # stale docs always tolerated before a fold …
_STALE_FRACTION = 4  # … and at most one per this many live ones
_DEAD_TERMS_MIN = 1_024  # terms without postings dropped from the vocabulary at a fold past this many


class KeywordHit(NamedTuple):
    """A doc, its BM25 score and (when asked) its explanation; a tuple, as ``Hit`` is."""

    id: int  # the doc
    score: float
    explain: str


_EMPTY_INT32 = np.empty(0, dtype=np.int32)
_EMPTY_INT32.flags.writeable = False


@dataclass(frozen=True)
class _Scored:
    """One term's current postings in one property, with what its BM25 contribution is made of."""

    docs: np.ndarray
    freqs: np.ndarray
    idf: float
    denominator: np.ndarray  # f + k1 · (1 - b + b · L / avgL)
    unit: np.ndarray  # idf · f / denominator: the contribution when boost · repeats is 1


class _Property:
    """One property's postings: a base sorted by term plus an append-only log (see the module docstring)."""

    def __init__(self, tokenization: Tokenization, capacity: int) -> None:
        self.tokenization = tokenization
        self.vocab = Vocabulary()
        self.offsets = np.zeros(1, dtype=np.int64)
        self.docs = _EMPTY_INT32
        self.freqs = _EMPTY_INT32
        self.log_terms = array("i")
        self.log_docs = array("i")
        self.log_freqs = array("i")
        self._log_view: tuple[int, np.ndarray, np.ndarray, np.ndarray] | None = None
        self.lengths = np.zeros(capacity, dtype=np.int32)
        self.slot = np.full(capacity, GONE, dtype=np.int64)
        self.log_count = np.zeros(capacity, dtype=np.int32)
        self.documents = 0  # docs with at least one token here
        self.total_length = 0
        self.stale = 0  # docs whose base postings no longer count
        self.version = 0  # bumped by every write: lengths and the average length change
        # Read caches, valid for one (version, k1, b) and built only once two searches in a row see the same version:
        self._searched_version = -1
        self._cache_key: tuple[int, float, float] | None = None
        self._norms: np.ndarray | None = None  # k1 · (1 - b + b · L / avgL) by doc
        self._scored: dict[int, _Scored] = {}  # term → its postings and scores, up to TERM_CACHE_POSTINGS postings in all
        self._scored_postings = 0

    def grow(self, capacity: int) -> None:
        extra = capacity - len(self.lengths)
        self.lengths = np.concatenate((self.lengths, np.zeros(extra, dtype=np.int32)))
        self.slot = np.concatenate((self.slot, np.full(extra, GONE, dtype=np.int64)))
        self.log_count = np.concatenate((self.log_count, np.zeros(extra, dtype=np.int32)))

    # -- writes ----------------------------------------------------------------

    def remove(self, doc: int) -> None:
        length = int(self.lengths[doc])
        if not length:
            return
        self.documents -= 1
        self.total_length -= length
        self.version += 1
        self.lengths[doc] = 0
        if self.slot[doc] == BASE:
            self.stale += 1
        self.slot[doc] = GONE
        self.log_count[doc] = 0

    def add(self, doc: int, tokens: list[str]) -> None:
        if not tokens:
            return
        counts = Counter(tokens)
        terms = self.vocab.ids_for(counts)
        self.slot[doc] = len(self.log_terms)
        self.log_count[doc] = len(terms)
        self.log_terms.extend(terms)
        self.log_docs.extend([doc] * len(terms))
        self.log_freqs.extend(counts.values())
        self.lengths[doc] = len(tokens)
        self.documents += 1
        self.total_length += len(tokens)
        self.version += 1

    # -- reads -----------------------------------------------------------------

    def log_arrays(self) -> tuple[int, np.ndarray, np.ndarray, np.ndarray]:
        """The log as numpy copies (cached until the next write to it)."""
        size = len(self.log_terms)
        view = self._log_view
        if view is None or view[0] != size:
            view = self._log_view = (
                size,
                np.array(self.log_terms, dtype=np.int32),
                np.array(self.log_docs, dtype=np.int32),
                np.array(self.log_freqs, dtype=np.int32),
            )
        return view

    def postings(self, term: int) -> tuple[np.ndarray, np.ndarray]:
        """The docs that currently hold ``term`` and its frequency in each (each doc once)."""
        if term + 1 < len(self.offsets):
            start, end = int(self.offsets[term]), int(self.offsets[term + 1])
            docs, freqs = self.docs[start:end], self.freqs[start:end]
            if self.stale and len(docs):
                current = self.slot[docs] == BASE
                docs, freqs = docs[current], freqs[current]
        else:
            docs, freqs = _EMPTY_INT32, _EMPTY_INT32
        if self.log_terms:
            _, terms, log_docs, log_freqs = self.log_arrays()
            at = np.flatnonzero(terms == term)
            if len(at):
                owners = log_docs[at]
                begins = self.slot[owners]
                current = (begins <= at) & (at < begins + self.log_count[owners])
                docs = np.concatenate((docs, owners[current]))
                freqs = np.concatenate((freqs, log_freqs[at[current]]))
        return docs, freqs

    def settle(self, k1: float, b: float, size: int) -> None:
        """Before a search: drop read caches a write (or a new k1 / b) made stale; build them on the second search after a write."""
        key = (self.version, k1, b)
        if key == self._cache_key:
            return
        self._scored.clear()
        self._scored_postings = 0
        self._norms, self._cache_key = None, None
        if self._searched_version == self.version:
            # The same expression, element by element, as the per-term one in ``scored``: identical floats.
            self._norms = k1 * (1.0 - b + b * self.lengths[:size] / (self.total_length / self.documents))
            self._cache_key = key
        self._searched_version = self.version

    def scored(self, term: int, k1: float, b: float) -> _Scored | None:
        """A term's current postings with their BM25 parts (None when no doc holds it); after ``settle``."""
        cached = self._scored.get(term)
        if cached is not None:
            return cached
        docs, freqs = self.postings(term)
        found = len(docs)
        if not found:
            return None
        idf = math.log(1.0 + (self.documents - found + 0.5) / (found + 0.5))
        if self._norms is not None:
            norm = self._norms[docs]
        else:
            norm = k1 * (1.0 - b + b * self.lengths[docs] / (self.total_length / self.documents))
        denominator = freqs + norm
        scored = _Scored(docs, freqs, idf, denominator, idf * freqs / denominator)
        if self._cache_key is not None and self._scored_postings + found <= TERM_CACHE_POSTINGS:
            scored.unit.flags.writeable = False  # handed out to every search that uses the term
            self._scored[term] = scored
            self._scored_postings += found
        return scored

    def needs_fold(self) -> bool:
        return len(self.log_terms) > LOG_SCAN_MAX or self.stale > max(_STALE_MIN, self.documents // _STALE_FRACTION)

    def fold(self) -> None:
        """Rebuild the base from the current postings (base and log) and empty the log."""
        if not self.log_terms and not self.stale:
            return
        terms = np.repeat(np.arange(len(self.offsets) - 1, dtype=np.int32), np.diff(self.offsets))
        docs, freqs = self.docs, self.freqs
        if self.stale:
            current = self.slot[docs] == BASE
            terms, docs, freqs = terms[current], docs[current], freqs[current]
        if self.log_terms:
            log_terms, log_docs, log_freqs = self._current_log()
            terms = np.concatenate((terms, log_terms))
            docs = np.concatenate((docs, log_docs))
            freqs = np.concatenate((freqs, log_freqs))
            del log_terms, log_docs, log_freqs
            order = np.argsort(terms, kind="stable")  # the base part is one sorted run already
            terms, docs, freqs = terms[order], docs[order], freqs[order]
            del order
        per_term = np.bincount(terms, minlength=len(self.vocab))
        dead = len(self.vocab) - int(np.count_nonzero(per_term))
        if dead > max(_DEAD_TERMS_MIN, len(self.vocab) // 4):
            alive = per_term > 0
            self.vocab = Vocabulary([t for t, keep in zip(self.vocab.terms(), alive.tolist()) if keep])
            per_term = per_term[alive]
        offsets = np.zeros(len(per_term) + 1, dtype=np.int64)
        np.cumsum(per_term, out=offsets[1:])
        self.offsets, self.docs, self.freqs = offsets, np.ascontiguousarray(docs), np.ascontiguousarray(freqs)
        self.slot[self.slot >= 0] = BASE
        self.log_count[:] = 0
        self.log_terms, self.log_docs, self.log_freqs = array("i"), array("i"), array("i")
        self._log_view = None
        self.stale = 0
        self._scored.clear()  # its arrays are views of the old base
        self._scored_postings = 0

    def _current_log(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Copies of the log postings that still count (term, doc, frequency), read through views of the log's buffers."""
        self._log_view = None
        views = [np.frombuffer(a, dtype=np.int32) for a in (self.log_terms, self.log_docs, self.log_freqs)]
        try:
            # The docs' current blocks, marked by +1 at each start and -1 at each end (a start may share a position with another's end).
            owners = np.flatnonzero(self.slot >= 0)
            begins = self.slot[owners]
            edges = np.zeros(len(views[0]) + 1, dtype=np.int8)
            edges[begins] = 1
            edges[begins + self.log_count[owners]] -= 1
            current = np.cumsum(edges[:-1], dtype=np.int8).astype(bool)
            return views[0][current], views[1][current], views[2][current]
        finally:
            views.clear()  # an array('i') cannot grow while a view of it lives (not even in a traceback)

    def terms_in_order(self) -> list[str]:
        return self.vocab.terms()


def _sum_by_doc(docs_parts: list[np.ndarray], score_parts: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(the distinct docs, each posting's index among them, each doc's summed score) of (property, term) segments."""
    if len(docs_parts) == 1:
        return docs_parts[0], np.arange(len(docs_parts[0])), score_parts[0]  # one term's postings hold each doc once
    unique, inverse = distinct(np.concatenate(docs_parts))
    # bincount adds each doc's contributions in input order, (property, term) order: the formula's order of additions.
    return unique, inverse, np.bincount(inverse, weights=np.concatenate(score_parts), minlength=len(unique))


def _best(candidates: np.ndarray, unique: np.ndarray, scores: np.ndarray, k: int) -> np.ndarray:
    """The k best candidates (indexes into ``unique``) and every one tied with the k-th, by score then doc."""
    negated = -scores[candidates] if len(candidates) < len(unique) else -scores
    if len(candidates) > k:
        # Keep everything tied with the k-th score: the caller breaks ties by the object's id.
        kth = np.partition(negated, k - 1)[k - 1]
        kept = negated <= kth
        candidates, negated = candidates[kept], negated[kept]
    ranked: np.ndarray = candidates[np.lexsort((unique[candidates], negated))]
    return ranked


class _Top(NamedTuple):
    """A search's scoring: the distinct matching docs, each posting's index among them, their scores, the k best (indexes
    into ``unique``, best first), and for explanations each (property, term)'s frequencies and place in the postings."""

    unique: np.ndarray
    inverse: np.ndarray
    scores: np.ndarray
    ranked: np.ndarray
    freq_parts: list[np.ndarray]
    segments: list[tuple[_Property, str, int, int]]


class BM25Index:
    def __init__(self, collection: CollectionSpec) -> None:
        settings = collection.inverted_index
        self.k1 = settings.k1
        self.b = settings.b
        self.stopwords = settings.stopwords
        self._capacity = 0
        self.properties = {p.name: _Property(p.tokenization, 0) for p in collection.properties if p.searchable}
        self._live = np.zeros(0, dtype=bool)  # by doc
        self._count = 0
        self._size = 0  # one past the highest doc seen
        self._lock = threading.RLock()

    def __len__(self) -> int:
        return self._count

    def configure(self, settings: InvertedIndexSpec) -> None:
        """Take a reload's k1, b and stopwords, under the lock: a search runs wholly with the old ones or the new ones.

        The postings do not depend on them (stopwords are dropped from queries, not from documents, as in Weaviate,
        so document lengths count every token either way): scores after this equal those of a fresh start.
        """
        with self._lock:
            self.k1, self.b, self.stopwords = settings.k1, settings.b, settings.stopwords

    def __contains__(self, doc: object) -> bool:
        return isinstance(doc, (int, np.integer)) and 0 <= int(doc) < self._size and bool(self._live[doc])

    # -- writes ----------------------------------------------------------------

    def _reserve(self, doc: int) -> None:
        if not 0 <= doc <= MAX_DOC:
            raise ValueError(f"BM25 doc {doc} is out of range: docs are integers from 0 to {MAX_DOC}")
        if doc >= self._capacity:
            capacity = max(doc + 1, 2 * self._capacity, 1024)
            self._live = np.concatenate((self._live, np.zeros(capacity - self._capacity, dtype=bool)))
            for prop in self.properties.values():
                prop.grow(capacity)
            self._capacity = capacity
        if doc >= self._size:
            self._size = doc + 1

    def upsert(self, doc: int, properties: Mapping[str, Any]) -> None:
        with self._lock:
            self._reserve(doc)
            if not self._live[doc]:
                self._live[doc] = True
                self._count += 1
            for name, prop in self.properties.items():
                prop.remove(doc)
                prop.add(doc, tokenize_value(properties.get(name), prop.tokenization))

    def delete(self, doc: int) -> None:
        with self._lock:
            if doc not in self:
                return
            self._live[doc] = False
            self._count -= 1
            for prop in self.properties.values():
                prop.remove(doc)

    # -- search ----------------------------------------------------------------

    def query_terms(self, query: str, name: str) -> Counter[str]:
        prop = self.properties[name]
        tokens = tokenize(query, prop.tokenization)
        if prop.tokenization is Tokenization.WORD:
            tokens = [t for t in tokens if t not in self.stopwords]
        return Counter(tokens)

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
            top = self._top(query, k, properties, operator, minimum_match, allowed)
            if top is None:
                return []
            hit_docs = top.unique[top.ranked].tolist()
            hit_scores = top.scores[top.ranked].tolist()
            if not explain:
                return list(map(tuple.__new__, repeat(KeywordHit), zip(hit_docs, hit_scores, repeat("", len(hit_docs)))))  # in C: see hits_of
            frequencies_all = np.concatenate(top.freq_parts) if len(top.freq_parts) > 1 else top.freq_parts[0]
            notes = self._explain(top.ranked, hit_docs, len(top.unique), top.inverse, frequencies_all, top.segments)
            return list(map(tuple.__new__, repeat(KeywordHit), zip(hit_docs, hit_scores, notes)))

    def search_columns(
        self,
        query: str,
        k: int,
        properties: Sequence[tuple[str, float]] | None = None,
        operator: str = "Or",
        minimum_match: int = 1,
        allowed: AllowList | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """``search``'s docs and scores as arrays, without explanations: for a caller that works on arrays (hybrid's fusion)."""
        with self._lock:
            top = self._top(query, k, properties, operator, minimum_match, allowed)
            if top is None:
                return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float64)
            return top.unique[top.ranked].astype(np.int64, copy=False), top.scores[top.ranked]

    def _top(
        self, query: str, k: int, properties: Sequence[tuple[str, float]] | None, operator: str, minimum_match: int, allowed: AllowList | None
    ) -> _Top | None:
        """The scoring behind ``search`` (under the lock): every matching doc's score, and the k best (with ties)."""
        chosen = properties if properties is not None else [(name, 1.0) for name in self.properties]
        k1, b = self.k1, self.b
        docs_parts: list[np.ndarray] = []
        score_parts: list[np.ndarray] = []
        freq_parts: list[np.ndarray] = []
        segments: list[tuple[_Property, str, int, int]] = []  # (property, term, start, end) in the concatenation
        needs: list[tuple[int, int, int]] = []  # (start, end, distinct terms needed) per property
        used = 0
        for name, boost in chosen:
            prop = self.properties[name]
            terms = self.query_terms(query, name)
            if not terms or not prop.documents:
                continue
            if prop.needs_fold():
                prop.fold()
            prop.settle(k1, b, self._size)
            first = used
            for term, repeats in deadline.checked(terms.items(), every=64):  # a long query string: thousands of terms
                term_id = prop.vocab.get(term)
                scored = None if term_id is None else prop.scored(term_id, k1, b)
                if scored is None:
                    continue
                # boost · repeats · idf · f / (f + norm), evaluated left to right as ever (the cached unit when the weight is idf).
                weight = boost * repeats * scored.idf
                docs_parts.append(scored.docs)
                score_parts.append(scored.unit if weight == scored.idf else weight * scored.freqs / scored.denominator)
                freq_parts.append(scored.freqs)
                segments.append((prop, term, used, used + len(scored.docs)))
                used += len(scored.docs)
            needed = len(terms) if operator == "And" else max(1, minimum_match)
            if needed > 1:
                needs.append((first, used, needed))
            elif used > first:
                needs.append((first, used, 1))
        if not used or k <= 0:
            return None
        unique, inverse, scores = _sum_by_doc(docs_parts, score_parts)
        if all(needed <= 1 for _, _, needed in needs):
            candidates = np.arange(len(unique))
        else:
            eligible = np.zeros(len(unique), dtype=bool)
            for start, end, needed in needs:
                eligible |= np.bincount(inverse[start:end], minlength=len(unique)) >= needed
            candidates = np.flatnonzero(eligible)
        if allowed is not None:
            candidates = candidates[allowed.passes(unique[candidates])]
        if not len(candidates):
            return None
        return _Top(unique, inverse, scores, _best(candidates, unique, scores, k), freq_parts, segments)

    @staticmethod
    def _explain(
        ranked: np.ndarray, hit_docs: list[int], unique: int, inverse: np.ndarray, frequencies: np.ndarray, segments: list[tuple[_Property, str, int, int]]
    ) -> list[str]:
        """Weaviate's per-object explanation, ", BM25F_<term>_frequency:<f>, BM25F_<term>_propLength:<len>" per matched term, for the hits only."""
        rank = np.full(unique, -1, dtype=np.intp)
        rank[ranked] = np.arange(len(ranked))
        rank_of = rank[inverse]
        picked = np.flatnonzero(rank_of >= 0)  # the hits' postings, in (property, term) order
        ends = [end for _, _, _, end in segments]
        lengths: dict[int, list[int]] = {}
        for prop, _, _, _ in segments:
            if id(prop) not in lengths:
                lengths[id(prop)] = prop.lengths[hit_docs].tolist()
        parts: list[list[str]] = [[] for _ in hit_docs]
        for position, hit, frequency in zip(picked.tolist(), rank_of[picked].tolist(), frequencies[picked].tolist()):
            prop, term, _, _ = segments[bisect_right(ends, position)]
            parts[hit].append(f", BM25F_{term}_frequency:{frequency}, BM25F_{term}_propLength:{lengths[id(prop)][hit]}")
        return ["".join(p) for p in parts]

    # -- persistence -----------------------------------------------------------

    def save(self, directory: Path) -> None:
        """Write ``bm25.json`` and ``bm25.npz`` into ``directory`` (the caller stages and renames it)."""
        with self._lock:
            arrays: dict[str, np.ndarray] = {"live": np.flatnonzero(self._live[: self._size]).astype(np.int32)}
            described = []
            for i, (name, prop) in enumerate(self.properties.items()):
                prop.fold()
                names = prop.terms_in_order()
                text = "".join(names)
                arrays[f"p{i}_terms"] = np.frombuffer(text.encode("utf-8", "surrogatepass"), dtype=np.uint8)
                arrays[f"p{i}_term_ends"] = np.cumsum(np.fromiter(map(len, names), dtype=np.int64, count=len(names)))
                arrays[f"p{i}_offsets"] = prop.offsets
                arrays[f"p{i}_docs"] = prop.docs
                arrays[f"p{i}_freqs"] = prop.freqs
                arrays[f"p{i}_lengths"] = prop.lengths[: self._size]
                described.append(
                    {
                        "name": name,
                        "tokenization": prop.tokenization.value,
                        "terms": len(names),
                        "postings": len(prop.docs),
                        "documents": prop.documents,
                        "totalLength": prop.total_length,
                    }
                )
            header = {
                "format": FORMAT_NAME,
                "version": FORMAT_VERSION,
                "size": self._size,
                "count": self._count,
                "crc32": checksum(arrays),
                "properties": described,
            }
            with open(directory / ARRAYS_FILE, "wb") as out:
                np.savez(out, allow_pickle=False, **arrays)
            (directory / HEADER_FILE).write_text(json.dumps(header, indent=1), encoding="utf-8")

    @classmethod
    def restore(cls, collection: CollectionSpec, directory: Path) -> BM25Index:
        """Load what ``save`` wrote: ValueError (or OSError) when it is missing, damaged, of another format version or for other properties."""
        header = json.loads((directory / HEADER_FILE).read_text(encoding="utf-8"))
        if not isinstance(header, dict) or header.get("format") != FORMAT_NAME:
            raise ValueError(f"{directory / HEADER_FILE} is not a searchd BM25 index header")
        if header.get("version") != FORMAT_VERSION:
            raise ValueError(f"saved BM25 index has format version {header.get('version')!r}; this searchd reads version {FORMAT_VERSION} (rebuild it)")
        index = cls(collection)
        described = header.get("properties")
        if not isinstance(described, list) or not all(isinstance(d, dict) for d in described):
            raise ValueError(f"{directory / HEADER_FILE} has no list of properties")
        saved = [(d.get("name"), d.get("tokenization")) for d in described]
        expected = [(name, prop.tokenization.value) for name, prop in index.properties.items()]
        if saved != expected:
            raise ValueError(f"saved BM25 index covers {saved}, the collection's searchable properties are {expected}")
        size, count = header_count(header, "size", MAX_DOC + 1), header_count(header, "count", MAX_DOC + 1)
        arrays = load_arrays(directory / ARRAYS_FILE)
        if header.get("crc32") != checksum(arrays):
            raise ValueError(f"{directory / ARRAYS_FILE} does not match its header's checksum (damaged, or from another save)")
        live = checked_array(arrays, "live", np.int32, count)
        for i in range(len(expected)):
            checked_array(arrays, f"p{i}_lengths", np.int32, size)  # checked before allocating anything for ``size`` docs
        if len(live) and (live[0] < 0 or live[-1] >= size or np.any(np.diff(live) <= 0)):
            raise ValueError("saved BM25 index lists live docs out of order or out of range")
        if size:
            index._reserve(size - 1)
        index._live[live] = True
        index._count = count
        for i, (prop, about) in enumerate(zip(index.properties.values(), described)):
            _restore_property(prop, arrays, f"p{i}_", about, size)
            if not index._live[: size][prop.lengths[:size] > 0].all():
                raise ValueError(f"saved BM25 index has postings of {about['name']!r} for docs it does not list as live")
        return index


def _restore_property(prop: _Property, arrays: Mapping[str, np.ndarray], prefix: str, about: Mapping[str, Any], size: int) -> None:
    saved = read_property(arrays, prefix, about, size)
    prop.vocab = saved.vocab
    prop.offsets, prop.docs, prop.freqs = saved.offsets, saved.docs, saved.freqs
    prop.lengths[:size] = saved.lengths
    prop.slot[:size][saved.lengths > 0] = BASE
    prop.documents, prop.total_length = saved.documents, saved.total_length
