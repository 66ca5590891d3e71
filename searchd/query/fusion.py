"""Hybrid fusion exactly as Weaviate does it (reference/weaviate-api.md §2): pure functions over ranked legs.

A leg is one result list (keyword or vector) with a weight (1 - alpha, alpha), a
name for explanations, and each hit's original score (BM25 score, or 1 - distance).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from searchd.index.base import distinct

RRF_K = 60  # Weaviate's hard-coded rank constant; ranks are 0-based


@dataclass(frozen=True)
class LegHit:
    id: str
    score: float  # the leg's own score: BM25, or 1 - distance
    explain: str = ""  # what the leg already says about the hit (BM25 term details)


@dataclass(frozen=True)
class Leg:
    name: str  # e.g. "keyword,bm25" or "vector,hybridVector"
    weight: float
    hits: Sequence[LegHit]


@dataclass
class Fused:
    id: str
    score: float = 0.0
    secondary: float = 0.0
    explain: str = ""
    parts: list[str] = field(default_factory=list)


def _ordered(fused: dict[str, Fused]) -> list[Fused]:
    # Ties (|Δ|² < 1e-14) are broken by the secondary score, then by id.
    ordered = sorted(fused.values(), key=lambda f: (-round(f.score, 7), -f.secondary, f.id))
    for item in ordered:
        if item.parts:
            item.explain += " - ".join(item.parts)
    return ordered


def ranked_fusion(legs: Sequence[Leg], explain: bool = True) -> list[Fused]:
    """Reciprocal rank fusion: Σ weight / (rank + 60) over the legs a document appears in.

    ``explain`` writes each contribution out (for ``explainScore``); it is most of the work.
    """
    fused: dict[str, Fused] = {}
    for leg in legs:
        for rank, hit in enumerate(leg.hits):
            item = fused.setdefault(hit.id, Fused(hit.id, explain=hit.explain))
            contribution = leg.weight / (rank + RRF_K)
            item.score += contribution
            item.secondary = max(item.secondary, hit.score)
            if explain:
                item.parts.append(f"\nHybrid (Result Set {leg.name}) Document {hit.id} contributed {contribution:.9g} to the score")
    return _ordered(fused)


def relative_score_fusion(legs: Sequence[Leg], explain: bool = True) -> list[Fused]:
    """Min-max normalise each leg's scores (all equal → 1), then sum them weighted (``explain``: as ranked_fusion)."""
    fused: dict[str, Fused] = {}
    for leg in legs:
        if not leg.hits:
            continue
        scores = [hit.score for hit in leg.hits]
        low, high = min(scores), max(scores)
        for hit in leg.hits:
            normalized = leg.weight * (1.0 if high == low else (hit.score - low) / (high - low))
            item = fused.setdefault(hit.id, Fused(hit.id, explain=hit.explain))
            item.score += normalized
            item.secondary = max(item.secondary, hit.score)
            if explain:
                item.parts.append(f"\nHybrid (Result Set {leg.name}) Document {hit.id}: original score {hit.score:.9g}, normalized score: {normalized:.9g}")
    return _ordered(fused)


@dataclass(frozen=True)
class ScoredLeg:
    """A leg as parallel sequences or arrays, for ``fused_top``: docs in rank order and their own scores."""

    weight: float
    docs: Sequence[int] | np.ndarray
    scores: Sequence[float] | np.ndarray


def fused_top(legs: Sequence[ScoredLeg], ranked: bool, limit: int, id_of: Mapping[int, str]) -> list[tuple[int, float]]:
    """The first ``limit`` (doc, score) of ``ranked_fusion`` (or ``relative_score_fusion``), without explanations.

    Hybrid's hot path: the same arithmetic in the same order, in numpy; ids are only looked at to
    break the ties that reach the cut.  ``tests/test_keyword_hybrid.py`` holds the two to the same answers.
    """
    docs_parts, contributions, originals = [], [], []
    for leg in legs:
        if leg.weight <= 0 or not len(leg.docs):
            continue
        scores = np.asarray(leg.scores, dtype=np.float64)
        if ranked:
            contribution = leg.weight / (np.arange(len(scores), dtype=np.float64) + RRF_K)
        else:
            low, high = float(scores.min()), float(scores.max())
            contribution = np.full(len(scores), leg.weight) if high == low else leg.weight * ((scores - low) / (high - low))
        docs_parts.append(np.asarray(leg.docs, dtype=np.int64))
        contributions.append(contribution)
        originals.append(scores)
    if not docs_parts or limit <= 0:
        return []
    unique: np.ndarray
    score: np.ndarray
    secondary: np.ndarray
    if len(docs_parts) == 1:  # a leg holds each doc once
        unique, score, secondary = docs_parts[0], 0.0 + contributions[0], np.maximum(originals[0], 0.0)  # as from np.zeros below
    else:
        unique, inverse = distinct(np.concatenate(docs_parts))
        # bincount adds each doc's contributions in leg order, starting from 0.0, as the dict-based fusion does.
        score = np.bincount(inverse, weights=np.concatenate(contributions), minlength=len(unique))
        secondary = np.zeros(len(unique))
        np.maximum.at(secondary, inverse, np.concatenate(originals))
    # Ranks compare scores rounded to 7 decimals (exactly, as Python's round does), so only scores within rounding
    # reach of the limit-th best can make the cut: round() moves a score by 5e-8 at most, and rounding is monotonic.
    if limit < len(score):
        kth = -np.partition(-score, limit - 1)[limit - 1]
        near = np.flatnonzero(score >= kth - 2e-7)
    else:
        near = np.arange(len(score))
    near_scores, near_secondary = score[near].tolist(), secondary[near].tolist()
    rounded = [round(value, 7) for value in near_scores]
    by_rank = np.lexsort((np.negative(near_secondary), np.negative(rounded))).tolist()  # positions in near, best first
    cut = min(limit, len(by_rank))
    last = by_rank[cut - 1]
    while cut < len(by_rank) and rounded[by_rank[cut]] == rounded[last] and near_secondary[by_rank[cut]] == near_secondary[last]:
        cut += 1  # a tie at the cut: the id decides which of them stay
    head = by_rank[:cut]
    near_docs = unique[near].tolist()
    if len({(rounded[i], near_secondary[i]) for i in head}) < len(head):  # equal ranks and scores: the id decides their order
        head = sorted(head, key=lambda i: (-rounded[i], -near_secondary[i], id_of[near_docs[i]]))
    return [(near_docs[i], near_scores[i]) for i in head[:limit]]


def autocut(values: Sequence[float], jumps: int) -> int:
    """How many results to keep: cut after the ``jumps``-th jump (Weaviate's entities/autocut).

    ``values`` are sorted, best first (distances ascending or scores descending).
    """
    n = len(values)
    if n <= 1 or jumps <= 0 or values[-1] == values[0]:
        return n
    step = 1.0 / (n - 1)
    diff = [(v - values[0]) / (values[-1] - values[0]) - i * step for i, v in enumerate(values)]
    extrema = 0
    for i in range(1, n):
        if i == n - 1:
            peak = n > 2 and diff[i] > diff[i - 1] and diff[i] > diff[i - 2]
        else:
            peak = diff[i] > diff[i - 1] and diff[i] > diff[i + 1]
        if peak:
            extrema += 1
            if extrema >= jumps:
                return i
    return n
