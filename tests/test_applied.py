"""The applied spec, stored behind storage/ as versioned JSON: saved without secrets, read back into the same
frozen dataclasses; the pickles older data directories hold are refused, and converted by scripts/convert_applied_pickle.py."""

from __future__ import annotations

import copyreg
import dataclasses
import enum
import io
import json
import logging
import pickle
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from types import MappingProxyType, UnionType
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scripts import convert_applied_pickle as converter
from searchd.config import load_spec
from searchd.config.revision import revision
from searchd.config.spec import (
    ApiKeySpec,
    AuthSpec,
    CollectionSpec,
    ConnectionsSpec,
    Distance,
    GrpcSpec,
    IndexSpec,
    InvertedIndexSpec,
    LimitsSpec,
    NamedVectorSpec,
    PropertySpec,
    PropertyType,
    RateLimitSpec,
    RateSpec,
    ReloadSpec,
    Role,
    ServerSpec,
    Spec,
    StorageBackend,
    StorageSpec,
    Tokenization,
    VectorizerSpec,
)
from searchd.errors import StorageError
from searchd.modules import default_registry
from searchd.storage import applied as applied_module
from searchd.storage.applied import APPLIED_DIR, FORMAT, Applied, from_data, load_applied, save_applied, to_data
from tests.conftest import EXAMPLES, QUICKSTART

EXAMPLE_CONFIGS = sorted(p for p in EXAMPLES.iterdir() if p.is_dir())
# What examples/replicas reads from the environment (the deployment files set it).
EXAMPLE_ENV = {"DATABASE_URL": "postgresql://searchd@db:5432/searchd", "SEARCHD_ADMIN_KEY": "admin-key-0123456789"}


def quickstart() -> Spec:
    return load_spec(QUICKSTART, default_registry(), environ={})


def files(data_dir: Path) -> list[str]:
    return sorted(p.name for p in (data_dir / APPLIED_DIR).iterdir())


def stored(data_dir: Path) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((data_dir / APPLIED_DIR / "spec.json").read_text())
    return document


def rewrite(data_dir: Path, change: Callable[[dict[str, Any]], object]) -> None:
    document = stored(data_dir)
    change(document)
    (data_dir / APPLIED_DIR / "spec.json").write_text(json.dumps(document))


# -- a spec built in the test, with every field of every dataclass away from its default ----------

EVERYTHING = Spec(
    server=ServerSpec(
        host="0.0.0.0",
        port=18080,
        data_dir="/var/lib/searchd",
        storage=StorageSpec(StorageBackend.POSTGRES, "postgresql://searchd:secret@db:5432/searchd", 2.5, 120.0),
        limits=LimitsSpec(
            max_body_bytes=1, query_limit_default=2, query_limit_max=3, max_batch_objects=4, max_query_depth=5,
            max_query_tokens=6, max_query_cost=7, max_response_bytes=13, max_searches_per_query=8, max_filter_operands=9, max_filter_depth=12,
            max_concurrent_queries=11, queue_timeout=1.5, query_timeout=2.5,
            rate_limit=RateLimitSpec(0.5, 3, MappingProxyType({"bulk": RateSpec(100, 200)})),
        ),
        connections=ConnectionsSpec(max_connections=6, idle_timeout=7.5, header_timeout=8.5, body_timeout=9.5),
        reload=ReloadSpec(watch=False, allow_destructive=True),
        auth=AuthSpec((ApiKeySpec("deploy", "key-admin-0123456789", Role.ADMIN), ApiKeySpec("web", "key-read-0123456789"))),
        grpc=GrpcSpec(enabled=False, port=50052),
    ),
    modules=MappingProxyType(
        {
            "text2vec-jinaai": MappingProxyType({"apiKey": "sk-secret", "timeoutSeconds": 30, "ratio": 0.5, "on": True, "none": None}),
            "multi2vec-nvidia": MappingProxyType({"headers": {"X-A": ["1", "2"], "nested": {"deep": [1, 2.5, None]}}}),
            "text2vec-hash": MappingProxyType({}),
        }
    ),
    collections=(
        CollectionSpec(
            name="Article",
            description='Ärticles, ünicode and "quotes"',
            properties=(
                PropertySpec("title", PropertyType.TEXT, "Headline", Tokenization.TRIGRAM, index_searchable=False, index_filterable=False),
                PropertySpec("tags", PropertyType.TEXT_ARRAY, tokenization=Tokenization.FIELD),
                PropertySpec("photo", PropertyType.BLOB),
                PropertySpec("when", PropertyType.DATE),
            ),
            vectors=(
                NamedVectorSpec(
                    "clip",
                    VectorizerSpec(
                        module="multi2vec-jinaai",
                        model="jina-clip-v2",
                        dimensions=768,
                        text_fields=("title",),
                        image_fields=("photo",),
                        weights=MappingProxyType({"title": 1, "photo": 2.5}),  # an int stays an int
                        late_chunking=True,
                        truncate="END",
                        base_url="http://127.0.0.1:9000",
                    ),
                    IndexSpec(
                        type="annoy",
                        distance=Distance.L2_SQUARED,
                        max_connections=8,
                        ef_construction=64,
                        ef=32,
                        trees=7,
                        search_k=99,
                        merge_threshold=10,
                        candidates=3,
                        multivector=True,  # read by pgvector only, but the applied spec keeps every field
                    ),
                    default=True,
                ),
                NamedVectorSpec("own", VectorizerSpec(module="none", text_fields=()), IndexSpec(type="flat", distance=Distance.HAMMING)),
            ),
            inverted_index=InvertedIndexSpec(
                k1=1.5, b=0.25, stopword_preset="none", stopword_additions=("foo",), stopword_removals=("a", "the")
            ),
        ),
        CollectionSpec("Empty"),
    ),
    base_dir="/etc/searchd",
)


def all_dataclasses(value: Any) -> list[Any]:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return [value, *(d for f in dataclasses.fields(value) for d in all_dataclasses(getattr(value, f.name)))]
    if isinstance(value, (tuple, list)):
        return [d for v in value for d in all_dataclasses(v)]
    return []


def test_the_spec_built_here_sets_every_field_away_from_its_default() -> None:
    """So a field added to the spec later is covered here once it is set above (and this test says which one is not)."""
    unset = {
        f"{type(d).__name__}.{f.name}"
        for d in all_dataclasses(EVERYTHING)
        for f in dataclasses.fields(d)
        if f.default is not dataclasses.MISSING
        and not any(getattr(other, f.name) != f.default for other in all_dataclasses(EVERYTHING) if type(other) is type(d))
    }
    assert not unset, f"set these in EVERYTHING: {sorted(unset)}"


# -- round trips ----------------------------------------------------------------------------------


def same_objects(a: Any, b: Any, where: str = "spec") -> None:
    """Equal, and of the same types all the way down: tuples stay tuples, read-only mappings stay read-only."""
    assert type(a) is type(b), f"{where}: {type(a).__name__} != {type(b).__name__}"
    if dataclasses.is_dataclass(a):
        for f in dataclasses.fields(a):
            same_objects(getattr(a, f.name), getattr(b, f.name), f"{where}.{f.name}")
    elif isinstance(a, (tuple, list)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            same_objects(x, y, f"{where}[{i}]")
    elif isinstance(a, Mapping):
        assert list(a) == list(b), where
        for k in a:
            same_objects(a[k], b[k], f"{where}[{k!r}]")
    else:
        assert a == b, where


def test_the_applied_spec_round_trips_redacted(tmp_path: Path) -> None:
    spec = quickstart()
    assert load_applied(tmp_path) is None
    saved = save_applied(tmp_path, spec)
    loaded = load_applied(tmp_path)
    assert saved.revision == revision(spec) and loaded == saved
    assert loaded is not None
    same_objects(loaded, saved)
    assert files(tmp_path) == ["spec.json", "status.json"]
    document = stored(tmp_path)
    assert list(document) == ["format", "revision", "appliedAt", "spec"]
    assert (document["format"], document["revision"], document["appliedAt"]) == (FORMAT, saved.revision, saved.applied_at)
    article = document["spec"]["collections"][0]
    assert article["name"] == "Article" and article["properties"][0]["type"] == "TEXT"  # plain JSON: enums by value


@pytest.mark.parametrize("config", EXAMPLE_CONFIGS, ids=[p.name for p in EXAMPLE_CONFIGS])
def test_every_example_config_round_trips(config: Path, tmp_path: Path) -> None:
    spec = load_spec(config, default_registry(), environ=EXAMPLE_ENV)
    same_objects(from_data(json.loads(json.dumps(to_data(spec)))), spec)  # as configured, secrets and all
    saved = save_applied(tmp_path, spec)
    loaded = load_applied(tmp_path)
    assert loaded == saved
    same_objects(loaded, saved)


def test_the_examples_are_all_here() -> None:
    assert {p.name for p in EXAMPLE_CONFIGS} >= {"quickstart", "multimodal", "providers", "late-interaction"}


def test_a_spec_built_in_the_test_round_trips_without_secrets(tmp_path: Path) -> None:
    same_objects(from_data(json.loads(json.dumps(to_data(EVERYTHING)))), EVERYTHING)
    saved = save_applied(tmp_path, EVERYTHING)
    loaded = load_applied(tmp_path)
    assert loaded == saved
    same_objects(loaded, saved)
    on_disk = "".join(p.read_text() for p in (tmp_path / APPLIED_DIR).iterdir())
    for secret in ("sk-secret", "key-admin-0123456789", "key-read-0123456789"):
        assert secret not in on_disk


def values(hint: Any) -> st.SearchStrategy[Any]:
    """Any value of a type hint, built from the hints (independently of the code under test)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=4)
        return st.recursive(
            scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3), max_leaves=6
        )
    if hint is type(None):
        return st.none()
    if origin in (typing.Union, UnionType):
        return st.one_of(*(values(a) for a in args))
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        hints = typing.get_type_hints(hint)
        return st.builds(hint, **{f.name: values(hints[f.name]) for f in dataclasses.fields(hint)})
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return st.sampled_from(list(hint))
    if origin is tuple:
        return st.lists(values(args[0]), max_size=3).map(tuple)
    if origin is Mapping:
        return st.dictionaries(st.text(max_size=4), values(args[1]), max_size=3).map(MappingProxyType)
    return {str: st.text(max_size=6), int: st.integers(), float: st.floats(allow_nan=False) | st.integers(), bool: st.booleans()}[hint]


@settings(max_examples=60, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
@given(values(Spec))
def test_any_spec_round_trips(spec: Spec) -> None:
    same_objects(from_data(json.loads(json.dumps(to_data(spec)))), spec)


def test_a_field_missing_from_the_file_takes_its_default(tmp_path: Path) -> None:
    """What a file written before a field was added reads as."""
    saved = save_applied(tmp_path, quickstart())
    rewrite(tmp_path, lambda d: d["spec"]["collections"][0]["properties"][0].pop("tokenization"))
    assert load_applied(tmp_path) == saved


# -- files that cannot be read: a StorageError naming the file --------------------------------------

BROKEN: dict[str, tuple[Callable[[Path], object], str]] = {
    "not JSON": (lambda p: p.write_bytes(b"\x80\x04\x95 a pickle?"), "is not readable JSON"),
    "truncated": (lambda p: p.write_text(p.read_text()[:100]), "is not readable JSON"),
    "not an object": (lambda p: p.write_text("[1, 2]"), "it has no format version"),
    "no format": (
        lambda p: p.write_text(json.dumps({k: v for k, v in json.loads(p.read_text()).items() if k != "format"})),
        "no format version",
    ),
    "a newer format": (
        lambda p: p.write_text(json.dumps({**json.loads(p.read_text()), "format": 2})),
        "is in format 2; this searchd reads format 1",
    ),
    "a format as text": (lambda p: p.write_text(json.dumps({**json.loads(p.read_text()), "format": "1"})), "is in format '1'"),
}


def breaks(change: Callable[[dict[str, Any]], object]) -> Callable[[Path], object]:
    def apply(path: Path) -> None:
        document = json.loads(path.read_text())
        change(document)
        path.write_text(json.dumps(document))

    return apply


BROKEN.update(
    {
        "an unknown enum value": (
            breaks(lambda d: d["spec"]["collections"][0]["properties"][0].update(type="TEXTY")),
            "spec.collections[0].properties[0].type: 'TEXTY' is not a PropertyType",
        ),
        "a wrong type": (breaks(lambda d: d["spec"]["server"].update(port="8080")), "spec.server.port: str '8080' where int is expected"),
        "a bool for an int": (breaks(lambda d: d["spec"]["server"].update(port=True)), "spec.server.port: bool True"),
        "an unknown field": (breaks(lambda d: d["spec"]["server"].update(tls=True)), "spec.server: ServerSpec has no field(s) 'tls'"),
        "a required field missing": (breaks(lambda d: d["spec"]["collections"][0].pop("name")), "CollectionSpec field(s) 'name' missing"),
        "no revision": (breaks(lambda d: d.pop("revision")), "revision: null"),
        "an unknown top-level key": (breaks(lambda d: d.update(extra=1)), "unknown key(s) 'extra'"),
    }
)


@pytest.mark.parametrize("name", list(BROKEN))
def test_an_unreadable_applied_spec_is_a_storage_error_naming_the_file(name: str, tmp_path: Path) -> None:
    save_applied(tmp_path, quickstart())
    path = tmp_path / APPLIED_DIR / "spec.json"
    damage, expected = BROKEN[name]
    damage(path)
    with pytest.raises(StorageError) as raised:
        load_applied(tmp_path)
    assert str(path) in str(raised.value) and expected in str(raised.value), str(raised.value)


# -- data directories from before format 1: the pickle, refused, and converted by the script -----


def old_pickle(applied: Applied, protocol: int = 0) -> bytes:
    """What ``save_applied`` wrote before format 1: the spec's read-only mappings as ``readonly(contents)``, a function
    the old code defined in its applied module (put back there, for the pickler, while it writes)."""

    def readonly(contents: dict[Any, Any]) -> Mapping[Any, Any]:
        return MappingProxyType(contents)

    readonly.__module__, readonly.__qualname__ = "searchd.storage.applied", "readonly"
    out = io.BytesIO()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(applied_module, "readonly", readonly, raising=False)
        pickler = pickle.Pickler(out, protocol)
        pickler.dispatch_table = {**copyreg.dispatch_table, MappingProxyType: lambda m: (readonly, (dict(m),))}
        pickler.dump(applied)
    return out.getvalue()


def old_data_dir(data_dir: Path, pickled: bytes) -> None:
    """A data directory as the old code left it: spec.pickle and status.json, no spec.json."""
    (data_dir / APPLIED_DIR / "spec.json").unlink()
    (data_dir / APPLIED_DIR / "spec.pickle").write_bytes(pickled)
    assert files(data_dir) == ["spec.pickle", "status.json"]


def test_searchd_refuses_an_old_pickle_and_names_the_converter(tmp_path: Path) -> None:
    saved = save_applied(tmp_path, quickstart())
    old_data_dir(tmp_path, old_pickle(saved))
    with pytest.raises(StorageError) as raised:
        load_applied(tmp_path)
    assert "spec.pickle" in raised.value.problem and "no longer reads" in raised.value.problem
    assert f"python -m scripts.convert_applied_pickle {tmp_path}" in str(raised.value.hint)
    assert files(tmp_path) == ["spec.pickle", "status.json"]  # left as it was


@pytest.mark.parametrize("protocol", [0, pickle.DEFAULT_PROTOCOL])
@pytest.mark.parametrize("spec", [quickstart(), EVERYTHING], ids=["quickstart", "everything"])
def test_an_old_pickle_is_converted_once(spec: Spec, protocol: int, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    saved = save_applied(tmp_path, spec)
    pickled = old_pickle(saved, protocol)
    assert b"searchd.storage.applied" in pickled and b"scripts" not in pickled  # what the old code wrote
    old_data_dir(tmp_path, pickled)
    with caplog.at_level(logging.INFO, logger="searchd.storage"):
        assert converter.main([str(tmp_path)]) == 0
    assert files(tmp_path) == ["spec.json", "status.json"]
    assert stored(tmp_path)["format"] == FORMAT
    assert any("converted the applied spec" in r.getMessage() and "spec.pickle" in r.getMessage() for r in caplog.records), caplog.text
    again = load_applied(tmp_path)  # from the JSON now
    assert again == saved
    assert again is not None
    same_objects(again, saved)


def test_an_applied_spec_saved_before_it_moved_to_storage_converts(tmp_path: Path) -> None:
    """Data directories written when the applied spec lived in searchd.reload.applied name that module in their pickle."""
    saved = save_applied(tmp_path, quickstart())
    old = old_pickle(saved).replace(b"csearchd.storage.applied\n", b"csearchd.reload.applied\n")
    assert b"searchd.storage" not in old and b"searchd.reload.applied" in old
    old_data_dir(tmp_path, old)
    assert converter.convert(tmp_path) == saved
    assert files(tmp_path) == ["spec.json", "status.json"]
    assert load_applied(tmp_path) == saved


def test_a_pickle_beside_the_json_is_refused_and_converted(tmp_path: Path) -> None:
    """An older searchd run on the directory since the JSON was written: the pickle is the newer."""
    first = save_applied(tmp_path, quickstart())
    newer = Applied(first.spec, "newer", first.applied_at + 1)
    (tmp_path / APPLIED_DIR / "spec.pickle").write_bytes(old_pickle(newer))
    with pytest.raises(StorageError, match="no longer reads"):
        load_applied(tmp_path)
    assert converter.convert(tmp_path) == newer
    assert files(tmp_path) == ["spec.json", "status.json"] and stored(tmp_path)["revision"] == "newer"


def test_saving_removes_an_old_pickle(tmp_path: Path) -> None:
    first = save_applied(tmp_path, quickstart())
    (tmp_path / APPLIED_DIR / "spec.pickle").write_bytes(old_pickle(first))
    second = save_applied(tmp_path, EVERYTHING)
    assert files(tmp_path) == ["spec.json", "status.json"] and load_applied(tmp_path) == second


def test_a_pickle_that_cannot_be_written_as_json_is_left_as_it_was(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    saved = save_applied(tmp_path, quickstart())
    old_data_dir(tmp_path, old_pickle(saved))

    def read_only(path: Path, data: bytes) -> None:
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(applied_module, "_write_atomically", read_only)
    with pytest.raises(StorageError, match="could not write the converted applied spec"):
        converter.convert(tmp_path)
    assert files(tmp_path) == ["spec.pickle", "status.json"]


@pytest.mark.parametrize(
    "content, expected",
    [
        (b"\x80\x04\x95garbage", "cannot be read"),
        (b"", "cannot be read"),
        (pickle.dumps({"not": "applied"}), "holds a dict, not an applied spec"),
        (pickle.dumps(logging.getLogger), "which an applied spec never holds"),
    ],
    ids=["garbage", "empty", "another object", "another module"],
)
def test_an_unreadable_pickle_is_a_storage_error_naming_the_file(content: bytes, expected: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    save_applied(tmp_path, quickstart())
    old_data_dir(tmp_path, content)
    with pytest.raises(StorageError) as raised:
        converter.convert(tmp_path)
    assert str(tmp_path / APPLIED_DIR / "spec.pickle") in str(raised.value) and expected in str(raised.value), str(raised.value)
    assert files(tmp_path) == ["spec.pickle", "status.json"]  # left as it was
    assert converter.main([str(tmp_path)]) == 1 and expected in capsys.readouterr().err
