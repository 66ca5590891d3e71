"""The compact doc ↔ id map: the same answers as a pair of dicts, through folds, deletes and reused ids."""

from __future__ import annotations

import operator
import random
import uuid

import numpy as np
import pytest

from searchd.index import ids as ids_module
from searchd.index.ids import IdMap


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


@pytest.mark.parametrize("seed", range(6))
def test_the_map_answers_as_two_dicts_do(monkeypatch: pytest.MonkeyPatch, seed: int) -> None:
    monkeypatch.setattr(ids_module, "_FOLD_MIN", 16)  # fold often: the sorted part and the recent dict both get exercised
    rng = random.Random(seed)
    ids, model_doc, model_id = IdMap(), dict[str, int](), dict[int, str]()
    known: list[str] = []
    next_doc = 0
    for _ in range(3000):
        action = rng.random()
        if action < 0.6 or not model_id:  # a new object, sometimes under an id deleted before
            object_id = rng.choice(known) if known and rng.random() < 0.2 else _uuid(rng)
            if object_id in model_doc:
                continue
            known.append(object_id)
            ids.put(next_doc, object_id)
            model_doc[object_id], model_id[next_doc] = next_doc, object_id
            next_doc += rng.choice((1, 1, 1, 7))
        elif action < 0.8:  # an update in place: same doc, same id
            doc = rng.choice(list(model_id))
            ids.put(doc, model_id[doc])
        else:
            doc = rng.choice(list(model_id))
            ids.remove(doc)
            del model_doc[model_id.pop(doc)]
        assert len(ids) == len(model_doc)
    for object_id in known:
        assert ids.doc_of(object_id) == model_doc.get(object_id)
    assert ids.ids_of(list(range(next_doc + 3))) == [model_id.get(d) for d in range(next_doc + 3)]
    assert ids.doc_of(_uuid(rng)) is None and ids.id_of(-1) is None


def test_comparisons_on_ids_match_python_string_order() -> None:
    rng = random.Random(7)
    ids = IdMap()
    listed = [_uuid(rng) for _ in range(300)]
    for doc, object_id in enumerate(listed):
        ids.put(doc, object_id)
    ids.remove(5)
    pivot = listed[150]
    for op in (operator.lt, operator.le, operator.gt, operator.ge):
        expected = [doc != 5 and op(object_id, pivot) for doc, object_id in enumerate(listed)] + [False, False]
        assert ids.compare(op, pivot, 302).tolist() == expected
    assert np.flatnonzero(ids.compare(operator.lt, "0", 300)).tolist() == []
    assert ids.compare(operator.gt, "é", 300).tolist() == [False] * 300  # not ASCII: compared as strings


def test_an_id_that_is_not_a_uuid_row_still_maps_both_ways() -> None:
    ids = IdMap()
    ids.put(0, "short")
    ids.put(1, "00000000-0000-4000-8000-000000000001")
    ids.put(2, "ü" * 36)
    assert [ids.doc_of("short"), ids.doc_of("ü" * 36), ids.doc_of("00000000-0000-4000-8000-000000000001")] == [0, 2, 1]
    assert ids.ids_of([0, 1, 2, 3]) == ["short", "00000000-0000-4000-8000-000000000001", "ü" * 36, None]
    assert ids.compare(operator.lt, "t", 3).tolist() == [True, True, False]
    ids.remove(0)
    assert ids.doc_of("short") is None and ids.id_of(0) is None and len(ids) == 2
