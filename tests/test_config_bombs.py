"""Config files that pass the loader's node limits but would still cost the server (issue #13, the independent check):
a long string aliased many times, tags on collections, nesting that rapidyaml would complain of on stderr, and a
character YAML refuses (located, not `in "<unicode string>", position N`)."""

from __future__ import annotations

import pytest

from searchd.config import load_spec
from searchd.config.fastload import FAST_MIN_BYTES
from searchd.config.loader import parse_yaml
from searchd.config.yamlsafe import MAX_BYTES_ENV, YamlLimits
from searchd.modules import default_registry
from tests.test_config_loader import WriteConfig, issue_and_peak, only_issue, string_bomb

TEXT_HINT = (
    "aliases may copy in at most as much text as a config file may hold: write a long value once, "
    f"or raise the file size limit with --config-max-bytes or {MAX_BYTES_ENV}"
)


def test_a_string_aliased_a_thousand_times_is_refused_before_it_expands(write_config: WriteConfig) -> None:
    config = write_config(string_bomb(1000))  # 1 MB of file, 1 GB once expanded, 1,003 nodes
    issue, peak = issue_and_peak(config)
    # 8 copies are 8,000,000 characters, within 8 MiB; the 9th alias (line 4 + 9) crosses it.
    assert issue.render() == (
        f"{config}:13:45: <root>: aliases expand to more than 8,388,608 characters of text (alias *d alone copies 1,000,000) ({TEXT_HINT})"
    )
    assert peak < 64 * 1024 * 1024, f"refusing the string bomb peaked at {peak:,} bytes"


def test_the_text_limit_follows_the_file_size_limit(write_config: WriteConfig) -> None:
    config = write_config(string_bomb(3))
    spec = load_spec(config, default_registry(), environ={})  # 3 MB of copies: within the default 8 MiB
    assert [p.description for p in spec.collections[0].properties] == ["x" * 1_000_000] * 3
    size = config.stat().st_size
    issue = only_issue(config, {MAX_BYTES_ENV: str(size)})  # the file fits its limit; two copies of the string do not
    assert (issue.line, issue.column) == (6, 45), issue.render()
    assert issue.message == f"aliases expand to more than {size:,} characters of text (alias *d alone copies 1,000,000)"


def test_nested_anchors_count_their_text_expanded() -> None:
    # &b holds *a twice: 2 x 100 characters of values, plus its 2 one-character keys; &c holds *b three times.
    text = 'a: &a "' + "y" * 100 + '"\nb: &b {k: *a, l: *a}\nc: &c [*b, *b, *b]\nd: *c\n'
    limits = YamlLimits(max_alias_chars=2 * 100 + 3 * 202 + 606 - 1)  # *a twice, *b three times, *c (3 x 202) once: one short
    document, issues = parse_yaml(text, "f.yaml", {}, limits)
    assert document is None
    assert [i.render() for i in issues] == [
        f"f.yaml:4:4: <root>: aliases expand to more than 1,411 characters of text (alias *c alone copies 606) ({TEXT_HINT})"
    ]
    document, issues = parse_yaml(text, "f.yaml", {}, YamlLimits(max_alias_chars=1412))
    assert not issues and document is not None and document.data["d"] == [{"k": "y" * 100, "l": "y" * 100}] * 3


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            "collections: !foo\n  - name: Article\n    properties:\n      - {name: title, type: TEXT}\n",
            ":1:14: collections: cannot read this sequence: the tag !foo is not supported (remove the tag: a sequence takes none)",
            id="sequence",
        ),
        pytest.param(
            "server: !!python/object:os.system {host: 127.0.0.1}\ncollections:\n  - name: Article\n",
            ":1:9: server: cannot read this mapping: the tag tag:yaml.org,2002:python/object:os.system is not supported"
            " (remove the tag: a mapping takes none)",
            id="mapping",
        ),
        pytest.param(
            "collections:\n  - !!set\n    name: Article\n",
            ":2:5: collections[0]: cannot read this mapping: the tag tag:yaml.org,2002:set is not supported (remove the tag: a mapping takes none)",
            id="standard-but-not-a-plain-mapping",
        ),
    ],
)
def test_tags_on_collections_are_refused_where_they_stand(write_config: WriteConfig, text: str, expected: str) -> None:
    config = write_config(text)
    assert only_issue(config).render() == f"{config}{expected}"


def test_standard_collection_tags_are_plain_collections(write_config: WriteConfig) -> None:
    config = write_config("collections: !!seq\n  - !!map {name: Article, properties: ! [{name: title, type: TEXT}]}\n")
    spec = load_spec(config, default_registry(), environ={})
    assert [(c.name, [p.name for p in c.properties]) for c in spec.collections] == [("Article", ["title"])]


def padded(text: str) -> str:
    """``text`` with comment lines after it, to the size from which a file is first read fast (rapidyaml)."""
    return text + "# padding\n" * (FAST_MIN_BYTES // 10 + 1)


@pytest.mark.parametrize(
    ("text", "line", "column"),
    [
        # The checker's deep_block.yaml: 1,000 mappings, each a key deeper (a 1 MB file).
        pytest.param("".join("  " * i + f"k{i}:\n" for i in range(1000)) + "  " * 1000 + "end\n", 65, 129, id="block"),
        pytest.param(padded("- " * 100 + "x\n"), 1, 129, id="compact-sequences"),
        pytest.param(padded("a: " + "{b: " * 100 + "1" + "}" * 100 + "\n"), 1, 256, id="flow"),
    ],
)
def test_rapidyaml_says_nothing_on_stderr_of_a_file_nested_too_deep(
    write_config: WriteConfig, capfd: pytest.CaptureFixture[str], text: str, line: int, column: int
) -> None:
    config = write_config(text)
    assert config.stat().st_size >= FAST_MIN_BYTES  # a file the fast reading would take
    issue = only_issue(config)
    assert (issue.line, issue.column, issue.message) == (line, column, "nesting is deeper than 64 levels"), issue.render()
    out, err = capfd.readouterr()
    assert (out, err) == ("", "")


@pytest.mark.parametrize("character", ["\x00", "\x07", "\ufffe"])
def test_a_character_yaml_refuses_is_located(write_config: WriteConfig, character: str) -> None:
    config = write_config(f"collections:\n  - name: A{character}b\n")
    assert only_issue(config).render() == (
        f"{config}:2:12: <root>: malformed YAML: the non-printable character #x{ord(character):04x} is not allowed"
        ' (remove it, or write it escaped in a double-quoted string ("\\x07", "\\u0007"))'
    )
