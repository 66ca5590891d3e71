"""Config loading: every mistake is reported with its file, path, line, column and a hint.

The table below holds one mistake per config, so each row also checks that no
spurious issue is reported next to the expected one.  Line numbers are 1-based
and count from the first line of the dedented YAML text.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from searchd.config import load_spec
from searchd.config.capabilities import ModelCapabilities, ModuleCapabilities
from searchd.config.loader import config_digest, config_files
from searchd.config.spec import EN_STOPWORDS, Distance, PropertyType, Spec
from searchd.errors import ConfigError, ConfigIssue
from searchd.modules import default_registry
from tests.conftest import EXAMPLES, MULTIMODAL, QUICKSTART, ROOT

WriteConfig = Callable[..., Path]

SCHEMA_PATH = ROOT / "schemas" / "searchd.schema.json"
PACKAGED_SCHEMA_PATH = ROOT / "searchd" / "config" / "searchd.schema.json"


def issues_of(path: Path, environ: Mapping[str, str] | None = None) -> list[ConfigIssue]:
    """The issues load_spec raises for a config; fails the test if it loads."""
    with pytest.raises(ConfigError) as caught:
        load_spec(path, default_registry(), environ={} if environ is None else environ)
    issues = caught.value.issues
    assert issues, "ConfigError raised without any issue"
    return issues


# A collection whose vectors section is filled in per row: three properties of different types.
def with_vectors(vectors: str) -> str:
    return (
        "collections:\n"  # 1
        "  - name: Article\n"  # 2
        "    properties:\n"  # 3
        "      - {name: title, type: TEXT}\n"  # 4
        "      - {name: count, type: INT}\n"  # 5
        "      - {name: image, type: BLOB}\n"  # 6
        "    vectors:\n"  # 7
        "      v:\n"  # 8
        "        vectorizer:\n"  # 9
        + vectors  # 10...
    )


V = "collections[0].vectors.v.vectorizer"

# (yaml text, expected path, expected line, expected column or None, substring of the message)
BAD_CONFIGS = [
    # --- malformed YAML: the whole file is one issue at the syntax error ---
    pytest.param(
        """\
        server:
          port: 80
         host: x
        collections: []
        """,
        "", 3, 2, "malformed YAML",
        id="malformed-yaml-bad-indentation",
    ),
    pytest.param(
        """\
        collections:
          - name: Article
            properties:
              - {name: title, type: TEXT
          - name: Book
        """,
        "", 5, 9, "expected ',' or '}'",
        id="malformed-yaml-unclosed-flow-mapping",
    ),
    pytest.param(
        """\
        collections:
          - name: Article
        \tproperties: []
        """,
        "", 3, 1, "malformed YAML: found a tab character",
        id="malformed-yaml-tab",
    ),
    # --- duplicate keys: reported at the repeated key ---
    pytest.param(
        """\
        server:
          port: 80
          port: 81
        collections:
          - name: Article
            properties:
              - {name: title, type: TEXT}
        """,
        "server.port", 3, 3, "duplicate key 'port'",
        id="duplicate-yaml-key",
    ),
    pytest.param(
        """\
        collections:
          - name: Article
            properties:
              - {name: title, type: TEXT, name: other}
        """,
        "collections[0].properties[0].name", 4, 35, "duplicate key 'name'",
        id="duplicate-yaml-key-in-flow-mapping",
    ),
    # --- wrong types and ranges ---
    pytest.param(
        """\
        server:
          port: "80"
        collections:
          - name: Article
            properties:
              - {name: title, type: TEXT}
        """,
        "server.port", 2, 9, "'80' is not of type 'integer'",
        id="port-as-string",
    ),
    pytest.param(
        """\
        server:
          port: 70000
        collections:
          - name: Article
            properties:
              - {name: title, type: TEXT}
        """,
        "server.port", 2, 9, "70000 is greater than the maximum of 65535",
        id="port-too-large",
    ),
    pytest.param(
        """\
        - name: Article
        - name: Book
        """,
        "", 1, 1, "is not of type 'object'",
        id="top-level-list",
    ),
    pytest.param(
        """\
        collections:
          - properties:
              - {name: title, type: TEXT}
        """,
        "collections[0]", 2, 5, "'name' is a required property",
        id="collection-without-name",
    ),
    pytest.param(
        with_vectors("          module: text2vec-hash\n          weights: {title: -1}\n"),
        f"{V}.weights.title", 11, 28, "-1 is less than the minimum of 0",
        id="negative-weight",
    ),
    # --- unknown keys: reported at the key's own line ---
    pytest.param(
        """\
        server:
          port: 80
          hots: 0.0.0.0
        collections:
          - name: Article
            properties:
              - {name: title, type: TEXT}
        """,
        "server.hots", 3, None, "'hots' was unexpected",
        id="unknown-key-in-server",
    ),
    pytest.param(
        """\
        collections:
          - name: Article
            colour: red
            properties:
              - {name: title, type: TEXT}
        """,
        "collections[0].colour", 3, None, "'colour' was unexpected",
        id="unknown-key-in-collection",
    ),
    pytest.param(
        with_vectors("          module: text2vec-hash\n          textfields: [title]\n"),
        f"{V}.textfields", 11, None, "'textfields' was unexpected",
        id="unknown-key-in-vectorizer-wrong-case",
    ),
    pytest.param(
        """\
        colections:
          - name: Article
        """,
        "colections", 1, 1, "'colections' was unexpected",
        id="unknown-top-level-key",
    ),
    # --- bad enum values ---
    pytest.param(
        """\
        collections:
          - name: Article
            properties:
              - {name: title, type: TEXTT}
        """,
        "collections[0].properties[0].type", 4, 29, "'TEXTT' is not one of",
        id="bad-property-type",
    ),
    pytest.param(
        with_vectors("          module: text2vec-hash\n        index: {distance: euclid}\n"),
        "collections[0].vectors.v.index.distance", 11, 27, "'euclid' is not one of",
        id="bad-index-distance",
    ),
    pytest.param(
        with_vectors("          module: openai\n"),
        f"{V}.module", 10, 19, "'openai' is not one of",
        id="bad-module-name",
    ),
    # --- names ---
    pytest.param(
        """\
        collections:
          - name: article
            properties:
              - {name: title, type: TEXT}
        """,
        "collections[0].name", 2, 11, "'article' does not match",
        id="collection-name-lowercase",
    ),
    pytest.param(
        """\
        collections:
          - name: Article
            properties:
              - {name: 1title, type: TEXT}
        """,
        "collections[0].properties[0].name", 4, 16, "'1title' does not match",
        id="property-name-leading-digit",
    ),
    *[
        pytest.param(
            f"""\
            collections:
              - name: Article
                properties:
                  - {{name: title, type: TEXT}}
                  - {{name: {reserved}, type: TEXT}}
            """,
            "collections[0].properties[1].name", 5, 16, f"property name '{reserved}' is reserved",
            id=f"reserved-property-{reserved}",
        )
        for reserved in ("id", "_id", "_additional")
    ],
    pytest.param(
        """\
        collections:
          - name: Article
            properties:
              - {name: title, type: TEXT}
          - name: ARTICLE
            properties:
              - {name: title, type: TEXT}
        """,
        "collections[1].name", 5, 11, "duplicate collection name 'ARTICLE' (names are compared case-insensitively)",
        id="duplicate-collection-name-case-insensitive",
    ),
    pytest.param(
        """\
        collections:
          - name: Article
            properties:
              - {name: title, type: TEXT}
              - {name: body, type: TEXT}
              - {name: title, type: INT}
        """,
        "collections[0].properties[2].name", 6, 16, "duplicate property name 'title' in collection 'Article'",
        id="duplicate-property-name",
    ),
    # --- fields of a vectorizer ---
    pytest.param(
        with_vectors("          module: text2vec-hash\n          textFields: [title, missing]\n"),
        f"{V}.textFields[1]", 11, 31, "'missing' is not a property of collection 'Article'",
        id="text-field-missing",
    ),
    pytest.param(
        with_vectors("          module: text2vec-hash\n          textFields: [title, count]\n"),
        f"{V}.textFields[1]", 11, 31, "'count' is INT, but textFields need TEXT or TEXT[] properties",
        id="text-field-not-text",
    ),
    pytest.param(
        with_vectors("          module: multi2vec-local\n          textFields: [title]\n          imageFields: [title]\n"),
        f"{V}.imageFields[0]", 12, 25, "'title' is TEXT, but imageFields need BLOB properties",
        id="image-field-not-blob",
    ),
    pytest.param(
        with_vectors("          module: text2vec-hash\n          imageFields: [image]\n"),
        f"{V}.imageFields", 11, 24, "module 'text2vec-hash' does not embed images",
        id="image-fields-on-text-only-module",
    ),
    pytest.param(
        with_vectors("          module: text2vec-hash\n          textFields: [title]\n          weights: {title: 1, body: 2}\n"),
        f"{V}.weights.body", 12, 37, "weights names 'body', which is not one of this vector's fields (title)",
        id="weight-for-unlisted-field",
    ),
    # --- dimensions outside the model's range ---
    pytest.param(
        with_vectors("          module: text2vec-hash\n          dimensions: 15\n"),
        f"{V}.dimensions", 11, 23, "15 is outside hash-v1's range 16..4096",
        id="text2vec-hash-dimensions-too-small",
    ),
    pytest.param(
        with_vectors("          module: text2vec-hash\n          dimensions: 4097\n"),
        f"{V}.dimensions", 11, 23, "4097 is outside hash-v1's range 16..4096",
        id="text2vec-hash-dimensions-too-large",
    ),
    pytest.param(
        with_vectors("          module: multi2vec-local\n          textFields: [title]\n          dimensions: 159\n"),
        f"{V}.dimensions", 12, 23, "159 is outside local-v1's range 160..4096",
        id="multi2vec-local-dimensions-too-small",
    ),
    pytest.param(
        with_vectors("          module: multi2vec-local\n          textFields: [title]\n          dimensions: 4097\n"),
        f"{V}.dimensions", 12, 23, "4097 is outside local-v1's range 160..4096",
        id="multi2vec-local-dimensions-too-large",
    ),
    pytest.param(
        with_vectors("          module: text2vec-hash\n          dimensions: 0\n"),
        f"{V}.dimensions", 11, 23, "0 is less than the minimum of 1",
        id="dimensions-zero",
    ),
    # --- models and module 'none' ---
    pytest.param(
        with_vectors("          module: text2vec-hash\n          model: hash-v2\n"),
        f"{V}.model", 11, 18, "module 'text2vec-hash' has no model 'hash-v2'",
        id="unknown-model",
    ),
    pytest.param(
        with_vectors("          module: none\n"),
        V, 9, 9, "module 'none' needs 'dimensions'",
        id="module-none-without-dimensions",
    ),
    pytest.param(
        with_vectors("          module: none\n          dimensions: 4\n          textFields: [title]\n"),
        f"{V}.textFields", 12, 23, "module 'none' does not take 'textFields'",
        id="module-none-with-text-fields",
    ),
    # --- vectors of a collection ---
    pytest.param(
        """\
        collections:
          - name: Article
            properties:
              - {name: title, type: TEXT}
            vectors:
              a:
                default: true
                vectorizer: {module: text2vec-hash}
              b:
                default: true
                vectorizer: {module: none, dimensions: 4}
        """,
        "collections[0].vectors", 5, 5, "several vectors are marked default: a, b",
        id="two-default-vectors",
    ),
    pytest.param(
        with_vectors("          module: multi2vec-local\n"),
        V, 9, 9, "vector 'v' has nothing to embed",
        id="multi2vec-vector-with-nothing-to-embed",
    ),
    pytest.param(
        """\
        collections:
          - name: Article
            properties:
              - {name: count, type: INT}
            vectors:
              v:
                vectorizer: {module: text2vec-hash}
        """,
        V, 7, 21, "vector 'v' has nothing to embed",
        id="text2vec-vector-without-text-property",
    ),
    # --- no collections ---
    pytest.param("collections: []\n", "collections", 1, 14, "no collections are declared", id="empty-collections-list"),
    pytest.param("server:\n  port: 8080\n", "collections", 1, 1, "no collections are declared", id="no-collections-key"),
    pytest.param("", "collections", 1, 1, "no collections are declared", id="empty-file"),
    # --- environment variables ---
    pytest.param(
        """\
        collections:
          - name: Article
            description: ${UNSET_VAR}
            properties:
              - {name: title, type: TEXT}
        """,
        "collections[0].description", 3, 18, "environment variable UNSET_VAR is not set",
        id="unset-environment-variable",
    ),
]


@pytest.mark.parametrize(("text", "path", "line", "column", "message"), BAD_CONFIGS)
def test_bad_config_reports_one_located_issue(
    write_config: WriteConfig, text: str, path: str, line: int, column: int | None, message: str
) -> None:
    config = write_config(text)
    issues = issues_of(config)
    assert [(i.path, i.line) for i in issues] == [(path, line)], "\n".join(i.render() for i in issues)
    issue = issues[0]
    assert issue.file == str(config)
    if column is not None:
        assert issue.column == column
    assert message in issue.message
    assert issue.hint.strip(), f"no hint for: {issue.render()}"


@pytest.mark.parametrize(
    ("module", "dimensions"),
    [("text2vec-hash", 16), ("text2vec-hash", 4096), ("multi2vec-local", 160), ("multi2vec-local", 4096), ("none", 1)],
)
def test_dimensions_at_the_range_bounds_are_accepted(write_config: WriteConfig, module: str, dimensions: int) -> None:
    text_fields = "" if module == "none" else ", textFields: [title]"
    config = write_config(with_vectors(f"          {{module: {module}, dimensions: {dimensions}{text_fields}}}\n").replace(
        "        vectorizer:\n          {", "        vectorizer: {"
    ))
    spec = load_spec(config, default_registry(), environ={})
    assert spec.collections[0].vectors[0].vectorizer.dimensions == dimensions


def test_unknown_model_hint_lists_the_models(write_config: WriteConfig) -> None:
    (issue,) = issues_of(write_config(with_vectors("          module: text2vec-hash\n          model: hash-v2\n")))
    assert issue.hint == "use one of: hash-v1"


def test_unknown_key_hint_lists_the_allowed_keys(write_config: WriteConfig) -> None:
    (issue,) = issues_of(write_config("server:\n  hots: x\ncollections:\n  - name: A\n    properties: []\n"))
    assert issue.hint == "remove it or fix its spelling; allowed keys here: auth, connections, dataDir, grpc, host, limits, port, reload, storage"


def test_missing_text_field_hint_lists_declared_properties(write_config: WriteConfig) -> None:
    (issue,) = issues_of(write_config(with_vectors("          module: text2vec-hash\n          textFields: [missing]\n")))
    assert issue.hint == "declared properties: title, count, image"


# --- environment variables -------------------------------------------------------------------


def test_set_environment_variable_is_substituted(write_config: WriteConfig) -> None:
    config = write_config(
        """\
        collections:
          - name: Article
            description: ${SET_VAR}
            properties:
              - {name: title, type: TEXT, description: "pre-${SET_VAR}-post"}
        """
    )
    spec = load_spec(config, default_registry(), environ={"SET_VAR": "x"})
    assert spec.collections[0].description == "x"
    assert spec.collections[0].properties[0].description == "pre-x-post"


def test_environ_defaults_to_the_process_environment(write_config: WriteConfig, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEARCHD_TEST_DESCRIPTION", "from the environment")
    config = write_config("collections:\n  - name: Article\n    description: ${SEARCHD_TEST_DESCRIPTION}\n")
    assert load_spec(config, default_registry()).collections[0].description == "from the environment"


def test_unset_variable_hint_names_the_variable(write_config: WriteConfig) -> None:
    config = write_config("collections:\n  - name: Article\n    description: a ${UNSET_VAR} b ${OTHER_UNSET}\n")
    issues = issues_of(config, environ={})
    assert [(i.path, i.line, i.message) for i in issues] == [
        ("collections[0].description", 3, "environment variable UNSET_VAR is not set"),
        ("collections[0].description", 3, "environment variable OTHER_UNSET is not set"),
    ]
    assert "export UNSET_VAR=" in issues[0].hint
    assert "export OTHER_UNSET=" in issues[1].hint


# --- every error at once ---------------------------------------------------------------------

MANY_MISTAKES = """\
server:
  port: "8080"
collections:
  - name: Article
    properties:
      - {name: title, type: TEXTT}
  - name: Book
    properties:
      - {name: id, type: TEXT}
      - {name: body, type: TEXT}
    vectors:
      v:
        vectorizer:
          module: text2vec-hash
          dimensions: 8
          textFields: [body, nope]
  - name: BOOK
    properties:
      - {name: title, type: TEXT}
    vectors:
      v:
        vectorizer: {module: none}
"""


def test_all_errors_are_reported_at_once_sorted_by_line(write_config: WriteConfig) -> None:
    config = write_config(MANY_MISTAKES)
    issues = issues_of(config)
    assert [(i.line, i.path) for i in issues] == [
        (2, "server.port"),
        (6, "collections[0].properties[0].type"),
        (9, "collections[1].properties[0].name"),
        (15, "collections[1].vectors.v.vectorizer.dimensions"),
        (16, "collections[1].vectors.v.vectorizer.textFields[1]"),
        (17, "collections[2].name"),
        (22, "collections[2].vectors.v.vectorizer"),
    ]
    assert [i.line for i in issues] == sorted(i.line for i in issues)
    assert all(i.file == str(config) for i in issues)
    assert all(i.hint.strip() for i in issues), [i.render() for i in issues if not i.hint.strip()]
    messages = [i.message for i in issues]
    assert "is not of type 'integer'" in messages[0]
    assert "'TEXTT' is not one of" in messages[1]
    assert messages[2] == "property name 'id' is reserved"
    assert messages[3] == "8 is outside hash-v1's range 16..4096"
    assert messages[4] == "'nope' is not a property of collection 'Book'"
    assert messages[5].startswith("duplicate collection name 'BOOK'")
    assert messages[6].startswith("module 'none' needs 'dimensions'")


def test_schema_and_semantic_errors_in_one_collection_come_in_one_round(write_config: WriteConfig) -> None:
    """A schema error in one named vector (or an unknown key) does not hide the semantic errors of the rest of its collection."""
    config = write_config(
        """\
        collections:
          - name: Art
            descripton: typo
            properties:
              - {name: title, type: TEXT}
              - {name: image, type: BLOB}
            vectors:
              broken:
                vectorizer: {module: text2vec-hash, dimensions: "64"}
                index: {type: hnws}
              clip:
                vectorizer:
                  module: multi2vec-local
                  textFields: [title]
                  imageFields: [image]
                  weights: {title: 0.5, caption: 0.5}
              own:
                vectorizer: {module: none, dimensions: 4}
                index: {type: hnsw, distance: hamming}
            invertedIndex: {bm25: {b: 2}}
        """
    )
    assert [(i.line, i.path, i.message) for i in issues_of(config)] == [
        (3, "collections[0].descripton", "Additional properties are not allowed ('descripton' was unexpected)"),
        (9, "collections[0].vectors.broken.vectorizer.dimensions", "'64' is not of type 'integer'"),
        (10, "collections[0].vectors.broken.index.type", "'hnws' is not one of ['hnsw', 'annoy', 'flat', 'multivector', 'pgvector']"),
        (16, "collections[0].vectors.clip.vectorizer.weights.caption", "weights names 'caption', which is not one of this vector's fields (title, image)"),
        (19, "collections[0].vectors.own.index.distance", "a hnsw index cannot compute hamming distance"),
        (20, "collections[0].invertedIndex.bm25.b", "2 is greater than the maximum of 1"),
    ]


def test_config_error_message_renders_every_issue(write_config: WriteConfig) -> None:
    config = write_config(MANY_MISTAKES)
    with pytest.raises(ConfigError) as caught:
        load_spec(config, default_registry(), environ={})
    text = str(caught.value)
    assert text.startswith("the config has 7 error(s):\n")
    assert text.count(f"{config}:") == 7


def test_collection_index_is_the_users_even_after_an_invalid_collection(write_config: WriteConfig) -> None:
    config = write_config(
        """\
        collections:
          - name: article
            properties:
              - {name: title, type: TEXT}
          - name: Book
            properties:
              - {name: title, type: TEXT}
            vectors:
              v:
                vectorizer: {module: text2vec-hash, textFields: [missing]}
        """
    )
    issues = issues_of(config)
    assert [(i.line, i.path) for i in issues] == [
        (2, "collections[0].name"),
        (10, "collections[1].vectors.v.vectorizer.textFields[0]"),
    ]


# --- directory configs -----------------------------------------------------------------------


def write_files(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


SERVER_FILE = "server:\n  port: 9000\n"
ONE_COLLECTION = "collections:\n  - name: Article\n    properties:\n      - {name: title, type: TEXT}\n"


def test_directory_config_merges_its_files(tmp_path: Path) -> None:
    config = write_files(tmp_path / "config", {"a-server.yaml": SERVER_FILE, "b-collections.yml": ONE_COLLECTION, "notes.txt": "not: [yaml"})
    spec = load_spec(config, default_registry(), environ={})
    assert spec.server.port == 9000
    assert [c.name for c in spec.collections] == ["Article"]
    assert spec.base_dir == str(config)


def test_directory_config_collections_from_all_files_in_path_order(tmp_path: Path) -> None:
    config = write_files(
        tmp_path / "config",
        {
            "b.yaml": "collections:\n  - name: Second\n    properties: []\n",
            "a.yaml": "collections:\n  - name: First\n    properties: []\n",
            "sub/c.yaml": "collections:\n  - name: Third\n    properties: []\n",
        },
    )
    assert [c.name for c in load_spec(config, default_registry(), environ={}).collections] == ["First", "Second", "Third"]


def test_directory_config_skips_hidden_files_and_configmap_copies(tmp_path: Path) -> None:
    """A ConfigMap volume holds each file three times (name -> ..data/name -> ..<timestamp>/name); editors leave dotfiles."""
    config = write_files(
        tmp_path / "config",
        {
            "..2026_12_02_04_00_00.1/collections.yaml": ONE_COLLECTION,
            ".#collections.yaml": ONE_COLLECTION,
            ".git/HEAD.yaml": "not: [yaml",
        },
    )
    (config / "..data").symlink_to("..2026_12_02_04_00_00.1")
    (config / "collections.yaml").symlink_to("..data/collections.yaml")
    assert config_files(config) == [config / "collections.yaml"]
    assert [c.name for c in load_spec(config, default_registry(), environ={}).collections] == ["Article"]
    before = config_digest(config)
    (config / "notes.yaml.txt").write_text("ignored", encoding="utf-8")
    assert config_digest(config) == before
    (config / "..2026_12_02_04_00_00.1/collections.yaml").write_text(ONE_COLLECTION.replace("Article", "Story"), encoding="utf-8")
    assert config_digest(config) != before


def test_errors_in_the_second_file_name_that_file_and_its_own_indexes(tmp_path: Path) -> None:
    config = write_files(
        tmp_path / "config",
        {
            "a.yaml": SERVER_FILE + ONE_COLLECTION,
            "b.yaml": (
                "collections:\n"  # 1
                "  - name: Book\n"  # 2
                "    properties:\n"  # 3
                "      - {name: title, type: TEXT}\n"  # 4
                "  - name: Film\n"  # 5
                "    properties:\n"  # 6
                "      - {name: _id, type: TEXT}\n"  # 7
                "  - name: Song\n"  # 8
                "    properties:\n"  # 9
                "      - {name: title, type: TEXTT}\n"  # 10
            ),
        },
    )
    issues = issues_of(config)
    assert [(i.file, i.line, i.column, i.path) for i in issues] == [
        (str(config / "b.yaml"), 7, 16, "collections[1].properties[0].name"),
        (str(config / "b.yaml"), 10, 29, "collections[2].properties[0].type"),
    ]
    assert issues[0].message == "property name '_id' is reserved"


def test_server_set_in_two_files_is_an_already_set_issue(tmp_path: Path) -> None:
    config = write_files(tmp_path / "config", {"a.yaml": SERVER_FILE, "b.yaml": "server:\n  port: 9001\n" + ONE_COLLECTION})
    issues = issues_of(config)
    assert [(i.file, i.path) for i in issues] == [(str(config / "b.yaml"), "server")]
    assert issues[0].message == f"'server' is already set in {config / 'a.yaml'}"
    assert issues[0].hint == "set it in one file only"


def test_module_set_in_two_files_is_an_already_set_issue(tmp_path: Path) -> None:
    config = write_files(
        tmp_path / "config",
        {"a.yaml": "modules:\n  text2vec-hash: {}\n" + ONE_COLLECTION, "b.yaml": "modules:\n  multi2vec-local: {}\n  text2vec-hash: {}\n"},
    )
    issues = issues_of(config)
    assert [(i.file, i.line, i.path) for i in issues] == [(str(config / "b.yaml"), 3, "modules.text2vec-hash")]
    assert issues[0].message == f"module 'text2vec-hash' is already set in {config / 'a.yaml'}"


def test_malformed_file_in_a_directory_is_reported_and_the_others_still_checked(tmp_path: Path) -> None:
    config = write_files(
        tmp_path / "config",
        {"a.yaml": "server:\n  port: [80\n", "b.yaml": "collections:\n  - name: Article\n    properties:\n      - {name: id, type: TEXT}\n"},
    )
    issues = issues_of(config)
    assert [(Path(i.file).name, i.line, i.path) for i in issues] == [("a.yaml", 3, ""), ("b.yaml", 4, "collections[0].properties[0].name")]
    assert issues[0].message.startswith("malformed YAML")


def test_directory_without_yaml_files(tmp_path: Path) -> None:
    config = write_files(tmp_path / "config", {"README.txt": "nothing here"})
    (issue,) = issues_of(config)
    assert (issue.file, issue.line, issue.path, issue.message) == (str(config), 1, "", "no .yaml or .yml files in this directory")
    assert issue.hint


def test_missing_config_path(tmp_path: Path) -> None:
    (issue,) = issues_of(tmp_path / "nope.yaml")
    assert (issue.file, issue.line, issue.path, issue.message) == (str(tmp_path / "nope.yaml"), 1, "", "config path does not exist")
    assert issue.hint


# --- the shipped examples --------------------------------------------------------------------


def test_quickstart_example_loads() -> None:
    spec = load_spec(QUICKSTART, default_registry(), environ={})
    assert spec.server.port == 8080
    assert spec.base_dir == str(EXAMPLES / "quickstart")
    (article,) = spec.collections
    assert article.name == "Article"
    assert [(p.name, p.type) for p in article.properties][:2] == [("title", PropertyType.TEXT), ("body", PropertyType.TEXT)]
    assert len(article.properties) == 8
    assert article.find_property("tags").tokenization.value == "field"  # type: ignore[union-attr]
    assert article.find_property("slug").index_searchable is False  # type: ignore[union-attr]
    assert article.inverted_index.stopwords == (EN_STOPWORDS | {"how"}) - {"not"}
    (text,) = article.vectors
    assert text.name == "text"
    assert text.vectorizer.module == "text2vec-hash"
    assert text.vectorizer.dimensions == 256
    assert text.vectorizer.text_fields == ("title", "body")
    assert dict(text.vectorizer.weights or {}) == {"title": 2, "body": 1}
    assert text.index.distance is Distance.COSINE


def test_multimodal_example_directory_loads() -> None:
    spec: Spec = load_spec(MULTIMODAL, default_registry(), environ={})
    assert spec.server.limits.max_body_bytes == 10485760
    assert sorted(spec.modules) == ["multi2vec-local", "text2vec-hash"]
    (artwork,) = spec.collections
    assert artwork.name == "Artwork"
    assert [v.name for v in artwork.vectors] == ["multimodal", "words", "external"]
    assert artwork.default_vector is not None and artwork.default_vector.name == "multimodal"
    multimodal = artwork.vectors[0].vectorizer
    assert multimodal.image_fields == ("image",)
    assert dict(multimodal.weights or {}) == {"title": 0.2, "description": 0.2, "image": 0.6}
    external = artwork.vectors[2]
    assert (external.vectorizer.module, external.vectorizer.dimensions, external.index.distance) == ("none", 4, Distance.L2_SQUARED)


# --- the JSON Schema -------------------------------------------------------------------------


def load_schema() -> dict[str, Any]:
    schema: dict[str, Any] = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    return schema


SUBSCHEMA_KEYWORDS = ("items", "additionalProperties", "propertyNames", "not", "if", "then", "else", "contains")


def property_definitions(schema: Any, where: str = "#") -> Iterator[tuple[str, Any]]:
    """Every value under a "properties" keyword anywhere in the schema, with its JSON pointer.

    Walks subschemas by keyword, so a property that is itself *named* "properties"
    (collection.properties) is not mistaken for the keyword.
    """
    if not isinstance(schema, dict):
        return
    for name, definition in schema.get("properties", {}).items():
        yield f"{where}/properties/{name}", definition
        yield from property_definitions(definition, f"{where}/properties/{name}")
    for name, definition in schema.get("$defs", {}).items():
        yield from property_definitions(definition, f"{where}/$defs/{name}")
    for keyword in SUBSCHEMA_KEYWORDS:
        yield from property_definitions(schema.get(keyword), f"{where}/{keyword}")
    for keyword in ("allOf", "anyOf", "oneOf", "prefixItems"):
        for index, definition in enumerate(schema.get(keyword, [])):
            yield from property_definitions(definition, f"{where}/{keyword}/{index}")


def described_definitions(schema: dict[str, Any]) -> list[tuple[str, Any]]:
    return [*property_definitions(schema), *((f"#/$defs/{name}", d) for name, d in schema["$defs"].items())]


def test_schema_is_a_valid_draft_2020_12_schema() -> None:
    schema = load_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"


def test_published_schema_is_the_one_searchd_validates_with() -> None:
    assert json.loads(SCHEMA_PATH.read_text(encoding="utf-8")) == json.loads(PACKAGED_SCHEMA_PATH.read_text(encoding="utf-8"))


def test_schema_walk_finds_the_property_definitions() -> None:
    # Guards the walk itself: if it found nothing, the description tests below would pass vacuously.
    found = dict(described_definitions(load_schema()))
    assert len(found) >= 42  # at least the 37 property definitions + 5 $defs of the first schema
    assert "#/properties/server/properties/limits/properties/maxBodyBytes" in found
    assert "#/$defs/collection/properties/properties" in found
    assert "#/$defs/vectorizer/properties/weights" in found
    assert "#/$defs/index" in found


def test_every_schema_property_is_described_directly_or_through_its_ref() -> None:
    schema = load_schema()
    missing = []
    for where, definition in described_definitions(schema):
        if isinstance(definition, dict) and "$ref" in definition and "description" not in definition:
            definition = schema["$defs"][definition["$ref"].removeprefix("#/$defs/")]
        if not (isinstance(definition, dict) and str(definition.get("description", "")).strip()):
            missing.append(where)
    assert missing == []


def test_every_schema_property_definition_has_its_own_description() -> None:
    missing = [
        where
        for where, definition in described_definitions(load_schema())
        if not (isinstance(definition, dict) and str(definition.get("description", "")).strip())
    ]
    assert missing == []


# --- fixed bugs (regression tests) ------------------------------------------------------------------------------


def test_duplicate_collection_hint_names_the_users_index(write_config: WriteConfig) -> None:
    config = write_config(
        """\
        collections:
          - name: article
          - name: Book
          - name: BOOK
        """
    )
    issues = issues_of(config)
    assert [(i.line, i.path) for i in issues] == [(2, "collections[0].name"), (4, "collections[2].name")]
    assert issues[1].hint == "collections[1] already uses it; rename one"


def test_duplicate_collection_across_files_hint_names_the_other_file(tmp_path: Path) -> None:
    config = write_files(
        tmp_path / "config",
        {"a.yaml": ONE_COLLECTION, "b.yaml": "collections:\n  - name: Book\n    properties: []\n  - name: ARTICLE\n    properties: []\n"},
    )
    (issue,) = issues_of(config)
    assert (issue.file, issue.line, issue.path) == (str(config / "b.yaml"), 4, "collections[1].name")
    assert str(config / "a.yaml") in issue.hint


def test_unknown_key_with_a_block_value_is_reported_at_the_key(write_config: WriteConfig) -> None:
    config = write_config(
        """\
        server:
          port: 80
          limitz:
            maxBodyBytes: 2048
        collections:
          - name: Article
        """
    )
    (issue,) = issues_of(config)
    assert (issue.path, issue.line) == ("server.limitz", 3)


def test_already_set_is_reported_at_the_server_key(tmp_path: Path) -> None:
    config = write_files(tmp_path / "config", {"a.yaml": SERVER_FILE, "b.yaml": "server:\n  port: 9001\n" + ONE_COLLECTION})
    (issue,) = issues_of(config)
    assert (issue.path, issue.line) == ("server", 1)


def test_invalid_vector_name_is_reported_as_an_invalid_name(write_config: WriteConfig) -> None:
    config = write_config(
        """\
        collections:
          - name: Article
            properties: []
            vectors:
              1v:
                vectorizer: {module: none, dimensions: 3}
        """
    )
    (issue,) = issues_of(config)
    assert (issue.path, issue.line) == ("collections[0].vectors", 5)
    assert issue.message == "invalid name '1v'"
    assert "^" not in issue.hint


def test_empty_collections_list_is_reported_where_it_is(write_config: WriteConfig) -> None:
    (issue,) = issues_of(write_config("server:\n  port: 8080\ncollections: []\n"))
    assert (issue.path, issue.line) == ("collections", 3)


def test_unquoted_env_reference_keeps_the_value_type(write_config: WriteConfig) -> None:
    config = write_config(
        """\
        server:
          port: ${PORT}
          host: "${HOST}"
        collections:
          - name: Article
            description: "${PORT}"
        """
    )
    spec = load_spec(config, default_registry(), environ={"PORT": "9100", "HOST": "0.0.0.0"})
    assert spec.server.port == 9100 and spec.server.host == "0.0.0.0"
    assert spec.collections[0].description == "9100"  # quoted: stays a string


def test_every_registered_module_offers_what_the_config_checks_read() -> None:
    """config/ reads modules through protocols of its own (it sits below modules/): every module and model implements them."""
    for module in default_registry().values():
        assert isinstance(module, ModuleCapabilities), module.name
        assert all(isinstance(model, ModelCapabilities) for model in module.models.values()), module.name


@pytest.mark.parametrize(
    ("value", "message", "hint"),
    [
        ("2024-01-01", "2024-01-01 reads as a date in YAML, not as a string", "quote it to make it a string: '2024-01-01'"),
        ("2024-01-01 10:00:00", "2024-01-01T10:00:00 reads as a date in YAML, not as a string", "quote it to make it a string: '2024-01-01T10:00:00'"),
        ("!!binary aGVsbG8=", "this !!binary value reads as bytes in YAML, not as a string", "remove the !!binary tag and write the value itself"),
    ],
)
def test_a_value_yaml_reads_as_a_date_or_bytes_is_worded_as_written(write_config: WriteConfig, value: str, message: str, hint: str) -> None:
    # YAML 1.1 types an unquoted date, and !!binary: the error says so in YAML's terms, not with a Python repr.
    path = write_config(f"collections:\n  - name: A\n    description: {value}\n    properties:\n      - {{name: t, type: TEXT}}\n")
    [issue] = issues_of(path)
    assert (issue.path, issue.line, issue.column, issue.message, issue.hint) == ("collections[0].description", 3, 18, message, hint)
