"""Run the config stages in order and gather every issue: load → schema → merge → spec → semantics."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from searchd.config.capabilities import KnownModules
from searchd.config.loader import Locator, PathKey, SourceDocument, collector_paused, read_documents
from searchd.config.semantic import non_finite_issues, semantic_issues
from searchd.config.spec import Spec, spec_from_data
from searchd.config.validate import schema_issues
from searchd.errors import ConfigError, ConfigIssue


def _valid_parts(data: Any, bad_paths: list[PathKey]) -> dict[str, Any]:
    """The parts of a document that passed the schema, so they still get semantic checks.

    Invalid collections become None (indices stay stable, since positions are keyed by them).
    """
    if not isinstance(data, dict) or any(len(p) == 0 for p in bad_paths):
        return {}
    kept = {key: value for key, value in data.items() if not any(p == (key,) or (key != "collections" and p[0] == key) for p in bad_paths)}
    if isinstance(kept.get("collections"), list):
        bad = {p[1] for p in bad_paths if p[0] == "collections" and len(p) > 1}
        kept["collections"] = [None if i in bad else c for i, c in enumerate(kept["collections"])]
    return kept


def _merge(documents: list[tuple[SourceDocument, dict[str, Any]]], default_file: str) -> tuple[dict[str, Any], Locator, list[ConfigIssue]]:
    """Combine several files: collections are concatenated; server and each module are set in one file only."""
    merged: dict[str, Any] = {"modules": {}, "collections": []}
    locator = Locator(default_file=default_file)
    for document, data in documents:
        if "collections" in data and ("collections",) not in locator.positions:
            locator.positions[("collections",)] = document.locator.find(("collections",))
    issues: list[ConfigIssue] = []
    owners: dict[PathKey, str] = {}

    def take(document: SourceDocument, groups: dict[PathKey, list[PathKey]], path: PathKey, what: str) -> bool:
        if path in owners:
            issues.append(document.locator.issue(path, f"{what} is already set in {owners[path]}", "set it in one file only"))
            return False
        owners[path] = document.file
        positions = document.locator.positions
        locator.positions.update({p: positions[p] for p in groups.get(path, ())})
        return True

    for document, data in documents:
        # Positions grouped by their first step and first two steps, once: each part copies only its own (linear in the document).
        groups: dict[PathKey, list[PathKey]] = {}
        for p in document.locator.positions:
            groups.setdefault(p[:1], []).append(p)
            if len(p) > 1:
                groups.setdefault(p[:2], []).append(p)
        if "server" in data and take(document, groups, ("server",), "'server'"):
            merged["server"] = data["server"]
        for name, settings in data.get("modules", {}).items():
            if take(document, groups, ("modules", name), f"module '{name}'"):
                merged["modules"][name] = settings
        for index, collection in enumerate(data.get("collections", [])):
            if collection is None:
                continue
            new_index = len(merged["collections"])
            merged["collections"].append(collection)
            locator.aliases[("collections", new_index)] = ("collections", index)
            for path in groups.get(("collections", index), ()):
                locator.positions[("collections", new_index, *path[2:])] = document.locator.positions[path]
    return merged, locator, issues


def load_spec(path: str | Path, modules: KnownModules, environ: Mapping[str, str] | None = None) -> Spec:
    """Load, validate and check a config path; raise ConfigError listing every issue found.

    ``modules`` is the module registry (``searchd.modules.default_registry()``), handed in
    because config/ sits below modules/; ``environ`` fills ``${ENV}`` (default: os.environ).
    """
    with collector_paused():
        return _load_spec(Path(path), modules, environ)


def _load_spec(config_path: Path, modules: KnownModules, environ: Mapping[str, str] | None) -> Spec:
    documents, issues = read_documents(config_path, environ)
    checked: list[tuple[SourceDocument, dict[str, Any]]] = []
    for document in documents:
        found = schema_issues(document.data, document.locator)
        issues.extend(issue for _, issue in found)
        checked.append((document, _valid_parts(document.data, [p for p, _ in found])))
    merged, locator, merge_issues = _merge(checked, str(config_path))
    issues.extend(merge_issues)
    issues.extend(non_finite_issues(merged, locator))
    base_dir = str(config_path if config_path.is_dir() else config_path.parent)
    spec = spec_from_data(merged, base_dir)
    issues.extend(semantic_issues(spec, locator, modules))
    if not spec.collections and not issues:
        issues.append(locator.issue(("collections",), "no collections are declared", "add a 'collections:' list with at least one collection"))
    if issues:
        raise ConfigError(sorted(issues, key=lambda i: (i.file, i.line, i.column)))
    return spec
