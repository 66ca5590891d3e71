"""A config's revision taken fast is the very hash stored revisions were taken as, and a load leaves the collector
as it found it (issue #13: 40 MB of collections that share nothing)."""

from __future__ import annotations

import gc
import hashlib
import json
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from searchd.config import load_spec
from searchd.config.loader import collector_paused
from searchd.config.revision import _spaced, canonical, content_revision, redacted
from searchd.modules import default_registry

WriteConfig = Callable[..., Path]

# Characters that matter to the spacing (separators and quotes in strings), to escaping (backslash, controls, DEL,
# non-ASCII) and nothing at all.
CHARACTERS = [*', :"{}[]\\\x00\n\x7f', "é", "😀", *"abcxyz019eE-+."]
FLOATS = [0.0, -0.0, 1.5, 0.75, 1e-05, 0.00012, 1e-06, 5e-324, 1e15, 1e16, 1.2e22, 123456.789, -3.25e-07, 10.00001]


def random_key(rng: random.Random) -> str:
    if rng.random() < 0.3:
        return "".join(rng.choice(CHARACTERS) for _ in range(rng.randrange(4)))
    return rng.choice(["k", "a:b", "c,d", "z", ""])


def random_value(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randrange(9 if depth < 4 else 6)
    if kind == 0:
        return "".join(rng.choice(CHARACTERS) for _ in range(rng.randrange(6)))
    if kind == 1:
        return rng.choice(FLOATS) if rng.random() < 0.5 else rng.uniform(-1e6, 1e6)
    if kind == 2:
        return rng.randrange(-(2**40), 2**40)
    if kind == 3:
        return rng.choice([True, False, None])
    if kind in (4, 5):
        return "".join(rng.choice("abc,:") for _ in range(rng.randrange(4)))  # plain, and the spacing's trap
    if kind in (6, 7):
        return {random_key(rng) + str(i): random_value(rng, depth + 1) for i in range(rng.randrange(4))}
    return [random_value(rng, depth + 1) for _ in range(rng.randrange(4))]


def test_spaced_text_is_jsons_text_or_nothing() -> None:
    """orjson's sorted compact text spaced as json spaces it is json.dumps's text, byte for byte, or None; and it is
    None only for what json writes apart (non-ASCII, a backslash, DEL, a float written apart), so the fast way runs."""
    rng = random.Random(13)
    spaced_count = 0
    for _ in range(3000):
        value = {"v": random_value(rng)}
        compact = orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
        expected = json.dumps(value, sort_keys=True).encode()
        spaced = _spaced(compact)
        if spaced is None:
            text = compact.decode()
            numbers = _numbers(value)
            assert not compact.isascii() or "\\" in text or "\x7f" in text or any(json.dumps(n) != orjson.dumps(n).decode() for n in numbers) or _dotted_zero(text), text
        else:
            assert spaced == expected
            spaced_count += 1
    assert spaced_count > 1000


def _numbers(value: Any) -> list[float | int]:
    if isinstance(value, dict):
        return [n for v in value.values() for n in _numbers(v)]
    if isinstance(value, list):
        return [n for v in value for n in _numbers(v)]
    return [value] if isinstance(value, (int, float)) and not isinstance(value, bool) else []


def _dotted_zero(text: str) -> bool:
    """A false alarm _spaced may raise: ``0.0000`` or a digit before an `e` in a string."""
    return "0.0000" in text or any(text[i - 1].isdigit() and text[i] in "eE" for i in range(1, len(text)))


AWKWARD = """\
server:
  limits: {queueTimeout: 0.00001}
collections:
  - name: Article
    description: "a, b: c"
    properties:
      - {name: title, type: TEXT, description: "{x: [1, 2]}"}
    invertedIndex:
      bm25: {k1: 1.25, b: 0.75}
      stopwords: {additions: ["a:b", "c,d", "e"]}
    vectors:
      v:
        vectorizer: {module: text2vec-hash, dimensions: 16, textFields: [title], weights: {title: 0.5}}
        index: {type: flat, distance: cosine}
  - name: Other
    description: "résumé \\\\ \\" quoted"
    properties: [{name: title, type: TEXT}]
    vectors:
      v:
        vectorizer: {module: text2vec-hash, dimensions: 16, textFields: [title], weights: {title: 1.0e-06}}
"""


@pytest.mark.parametrize("case", ["awkward", "plain", "exponent", "non-ASCII"])
def test_the_revision_is_the_canonical_hash_whatever_the_strings_and_floats(write_config: WriteConfig, case: str) -> None:
    """Separators and quotes in strings, escapes, non-ASCII and floats json writes apart: the hash stays
    sha256(json.dumps(canonical(redacted(spec)), sort_keys=True)), fast or not."""
    text = {
        "awkward": AWKWARD,
        "plain": AWKWARD.replace("1.0e-06", "0.25").replace("0.00001", "2.5").replace("résumé \\\\ \\\" quoted", "plain"),
        "exponent": AWKWARD.replace("résumé \\\\ \\\" quoted", "plain"),
        "non-ASCII": AWKWARD.replace("1.0e-06", "0.25").replace("0.00001", "2.5"),
    }[case]
    spec = load_spec(write_config(text), default_registry(), environ={})
    canonical_json = json.dumps(canonical(redacted(spec)), sort_keys=True)
    assert content_revision(spec) == hashlib.sha256(canonical_json.encode()).hexdigest()[:12]
    assert "a, b: c" in canonical_json and ("résumé" in spec.collections[1].description) == (case in ("awkward", "non-ASCII"))


def test_the_revision_of_collections_that_share_their_parts_is_the_canonical_hash(write_config: WriteConfig) -> None:
    """Collections that share their parts are written part by part (revision._text_of_shared): descriptions with
    quotes, a percent sign, separators and non-ASCII characters are written as json.dumps writes them."""
    descriptions = ['50% off, "quoted": yes', "résumé 😀", "", "tab\\there", "%s %(x)s"]
    text = "collections:\n" + "".join(
        f"  - name: C{i}\n    description: '{description}'\n    properties: [{{name: title, type: TEXT}}]\n"
        "    vectors: {v: {vectorizer: {module: text2vec-hash, textFields: [title]}}}\n"
        for i, description in enumerate(descriptions)
    )
    spec = load_spec(write_config(text), default_registry(), environ={})
    assert len({id(c.properties) for c in spec.collections}) == 1 and spec.collections[3].description == "tab\\there"
    canonical_json = json.dumps(canonical(redacted(spec)), sort_keys=True)
    assert content_revision(spec) == hashlib.sha256(canonical_json.encode()).hexdigest()[:12]


def test_a_load_hands_what_it_kept_to_the_oldest_generation() -> None:
    """Out of a paused collector, what survived is in the oldest generation (no young collection walks it), a cycle
    made meanwhile is still collected, and a frozen heap (a server's, settle_heap) stays frozen."""
    gc.unfreeze()  # an in-process server started by an earlier test froze its heap (settle_heap): back to the oldest generation
    assert gc.isenabled() and gc.get_freeze_count() == 0
    with collector_paused():
        assert not gc.isenabled()
        kept = [[i] for i in range(100)]  # lists: always tracked (a dict of atoms is not)
        cycle: list[Any] = []
        cycle.append(cycle)
    assert gc.isenabled()
    oldest = {id(o) for o in gc.get_objects(generation=2)}
    assert id(kept) in oldest and id(kept[50]) in oldest and id(cycle) in oldest
    found = id(cycle)
    del cycle
    gc.collect()
    assert found not in {id(o) for o in gc.get_objects()}

    gc.freeze()
    try:
        frozen = gc.get_freeze_count()
        with collector_paused():
            young = [[i] for i in range(100)]
        assert gc.isenabled() and gc.get_freeze_count() == frozen
        assert id(young) not in {id(o) for o in gc.get_objects(generation=2)}
    finally:
        gc.unfreeze()
