"""The YAML loader's limits (issue #13): merge keys work; aliases, nesting and file size are bounded;
broken links in a config directory are named; every failure is a located issue, never a traceback."""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tracemalloc
from collections.abc import Callable, Mapping
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

import pytest
from starlette.testclient import TestClient

from searchd.catalog import compile_catalog
from searchd.config import load_spec
from searchd.config.loader import config_digest, config_files, parse_yaml
from searchd.config.revision import canonical, content_revision, redacted, revision
from searchd.config.spec import Spec
from searchd.config.yamlsafe import MAX_BYTES_ENV, YamlLimits
from searchd.errors import ConfigError, ConfigIssue
from searchd.modules import default_registry
from searchd.reload.plan import classify
from tests.conftest import ClientFactory

if TYPE_CHECKING:
    from _typeshed import TraceFunction  # typeshed's name for a trace function (stubs only)

WriteConfig = Callable[..., Path]

BASE = """\
collections:
  - name: Article
    properties:
      - {name: title, type: TEXT}
      - {name: body, type: TEXT}
    vectors:
"""


def issues_of(path: Path, environ: Mapping[str, str] | None = None) -> list[ConfigIssue]:
    with pytest.raises(ConfigError) as caught:
        load_spec(path, default_registry(), environ={} if environ is None else environ)
    return caught.value.issues


def only_issue(path: Path, environ: Mapping[str, str] | None = None) -> ConfigIssue:
    issues = issues_of(path, environ)
    assert len(issues) == 1, "\n".join(i.render() for i in issues)
    return issues[0]


# -- merge keys ----------------------------------------------------------------------------


def test_merge_keys_in_a_valid_config(write_config: WriteConfig) -> None:
    config = write_config(
        """\
        collections:
          - name: Article
            properties:
              - {name: title, type: TEXT}
              - {name: body, type: TEXT}
            vectors:
              a:
                vectorizer: &hash {module: text2vec-hash, dimensions: 64, textFields: [title]}
                index: &flat
                  type: flat
                  distance: cosine
              b:
                vectorizer:
                  <<: *hash
                  dimensions: 32
                  textFields: [body]
                index:
                  <<: *flat
                  distance: dot
        """
    )
    spec = load_spec(config, default_registry(), environ={})
    (article,) = spec.collections
    a, b = article.find_vector("a"), article.find_vector("b")
    assert a is not None and b is not None
    assert (a.vectorizer.module, a.vectorizer.dimensions, a.vectorizer.text_fields) == ("text2vec-hash", 64, ("title",))
    assert (b.vectorizer.module, b.vectorizer.dimensions, b.vectorizer.text_fields) == ("text2vec-hash", 32, ("body",))
    assert (a.index.type, a.index.distance.value, b.index.type, b.index.distance.value) == ("flat", "cosine", "flat", "dot")


def test_merge_key_list_earlier_mapping_wins_and_errors_point_at_the_source(write_config: WriteConfig) -> None:
    config = write_config(
        BASE
        + """\
      a:
        vectorizer: &first {module: text2vec-hash, dimensions: 0}
      b:
        vectorizer: &second {module: text2vec-hash, dimensions: 16, textFields: [body]}
      c:
        vectorizer:
          <<: [*second, *first]
"""
    )
    issues = issues_of(config)
    # dimensions 0 is invalid in 'a' (line 8) and nowhere else: 'c' takes 16 from *second, which comes first.
    assert [(i.path, i.line, i.column) for i in issues] == [("collections[0].vectors.a.vectorizer.dimensions", 8, 64)], [i.render() for i in issues]


def test_merge_key_of_a_scalar_is_a_located_error(write_config: WriteConfig) -> None:
    config = write_config(BASE + "      a:\n        vectorizer: {<<: [plain], module: text2vec-hash}\n")
    issue = only_issue(config)
    assert (issue.line, issue.column) == (8, 26), issue.render()
    assert "merge key '<<' takes a mapping or a list of mappings" in issue.message


# -- aliases, recursion, depth ---------------------------------------------------------------


def billion_laughs() -> str:
    lines = ['a0: &a0 "lol"']
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 10)]
    return "\n".join(lines) + "\ncollections: *a9\n"


def string_bomb(aliases: int, size: int = 1_000_000) -> str:
    """One long description anchored once and aliased by every property: few nodes, much text (the checker's strbomb.sh)."""
    text = f'collections:\n  - name: Article\n    description: &d "{"x" * size}"\n    properties:\n'
    return text + "".join(f"      - {{name: p{i}, type: TEXT, description: *d}}\n" for i in range(aliases))


def issue_and_peak(config: Path) -> tuple[ConfigIssue, int]:
    """The one issue loading ``config`` gives, and the most memory the load held at once (bytes)."""
    tracemalloc.start()
    try:
        issue = only_issue(config)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return issue, peak


def test_billion_laughs_is_refused_before_it_expands(write_config: WriteConfig) -> None:
    issue, peak = issue_and_peak(write_config(billion_laughs()))
    # Level 6 holds 10^5 copies of level 0 and more: the sum of the copies crosses 100,000 on line 6.
    assert (issue.line, issue.path) == (6, ""), issue.render()
    assert issue.message.startswith("aliases expand to more than 100000 nodes (alias *a4 alone copies 11111)"), issue.message
    assert peak < 20 * 1024 * 1024, f"loading a refused billion-laughs file peaked at {peak:,} bytes"


def test_alias_count_is_limited() -> None:
    limits = YamlLimits(max_aliases=5)
    document, issues = parse_yaml("a: &x 1\nb: [*x, *x, *x, *x, *x, *x]\n", "f.yaml", {}, limits)
    assert document is None
    assert [i.render() for i in issues] == ["f.yaml:2:25: <root>: more than 5 aliases (write the repeated values out, or share fewer of them)"]
    document, issues = parse_yaml("a: &x 1\nb: [*x, *x, *x, *x, *x]\n", "f.yaml", {}, limits)
    assert document is not None and document.data == {"a": 1, "b": [1, 1, 1, 1, 1]} and not issues


@pytest.mark.parametrize(
    ("text", "line", "column"),
    [
        pytest.param("a: &a [1, *a]\n", 1, 11, id="sequence-contains-itself"),
        pytest.param("a: &a\n  b: *a\n", 2, 6, id="mapping-contains-itself"),
        pytest.param("a: &a\n  b:\n    c: [*a]\n", 3, 9, id="nested-deeper"),
    ],
)
def test_recursive_alias_is_a_located_error(write_config: WriteConfig, text: str, line: int, column: int) -> None:
    issue = only_issue(write_config(text))
    assert (issue.line, issue.column) == (line, column), issue.render()
    assert issue.message == "recursive alias *a: the node anchored &a on line 1 would contain itself"


def test_undefined_and_duplicate_anchors_are_located(write_config: WriteConfig) -> None:
    assert only_issue(write_config("a: [*nope]\n")).render().endswith(":1:5: <root>: alias *nope names no anchor (define &nope before this alias)")
    assert only_issue(write_config("a: &x 1\nb: &x 2\n")).render().endswith(":2:4: <root>: duplicate anchor &x (give each anchor its own name)")


@pytest.mark.parametrize("flow", [True, False], ids=["flow", "block"])
def test_deep_nesting_is_refused_at_the_limit(write_config: WriteConfig, flow: bool) -> None:
    depth = 500 if flow else 200
    text = "[" * depth + "]" * depth + "\n" if flow else "".join("  " * i + f"k{i}:\n" for i in range(depth)) + "  " * depth + "end\n"
    issue = only_issue(write_config(text))
    # The 65th level opens at column 65 (flow) or on the 64th key's line (block): nothing deeper was read.
    assert (issue.line, issue.column) == ((1, 65) if flow else (65, 129)), issue.render()
    assert issue.message == "nesting is deeper than 64 levels"


def test_depth_counts_what_an_alias_brings(write_config: WriteConfig) -> None:
    deep = "[" * 40 + "]" * 40
    issue = only_issue(write_config(f"a: &deep {deep}\nb: {'[' * 30}*deep{']' * 30}\n"))
    assert (issue.line, issue.column, issue.message) == (2, 34, "alias *deep nests deeper than 64 levels"), issue.render()


def test_unsupported_tags_and_values_are_located(write_config: WriteConfig) -> None:
    config = write_config(BASE + "      v:\n        vectorizer: {module: !!python/name:os.system text2vec-hash}\n")
    issue = only_issue(config)
    assert (issue.line, issue.column) == (8, 30), issue.render()
    assert issue.message == "cannot read this value: the tag tag:yaml.org,2002:python/name:os.system is not supported"
    config = write_config(BASE + "      v: {vectorizer: {module: text2vec-hash}}\n    description: !!int 'eighty'\n")
    issue = only_issue(config)
    assert (issue.line, issue.column, issue.path) == (8, 18, "collections[0].description"), issue.render()
    assert issue.message == "cannot read this value: invalid literal for int() with base 10: 'eighty'"


# -- file size -------------------------------------------------------------------------------


def test_file_over_the_size_limit_is_refused_without_reading(write_config: WriteConfig) -> None:
    config = write_config(BASE + "      v: {vectorizer: {module: text2vec-hash}}\n" + "# padding\n" * 300)
    size = config.stat().st_size
    assert load_spec(config, default_registry(), environ={MAX_BYTES_ENV: str(size)}).collections[0].name == "Article"
    issue = only_issue(config, {MAX_BYTES_ENV: str(size - 1)})
    assert issue.render() == (
        f"{config}:1:1: <root>: file is {size:,} bytes, over the limit of {size - 1:,} "
        f"(config files are limited to {size - 1:,} bytes; split the config into several files in a directory, or raise {MAX_BYTES_ENV})"
    )
    issue = only_issue(config, {MAX_BYTES_ENV: "8MB"})
    assert issue.message == f"{MAX_BYTES_ENV}='8MB' is not a number of bytes"


def test_default_size_limit_is_8_mib(write_config: WriteConfig) -> None:
    config = write_config("")
    with config.open("wb") as out:  # a sparse file: its size is what counts, nothing is read
        out.truncate(8 * 1024 * 1024 + 1)
    assert only_issue(config).message == "file is 8,388,609 bytes, over the limit of 8,388,608"


# -- symbolic links in a config directory ----------------------------------------------------


def test_symlink_loops_and_dangling_links_are_named(tmp_path: Path) -> None:
    config = tmp_path / "config"
    (config / "sub").mkdir(parents=True)
    (config / "a.yaml").write_text(BASE + "      v: {vectorizer: {module: text2vec-hash}}\n", encoding="utf-8")
    os.symlink("loop.yaml", config / "loop.yaml")
    os.symlink("missing.yaml", config / "gone.yaml")
    os.symlink("..", config / "sub" / "up")
    os.symlink("nowhere", config / "notes")  # not a config file, whatever it was: ignored
    os.symlink("missing.yaml", config / ".hidden.yaml")  # hidden: ignored, like every hidden file
    assert config_files(config) == [config / "a.yaml"]
    rendered = [i.render() for i in issues_of(config)]
    assert rendered == [
        (
            f"{config / 'gone.yaml'}:1:1: <root>: dangling symbolic link: {config / 'gone.yaml'} -> missing.yaml, which does not exist "
            "(create the target, fix the link, or remove it)"
        ),
        (
            f"{config / 'loop.yaml'}:1:1: <root>: symbolic link loop: {config / 'loop.yaml'} -> loop.yaml never reaches a file "
            "(point the link at a real file, or remove it)"
        ),
        (
            f"{config / 'sub' / 'up'}:1:1: <root>: symbolic link loop: {config / 'sub' / 'up'} leads back to {config.resolve()}, which contains it "
            "(remove the link or point it elsewhere)"
        ),
    ]
    before = config_digest(config)
    (config / "gone.yaml").unlink()
    assert config_digest(config) != before  # a broken link that goes away is a change worth a reload


# -- on reload: every failure is in /v1/config/status ----------------------------------------


RELOAD_CONFIG = """\
server:
  reload: {watch: false}
collections:
  - name: Article
    properties:
      - {name: title, type: TEXT}
"""


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(billion_laughs(), ":6:", id="billion-laughs"),
        pytest.param("a: &a [*a]\n", ":1:8: <root>: recursive alias *a", id="recursive-alias"),
        pytest.param("[" * 500 + "]" * 500, ":1:65: <root>: nesting is deeper than 64 levels", id="deep"),
        pytest.param("[" * 100_000 + "]" * 100_000, ":1:1001: <root>: malformed YAML: exceeded maximum nesting depth", id="deeper-than-libyaml"),
        pytest.param(RELOAD_CONFIG + "    description: !!binary notbase64\n", ":7:18: collections[0].description: cannot read this value", id="bad-tag-value"),
        pytest.param(string_bomb(1000), ":13:45: <root>: aliases expand to more than 8,388,608 characters of text", id="string-bomb"),
        pytest.param(RELOAD_CONFIG.replace("server:", "server: !!python/object:os.system"), ":1:9: server: cannot read this mapping", id="tagged-mapping"),
    ],
)
def test_reload_reports_loader_failures_in_status(client_factory: ClientFactory, tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "config" / "searchd.yaml"
    path.parent.mkdir()
    path.write_text(RELOAD_CONFIG, encoding="utf-8")
    client: TestClient = client_factory(path)
    revision = client.get("/v1/config/status").json()["revision"]
    path.write_text(text, encoding="utf-8")
    response = client.post("/v1/config/reload")
    assert response.status_code == 422, response.text
    status = client.get("/v1/config/status").json()
    assert status["lastReload"]["result"] == "invalid" and status["revision"] == revision
    (error,) = status["lastReload"]["errors"]
    assert error.startswith(str(path) + expected), error
    assert "Traceback" not in error
    assert client.get("/v1/schema/Article").status_code == 200  # the last good config keeps serving


def test_the_size_limit_is_a_command_line_option(write_config: WriteConfig, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from searchd.cli import main

    config = write_config(BASE + "      v: {vectorizer: {module: text2vec-hash}}\n")
    monkeypatch.setenv(MAX_BYTES_ENV, "")  # restored after the test: the option sets it for the process
    assert main(["--config-max-bytes", "100", "validate", str(config)]) == 1
    out = capsys.readouterr().out
    assert f"{config}:1:1: <root>: file is {config.stat().st_size:,} bytes, over the limit of 100" in out, out
    assert main(["--config-max-bytes", str(config.stat().st_size), "validate", str(config)]) == 0


# -- validation work grows linearly with the file ------------------------------------------------

COLLECTION = """\
  - name: C{i}
    description: collection number {i}
    properties:
      - {{name: title, type: TEXT}}
      - {{name: count, type: INT}}
      - {{name: tags, type: "TEXT[]"}}
    invertedIndex:
      bm25: {{k1: 1.2, b: 0.75}}
    vectors:
      v:
        vectorizer: {{module: text2vec-hash, dimensions: 64, textFields: [title]}}
        index: {{type: flat, distance: cosine}}
"""
# Nothing repeats: its own property and vector names, k1 and dimensions (no entry folds, no spec part is shared).
DISTINCT = """\
  - name: C{i}
    properties:
      - {{name: title{i}, type: TEXT}}
      - {{name: count{i}, type: INT}}
    invertedIndex:
      bm25: {{k1: 1.{i}, b: 0.75}}
    vectors:
      v{i}:
        vectorizer: {{module: text2vec-hash, dimensions: {d}, textFields: [title{i}]}}
        index: {{type: flat, distance: cosine}}
"""
ONE = "collections:\n  - name: A\n    properties:\n      - {name: t, type: TEXT}\n"


def distinct(n: int, issue: bool = False) -> str:
    text = "collections:\n" + "".join(DISTINCT.format(i=i, d=16 + i) for i in range(n))
    # An issue in the last collection: located (read fast, the one collection again; exactly, the whole file).
    return text.replace(f"textFields: [title{n - 1}]", f"textFields: [count{n - 1}]") if issue else text


SHAPES: dict[str, Callable[[int], str]] = {
    # Collections that share nothing: every part of the spec built, every check run, for each one.
    "distinct": distinct,
    "distinct, an issue": lambda n: distinct(n, issue=True),
    # Many small collections: an event every ~8 bytes, and the merge renumbers every collection's positions.
    "collections": lambda n: "collections:\n" + "".join(COLLECTION.format(i=i) for i in range(n)),
    # One long list: an event every ~14 bytes.
    "stopwords": lambda n: ONE + "    invertedIndex:\n      stopwords:\n        additions:\n" + "".join(f"          - word{i}\n" for i in range(40 * n)),
    # A few long strings.
    "description": lambda n: ONE + '    description: "' + "lorem ipsum " * (400 * n) + '"\n',
    # Merge keys: every collection takes its vector from the first one's anchored mapping.
    "merge keys": lambda n: "collections:\n"
    + "".join(
        f"  - name: C{i}\n    properties: [{{name: title, type: TEXT}}]\n    vectors:\n      v:\n"
        + ("        <<: &vector {vectorizer: {module: text2vec-hash, dimensions: 64, textFields: [title]}, index: {type: flat}}\n" if i == 0 else "        <<: *vector\n")
        for i in range(n)
    ),
}


def validation_work(path: Path) -> int:
    """The Python lines one validation executes (loop bodies and comprehensions included): work, not time."""
    registry = default_registry()

    def validate() -> None:
        try:
            load_spec(path, registry, environ={})
        except ConfigError:
            pass

    return counted_lines(validate)


def counted_lines(work: Callable[[], object]) -> int:
    """The Python lines ``work()`` executes, after a first run outside the count (caches: the schema, its validators)."""
    work()
    lines = 0

    def local(frame: FrameType, event: str, arg: Any) -> TraceFunction:
        nonlocal lines
        lines += event == "line"
        return local

    def called(frame: FrameType, event: str, arg: Any) -> TraceFunction | None:
        return local if event == "call" else None

    previous = sys.gettrace()
    sys.settrace(called)
    try:
        work()
    finally:
        sys.settrace(previous)
    return lines


@pytest.mark.parametrize("reading", ["exact", "fast"])
@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_validation_work_grows_linearly_with_the_file(write_config: WriteConfig, monkeypatch: pytest.MonkeyPatch, shape: str, reading: str) -> None:
    """Four times the file is four times the work, not sixteen (the merge of collections was quadratic once).

    Counted, not timed: bench/config_load.py measures the time (bench/RESULTS.md records it).  Both
    readings: the exact one (PyYAML, every file below fastload's threshold, and any file with an issue)
    and the fast one (its native parts, rapidyaml and json, are not counted here; the bench shows them linear).
    """
    monkeypatch.setattr("searchd.config.build.FAST_MIN_BYTES", 0 if reading == "fast" else 1 << 62)
    small, large = (write_config(SHAPES[shape](n), f"{shape.replace(' ', '-')}-{n}.yaml") for n in (50, 200))
    assert large.stat().st_size > 3.5 * small.stat().st_size
    counted = {path: validation_work(path) for path in (small, large)}
    ratio = counted[large] / counted[small]
    # A long string is one value whatever its length; every other shape runs lines per value (read exactly;
    # read fast, a list of stopwords is made in C and costs no line per item).
    per_value = shape != "description" and not (reading == "fast" and shape == "stopwords")
    assert (2 if per_value else 1) <= ratio <= 4.2, f"{shape}: {counted[small]} lines run for {small.stat().st_size:,} bytes, {counted[large]} for {large.stat().st_size:,}"


@pytest.mark.parametrize("shape", ["collections", "distinct"])
def test_a_reloads_work_grows_linearly_with_the_file(write_config: WriteConfig, monkeypatch: pytest.MonkeyPatch, shape: str) -> None:
    """What a reload does with a loaded spec grows linearly too: its revision, the plan against the applied spec
    (it looked each collection up by a scan, quadratic), and the catalog compiled from it."""
    monkeypatch.setattr("searchd.config.build.FAST_MIN_BYTES", 0)
    registry = default_registry()
    counted = {}
    for n in (50, 200):
        path = write_config(SHAPES[shape](n), f"{shape}-{n}.yaml")
        applied = redacted(load_spec(path, registry, environ={}))

        def reload(path: Path = path, applied: Spec = applied) -> None:
            spec = load_spec(path, registry, environ={})  # a new spec: its revision is taken again
            revision(spec)
            assert classify(applied, redacted(spec)).empty
            compile_catalog(spec, registry)

        counted[n] = counted_lines(reload)
    assert 2 <= counted[200] / counted[50] <= 4.2, counted


@pytest.mark.parametrize("shape", ["collections", "distinct"])
def test_the_revision_is_the_hash_of_the_specs_canonical_json(write_config: WriteConfig, monkeypatch: pytest.MonkeyPatch, shape: str) -> None:
    """Stored revisions were taken as sha256(json.dumps(canonical(redacted(spec)), sort_keys=True)): the faster ways
    (shared parts written once; orjson and json) give that very hash, or a stored revision would no longer match."""
    monkeypatch.setattr("searchd.config.build.FAST_MIN_BYTES", 0)  # read fast: a repeating list is folded, its parts shared
    spec = load_spec(write_config(SHAPES[shape](60)), default_registry(), environ={})
    if shape == "collections":
        assert len({id(c.properties) for c in spec.collections}) == 1
    canonical_json = json.dumps(canonical(redacted(spec)), sort_keys=True)
    assert revision(spec) == content_revision(spec) == hashlib.sha256(canonical_json.encode()).hexdigest()[:12]
