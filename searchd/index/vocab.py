"""A BM25 property's vocabulary: term → dense term id, without a Python str and dict entry per term.

Most terms live in a static trie (marisa-trie: about a tenth of the memory of a dict of strs,
and lookups in about half a microsecond), with an array from the trie's key ids to ours.  Terms
added since the trie was built wait in a dict; once that dict outgrows a fraction of the trie,
both are rebuilt into one trie.  marisa cannot hold a key with NUL in it (it reads NUL as the
key's end) or one that is not valid UTF-8 (a lone surrogate, which data written before searchd
refused them may hold): such terms stay in the dict for good.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Sequence

import marisa_trie

_FREEZE_MIN = 4_096  # terms always kept in the dict before a rebuild …
_FREEZE_FRACTION = 4  # … and at most one per this many in the trie


class Vocabulary:
    def __init__(self, terms: Sequence[str] = ()) -> None:
        """A vocabulary of ``terms``, whose ids are their positions; ValueError if a term repeats."""
        self._trie: marisa_trie.Trie | None = None
        self._ids = array("i")  # the trie's key id → term id
        self._recent = {term: term_id for term_id, term in enumerate(terms)}
        self._count = len(terms)
        if len(self._recent) != self._count:
            raise ValueError("a vocabulary repeats a term")
        if terms:
            self._freeze()

    def __len__(self) -> int:
        return self._count

    def get(self, term: str) -> int | None:
        found = self._recent.get(term)
        if found is None and self._trie is not None and not _odd(term):
            key = self._trie.get(term)
            if key is not None:
                return int(self._ids[key])
        return found

    def ids_for(self, terms: Iterable[str]) -> list[int]:
        """Each term's id, giving the next free id to a term not seen before."""
        recent, trie, ids = self._recent, self._trie, self._ids
        found: list[int] = []
        for term in terms:
            term_id = recent.get(term)
            if term_id is None:
                key = trie.get(term) if trie is not None and not _odd(term) else None
                if key is not None:
                    term_id = ids[key]
                else:
                    term_id = recent[term] = self._count
                    self._count += 1
            found.append(term_id)
        if len(recent) > max(_FREEZE_MIN, len(ids) // _FREEZE_FRACTION):
            self._freeze()
        return found

    def terms(self) -> list[str]:
        """Every term, in id order."""
        ordered = [""] * self._count
        if self._trie is not None:
            ids = self._ids
            for term, key in self._trie.iteritems():
                ordered[ids[key]] = term
        for term, term_id in self._recent.items():
            ordered[term_id] = term
        return ordered

    def _freeze(self) -> None:
        everything = self.terms()
        kept = {term: term_id for term, term_id in self._recent.items() if _odd(term)}
        frozen = [term for term in everything if term not in kept] if kept else everything
        if not frozen:
            self._trie, self._ids, self._recent = None, array("i"), kept
            return
        trie = marisa_trie.Trie(frozen)
        ids = array("i", bytes(4 * len(trie)))
        for term_id, term in enumerate(everything):
            if term not in kept:
                ids[trie[term]] = term_id
        self._trie, self._ids, self._recent = trie, ids, kept


def _odd(term: str) -> bool:
    """Whether marisa cannot hold ``term``: NUL, or not encodable as UTF-8."""
    if "\0" in term:
        return True
    if term.isascii():
        return False
    try:
        term.encode()
    except UnicodeEncodeError:
        return True
    return False
