"""Hot-reload change classification: every rule of the plan, on specs loaded from YAML.

Each test edits one BASE config (exact substring replacements, so an edit that no
longer matches fails loudly) and checks the plan between the two.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest

from searchd.config import load_spec
from searchd.config.spec import Spec
from searchd.modules import default_registry
from searchd.reload import Change, ChangeKind, Plan, classify

IN_PLACE, REVECTORIZE, DESTRUCTIVE = ChangeKind.IN_PLACE, ChangeKind.REVECTORIZE, ChangeKind.DESTRUCTIVE

BASE = """\
server: {port: 8080, dataDir: data}
collections:
  - name: Article
    description: News articles.
    properties:
      - {name: title, type: TEXT}
      - {name: body, type: TEXT}
      - {name: year, type: INT}
      - {name: slug, type: TEXT, indexSearchable: false}
    invertedIndex:
      bm25: {k1: 1.2, b: 0.75}
    vectors:
      text:
        default: true
        vectorizer: {module: text2vec-hash, model: hash-v1, dimensions: 256, textFields: [title, body], weights: {title: 2, body: 1}}
        index: {type: hnsw, distance: cosine, ef: 64}
      own:
        vectorizer: {module: none, dimensions: 4}
        index: {type: annoy, trees: 8}
  - name: Note
    properties:
      - {name: text, type: TEXT}
"""

Load = Callable[..., Spec]
COUNTS = {"Article": 1204, "Note": 7}  # stored objects per collection, for the `drops` texts


def year_count(collection: str, prop: str) -> int:
    assert (collection, prop) == ("Article", "year")
    return 1180


@pytest.fixture
def load(write_config: Callable[[str, str], Path]) -> Load:
    """Load BASE with (old, new) substring replacements applied, each matching exactly once."""
    written = 0

    def make(*edits: tuple[str, str]) -> Spec:
        nonlocal written
        text = BASE
        for old, new in edits:
            assert text.count(old) == 1, f"edit does not match BASE once: {old!r}"
            text = text.replace(old, new)
        written += 1
        return load_spec(write_config(text, f"c{written}.yaml"), default_registry(), environ={})

    return make


def only(plan: Plan) -> Change:
    assert len(plan.changes) == 1, plan.changes
    return plan.changes[0]


def test_identical_configs_plan_nothing(load: Load) -> None:
    plan = classify(load(), load())
    assert plan.empty and plan == Plan((), (), (), (), ())
    assert plan.render() == "No changes. The applied config matches."
    assert not plan.refused(allow_destructive=False)


def test_first_start_creates_everything_and_rebuilds_nothing(load: Load) -> None:
    plan = classify(None, load())
    assert [(c.kind, c.action, c.address, c.summary) for c in plan.changes] == [
        (IN_PLACE, "create", "collection Article", "new collection (4 properties, 2 vectors)"),
        (IN_PLACE, "create", "collection Note", "new collection (1 property, 0 vectors)"),
    ]
    assert (plan.revectorize, plan.reindex, plan.rebuild_keyword, plan.destructive) == ((), (), (), ())


def test_new_collection_is_in_place(load: Load) -> None:
    proposed = load(("  - name: Note\n", "  - name: Blog\n    properties:\n      - {name: post, type: TEXT}\n  - name: Note\n"))
    plan = classify(load(), proposed)
    assert only(plan) == Change(IN_PLACE, "create", "collection Blog", "new collection (1 property, 0 vectors)")
    assert plan.rebuild_keyword == () and plan.revectorize == ()


def test_new_searchable_property_is_backfilled_into_bm25(load: Load) -> None:
    plan = classify(load(), load(("      - {name: year, type: INT}\n", "      - {name: year, type: INT}\n      - {name: lead, type: TEXT}\n")))
    assert only(plan) == Change(IN_PLACE, "create", "Article.property lead", "new TEXT property")
    assert plan.rebuild_keyword == ("Article",)


@pytest.mark.parametrize("new_property", ["{name: pages, type: INT}", "{name: code, type: TEXT, indexSearchable: false}"])
def test_new_unsearchable_property_needs_no_bm25_work(load: Load, new_property: str) -> None:
    plan = classify(load(), load(("      - {name: year, type: INT}\n", f"      - {{name: year, type: INT}}\n      - {new_property}\n")))
    assert only(plan).kind is IN_PLACE and only(plan).action == "create"
    assert plan.rebuild_keyword == ()


@pytest.mark.parametrize(
    ("edit", "address", "summary", "rebuild"),
    [
        (("description: News articles.", "description: All the news."), "collection Article", "description changed", False),
        (("{name: title, type: TEXT}", "{name: title, type: TEXT, description: Headline}"), "Article.property title", "description changed", False),
        # k1, b and stopwords are applied per query in index/bm25.py: the postings stay valid.
        (("{k1: 1.2, b: 0.75}", "{k1: 1.5, b: 0.75}"), "collection Article", "k1 1.2 → 1.5", False),
        (("{k1: 1.2, b: 0.75}", "{k1: 1.2, b: 0.5}"), "collection Article", "b 0.75 → 0.5", False),
        (("{k1: 1.2, b: 0.75}\n", "{k1: 1.2, b: 0.75}\n      stopwords: {preset: none, additions: [how]}\n"), "collection Article", "stopwordPreset en → none, stopwordAdditions [] → [how]", False),
        (("{name: title, type: TEXT}", "{name: title, type: TEXT, tokenization: field}"), "Article.property title", "tokenization word → field", True),
        (("{name: title, type: TEXT}", "{name: title, type: TEXT, indexSearchable: false}"), "Article.property title", "indexSearchable true → false", True),
        (("{name: slug, type: TEXT, indexSearchable: false}", "{name: slug, type: TEXT}"), "Article.property slug", "indexSearchable false → true", True),
        (("{name: title, type: TEXT}", "{name: title, type: TEXT, indexFilterable: false}"), "Article.property title", "indexFilterable true → false", False),
        # Not in the BM25 index either way, so its tokenization does not matter to it.
        (("{name: slug, type: TEXT, indexSearchable: false}", "{name: slug, type: TEXT, indexSearchable: false, tokenization: field}"), "Article.property slug", "tokenization word → field", False),
        (("        default: true\n", ""), "Article.vector text", "default true → false", False),
        (("distance: cosine, ef: 64}", "distance: cosine, ef: 200}"), "Article.vector text", "ef 64 → 200", False),
        (("{type: annoy, trees: 8}", "{type: annoy, trees: 8, searchK: 500}"), "Article.vector own", "searchK 0 → 500", False),
        (("{type: annoy, trees: 8}", "{type: annoy, trees: 8, mergeThreshold: 100}"), "Article.vector own", "mergeThreshold 5000 → 100", False),
    ],
)
def test_in_place_updates(load: Load, edit: tuple[str, str], address: str, summary: str, rebuild: bool) -> None:
    plan = classify(load(), load(edit))
    assert only(plan) == Change(IN_PLACE, "update", address, summary)
    assert plan.rebuild_keyword == (("Article",) if rebuild else ())
    assert (plan.revectorize, plan.reindex, plan.destructive) == ((), (), ())


VECTORIZER = "{module: text2vec-hash, model: hash-v1, dimensions: 256, textFields: [title, body], weights: {title: 2, body: 1}}"


@pytest.mark.parametrize(
    ("new", "summary"),
    [
        ("{module: multi2vec-local, dimensions: 256, textFields: [title, body], weights: {title: 2, body: 1}}", "module text2vec-hash → multi2vec-local, model hash-v1 → unset"),
        ("{module: text2vec-hash, model: hash-v1, dimensions: 512, textFields: [title, body], weights: {title: 2, body: 1}}", "dimensions 256 → 512"),
        ("{module: text2vec-hash, model: hash-v1, dimensions: 256, textFields: [title], weights: {title: 2}}", "textFields [title, body] → [title], weights {title: 2, body: 1} → {title: 2}"),
        ("{module: text2vec-hash, model: hash-v1, dimensions: 256, textFields: [title, body], weights: {title: 1, body: 1}}", "weights {title: 2, body: 1} → {title: 1, body: 1}"),
    ],
)
def test_vectorizer_changes_revectorize(load: Load, new: str, summary: str) -> None:
    plan = classify(load(), load((VECTORIZER, new)))
    assert only(plan) == Change(REVECTORIZE, "replace", "Article.vector text", summary)
    assert plan.revectorize == (("Article", "text"),) and plan.reindex == ()


@pytest.mark.parametrize(
    ("edit", "vector", "summary"),
    [
        (("distance: cosine, ef: 64}", "distance: dot, ef: 64}"), "text", "distance cosine → dot"),
        (("{type: hnsw, distance: cosine, ef: 64}", "{type: flat, distance: cosine, ef: 64}"), "text", "type hnsw → flat"),
        (("distance: cosine, ef: 64}", "distance: cosine, ef: 64, maxConnections: 32}"), "text", "maxConnections 16 → 32"),
        (("distance: cosine, ef: 64}", "distance: cosine, ef: 64, efConstruction: 256}"), "text", "efConstruction 128 → 256"),
        (("{type: annoy, trees: 8}", "{type: annoy, trees: 16}"), "own", "trees 8 → 16"),
    ],
)
def test_index_build_changes_reindex_from_stored_vectors(load: Load, edit: tuple[str, str], vector: str, summary: str) -> None:
    plan = classify(load(), load(edit))
    assert only(plan) == Change(REVECTORIZE, "replace", f"Article.vector {vector}", summary)
    assert plan.reindex == (("Article", vector),) and plan.revectorize == ()


def test_vectorizer_and_index_changed_together_only_revectorize(load: Load) -> None:
    plan = classify(load(), load((VECTORIZER, VECTORIZER.replace("256", "128")), ("distance: cosine, ef: 64}", "distance: dot, ef: 64}")))
    assert only(plan).summary == "dimensions 256 → 128, distance cosine → dot"
    assert plan.revectorize == (("Article", "text"),) and plan.reindex == ()


def test_vector_bringing_its_own_vectors_cannot_be_reembedded(load: Load) -> None:
    # Module 'none': nothing can compute the new vectors, so the stored ones would be dropped.
    plan = classify(load(), load(("{module: none, dimensions: 4}", "{module: none, dimensions: 8}")), COUNTS.__getitem__)
    assert only(plan) == Change(DESTRUCTIVE, "replace", "Article.vector own", "dimensions 4 → 8", "the 'own' vectors of 1,204 objects")
    assert plan.reindex == plan.revectorize == ()
    # Its index can still be rebuilt from the stored vectors.
    assert classify(load(), load(("{type: annoy, trees: 8}", "{type: flat}"))).reindex == (("Article", "own"),)


def test_vectorizer_fields_compared_generically(load: Load) -> None:
    # base_url only says where the provider is (and its value is not shown: URLs can carry credentials);
    # any other vectorizer field, here one added after this module was written, changes the vectors.
    applied = load()

    def with_vectorizer(**changes: Any) -> Spec:
        article = applied.collections[0]
        text = dataclasses.replace(article.vectors[0], vectorizer=dataclasses.replace(article.vectors[0].vectorizer, **changes))
        return dataclasses.replace(applied, collections=(dataclasses.replace(article, vectors=(text, *article.vectors[1:])), *applied.collections[1:]))

    moved = classify(applied, with_vectorizer(base_url="http://127.0.0.1:9000"))
    assert only(moved) == Change(IN_PLACE, "update", "Article.vector text", "baseURL changed")
    assert moved.revectorize == moved.reindex == ()
    chunked = classify(applied, with_vectorizer(late_chunking=True))
    assert only(chunked) == Change(REVECTORIZE, "replace", "Article.vector text", "lateChunking false → true")
    assert chunked.revectorize == (("Article", "text"),)


def test_new_named_vector_is_in_place_and_embedded_in_the_background(load: Load) -> None:
    added = "      extra:\n        vectorizer: {module: text2vec-hash, dimensions: 64}\n      own:\n"
    plan = classify(load(), load(("      own:\n", added)))
    assert only(plan) == Change(IN_PLACE, "create", "Article.vector extra", "new vector (text2vec-hash, hnsw cosine)")
    assert plan.revectorize == (("Article", "extra"),)
    # Objects bring their own vectors for module 'none': nothing to embed.
    own = classify(load(), load(("      own:\n", "      mine:\n        vectorizer: {module: none, dimensions: 8}\n      own:\n")))
    assert only(own).action == "create" and own.revectorize == ()


def test_removed_property_is_destructive_and_names_what_it_drops(load: Load) -> None:
    applied, proposed = load(), load(("      - {name: year, type: INT}\n", ""))
    change = only(classify(applied, proposed, COUNTS.__getitem__, year_count))
    assert change == Change(DESTRUCTIVE, "delete", "Article.property year", "property removed", "the 'year' values of 1,180 objects")
    assert only(classify(applied, proposed)).drops == "all stored 'year' values"


def test_changed_property_type_is_destructive(load: Load) -> None:
    plan = classify(load(), load(("{name: year, type: INT}", "{name: year, type: TEXT}")), COUNTS.__getitem__, year_count)
    assert only(plan) == Change(DESTRUCTIVE, "replace", "Article.property year", "type INT → TEXT", "the 'year' values of 1,180 objects")
    assert plan.rebuild_keyword == ("Article",)  # now a searchable TEXT property
    assert plan.refused(allow_destructive=False) and not plan.refused(allow_destructive=True)


def test_removed_collection_and_vector_are_destructive(load: Load) -> None:
    no_note = ("  - name: Note\n    properties:\n      - {name: text, type: TEXT}\n", "")
    no_own = ("      own:\n        vectorizer: {module: none, dimensions: 4}\n        index: {type: annoy, trees: 8}\n", "")
    plan = classify(load(), load(no_note, no_own), COUNTS.__getitem__)
    assert plan.changes == (
        Change(DESTRUCTIVE, "delete", "Article.vector own", "vector removed", "the 'own' vectors of 1,204 objects"),
        Change(DESTRUCTIVE, "delete", "collection Note", "collection removed", "7 objects"),
    )
    no_article = classify(load(), load(("  - name: Article\n", "  - name: Story\n")))
    assert [(c.action, c.address, c.drops) for c in no_article.changes] == [
        ("create", "collection Story", None),
        ("delete", "collection Article", "all stored objects and their vectors"),
    ]


def test_module_settings_are_in_place_and_never_print_values(load: Load) -> None:
    base = load()

    def with_modules(modules: dict[str, dict[str, str]]) -> Spec:
        return dataclasses.replace(base, modules=MappingProxyType({k: MappingProxyType(v) for k, v in modules.items()}))

    applied = with_modules({"text2vec-jinaai": {"apiKey": "sk-secret", "baseURL": "https://api.jina.ai"}, "text2vec-hash": {}})
    proposed = with_modules({"text2vec-jinaai": {"apiKey": "sk-other-secret", "baseURL": "https://proxy.local"}, "text2vec-nvidia": {"apiKey": "nv-secret"}})
    plan = classify(applied, proposed)
    assert plan.changes == (
        Change(IN_PLACE, "update", "modules.text2vec-jinaai", "settings changed (apiKey, baseURL)"),
        Change(IN_PLACE, "create", "modules.text2vec-nvidia", "new module (apiKey)"),
        Change(IN_PLACE, "delete", "modules.text2vec-hash", "module removed"),
    )
    shown = plan.render() + json.dumps(plan.to_json()) + repr(plan)
    assert "secret" not in shown and "api.jina.ai" not in shown and "proxy.local" not in shown
    assert only(classify(applied, with_modules({"text2vec-jinaai": {"apiKey": "sk-secret"}, "text2vec-hash": {}}))).summary == "settings changed (baseURL)"


def test_server_socket_and_data_dir_need_a_restart_limits_do_not(load: Load) -> None:
    plan = classify(load(), load(("server: {port: 8080, dataDir: data}", "server: {port: 9090, host: 0.0.0.0, dataDir: data2, limits: {queryLimitMax: 500}}")))
    assert plan.changes == (Change(IN_PLACE, "update", "server.limits", "queryLimitMax 10000 → 500"),)
    assert [(c.address, c.summary) for c in plan.restart_required] == [
        ("server.host", "host 127.0.0.1 → 0.0.0.0"),
        ("server.port", "port 8080 → 9090"),
        ("server.dataDir", "dataDir data → data2"),
    ]
    restart_only = classify(load(), load(("port: 8080", "port: 9090")))
    assert not restart_only.empty and restart_only.changes == ()
    assert restart_only.render().splitlines()[-1] == "Plan: 0 to create, 0 to change in place, 0 to re-vectorize, 0 destructive; 1 needs a restart."
    # A relative dataDir is resolved against the config's directory: moving the file moves the data.
    applied = load()
    moved = classify(applied, dataclasses.replace(applied, base_dir="/elsewhere"))
    assert [c.address for c in moved.restart_required] == ["server.dataDir"]
    # The same words naming two directories: the summary shows both directories, not "data → data".
    assert [c.summary for c in moved.restart_required] == [f"dataDir {Path(applied.base_dir, 'data')} → {Path('/elsewhere', 'data')}"]


def test_order_follows_proposed_collections_then_removed_ones(load: Load) -> None:
    proposed = load(("description: News articles.", "description: All the news."), ("  - name: Note\n", "  - name: Memo\n"))
    plan = classify(load(), dataclasses.replace(proposed, collections=tuple(reversed(proposed.collections))))
    assert [(c.action, c.address) for c in plan.changes] == [("create", "collection Memo"), ("update", "collection Article"), ("delete", "collection Note")]


MIXED_EDITS = (
    ("  - name: Note\n", "  - name: Blog\n    properties:\n      - {name: post, type: TEXT}\n  - name: Note\n"),
    ("{name: title, type: TEXT}", "{name: title, type: TEXT, tokenization: lowercase}"),
    ("      - {name: year, type: INT}\n", ""),
    ("{k1: 1.2, b: 0.75}", "{k1: 1.5, b: 0.75}"),
    (VECTORIZER, VECTORIZER.replace("dimensions: 256", "dimensions: 512")),
    ("{type: annoy, trees: 8}", "{type: annoy, trees: 8, distance: dot}"),
    ("port: 8080", "port: 9090"),
)


def test_render_mixed_plan(load: Load) -> None:
    plan = classify(load(), load(*MIXED_EDITS), COUNTS.__getitem__, year_count)
    assert plan.render().splitlines() == [
        "  + collection Blog: new collection (1 property, 0 vectors)",
        "  ~ collection Article: k1 1.2 → 1.5",
        "  ~ Article.property title: tokenization word → lowercase",
        "-/+ Article.vector text: dimensions 256 → 512",
        "-/+ Article.vector own: distance cosine → dot",
        "  - Article.property year: property removed; would drop the 'year' values of 1,180 objects",
        "",
        "Background work after apply:",
        "  re-embed Article.text from stored objects",
        "  rebuild the index of Article.own from stored vectors",
        "  rebuild the BM25 index of Article",
        "",
        "Needs a restart (not applied live):",
        "  ~ server.port: port 8080 → 9090",
        "",
        "Plan: 1 to create, 2 to change in place, 2 to re-vectorize, 1 destructive (refused); 1 needs a restart.",
    ]
    assert plan.render(allow_destructive=True).splitlines()[-1] == "Plan: 1 to create, 2 to change in place, 2 to re-vectorize, 1 destructive (allowed); 1 needs a restart."


def test_refusal_message_names_each_destructive_change_and_the_way_out(load: Load) -> None:
    plan = classify(load(), load(*MIXED_EDITS), COUNTS.__getitem__, year_count)
    assert plan.refused(allow_destructive=False)
    assert plan.refusal_message() == (
        "refusing 1 destructive change(s) that would drop stored data:\n"
        "  - Article.property year: property removed; would drop the 'year' values of 1,180 objects\n"
        "To apply anyway, pass --allow-destructive to `searchd apply`, or set server.reload.allowDestructive: true in the config."
    )
    assert classify(load(), load()).refusal_message() == ""


def test_to_json(load: Load) -> None:
    body = classify(load(), load(*MIXED_EDITS), COUNTS.__getitem__, year_count).to_json()
    json.dumps(body)  # serializable as is
    assert body["empty"] is False
    assert [c["address"] for c in body["changes"]] == ["collection Article", "Article.property title", "Article.property year", "Article.vector text", "Article.vector own", "collection Blog"]
    assert body["changes"][2] == {"kind": "destructive", "action": "delete", "address": "Article.property year", "summary": "property removed", "drops": "the 'year' values of 1,180 objects"}
    assert body["revectorize"] == [{"collection": "Article", "vector": "text"}]
    assert body["reindex"] == [{"collection": "Article", "vector": "own"}]
    assert body["rebuildKeyword"] == ["Article"]
    assert body["restartRequired"] == [{"kind": "in place", "action": "update", "address": "server.port", "summary": "port 8080 → 9090", "drops": None}]
    assert body["counts"] == {"create": 1, "inPlace": 2, "revectorize": 2, "destructive": 1, "restart": 1}


def test_api_key_changes_are_worded_as_the_yaml_and_never_show_a_key(write_config: Callable[[str, str], Path]) -> None:
    environ = {"READER": "sk-reader-0123456789", "READER2": "sk-reader-9876543210", "ADMIN": "sk-admin-0123456789"}

    def spec(keys: str, name: str) -> Spec:
        text = BASE.replace("server: {port: 8080, dataDir: data}", "server: {port: 8080, dataDir: data, auth: {apiKeys: [" + keys + "]}}")
        return load_spec(write_config(text, name), default_registry(), environ=environ)

    applied = spec("{name: reader, key: '${READER}'}, {name: ops, key: '${ADMIN}', role: admin}", "a.yaml")
    proposed = spec("{name: reader, key: '${READER2}', role: admin}, {name: writer, key: '${ADMIN}', role: admin}", "b.yaml")
    plan = classify(applied, proposed)
    line = "  ~ server.auth: apiKeys: key 'ops' (role admin) removed, key 'reader' (role read → admin; key replaced), key 'writer' (role admin) added"
    assert plan.render().splitlines()[0] == line
    shown = plan.render() + json.dumps(plan.to_json()) + repr(plan)
    assert "sk-" not in shown and "ApiKeySpec" not in shown and "Role." not in shown
    added = classify(applied, spec("{name: reader, key: '${READER}'}, {name: ops, key: '${ADMIN}', role: admin}, {name: r2, key: '${READER2}'}", "c.yaml"))
    assert only(added).summary == "apiKeys: key 'r2' (role read) added"
