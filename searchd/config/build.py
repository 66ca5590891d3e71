"""Run the config stages in order and gather every issue: load → schema → merge → spec → semantics."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from searchd.config.capabilities import KnownModules
from searchd.config.fastload import FAST_MIN_BYTES, fast_document
from searchd.config.loader import Locator, PathKey, SourceDocument, Unlocated, collector_paused, read_documents, render_path
from searchd.config.semantic import non_finite_issues, semantic_issues
from searchd.config.spec import Spec, spec_from_data
from searchd.config.validate import schema_errors, schema_issues
from searchd.errors import ConfigError, ConfigIssue


def _prune_point(path: PathKey) -> PathKey | None:
    """Where a schema error inside a collection can be cut out without taking the rest of the collection with it.

    A named vector and the invertedIndex stand alone (nothing else refers to them), and an unknown key means nothing;
    anything else (a property, the name) is referred to by the rest, so the whole collection goes.
    """
    if len(path) >= 4 and path[2] == "vectors":
        return path[:4]
    if len(path) >= 3 and path[2] == "invertedIndex":
        return path[:3]
    return None


def _without(data: Any, path: PathKey) -> Any:
    """A copy of ``data`` without the mapping key at ``path`` (the input is not changed)."""
    head, *rest = path
    if isinstance(data, dict):
        return {k: v for k, v in data.items() if k != head} if not rest else {k: (_without(v, tuple(rest)) if k == head else v) for k, v in data.items()}
    if isinstance(data, list) and isinstance(head, int):
        return [(_without(v, tuple(rest)) if i == head else v) for i, v in enumerate(data)]
    return data


def _valid_parts(data: Any, bad_paths: list[PathKey], unknown_keys: list[PathKey]) -> tuple[dict[str, Any], list[PathKey]]:
    """The parts of a document that passed the schema, so they still get semantic checks; and what was cut out.

    Invalid collections become None (indices stay stable, since positions are keyed by them); inside a
    collection, only an invalid named vector or invertedIndex, or an unknown key, is cut out when that leaves
    the collection valid.
    """
    if not isinstance(data, dict) or any(len(p) == 0 for p in bad_paths):
        return {}, [()]
    kept = {key: value for key, value in data.items() if not any(p == (key,) or (key != "collections" and p[0] == key) for p in bad_paths)}
    pruned: list[PathKey] = [(key,) for key in data if key not in kept]
    if isinstance(kept.get("collections"), list):
        cuts: dict[int, set[PathKey]] = {}
        for p in bad_paths:
            if p[0] == "collections" and len(p) > 1 and isinstance(p[1], int):
                point = p if p in unknown_keys and len(p) >= 3 else _prune_point(p)
                cuts.setdefault(p[1], set()).add(point if point is not None else p[:2])
        collections = list(kept["collections"])
        for index, points in cuts.items():
            whole = ("collections", index) in points
            candidate = collections[index]
            if not whole:
                for point in points:
                    candidate = _without(candidate, point[2:])
                whole = any(True for _ in schema_errors({"collections": [candidate]}))
            collections[index] = None if whole else candidate
            pruned.extend([("collections", index)] if whole else sorted(points, key=str))
        kept["collections"] = collections
    return kept, pruned


def _related(issue_path: str, pruned: str) -> bool:
    """Whether one rendered path lies within the other (a semantic issue about a part that was cut out)."""
    shorter, longer = sorted((issue_path, pruned), key=len)
    return longer == shorter or longer.startswith((shorter + ".", shorter + "["))


def _merge(documents: list[tuple[SourceDocument, dict[str, Any]]], default_file: str) -> tuple[dict[str, Any], Locator, list[ConfigIssue]]:
    """Combine several files: collections are concatenated; server and each module are set in one file only."""
    merged: dict[str, Any] = {"modules": {}, "collections": []}
    locator = Locator(default_file=default_file)
    for document, data in documents:
        if "collections" in data and ("collections",) not in locator.positions:
            locator.positions[("collections",)] = document.locator.find(("collections",))
    issues: list[ConfigIssue] = []
    owners: dict[PathKey, str] = {}
    origins: dict[int, tuple[Locator, int]] = {}

    def take(document: SourceDocument, groups: dict[PathKey, list[PathKey]], path: PathKey, what: str) -> bool:
        if path in owners:
            issues.append(document.locator.issue(path, f"{what} is already set in {owners[path]}", "set it in one file only"))
            return False
        owners[path] = document.file
        positions = document.locator.positions
        locator.positions.update({p: positions[p] for p in groups.get(path, ())})
        return True

    if len(documents) == 1 and (() in documents[0][0].locator.positions or not documents[0][0].exact) and None not in documents[0][1].get("collections", []):
        # One non-empty file and no collection cut out: merged, it is that file, and its positions stand as they are.
        document, data = documents[0]
        merged = {**merged, **{k: v for k, v in data.items() if k in ("server", "collections")}, "modules": dict(data.get("modules", {}))}
        document.locator.data = merged
        return merged, document.locator, issues
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
            if not document.exact:
                origins[new_index] = (document.locator, index)
    locator.data = merged
    if origins:
        locator.lazy = _MergedLocate(origins)
    return merged, locator, issues


class _MergedLocate:
    """The lazy locator of merged documents: a collection of a file read fast is placed by that file's own
    (``locate.ItemLocator``), and its positions are copied under the collection's merged index."""

    def __init__(self, origins: dict[int, tuple[Locator, int]]) -> None:
        self.origins = origins  # merged index -> (the fast document's locator, the index in its file)

    def __call__(self, locator: Locator, path: PathKey) -> bool:
        if len(path) < 2 or path[0] != "collections" or not isinstance(path[1], int):
            return path == ("collections",) and path in locator.positions
        origin = self.origins.get(path[1])
        if origin is None or ("collections", path[1]) in locator.positions:
            return True  # a collection of an exact document (its positions were copied), or one placed already
        source, index = origin
        source.find(("collections", index))  # raises Unlocated when it cannot
        prefix = ("collections", index)
        locator.positions.update({("collections", path[1], *p[2:]): position for p, position in source.positions.items() if p[:2] == prefix})
        return True


def load_spec(path: str | Path, modules: KnownModules, environ: Mapping[str, str] | None = None, vector_extension: str | None = "") -> Spec:
    """Load, validate and check a config path; raise ConfigError listing every issue found.

    ``modules`` is the module registry (``searchd.modules.default_registry()``), handed in
    because config/ sits below modules/; ``environ`` fills ``${ENV}`` (default: os.environ);
    ``vector_extension``: why the database cannot hold pgvector indexes (None: it can; "": not checked).
    """
    with collector_paused():
        try:
            return _load_spec(Path(path), modules, environ, fast=True, vector_extension=vector_extension)
        except Unlocated:
            # An issue in a file read fast that its lazy locator cannot place (outside the collections list, say):
            # every file is read again exactly, so that each issue is worded and located.
            return _load_spec(Path(path), modules, environ, fast=False, vector_extension=vector_extension)


def _load_spec(config_path: Path, modules: KnownModules, environ: Mapping[str, str] | None, fast: bool, vector_extension: str | None = "") -> Spec:
    reader = fast_document if fast else None
    documents, issues = read_documents(config_path, environ, reader, FAST_MIN_BYTES)
    checked: list[tuple[SourceDocument, dict[str, Any]]] = []
    cut_out: list[tuple[str, str]] = []  # (file, rendered path) of parts left out of the semantic checks
    for document in documents:
        # A document read fast was checked against the schema there (fastload.fast_document): only one that failed is
        # checked again here, by the Python validator, which words the errors.
        found = schema_issues(document.data, document.locator) if document.exact or not document.checked else []
        issues.extend(issue for _, issue in found)
        unknown = [p for p, issue in found if issue.message.startswith("Additional properties are not allowed")]
        kept, pruned = _valid_parts(document.data, [p for p, _ in found], unknown)
        checked.append((document, kept))
        cut_out.extend((document.file, render_path(p)) for p in pruned)
    merged, locator, merge_issues = _merge(checked, str(config_path))
    issues.extend(merge_issues)
    if any(document.exact for document in documents):
        # A fast reading holds no NaN or infinity (JSON has none, and it refuses a `${VAR}` that would read as one).
        issues.extend(non_finite_issues(merged, locator))
    base_dir = str(config_path if config_path.is_dir() else config_path.parent)
    spec = spec_from_data(merged, base_dir)
    # Every error at once: semantic checks run on what passed the schema, but say nothing about what was cut out
    # (a vector whose `dimensions` has the wrong type must not also be told it lacks dimensions).
    issues.extend(i for i in semantic_issues(spec, locator, modules, vector_extension, os.environ if environ is None else environ) if not any(f == i.file and _related(i.path, p) for f, p in cut_out))
    if not spec.collections and not issues:
        issues.append(locator.issue(("collections",), "no collections are declared", "add a 'collections:' list with at least one collection"))
    if issues:
        raise ConfigError(sorted(issues, key=lambda i: (i.file, i.line, i.column)))
    return spec
