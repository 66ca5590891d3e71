"""The folded fast reading (issue #13, repeats.py): repeated entries of a collections list are read once.

Each text here holds many collections that repeat entries.  Where the fold applies, the fast reading must
give exactly the exact loader's data (types included) with every repeated entry as one shared object; where
it does not, it steps aside to the whole reading (or to the exact loader), never giving other data.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

import pytest

from searchd.config import build, load_spec, validate
from searchd.config.repeats import fold
from searchd.errors import ConfigError
from searchd.modules import default_registry
from tests.test_config_fastload import ENV, readings, typed

WriteConfig = Callable[..., Path]

ITEM = (
    "  - name: C{i}\n"
    "    description: collection {i}\n"
    "    properties:\n"
    "      - {{name: title, type: TEXT}}\n"
    "      - {{name: tags, type: 'TEXT[]', tokenization: word}}\n"
    "    invertedIndex: {{bm25: {{k1: 1.2, b: 0.75}}}}\n"
    "    vectors:\n"
    "      v:\n"
    "        vectorizer: {{module: text2vec-hash, dimensions: 64, textFields: [title]}}\n"
    "        index: {{type: flat}}\n"
)


def items(count: int = 40, item: str = ITEM) -> str:
    return "".join(item.format(i=i) for i in range(count))


# Texts the fold applies to: the fast reading takes them, and gives the exact loader's data.
FOLDED = {
    "list only": "collections:\n" + items(),
    "server before": "server: {port: 8081}\ncollections:\n" + items(),
    "server after": "collections:\n" + items() + "server:\n  port: 8081\n",
    "deeper list": "collections:\n" + "".join("  " + line for line in items().splitlines(keepends=True)),
    "multi-line plain value": "collections:\n" + items(item=ITEM.replace("    description: collection {i}\n", "    description: collection {i}\n      and more\n")),
    "repeated description": "collections:\n" + items(item=ITEM.replace("collection {i}", "the same")),
    "environment": "collections:\n" + items(item=ITEM.replace("collection {i}", "on ${{HOST}}")),
    "a last item that differs": "collections:\n" + items() + "  - name: Last\n    properties: [{name: t, type: TEXT}]\n",
    "blank line then more items": "collections:\n" + items() + "\n" + items().replace("name: C", "name: D"),
}

# Texts the fold steps aside from (None), though the whole file may still be read fast.
NOT_FOLDED = {
    "few repeats": "collections:\n" + items(2),
    "an odd quote": "collections:\n" + items(item=ITEM.replace("collection {i}", "it's {i}")),
    "a comment line": "collections:\n" + items(item=ITEM.replace("    properties:\n", "    # props\n    properties:\n")),
    "an entry without a colon": "collections:\n" + items(item=ITEM.replace("    invertedIndex:", "    invertedIndex\n    invertedIndex:")),
    "a quoted key": "collections:\n" + items(item=ITEM.replace("    description:", "    'description':")),
    "list at the margin": "collections:\n" + items().replace("\n  ", "\n").lstrip(" ").replace("\n- name", "\n- name"),
    "a shallower line": "collections:\n" + items(item=ITEM.replace("    description: collection {i}\n", "    description: collection {i}\n   more\n")),
    "two collections keys": "collections:\n" + items() + "collections:\n" + items(),
    "a value running on": "collections:\n" + items(item=ITEM.replace("    invertedIndex: {{bm25: {{k1: 1.2, b: 0.75}}}}\n", "    invertedIndex: {{bm25: {{k1: 1.2,\n    b: 0.75}}}}\n")),
}


@pytest.mark.parametrize("name", sorted(FOLDED))
def test_folded_texts_are_read_alike_with_shared_entries(name: str) -> None:
    text = FOLDED[name]
    folded = fold(text.encode())
    assert folded is not None, "the fold stepped aside"
    assert len(folded.text) < len(text)
    fast, exact, issues = readings(text)
    assert issues == []
    assert fast is not None, "the fast reading stepped aside from a folded text"
    assert typed(fast) == typed(exact)
    collections = fast["collections"]
    assert collections[1]["properties"] is collections[2]["properties"] and collections[1]["vectors"] is collections[3]["vectors"]


@pytest.mark.parametrize("name", sorted(NOT_FOLDED))
def test_other_texts_are_not_folded(name: str) -> None:
    text = NOT_FOLDED[name]
    assert fold(text.encode()) is None
    fast, exact, issues = readings(text)
    if fast is not None:
        assert issues == [] and typed(fast) == typed(exact)


def test_a_key_repeated_within_an_item_is_left_to_the_exact_loader() -> None:
    """The second `properties:` of an item is the text of an earlier item's: folded, it would be put back over the first."""
    twice = ITEM.replace("    vectors:\n", "    properties:\n      - {{name: title, type: TEXT}}\n      - {{name: tags, type: 'TEXT[]', tokenization: word}}\n    vectors:\n")
    text = "collections:\n" + items() + items(item=twice).replace("name: C", "name: D")
    assert fold(text.encode()) is not None
    fast, _, issues = readings(text)
    assert fast is None
    assert any("duplicate key 'properties'" in issue for issue in issues)


def test_a_folded_file_loads_as_the_exact_reading_does(write_config: WriteConfig, monkeypatch: pytest.MonkeyPatch) -> None:
    """Through load_spec: the same spec both ways, and an issue in a shared entry is located in every collection."""
    path = write_config(FOLDED["server before"])

    def load(fast: bool) -> object:
        monkeypatch.setattr(build, "FAST_MIN_BYTES", 0 if fast else 1 << 62)
        try:
            return load_spec(path, default_registry(), environ=ENV)
        except ConfigError as error:
            return [issue.render() for issue in error.issues]

    spec = load(True)
    assert spec == load(False)
    bad = "collections:\n" + items(item=ITEM.replace("textFields: [title]", "textFields: [nope]"))
    path.write_text(bad)
    issues = load(True)
    assert issues == load(False)
    assert isinstance(issues, list) and len(issues) == 40
    assert issues[1] == f"{path}:20:74: collections[1].vectors.v.vectorizer.textFields[0]: 'nope' is not a property of collection 'C1' (declared properties: title, tags)"


def test_the_schema_checks_each_collection_key_on_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    """The folded data is checked against the schema in place of the whole: this holds while a collection's schema
    constrains each key apart (a schema change that relates keys, e.g. with dependentRequired, turns the shortcut off)."""
    assert validate.entries_independent()
    schema = validate.config_schema()
    collection = {**schema["$defs"]["collection"], "dependentRequired": {"vectors": ["properties"]}}
    monkeypatch.setattr(validate, "config_schema", lambda: {**schema, "$defs": {**schema["$defs"], "collection": collection}})
    validate.entries_independent.cache_clear()
    try:
        assert not validate.entries_independent()
    finally:
        monkeypatch.undo()
        validate.entries_independent.cache_clear()


# Entries, plain and odd, that random collections lists are made of (a fixed seed: the same lists every run).
ENTRIES = [
    "    description: plain text\n",
    "    description: folded\n      over two lines\n",
    "    description: 'single, quoted'\n",
    '    description: "double: quoted"\n',
    "    description: it's\n",
    "    description: [a, b]\n",
    "    description: yes\n",
    "    description:\n",
    "    description: a # comment\n",
    "    properties:\n      - {name: title, type: TEXT}\n",
    "    properties:\n    - {name: title, type: TEXT}\n",
    "    properties: [{name: title, type: TEXT}, {name: n, type: INT}]\n",
    "    properties:\n      - name: title\n        type: TEXT\n",
    "    properties:\n      - {name: title,\n         type: TEXT}\n",
    "    invertedIndex: {bm25: {k1: 1.2, b: 0.75}}\n",
    "    invertedIndex:\n      bm25:\n        k1: 1\n",
    "    invertedIndex:\n      stopwords: {additions: [a, b]}\n\n",
    "    vectors:\n      v: {vectorizer: {module: text2vec-hash, dimensions: 64}, index: {type: flat}}\n",
    "    vectors:\n      v:\n        vectorizer: {module: text2vec-hash, dimensions: 64}\n      # a comment\n",
    "    # a comment\n",
    "   stray: 1\n",
    "    vectors:\n     v: {}\n",
    "    description: one\n    description: two\n",
]


def test_random_lists_are_read_alike_when_folded() -> None:
    rng = random.Random(13)
    groups: dict[str, list[str]] = {}
    for entry in ENTRIES:
        groups.setdefault(entry.split(":")[0].strip(), []).append(entry)
    folded = compared = 0
    for _ in range(150):
        # Each list draws three keys (now and then a comment or a stray line too), one or two variants of each;
        # each item a few entries, each key once.
        keys = rng.sample(["description", "invertedIndex", "properties", "vectors"], 3) + (rng.sample(["# a comment", "stray"], 1) if rng.random() < 0.15 else [])
        pool = {key: rng.sample(groups[key], min(len(groups[key]), 2)) for key in keys}
        body = "".join(
            f"  - name: C{i}\n" + "".join(rng.choice(pool[key]) for key in rng.sample(sorted(pool), rng.randint(0, 3)))
            for i in range(rng.randint(16, 40))
        )
        for text in ("collections:\n" + body, "server: {port: 8080}\ncollections:\n" + body + "modules: {}\n"):
            is_folded = fold(text.encode()) is not None
            fast, exact, issues = readings(text)
            if fast is not None:
                assert issues == [] and typed(fast) == typed(exact), text
                compared += is_folded
            folded += is_folded
    # The fold was taken, and read fast, often enough for the comparison to mean something.
    assert folded > 100 and compared > 50, (folded, compared)
