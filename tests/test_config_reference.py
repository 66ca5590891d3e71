"""docs/config.md is what scripts/config_reference.py makes of the schema, and the schema's annotations are true.

- The committed reference equals the generator's output.
- Every ``default`` in the schema is what the code does when the key is left out.
- Every ``x-reload`` (and ``x-reload-remove``, ``x-reload-own-vectors``) is what the planner does when the key changes.
"""

from __future__ import annotations

import copy
import importlib.util
import json
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest

from searchd.config.spec import Spec, spec_from_data
from searchd.modules.jina import JINA
from searchd.modules.nvidia import NVIDIA
from searchd.modules.provider import ProviderSettings
from searchd.modules.weaviate_embed import TEXT_SERVICE
from searchd.reload import ChangeKind, classify
from tests.conftest import ROOT

SCHEMA = json.loads((ROOT / "schemas" / "searchd.schema.json").read_text(encoding="utf-8"))


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("config_reference", ROOT / "scripts" / "config_reference.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


GENERATOR = _generator()
KEYS: dict[str, dict[str, Any]] = dict(GENERATOR.keys(SCHEMA))


def test_docs_config_md_is_generated_from_the_schema() -> None:
    committed = (ROOT / "docs" / "config.md").read_text(encoding="utf-8")
    assert committed == GENERATOR.render(SCHEMA), "docs/config.md is out of date: run python scripts/config_reference.py"
    assert GENERATOR.main(["--check"]) == 0


def test_every_key_is_in_the_reference_with_its_facts() -> None:
    text = GENERATOR.render(SCHEMA)
    modules = set(SCHEMA["properties"]["modules"]["properties"])
    for path, node in KEYS.items():
        if path.startswith("modules.") and path.split(".")[1] in modules and path.count(".") == 1:
            continue  # a module's own section: its keys are documented per group of alike modules
        shown = path
        if path.startswith("modules.") and path.count(".") == 2:
            module, key = path.split(".")[1:]
            shown = next(f"modules.{names[0]}.{key}" for names, _ in GENERATOR._module_groups(SCHEMA) if module in names)
        assert f"### `{shown}`" in text, path
        assert node.get("description"), f"{path} has no description"
        if "default" in node:
            assert f"`{GENERATOR._flow(node['default'])}`" in text.split(f"### `{shown}`")[1].split("### ")[0], path


# -- defaults ---------------------------------------------------------------------------------------------

MINIMAL: dict[str, Any] = {
    "server": {"auth": {"apiKeys": [{"name": "reader", "key": "k" * 16}]}},
    "collections": [
        {
            "name": "Article",
            "properties": [{"name": "title", "type": "TEXT"}],
            "vectors": {"text": {"vectorizer": {"module": "text2vec-hash"}}},
        }
    ],
}
PROVIDERS = {"jinaai": JINA, "nvidia": NVIDIA, "weaviate": TEXT_SERVICE}


def _set(data: dict[str, Any], path: str, value: Any, vector: str = "text") -> None:
    """Set the key at a reference path (``collections[].vectors.<name>.index.type``) in the first collection / item."""
    parts = path.replace("[]", ".[]").replace("<name>", vector).split(".")
    node: Any = data
    for part, following in zip(parts, [*parts[1:], None]):
        if following is None:
            node[part] = value
        elif part == "[]":
            node = node[0]
        else:
            node = node.setdefault(part, [{}] if following == "[]" else {})


def _remove(data: dict[str, Any], path: str, vector: str = "text") -> None:
    parts = path.replace("[]", ".[]").replace("<name>", vector).split(".")
    node: Any = data
    for part in parts[:-1]:
        node = node[0] if part == "[]" else node[part]
    node.pop(parts[-1], None)


def _spec(data: dict[str, Any]) -> Spec:
    return spec_from_data(data, "/config")


@pytest.mark.parametrize("path", [p for p, n in KEYS.items() if "default" in n and not p.startswith("modules.")])
def test_a_schema_default_is_what_leaving_the_key_out_gives(path: str) -> None:
    explicit = copy.deepcopy(MINIMAL)
    _set(explicit, path, KEYS[path]["default"])
    assert _spec(explicit) == _spec(MINIMAL), f"{path}: the schema says {KEYS[path]['default']!r}, the code does otherwise"


@pytest.mark.parametrize("path", [p for p, n in KEYS.items() if "default" in n and p.startswith("modules.")])
def test_a_module_setting_default_is_the_clients(path: str) -> None:
    _, module, key = path.split(".")
    provider = PROVIDERS[module.rsplit("-", 1)[1]]
    assert ProviderSettings.from_config(provider, {key: KEYS[path]["default"]}, {}) == ProviderSettings.from_config(provider, {}, {}), path


# -- reload classes ---------------------------------------------------------------------------------------

# For each key: two values; the planner's class for a change from one to the other must be the schema's x-reload.
CHANGES: dict[str, tuple[Any, Any]] = {
    "server.host": ("127.0.0.1", "0.0.0.0"),
    "server.port": (8080, 9090),
    "server.dataDir": ("data", "data2"),
    "server.storage.backend": ("sqlite", "postgres"),
    "server.storage.url": ("postgresql://a/db", "postgresql://b/db"),
    "server.storage.heartbeatSeconds": (5, 1),
    "server.storage.replicaExpirySeconds": (600, 60),
    "server.limits.maxBodyBytes": (10485760, 2048),
    "server.limits.queryLimitDefault": (100, 10),
    "server.limits.queryLimitMax": (10000, 500),
    "server.limits.maxBatchObjects": (10000, 50),
    "server.limits.maxQueryDepth": (30, 10),
    "server.limits.maxQueryTokens": (20000, 500),
    "server.limits.maxQueryCost": (500000, 1000),
    "server.limits.maxResponseBytes": (268435456, 65536),
    "server.limits.maxSearchesPerQuery": (100, 5),
    "server.limits.maxFilterOperands": (2000, 50),
    "server.limits.maxFilterDepth": (10, 3),
    "server.limits.maxConcurrentQueries": (8, 2),
    "server.limits.queueTimeout": (10, 1),
    "server.limits.queryTimeout": (30, 5),
    "server.limits.rateLimit.requestsPerSecond": (10, 20),
    "server.limits.rateLimit.burst": (10, 20),
    "server.limits.rateLimit.keys": ({"ci": {"requestsPerSecond": 10}}, {"ci": {"requestsPerSecond": 10, "burst": 30}}),
    "server.connections.maxConnections": (100, 200),
    "server.connections.idleTimeout": (5, 30),
    "server.connections.headerTimeout": (10, 2),
    "server.connections.bodyTimeout": (60, 600),
    "server.grpc.enabled": (True, False),
    "server.grpc.port": (50051, 50052),
    "server.reload.watch": (True, False),
    "server.reload.allowDestructive": (False, True),
    "server.auth.apiKeys[].name": ("reader", "ci"),
    "server.auth.apiKeys[].key": ("k" * 16, "j" * 16),
    "server.auth.apiKeys[].role": ("read", "admin"),
    "collections[].name": ("Article", "Story"),
    "collections[].description": ("a", "b"),
    "collections[].properties[].name": ("title", "headline"),
    "collections[].properties[].type": ("TEXT", "INT"),
    "collections[].properties[].description": ("a", "b"),
    "collections[].properties[].tokenization": ("word", "field"),
    "collections[].properties[].indexSearchable": (True, False),
    "collections[].properties[].indexFilterable": (True, False),
    "collections[].vectors.<name>.default": (True, False),
    "collections[].vectors.<name>.vectorizer.module": ("text2vec-jinaai", "text2vec-hash"),
    "collections[].vectors.<name>.vectorizer.model": ("jina-embeddings-v3", "jina-embeddings-v4"),
    "collections[].vectors.<name>.vectorizer.dimensions": (256, 128),
    "collections[].vectors.<name>.vectorizer.textFields": (["title"], ["title", "body"]),
    "collections[].vectors.<name>.vectorizer.imageFields": (["image"], ["photo"]),
    "collections[].vectors.<name>.vectorizer.weights": ({"title": 1}, {"title": 2}),
    "collections[].vectors.<name>.vectorizer.lateChunking": (False, True),
    "collections[].vectors.<name>.vectorizer.truncate": ("END", "NONE"),
    "collections[].vectors.<name>.vectorizer.baseURL": ("http://a", "http://b"),
    "collections[].vectors.<name>.index.type": ("hnsw", "flat"),
    "collections[].vectors.<name>.index.distance": ("cosine", "dot"),
    "collections[].vectors.<name>.index.maxConnections": (16, 32),
    "collections[].vectors.<name>.index.efConstruction": (128, 256),
    "collections[].vectors.<name>.index.ef": (64, 200),
    "collections[].vectors.<name>.index.trees": (32, 64),
    "collections[].vectors.<name>.index.searchK": (0, 1000),
    "collections[].vectors.<name>.index.mergeThreshold": (5000, 1000),
    "collections[].vectors.<name>.index.candidates": (64, 128),
    "collections[].vectors.<name>.index.multivector": (False, True),
    "collections[].invertedIndex.bm25.k1": (1.2, 1.5),
    "collections[].invertedIndex.bm25.b": (0.75, 0.5),
    "collections[].invertedIndex.stopwords.preset": ("en", "none"),
    "collections[].invertedIndex.stopwords.additions": (["via"], ["via", "per"]),
    "collections[].invertedIndex.stopwords.removals": (["not"], []),
}
MODULE_VALUES = {"string": ("${A_KEY}", "${B_KEY}"), "integer": (2, 3), "number": (10, 20)}
BASE: dict[str, Any] = {
    "server": {"auth": {"apiKeys": [{"name": "reader", "key": "k" * 16}]}},
    "collections": [
        {
            "name": "Article",
            "properties": [{"name": "title", "type": "TEXT"}, {"name": "body", "type": "TEXT"}, {"name": "image", "type": "BLOB"}],
            "vectors": {
                "text": {"vectorizer": {"module": "text2vec-jinaai", "model": "jina-embeddings-v3", "dimensions": 256}},
                "own": {"vectorizer": {"module": "none", "dimensions": 4}},
            },
        }
    ],
}


def observed(before: dict[str, Any], after: dict[str, Any]) -> str:
    plan = classify(_spec(before), _spec(after))
    kinds = {c.kind for c in plan.changes}
    if plan.restart_required:
        return "restart"
    if ChangeKind.DESTRUCTIVE in kinds:
        return "destructive"
    if ChangeKind.REVECTORIZE in kinds:
        return "re-vectorize"
    return "in place" if kinds else "no change"


def leaves() -> Iterator[str]:
    for path, node in KEYS.items():
        if "x-reload" in node and not any(other.startswith((path + ".", path + "[")) for other in KEYS):
            yield path


def changed(path: str, vector: str = "text") -> tuple[dict[str, Any], dict[str, Any]]:
    if path.startswith("modules.") and KEYS[path].get("type") == "object":  # a module without settings: listing it or not
        listed = copy.deepcopy(BASE)
        listed["modules"] = {path.split(".")[1]: {}}
        return copy.deepcopy(BASE), listed
    if path.startswith("modules."):
        before, after = MODULE_VALUES[str(KEYS[path].get("type", "string"))]
        if path.endswith(("baseURL", "clusterUrl")):
            before, after = "http://a", "http://b"
    else:
        before, after = CHANGES[path]
    old, new = copy.deepcopy(BASE), copy.deepcopy(BASE)
    _set(old, path, before, vector)
    _set(new, path, after, vector)
    return old, new


@pytest.mark.parametrize("path", list(leaves()))
def test_x_reload_is_what_the_planner_does(path: str) -> None:
    node = KEYS[path]
    assert observed(*changed(path)) == node["x-reload"], path
    if "x-reload-own-vectors" in node:
        assert observed(*changed(path, vector="own")) == node["x-reload-own-vectors"], path


def test_every_changeable_key_has_a_reload_class_and_a_change_to_check_it() -> None:
    for path, node in KEYS.items():
        assert "x-reload" in node or any(other.startswith((path + ".", path + "[")) for other in KEYS if "x-reload" in KEYS[other]), path
    assert {p for p in leaves() if not p.startswith("modules.")} == set(CHANGES)


@pytest.mark.parametrize("path", [p for p, n in KEYS.items() if "x-reload-remove" in n])
def test_adding_and_removing_an_entry(path: str) -> None:
    node = KEYS[path]
    base = copy.deepcopy(BASE)
    bigger = copy.deepcopy(BASE)
    if path == "collections":
        bigger["collections"].append({"name": "Note", "properties": [{"name": "text", "type": "TEXT"}]})
    elif path == "collections[].properties":
        bigger["collections"][0]["properties"].append({"name": "year", "type": "INT"})
    else:
        bigger["collections"][0]["vectors"]["extra"] = {"vectorizer": {"module": "none", "dimensions": 2}}
    assert observed(base, bigger) == node["x-reload"], path
    assert observed(bigger, base) == node["x-reload-remove"], path


def test_a_section_s_class_is_its_keys() -> None:
    """A section annotated as a whole (server.limits, modules.x) says what each of its keys says."""
    for path, node in KEYS.items():
        inner = [KEYS[p]["x-reload"] for p in leaves() if p.startswith((path + ".", path + "["))]
        if "x-reload" in node and inner and "x-reload-remove" not in node:
            assert set(inner) == {node["x-reload"]}, path


def test_generated_examples_are_valid_yaml_of_the_keys_place() -> None:
    """Each example is a fragment of a config: it parses, and its innermost key is the documented one."""
    import yaml

    for path, node in KEYS.items():
        example = GENERATOR._example(SCHEMA, path, node)
        if example is None:
            continue
        parsed = yaml.safe_load("{" + example + "}")
        assert isinstance(parsed, dict) and list(parsed) == [path.split(".")[0].removesuffix("[]")], (path, example)
