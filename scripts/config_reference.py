"""Write docs/config.md, the config reference, from the JSON Schema (schemas/searchd.schema.json).

    python scripts/config_reference.py          # rewrite docs/config.md
    python scripts/config_reference.py --check  # exit 1 when docs/config.md is not what the schema gives

Each key's type, default, allowed values, reload class and example come from the schema: the standard
``default`` and ``examples`` keywords, and ``x-reload`` (what changing the key does to a running server,
checked against the planner by tests/test_config_reference.py).  tests/test_config_reference.py also fails
when the committed file and this output disagree.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = ROOT / "schemas" / "searchd.schema.json"
OUTPUT = ROOT / "docs" / "config.md"

RELOAD_CLASSES = {
    "in place": "applied while serving, nothing is rebuilt from scratch (a BM25 or index rebuild may run in the background)",
    "re-vectorize": "applied while serving: the vectors (or the vector index) are rebuilt in the background from the stored objects, "
    "through the embedding cache, while the old ones keep serving",
    "destructive": "drops stored data: refused unless `server.reload.allowDestructive: true` or `searchd apply --allow-destructive`",
    "restart": "bound when the server starts: `searchd plan` reports it, and it takes effect at the next start",
}
PLACEHOLDERS = {"collections[]": "collections", "vectors.<name>": "text", "apiKeys[]": "apiKeys"}

HEADER = """\
# Config reference

<!-- Generated from schemas/searchd.schema.json by `python scripts/config_reference.py`: edit the schema, not this file.
     tests/test_config_reference.py fails when the two disagree. -->

Every key of a searchd config (`searchd.yaml`, or every YAML file of a config directory), with its type, default,
allowed values, what changing it does to a running server, and an example. The JSON Schema
[`schemas/searchd.schema.json`](../schemas/searchd.schema.json) is the normative definition; `searchd validate CONFIG`
checks a config against it and against the rules a schema cannot express (a textField must be a TEXT property,
dimensions within the model's range, …). Secrets are written as `${VAR}` and read from the environment.

**On change** says what a reload (file watcher, `SIGHUP`, `POST /v1/config/reload`, or `searchd apply`) does
when the key's value changes (`searchd plan` shows the same classes before you apply):

"""


def _resolve(schema: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    """A node with its $ref followed; the referring node's own keywords (description, x-reload) win."""
    ref = node.get("$ref")
    if not ref:
        return node
    target: Any = schema
    for part in ref.removeprefix("#/").split("/"):
        target = target[part]
    return {**_resolve(schema, target), **{k: v for k, v in node.items() if k != "$ref"}}


def _children(schema: dict[str, Any], node: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(path suffix, child) for each key under an object node; array items and free-named maps get a placeholder."""
    for key, child in node.get("properties", {}).items():
        yield f".{key}", _resolve(schema, child)
    if node.get("type") == "array" and isinstance(node.get("items"), dict):
        items = _resolve(schema, node["items"])
        for key, child in items.get("properties", {}).items():
            yield f"[].{key}", _resolve(schema, child)
    extra = node.get("additionalProperties")
    if isinstance(extra, dict) and "propertyNames" in node:  # a map keyed by the user's names (named vectors)
        named = _resolve(schema, extra)
        for key, child in named.get("properties", {}).items():
            yield f".<name>.{key}", _resolve(schema, child)


def keys(schema: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every key of the config as (path, schema node), depth first in schema order."""

    def walk(path: str, node: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
        yield path, node
        for suffix, child in _children(schema, node):
            yield from walk(path + suffix, child)

    for key, child in schema["properties"].items():
        yield from walk(key, _resolve(schema, child))


def _type(node: dict[str, Any]) -> str:
    if "enum" in node:
        return "string" if all(isinstance(v, str) for v in node["enum"]) else "enum"
    kind = node.get("type", "object")
    if kind == "array":
        items = node.get("items", {})
        return f"list of {items.get('type', 'object')}" if "$ref" not in items else "list of objects"
    if kind == "object" and isinstance(node.get("additionalProperties"), dict):
        return f"map of name → {node['additionalProperties'].get('type', 'object')}"
    return str(kind)


def _allowed(node: dict[str, Any]) -> str:
    if "enum" in node:
        return ", ".join(f"`{v}`" for v in node["enum"])
    low = node.get("minimum", node.get("exclusiveMinimum"))
    high = node.get("maximum")
    parts = []
    if low is not None or high is not None:
        above = f"> {low}" if "exclusiveMinimum" in node else f"{low}" if low is not None else ""
        parts.append(f"{above}..{high}" if high is not None and low is not None else f"≥ {low}" if "exclusiveMinimum" not in node and low is not None else above or f"≤ {high}")
    if "pattern" in node:
        parts.append(f"matches `{node['pattern']}`")
    if node.get("minLength"):
        parts.append(f"at least {node['minLength']} characters" if node["minLength"] > 1 else "not empty")
    if node.get("uniqueItems"):
        parts.append("no repeats")
    items = node.get("items")
    if isinstance(items, dict) and "enum" in items:
        parts.append("each one of " + ", ".join(f"`{v}`" for v in items["enum"]))
    return "; ".join(parts) or "any"


def _flow(value: Any) -> str:
    return yaml.safe_dump(value, default_flow_style=True, width=10_000, sort_keys=False).strip().removesuffix("\n...").strip()


def _leaf_value(node: dict[str, Any]) -> Any:
    """The schema's own example, else the default or the first allowed value."""
    if "examples" in node:
        return node["examples"][0]
    if "default" in node:
        return node["default"]
    return node["enum"][0] if "enum" in node else None


def _value(schema: dict[str, Any], node: dict[str, Any]) -> Any:
    """An example value; a section's is made of its own keys' examples (not of its sub-sections')."""
    if (leaf := _leaf_value(node)) is not None:
        return leaf
    parts = {suffix.removeprefix("[]").removeprefix(".<name>").lstrip("."): child for suffix, child in _children(schema, node)}
    value = {key: v for key, child in parts.items() if "." not in key and (v := _leaf_value(child)) is not None}
    if not value:
        return None
    if node.get("type") == "array":
        return [value]
    return {"text": value} if "propertyNames" in node else value


def _example(schema: dict[str, Any], path: str, node: dict[str, Any]) -> str | None:
    value = _value(schema, node)
    if value is None:
        return None
    # The key in place: collections[].vectors.<name>.index.type -> {collections: [{vectors: {text: {index: {type: hnsw}}}}]}
    segments = path.replace("[]", ".[]").replace("<name>", "text").split(".")
    for segment in reversed(segments):
        value = [value] if segment == "[]" else {segment: value}
    return _flow(value).removeprefix("{").removesuffix("}")


def _reload(node: dict[str, Any]) -> str:
    change = node.get("x-reload")
    if change is None:
        return "see its keys"
    text = f"{change}"
    if "x-reload-remove" in node:
        text = f"adding one: {change}; removing one: {node['x-reload-remove']}"
    if "x-reload-own-vectors" in node:
        text += f" ({node['x-reload-own-vectors']} for a vector with `module: none`: stored vectors cannot be re-embedded)"
    return text


def _default(node: dict[str, Any]) -> str:
    return f"`{_flow(node['default'])}`" if "default" in node else "—"


def _section(schema: dict[str, Any], path: str, node: dict[str, Any], also: list[str] | None = None) -> list[str]:
    lines = [f"### `{path}`", ""]
    if also:
        lines += [f"For {', '.join(f'`{m}`' for m in also)}.", ""]
    lines += [node.get("description", "").strip(), ""]
    lines += ["| type | default | allowed | on change |", "|---|---|---|---|"]
    lines += [f"| {_type(node)} | {_default(node)} | {_allowed(node)} | {_reload(node)} |", ""]
    example = _example(schema, path, node)
    if example is not None:
        lines += ["```yaml", example, "```", ""]
    return lines


def _module_groups(schema: dict[str, Any]) -> list[tuple[list[str], dict[str, Any]]]:
    """Modules whose settings are described alike, documented once per group."""
    groups: dict[str, tuple[list[str], dict[str, Any]]] = {}
    for name, node in schema["properties"]["modules"]["properties"].items():
        shape = json.dumps(node.get("properties", {}), sort_keys=True)
        groups.setdefault(shape, ([], node))[0].append(name)
    return list(groups.values())


def render(schema: dict[str, Any]) -> str:
    lines = HEADER.splitlines()
    lines += [f"- **{name}**: {meaning}." for name, meaning in RELOAD_CLASSES.items()]
    lines += ["", "## Contents", ""]
    tops = list(schema["properties"])
    lines += [f"- [`{top}`](#{top})" for top in tops]
    lines.append("")
    for top in tops:
        lines += [f"## {top}", ""]
        if top == "modules":
            modules = _resolve(schema, schema["properties"]["modules"])
            lines += _section(schema, "modules", modules)
            for names, node in _module_groups(schema):
                if not node.get("properties"):
                    lines += [f"`{'`, `'.join(names)}` take no settings (`{{}}` just lists the module in `/v1/meta`).", ""]
                    continue
                for key, child in node["properties"].items():
                    lines += _section(schema, f"modules.{names[0]}.{key}", child, also=names)
            continue
        for path, node in keys(schema):
            if path == top or path.startswith((f"{top}.", f"{top}[")):
                lines += _section(schema, path, node)
    return "\n".join(lines).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if docs/config.md differs from what the schema gives")
    args = parser.parse_args(argv)
    text = render(json.loads(SCHEMA.read_text(encoding="utf-8")))
    if args.check:
        current = OUTPUT.read_text(encoding="utf-8") if OUTPUT.exists() else ""
        if current != text:
            print(f"{OUTPUT.relative_to(ROOT)} is out of date: run python scripts/config_reference.py", file=sys.stderr)
            return 1
        return 0
    OUTPUT.write_text(text, encoding="utf-8")
    print(f"wrote {OUTPUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
