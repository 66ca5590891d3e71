"""BM25 vocabularies: the same ids as a dict would give, through rebuilds of the trie."""

from __future__ import annotations

import random

import pytest

from searchd.index import vocab as vocab_module
from searchd.index.vocab import Vocabulary


def test_ids_are_dense_and_stable_across_rebuilds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(vocab_module, "_FREEZE_MIN", 8)  # rebuild the trie often
    rng = random.Random(3)
    words = ["".join(rng.choice("abcdeé\0\ud800") for _ in range(rng.randint(0, 6))) for _ in range(600)]
    vocab, model = Vocabulary(), dict[str, int]()
    for start in range(0, len(words), 7):
        chunk = words[start : start + 7]
        expected = [model.setdefault(w, len(model)) for w in chunk]
        assert vocab.ids_for(chunk) == expected
    assert len(vocab) == len(model)
    assert vocab.terms() == list(model)
    assert all(vocab.get(w) == i for w, i in model.items())
    assert vocab.get("zzz") is None and vocab.get("a\0zzz") is None
    assert any("\0" in w for w in model) and any("\ud800" in w for w in model) and "" in model  # the odd terms were exercised


def test_a_vocabulary_from_terms_numbers_them_by_position_and_refuses_repeats() -> None:
    vocab = Vocabulary(["b", "a", "c\0d", "é"])
    assert [vocab.get(t) for t in ("b", "a", "c\0d", "é")] == [0, 1, 2, 3]
    assert vocab.ids_for(["é", "new"]) == [3, 4] and vocab.terms() == ["b", "a", "c\0d", "é", "new"]
    with pytest.raises(ValueError, match="repeats"):
        Vocabulary(["x", "y", "x"])
