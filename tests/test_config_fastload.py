"""The fast reading of large config files (issue #13, fastload.py) gives what the exact loader gives, or steps aside.

Every file here goes through both readings: where the fast one answers, its data must be exactly
the exact loader's (types included: True == 1 in Python, so values are compared with their types),
and the exact loader must have found no issue.  Through ``load_spec``, both ways give the same spec
or the very same issues (an issue found after a fast reading is always worded by the exact one).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from searchd.config import build, load_spec
from searchd.config.fastload import FAST_MIN_BYTES, _dot_tokens, fast_data
from searchd.config.loader import parse_yaml
from searchd.errors import ConfigError
from searchd.modules import default_registry

WriteConfig = Callable[..., Path]
ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").rglob("*.yaml"))
# The last two are what examples/replicas needs (its database URL and admin key come from the environment).
ENV = {"PORT": "9090", "HOST": "0.0.0.0", "KEY": "abcdefghijklmnopqrstuvwxyz", "RATIO": "0.5", "FLAG": "yes", "EMPTY": "",
       "DATABASE_URL": "postgresql://searchd@db:5432/searchd", "SEARCHD_ADMIN_KEY": "admin-key-0123456789"}

HEAD = "collections:\n  - name: Article\n    properties:\n      - {name: title, type: TEXT}\n"
VECTOR = "    vectors:\n      v: {vectorizer: {module: text2vec-hash, dimensions: 64}, index: {type: flat}}\n"

# Texts the fast reading takes (the plain subset), each read alike by both.
PLAIN = {
    "flow and block": HEAD + VECTOR + "    invertedIndex: {bm25: {k1: 1.2, b: 0.75}, stopwords: {preset: en, additions: [a, b2, c-d]}}\n",
    "unicode": HEAD + "    description: Ünïcödé naïve café 東京 😀 — dash\n" + VECTOR,
    "quoted": HEAD + "    description: 'it''s \"quoted\" # not a comment'\n" + VECTOR,
    "double quoted": HEAD + '    description: "a: b, c, d #e"\n' + VECTOR,
    "multi-line plain": HEAD + "    description: a long\n      description folded\n\n      over lines\n" + VECTOR,
    "multi-line quoted": HEAD + '    description: "a long\n      quoted one"\n' + VECTOR,
    "comments": "# head & `more`\n" + HEAD + "    description: a#b   # a comment, *not* an alias\n" + VECTOR + "  # tail | >\n",
    "numbers": "server: {port: 8081, limits: {queueTimeout: 2.50, queryTimeout: 0.}}\n" + HEAD + VECTOR,
    "empty value": HEAD + VECTOR + "    description:\n",
    "environment": "server: {host: '${HOST}', port: 8080}\nmodules:\n  text2vec-jinaai: {apiKey: '${KEY}'}\n" + HEAD + VECTOR,
    "server key from the environment": "server:\n  auth:\n    apiKeys: [{name: a, key: '${KEY}', role: admin}]\n" + HEAD + VECTOR,
    "environment in text": HEAD + "    description: host ${HOST} and ${EMPTY}.\n" + VECTOR,
    "no collections": "server: {port: 8080}\n",
    "leading dot": "server: {limits: {queueTimeout: .5}}\n" + HEAD + VECTOR,  # ryml writes 0.5: the same float
    "addresses and paths": "server: {host: 127.0.0.1, dataDir: ../data}\n" + HEAD + VECTOR,
    # A digit before an `e` in a string: json (with its hook on exponents) reads the JSON, not orjson; the same data.
    "exponent-like text": HEAD + "    description: model 1e5x, build 2E3 and .e\n" + VECTOR,
    "brackets before a comment": HEAD + "    vectors: {v: {vectorizer: {module: text2vec-hash, dimensions: 64}, index: {type: flat}}}  # [x] {y} z\n",
    # Indented 4 columns a level, vectors 6 levels down: within the bound on nesting taken before rapidyaml reads.
    "four-column indentation": "collections:\n    -   name: Article\n        vectors:\n            v:\n                vectorizer:\n"
    "                    module: text2vec-hash\n                    dimensions: 64\n",
    "compact items": HEAD + "      - name: body\n        type: TEXT\n" + VECTOR,
    "array type and flow ends": HEAD + '      - {name: tags, type: "TEXT[]"}\n      - {name: more, type: \'TEXT[]\'}\n' + VECTOR + "    invertedIndex: {stopwords: {additions: [a]}}\n",
}

# Texts outside the plain subset: the fast reading steps aside (None), and the exact loader decides.
NOT_PLAIN = {
    "anchors and merge keys": HEAD + "    vectors:\n      a: &v {vectorizer: {module: text2vec-hash, dimensions: 64}}\n      b:\n        <<: *v\n        index: {type: flat}\n",
    "merge key without alias": HEAD + "    vectors:\n      a:\n        <<: {vectorizer: {module: text2vec-hash}}\n",
    "two documents": HEAD + VECTOR + "---\n" + HEAD,
    "document start": "---\n" + HEAD + VECTOR,
    "tag": HEAD + "    description: !!str 1\n" + VECTOR,
    "custom tag": HEAD + "    description: !custom x\n" + VECTOR,
    "brackets in a string": HEAD + '    description: "a: b, [c] {d} #e"\n' + VECTOR,
    "a flow collection then more": HEAD + VECTOR + "    invertedIndex: {stopwords: {additions: [a] - b}}\n",
    "a bracket starting a value": HEAD + "    description: ] x\n" + VECTOR,
    "a multi-line quoted key": HEAD + VECTOR + "    'a\n      b': c\n",
    "quoted hash before an indicator": HEAD + "    description: 'a #' &x\n" + VECTOR,
    "block scalar": HEAD + "    description: |\n      two\n      lines\n" + VECTOR,
    "folded scalar": HEAD + "    description: >-\n      two\n      lines\n" + VECTOR,
    "yes": HEAD + "    description: yes\n" + VECTOR,
    "quoted yes": HEAD + "    description: 'yes'\n" + VECTOR,
    "quoted true": HEAD + '    description: "true"\n' + VECTOR,  # a key `true:` is a bool to PyYAML: all are left
    "on as key": HEAD + VECTOR + "    invertedIndex: {on: 1}\n",
    "int key": HEAD + VECTOR + "    1: x\n",
    "tilde": HEAD + "    description: ~\n" + VECTOR,
    "exponent": "server: {limits: {queryTimeout: 1e3}}\n" + HEAD + VECTOR,
    "signed exponent": "server: {limits: {queryTimeout: 1.0e+3}}\n" + HEAD + VECTOR,
    "exponent in a list": HEAD + VECTOR + "    invertedIndex: {stopwords: {additions: [a, 1E5]}}\n",
    "text after a flow": HEAD + VECTOR + "    description: [a] b\n",
    "text after a flow map": HEAD + "    vectors: {v: {vectorizer: {module: text2vec-hash}}} x\n",
    "flow after a flow": HEAD + VECTOR + "    description: [a][b]\n",
    "hex": "server: {port: 0x1F90}\n" + HEAD + VECTOR,
    "octal": "server: {port: 017}\n" + HEAD + VECTOR,
    "underscores": "server: {port: 8_080}\n" + HEAD + VECTOR,
    "sexagesimal": "server: {port: 1:20}\n" + HEAD + VECTOR,
    "negative leading dot": HEAD + "    description: -.5\n" + VECTOR,
    "nan": "collections:\n  - name: A\n    invertedIndex: {bm25: {k1: .nan}}\n",
    "plain nan word": HEAD + "    description: nan\n" + VECTOR,
    "timestamp": HEAD + "    description: 2001-12-14\n" + VECTOR,
    "timestamp with spaces": HEAD + "    description: 2001-12-14 21:59:43.10 -5\n" + VECTOR,
    "duplicate key": HEAD + "    description: a\n    description: b\n" + VECTOR,
    "unset variable": "server: {host: '${NOPE}'}\n" + HEAD + VECTOR,
    "typed variable": "server: {port: ${PORT}}\n" + HEAD + VECTOR,
    "quoted typed variable": "server: {port: '${PORT}'}\n" + HEAD + VECTOR,
    "literal secret": "modules:\n  text2vec-jinaai: {apiKey: abcdefghijklmnopqrstuvwxyz}\n" + HEAD + VECTOR,
    "literal server key": "server:\n  auth:\n    apiKeys: [{name: a, key: abcdefghijklmnopqrstuvwxyz, role: admin}]\n" + HEAD + VECTOR,
    "literal database url": "server: {storage: {backend: postgres, url: postgresql://u:p@h/db}}\n" + HEAD + VECTOR,
    "complex key": HEAD + VECTOR + "    ? [a]\n    : b\n",
    "tab": HEAD + VECTOR + "    description:\ta\n",
    "crlf": (HEAD + VECTOR).replace("\n", "\r\n"),
    "bom": "\ufeff" + HEAD + VECTOR,
    "control character": HEAD + "    description: a\x07b\n" + VECTOR,
    "backslash": HEAD + '    description: "a\\tb\\u00e9"\n' + VECTOR,
    "top-level list": "- a\n- b\n",
    "deep": "x: " + "[" * 64 + "]" * 64 + "\n",
    # Deeper than the bound taken before rapidyaml reads can vouch for (its emitter writes on stderr past 64 levels).
    "deep block": "".join("  " * i + f"k{i}:\n" for i in range(40)) + "  " * 40 + "end\n",
    "chained items": "- " * 40 + "x\n",
    "malformed": HEAD + "    description: [unclosed\n",
    "bad indentation": HEAD + "   vectors:\n",
    "empty": "",
    "only a comment": "# nothing\n",
}


def typed(value: Any) -> Any:
    """``value`` with the type of every scalar beside it: True, 1 and 1.0 compare equal in Python, not here."""
    if isinstance(value, dict):
        return {key: typed(item) for key, item in value.items()}
    if isinstance(value, list):
        return [typed(item) for item in value]
    return (type(value).__name__, value)


def readings(text: str) -> tuple[dict[str, Any] | None, Any, list[str]]:
    fast = fast_data(text.encode("utf-8"), ENV)
    document, issues = parse_yaml(text, "c.yaml", ENV)
    return fast, None if document is None else document.data, [issue.render() for issue in issues]


@pytest.mark.parametrize("name", sorted(PLAIN))
def test_plain_files_are_read_fast_and_alike(name: str) -> None:
    fast, exact, issues = readings(PLAIN[name])
    assert issues == []
    assert fast is not None, "the fast reading stepped aside from a plain file"
    assert typed(fast) == typed(exact)


@pytest.mark.parametrize("name", sorted(NOT_PLAIN))
def test_other_files_are_left_to_the_exact_loader(name: str) -> None:
    fast, exact, issues = readings(NOT_PLAIN[name])
    assert fast is None, f"read fast as {fast!r}; the exact loader reads {exact!r} with issues {issues}"


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: str(p.relative_to(ROOT)))
def test_examples_are_read_alike(path: Path) -> None:
    fast, exact, issues = readings(path.read_text(encoding="utf-8"))
    assert issues == []
    assert fast is not None
    assert typed(fast) == typed(exact)


def outcome(path: Path, fast: bool, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The spec, or the rendered issues, of one load_spec with the fast reading on for every file or off."""
    monkeypatch.setattr(build, "FAST_MIN_BYTES", 0 if fast else 1 << 62)
    try:
        return load_spec(path, default_registry(), environ=ENV)
    except ConfigError as error:
        return [issue.render() for issue in error.issues]


CASES = {**PLAIN, **NOT_PLAIN}


@pytest.mark.parametrize("name", sorted(CASES))
def test_load_spec_gives_the_same_spec_or_issues_both_ways(write_config: WriteConfig, monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    path = write_config("", "x.yaml")
    path.write_bytes(CASES[name].encode("utf-8"))
    assert outcome(path, True, monkeypatch) == outcome(path, False, monkeypatch)


@pytest.mark.parametrize("directory", sorted({p.parent for p in EXAMPLES if p.name == "searchd.yaml"}), ids=lambda p: p.name)
def test_examples_load_the_same_both_ways(monkeypatch: pytest.MonkeyPatch, directory: Path) -> None:
    fast = outcome(directory, True, monkeypatch)
    assert not isinstance(fast, list), fast
    assert fast == outcome(directory, False, monkeypatch)


def test_an_issue_in_a_fast_file_is_located_by_the_exact_reading(write_config: WriteConfig, monkeypatch: pytest.MonkeyPatch) -> None:
    """A plain file with a semantic issue: read fast, then again exactly, so the issue has its line."""
    path = write_config(HEAD + "    vectors:\n      v: {vectorizer: {module: text2vec-hash, textFields: [nope]}}\n")
    assert fast_data(path.read_bytes(), {}) is not None
    assert outcome(path, True, monkeypatch) == [
        f"{path}:6:60: collections[0].vectors.v.vectorizer.textFields[0]: 'nope' is not a property of collection 'Article' (declared properties: title)"
    ]


def test_a_valid_large_file_is_read_without_the_exact_loader(write_config: WriteConfig, monkeypatch: pytest.MonkeyPatch) -> None:
    """The speed of #13 comes from here: a valid file over the threshold never reaches PyYAML."""
    collection = "  - name: C{i}\n    properties: [{{name: title, type: TEXT}}]\n    vectors: {{v: {{vectorizer: {{module: text2vec-hash, dimensions: 64}}, index: {{type: flat}}}}}}\n"
    path = write_config("collections:\n" + "".join(collection.format(i=i) for i in range(3000)))
    assert path.stat().st_size >= FAST_MIN_BYTES  # build's threshold (it imports this one)

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the exact loader was called")

    monkeypatch.setattr("searchd.config.loader.parse_yaml", refuse)
    spec = load_spec(path, default_registry(), environ={})
    assert [c.name for c in spec.collections[:2]] == ["C0", "C1"] and len(spec.collections) == 3000


def test_equal_declarations_are_shared_but_each_collection_is_checked(write_config: WriteConfig) -> None:
    """spec_from_data builds equal declarations once and the semantic checks skip a pair that passed: an
    issue in the second collection must still be found, and 1 and 1.0 must stay apart."""
    vector = "    vectors: {v: {vectorizer: {module: text2vec-hash, dimensions: 64, textFields: [title]}, index: {type: flat}}}\n"
    path = write_config(
        "collections:\n"
        "  - name: A\n    properties: [{name: title, type: TEXT}]\n" + vector + "  - name: B\n    properties: [{name: body, type: TEXT}]\n" + vector
    )
    assert [issue.render() for issue in pytest.raises(ConfigError, load_spec, path, default_registry(), environ={}).value.issues] == [
        f"{path}:7:84: collections[1].vectors.v.vectorizer.textFields[0]: 'title' is not a property of collection 'B' (declared properties: body)"
    ]
    path = write_config("collections:\n" + "".join(f"  - name: C{i}\n    invertedIndex: {{bm25: {{k1: {k1}}}}}\n" + vector.replace("title", "t") + "    properties: [{name: t, type: TEXT}]\n" for i, k1 in enumerate(["1", "1.0", "1"])))
    spec = load_spec(path, default_registry(), environ={})
    k1s = [c.inverted_index.k1 for c in spec.collections]
    assert k1s == [1, 1, 1] and spec.collections[0].inverted_index is spec.collections[2].inverted_index
    assert spec.collections[0].inverted_index is not spec.collections[1].inverted_index  # written 1 and 1.0
    assert spec.collections[0].properties[0] is spec.collections[1].properties[0]


def test_vectors_keep_their_order_when_collections_share_parts(write_config: WriteConfig) -> None:
    """spec_from_data looks a collection's parts up as written: the same vectors in another order are another collection's."""
    a = "{vectorizer: {module: text2vec-hash, dimensions: 64}, index: {type: flat}}"
    b = "{vectorizer: {module: text2vec-hash, dimensions: 32}, index: {type: flat}}"
    properties = "    properties: [{name: title, type: TEXT}]\n"
    path = write_config(
        "collections:\n"
        + f"  - name: A\n{properties}    vectors: {{a: {a}, b: {b}}}\n"
        + f"  - name: B\n{properties}    vectors: {{b: {b}, a: {a}}}\n"
        + f"  - name: C\n{properties}    vectors: {{a: {a}, b: {b}}}\n"
    )
    spec = load_spec(path, default_registry(), environ={})
    assert [[(v.name, v.vectorizer.dimensions) for v in c.vectors] for c in spec.collections] == [
        [("a", 64), ("b", 32)], [("b", 32), ("a", 64)], [("a", 64), ("b", 32)]
    ]
    assert spec.collections[0].vectors is spec.collections[2].vectors and spec.collections[0].vectors[0] is spec.collections[1].vectors[1]


def test_a_shared_collection_part_with_an_issue_is_reported_in_every_collection(write_config: WriteConfig) -> None:
    """The semantic checks skip the parts of a collection that passed before, never parts that failed."""
    block = "  - name: {name}\n    properties: [{{name: n, type: INT, tokenization: word}}]\n"
    path = write_config("collections:\n" + "".join(block.format(name=name) for name in "ABC"))
    assert [issue.render() for issue in pytest.raises(ConfigError, load_spec, path, default_registry(), environ={}).value.issues] == [
        f"{path}:{line}:53: collections[{index}].properties[0].tokenization: 'tokenization' applies to TEXT and TEXT[] properties; 'n' is INT (remove 'tokenization')"
        for index, line in enumerate((3, 5, 7))
    ]


# Pieces of YAML, valid and not, that random texts are made of (a fixed seed: the same texts every run).
PIECES = [
    "a", "b c", "a:b", "a: b", "'q'", '"d q"', "1", "1.5", "-2", "true", "null", "", "x#y", "x #c", "é", "[]", "{}", "[a, b]",
    "{a: 1}", "{a:1}", "[a:b]", "[a: b]", "{a, b}", "? x", "- a", ":", "a:", "-", ",", "'it''s'", "'", '"', "[", "]", "{", "}",
    "12:30", "1_0", "07", "+5", ".5", "y", "key: val", "a: [b, {c: d}]", " ", "\n", "\n  ", "\n- ", "\n  - ", "#", "k:\n  - x\n  - y",
    "k:\n- x\n- y", "'a\n b'", '"a\n  b"', "a\n b: c", "[a,\n b]", "[a, ]", "{ a: 1 }", "- [a]", "- {a: b}", "a: - b", '"TEXT[]"', "${V}",
]


def test_random_texts_are_read_fast_only_when_alike() -> None:
    """Where ryml is more lenient than libyaml (`k: ]`, `- [a] - b`, a key over two lines), the fast reading must step aside."""
    rng = random.Random(13)
    read_fast = 0
    for _ in range(800):
        text = "".join(rng.choice(PIECES) + rng.choice(["", " ", "\n", ": ", ", ", "\n  "]) for _ in range(rng.randint(1, 6)))
        for variant in (text, "k: " + text, "- " + text, "k:\n  " + text.replace("\n", "\n  ")):
            fast, exact, issues = readings(variant)
            if fast is not None:
                read_fast += 1
                assert issues == [] and typed(fast) == typed(exact), f"{variant!r}: read fast as {fast!r}, exactly as {exact!r} with {issues}"
    assert read_fast > 300  # the subset is not so narrow that this proves nothing


CONFIG_LINES = (
    "collections:\n  - name: A\n    description: some text\n    properties:\n      - name: title\n        type: TEXT\n"
    "      - {name: body, type: TEXT}\n    vectors:\n      v:\n        vectorizer: {module: text2vec-hash, dimensions: 64, textFields: [title, body]}\n"
    "        index:\n          type: flat\nmodules:\n  text2vec-hash: {}\nserver:\n  port: 8080\n"
).splitlines()


def test_mistyped_configs_are_read_fast_only_when_alike() -> None:
    """A config with the slips an editor makes (indentation off by one, a stray colon or comma, a line lost or added)."""
    rng = random.Random(7)
    read_fast = 0
    for _ in range(600):
        lines = list(CONFIG_LINES)
        for _ in range(rng.randint(1, 3)):
            at, slip = rng.randrange(len(lines)), rng.randrange(6)
            if slip == 0:
                lines[at] = " " + lines[at]
            elif slip == 1:
                lines[at] = lines[at].removeprefix(" ")
            elif slip == 2:
                lines[at] += rng.choice([":", " x", ",", " - a", " b: c", "  # c", ":x", " [a]", " {a: b}", "'", '"'])
            elif slip == 3:
                lines.insert(at, rng.choice(["", "  ", "- x", "  - x", "x", "    y: 1", "#c", "  k:", "  k: v"]))
            elif slip == 4:
                del lines[at]
            else:
                lines[at] = lines[at].replace(": ", ":", 1).replace("- ", "-", 1)
        text = "\n".join(lines) + "\n"
        fast, exact, issues = readings(text)
        if fast is not None:
            read_fast += 1
            assert issues == [] and typed(fast) == typed(exact), f"{text!r}: read fast as {fast!r}, exactly as {exact!r} with {issues}"
    assert read_fast > 100


@pytest.mark.parametrize("broken", [False, True])
def test_a_directory_of_fast_and_exact_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, broken: bool) -> None:
    """One large file read fast beside a small one read exactly; an issue in either reads both exactly."""
    directory = tmp_path / "config"
    directory.mkdir()
    collection = "  - name: C{i}\n    properties: [{{name: title, type: TEXT}}]\n    vectors: {{v: {{vectorizer: {{module: text2vec-hash}}, index: {{type: flat}}}}}}\n"
    (directory / "big.yaml").write_text("modules: {text2vec-hash: {}}\ncollections:\n" + "".join(collection.format(i=i) for i in range(400)))
    (directory / "small.yaml").write_text("server: {port: 8081}\n" + ("modules: {text2vec-hash: {}}\n" if broken else ""))
    sizes = sorted(path.stat().st_size for path in directory.iterdir())
    monkeypatch.setattr(build, "FAST_MIN_BYTES", sizes[1])  # the large file only
    assert fast_data((directory / "big.yaml").read_bytes(), {}) is not None
    try:
        mixed: Any = load_spec(directory, default_registry(), environ=ENV)
    except ConfigError as error:
        mixed = [issue.render() for issue in error.issues]
    assert mixed == outcome(directory, False, monkeypatch)
    assert isinstance(mixed, list) == broken
    if broken:
        assert mixed == [f"{directory / 'small.yaml'}:2:26: modules.text2vec-hash: module 'text2vec-hash' is already set in {directory / 'big.yaml'} (set it in one file only)"]


def test_dot_tokens_are_found_as_a_byte_search_finds_them() -> None:
    """``_dot_tokens`` (numpy, from the dots) answers as searching for `-.`, `+.` and a line starting `...` would."""
    rng = random.Random(7)
    for _ in range(3000):
        raw = bytes(rng.choice(b"-+.\n a1") for _ in range(rng.randint(0, 12)))
        assert _dot_tokens(raw) == any(token in raw for token in (b"-.", b"+.", b"\n...")), raw


def test_the_schema_is_checked_after_the_environment_is_filled_in(write_config: WriteConfig, monkeypatch: pytest.MonkeyPatch) -> None:
    """`host: '${EMPTY}'` passes the schema as written, not once filled in (host takes at least one character)."""
    path = write_config("", "x.yaml")
    path.write_text("server: {host: '${EMPTY}'}\n" + HEAD + VECTOR)
    fast = outcome(path, True, monkeypatch)
    assert fast == outcome(path, False, monkeypatch)
    assert isinstance(fast, list) and len(fast) == 1 and fast[0].startswith(f"{path}:1:16: server.host: ''"), fast
