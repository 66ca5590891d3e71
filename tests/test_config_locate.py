"""An issue in a large file read fast is located without reading the whole file again (issue #13, locate.py).

Each case writes a config of many collections that share nothing, with issues put into a few of them,
and holds the fast reading's issues (located item by item) to the exact loader's, word for word and
position for position.  Issues inside the collections list must not read the whole file exactly.
"""

from __future__ import annotations

import random
from dataclasses import fields, is_dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from searchd.config import build, load_spec, validate
from searchd.config.fastload import fast_document
from searchd.config.loader import parse_yaml
from searchd.config.spec import Spec
from searchd.errors import ConfigError
from searchd.modules import default_registry

COLLECTION = """\
  - name: C{i}
    description: collection number {i}
    properties:
      - {{name: title{i}, type: TEXT}}
      - {{name: body{i}, type: TEXT, tokenization: word}}
      - name: count{i}
        type: INT
    invertedIndex:
      bm25: {{k1: 1.{i}, b: 0.75}}
    vectors:
      v{i}:
        vectorizer: {{module: text2vec-hash, dimensions: {dimensions}, textFields: [title{i}, body{i}]}}
        index: {{type: flat, distance: cosine}}
"""
COUNT = 120

# Each edit replaces the first occurrence of a line fragment of one collection (by its number).
EDITS: dict[str, list[tuple[int, str, str]]] = {
    "unknown text field": [(7, "textFields: [title7, body7]", "textFields: [title7, nope]")],
    "dimensions out of range": [(30, "dimensions: 46", "dimensions: 9000")],
    "reserved property name": [(0, "{name: title0, type: TEXT}", "{name: id, type: TEXT}")],
    "duplicate property": [(55, "{name: body55, type: TEXT, tokenization: word}", "{name: title55, type: TEXT, tokenization: word}")],
    "tokenization on an INT": [(12, "        type: INT\n", "        type: INT\n        tokenization: word\n")],
    "duplicate collection names": [(90, "- name: C90\n", "- name: C3\n")],
    "issues in several collections": [(1, "dimensions: 17", "dimensions: 4"), (119, "textFields: [title119, body119]", "textFields: [count119]")],
    "schema: a string for k1": [(40, "k1: 1.40,", "k1: high,")],
    "schema: an unknown key": [(41, "    description: collection number 41\n", "    descripton: collection number 41\n")],
    "schema: a property type": [(42, "type: TEXT}", "type: STRING}")],
    "schema: a vector name": [(43, "      v43:\n", "      4v:\n")],
    "schema: an index type": [(44, "index: {type: flat,", "index: {type: flatter,")],
    "schema and semantics": [(5, "type: TEXT}", "type: TXT}"), (6, "dimensions: 22", "dimensions: 2")],
    "last collection": [(COUNT - 1, "index: {type: flat, distance: cosine}", "index: {type: hnsw, distance: hamming}")],
}
# Issues outside the list, or in a list the locator does not cut: the whole file is read exactly, as before.
READ_AGAIN: dict[str, list[tuple[int, str, str]]] = {
    "a server issue": [(-1, "collections:\n", "server: {storage: {backend: postgres}}\ncollections:\n"), (2, "dimensions: 18", "dimensions: 3")],
    "a comment at the margin": [(60, "  - name: C60\n", "# the second half\n  - name: C60\n"), (70, "dimensions: 86", "dimensions: 1")],
}


def config(edits: list[tuple[int, str, str]]) -> str:
    blocks = [COLLECTION.format(i=i, dimensions=16 + i) for i in range(COUNT)]
    head = "collections:\n"
    for index, old, new in edits:
        if index < 0:
            head = head.replace(old, new, 1)
        else:
            assert old in blocks[index], (index, old)
            blocks[index] = blocks[index].replace(old, new, 1)
    return head + "".join(blocks)


def outcome(path: Path, fast: bool, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setattr(build, "FAST_MIN_BYTES", 0 if fast else 1 << 62)
    try:
        return load_spec(path, default_registry(), environ={})
    except ConfigError as error:
        return [issue.render() for issue in error.issues]


def refuse_whole_reading(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the whole file was read exactly")

    monkeypatch.setattr("searchd.config.loader.parse_yaml", refuse)


@pytest.mark.parametrize("name", sorted(EDITS))
def test_an_issue_in_a_collection_is_located_without_reading_the_file_again(write_config: Any, monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    path = write_config(config(EDITS[name]))
    document = fast_document(path.read_bytes(), {}, str(path))
    assert document is not None and not document.exact
    exact = outcome(path, False, monkeypatch)
    assert isinstance(exact, list) and exact, exact
    refuse_whole_reading(monkeypatch)
    assert outcome(path, True, monkeypatch) == exact


def test_the_located_issues_are_the_exact_loaders(write_config: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """One case checked to the letter, so that agreeing with the exact loader is not agreeing on nothing."""
    path = write_config(config(EDITS["issues in several collections"]))
    refuse_whole_reading(monkeypatch)
    assert outcome(path, True, monkeypatch) == [
        f"{path}:26:57: collections[1].vectors.v1.vectorizer.dimensions: 4 is outside hash-v1's range 16..4096 (pick 16..4096, or omit dimensions for 256)",
        (
            f"{path}:1560:75: collections[119].vectors.v119.vectorizer.textFields[0]: 'count119' is INT, but textFields need TEXT or TEXT[] properties "
            "(declare 'count119' as TEXT or TEXT[] or remove it from textFields)"
        ),
    ]


@pytest.mark.parametrize("name", sorted(READ_AGAIN))
def test_an_issue_the_locator_cannot_place_reads_the_file_exactly(write_config: Any, monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    path = write_config(config(READ_AGAIN[name]))
    assert fast_document(path.read_bytes(), {}, str(path)) is not None
    exact = outcome(path, False, monkeypatch)
    assert isinstance(exact, list) and exact
    assert outcome(path, True, monkeypatch) == exact


def test_random_issues_are_located_as_the_exact_loader_locates_them(write_config: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Seeded: a few edits of the table at random collections, each file held to the exact loader."""
    rng = random.Random(13)
    invalid = 0
    templates = [edits[0] for edits in EDITS.values() if len(edits) == 1 and edits[0][0] < COUNT]
    for round_ in range(12):
        edits = []
        for index, old, new in rng.sample(templates, 3):
            target = rng.randrange(COUNT)
            edits.append((target, old.replace(str(index), str(target)), new.replace(str(index), str(target))))
        edits = [e for e in edits if e[1] in COLLECTION.format(i=e[0], dimensions=16 + e[0])]  # (a dimensions edit fits its own number only)
        path = write_config(config(edits), f"random-{round_}.yaml")
        with monkeypatch.context() as patch:
            exact = outcome(path, False, patch)
        with monkeypatch.context() as patch:
            refuse_whole_reading(patch)
            assert outcome(path, True, patch) == exact, edits
        invalid += isinstance(exact, list)
    assert invalid >= 8

def test_a_directory_of_two_large_files_with_issues(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Merged files renumber collections: an issue in the second file is placed by its own line."""
    directory = tmp_path / "config"
    directory.mkdir()
    (directory / "a.yaml").write_text(config([(3, "dimensions: 19", "dimensions: 5")]))
    (directory / "b.yaml").write_text(config([(8, "textFields: [title8, body8]", "textFields: [body8, title]")]).replace("name: C", "name: D"))
    exact = outcome(directory, False, monkeypatch)
    refuse_whole_reading(monkeypatch)
    fast = outcome(directory, True, monkeypatch)
    assert fast == exact and len(fast) == 2
    assert fast[1].startswith(f"{directory / 'b.yaml'}:")


def assembled(value: Any) -> list[Any]:
    """Every dataclass instance inside a spec."""
    found, stack = [], [value]
    while stack:
        item = stack.pop()
        if is_dataclass(item) and not isinstance(item, type):
            found.append(item)
            stack.extend(getattr(item, f.name) for f in fields(item))
        elif isinstance(item, (tuple, list)):
            stack.extend(item)
    return found


@pytest.mark.parametrize("sharing", ["shared", "distinct"])
def test_spec_parts_built_without_their_init_equal_the_constructors(write_config: Any, monkeypatch: pytest.MonkeyPatch, sharing: str) -> None:
    """spec._assemble skips the dataclasses' __init__: each part holds exactly its fields, as the constructor would set them."""
    text = config([]) if sharing == "distinct" else "collections:\n" + "".join(COLLECTION.format(i=0, dimensions=16).replace("- name: C0", f"- name: S{i}") for i in range(COUNT))
    spec = outcome(write_config(text), True, monkeypatch)
    assert isinstance(spec, Spec)
    parts = [part for part in assembled(spec) if not isinstance(part, Spec)]
    assert len(parts) > 7 * COUNT
    for part in parts:
        assert list(vars(part)) == [f.name for f in fields(part)], type(part)
        assert replace(part) == part


@pytest.mark.parametrize("name", sorted(name for name in EDITS if name.startswith("schema")))
def test_only_the_collections_with_schema_errors_are_walked_in_python(name: str) -> None:
    """validate._python_errors gives what the Python validator gives on the whole document, with each path in it."""
    text = config(EDITS[name]).replace("collections:\n", "server: {port: high}\ncollections:\n")
    data = parse_yaml(text, "c.yaml", {})[0]
    assert data is not None

    def shown(errors: Any) -> list[tuple[list[Any], str, str]]:
        return sorted((list(error.absolute_path), error.message, error.validator) for error in errors)

    whole = shown(validate._validator().iter_errors(data.data))
    assert len(whole) >= 2 and any(path[0] == "collections" for path, _, _ in whole)
    assert shown(validate._python_errors(data.data)) == whole


LAYOUTS = {
    "keys before and after the list": lambda text: "server: {port: 8081}\n" + text + "modules:\n  text2vec-hash: {}\n",
    "items indented by four": lambda text: text.replace("\n  ", "\n    "),
    "comments inside items and between them": lambda text: text.replace("    invertedIndex:\n", "    # BM25\n    invertedIndex:\n").replace("\n  - name: C5", "\n    # the fifth\n  - name: C5"),
}


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_issues_are_located_alike_in_other_layouts(write_config: Any, monkeypatch: pytest.MonkeyPatch, layout: str) -> None:
    path = write_config(LAYOUTS[layout](config([(4, "dimensions: 20", "dimensions: 2"), (100, "textFields: [title100, body100]", "textFields: [nope]")])))
    exact = outcome(path, False, monkeypatch)
    assert isinstance(exact, list) and len(exact) == 2, exact
    refuse_whole_reading(monkeypatch)
    assert outcome(path, True, monkeypatch) == exact
