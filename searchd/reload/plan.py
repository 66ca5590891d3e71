"""Classify what changes between the applied spec and a proposed one, before anything is applied.

Pure: specs in, a Plan out.  Dataclasses are compared field by field with
``dataclasses.fields()``, so a field added to the spec later is still compared;
the few fields with a special meaning are named in the sets below, and a field
not named there gets the safe default of its place (in place for descriptive
settings, re-vectorize for a vectorizer, rebuild for an index, restart for the server).
"""

from __future__ import annotations

import dataclasses
import enum
import os
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from searchd.config.spec import INDEX_SEARCH_TIME, VECTORIZER_IN_PLACE, ApiKeySpec, CollectionSpec, ServerSpec, Spec

# Server fields read on every request; the others (socket, data directory) are bound at start.
SERVER_LIVE = frozenset({"limits", "reload", "auth"})
# Settings inside those that are read once, at start: the watcher is started (or not) with the server.
SERVER_BOUND_AT_START = frozenset({("reload", "watch")})

ALLOW_HINT = "pass --allow-destructive to `searchd apply`, or set server.reload.allowDestructive: true in the config"


class ChangeKind(enum.Enum):
    IN_PLACE = "in place"
    REVECTORIZE = "re-vectorize"
    DESTRUCTIVE = "destructive"


@dataclass(frozen=True)
class Change:
    kind: ChangeKind
    action: str  # "create" | "update" | "delete" | "replace"
    address: str  # "collection Article", "Article.property title", "Article.vector clip", "modules.x", "server.limits"
    summary: str  # "model a → b", "type TEXT → INT"; never a module setting's value
    drops: str | None = None  # destructive only: the stored data it would lose

    @property
    def symbol(self) -> str:
        if self.kind is ChangeKind.DESTRUCTIVE:
            return "-"
        if self.kind is ChangeKind.REVECTORIZE:
            return "-/+"
        return {"create": "+", "delete": "-"}.get(self.action, "~")

    def line(self) -> str:
        text = f"{self.symbol:>3} {self.address}: {self.summary}"
        return f"{text}; would drop {self.drops}" if self.drops else text

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind.value, "action": self.action, "address": self.address, "summary": self.summary, "drops": self.drops}


@dataclass(frozen=True)
class Plan:
    changes: tuple[Change, ...] = ()
    revectorize: tuple[tuple[str, str], ...] = ()  # (collection, vector): re-embed every stored object
    reindex: tuple[tuple[str, str], ...] = ()  # (collection, vector): rebuild the index from stored vectors
    rebuild_keyword: tuple[str, ...] = ()  # collections whose BM25 postings must be rebuilt / backfilled
    restart_required: tuple[Change, ...] = ()  # server settings bound at start: reported, not applied live

    @property
    def destructive(self) -> tuple[Change, ...]:
        return tuple(c for c in self.changes if c.kind is ChangeKind.DESTRUCTIVE)

    @property
    def empty(self) -> bool:
        return not self.changes and not self.restart_required

    def refused(self, allow_destructive: bool) -> bool:
        return bool(self.destructive) and not allow_destructive

    def refusal_message(self) -> str:
        if not self.destructive:
            return ""
        lines = [f"refusing {len(self.destructive)} destructive change(s) that would drop stored data:"]
        lines += [f"  - {c.address}: {c.summary}; would drop {c.drops}" for c in self.destructive]
        lines.append(f"To apply anyway, {ALLOW_HINT}.")
        return "\n".join(lines)

    def counts(self) -> dict[str, int]:
        def count(kind: ChangeKind, create: bool | None = None) -> int:
            return sum(1 for c in self.changes if c.kind is kind and (create is None or (c.action == "create") == create))

        return {
            "create": count(ChangeKind.IN_PLACE, True),
            "inPlace": count(ChangeKind.IN_PLACE, False),
            "revectorize": count(ChangeKind.REVECTORIZE),
            "destructive": count(ChangeKind.DESTRUCTIVE),
            "restart": len(self.restart_required),
        }

    def render(self, *, allow_destructive: bool = False) -> str:
        if self.empty:
            return "No changes. The applied config matches."
        groups = [ChangeKind.IN_PLACE, ChangeKind.REVECTORIZE, ChangeKind.DESTRUCTIVE]
        # Grouped: creates, in-place updates, re-vectorize, destructive; stable, so spec order within a group.
        ordered = sorted(self.changes, key=lambda c: (groups.index(c.kind), c.action != "create"))
        lines = [c.line() for c in ordered]
        work = [f"  re-embed {c}.{v} from stored objects" for c, v in self.revectorize]
        work += [f"  rebuild the index of {c}.{v} from stored vectors" for c, v in self.reindex]
        work += [f"  rebuild the BM25 index of {c}" for c in self.rebuild_keyword]
        if work:
            lines += ["", "Background work after apply:", *work]
        if self.restart_required:
            lines += ["", "Needs a restart (not applied live):", *(c.line() for c in self.restart_required)]
        n = self.counts()
        verdict = "" if not n["destructive"] else " (allowed)" if allow_destructive else " (refused)"
        restart = f"; {n['restart']} needs a restart" if n["restart"] else ""
        totals = f"{n['create']} to create, {n['inPlace']} to change in place, {n['revectorize']} to re-vectorize"
        return "\n".join([*lines, "", f"Plan: {totals}, {n['destructive']} destructive{verdict}{restart}."])

    def to_json(self) -> dict[str, Any]:
        return {
            "empty": self.empty,
            "changes": [c.to_json() for c in self.changes],
            "revectorize": [{"collection": c, "vector": v} for c, v in self.revectorize],
            "reindex": [{"collection": c, "vector": v} for c, v in self.reindex],
            "rebuildKeyword": list(self.rebuild_keyword),
            "restartRequired": [c.to_json() for c in self.restart_required],
            "counts": self.counts(),
        }


def _camel(name: str) -> str:
    """The YAML spelling of a spec field: ``max_body_bytes`` → ``maxBodyBytes``, ``base_url`` → ``baseURL``."""
    head, *rest = name.split("_")
    return head + "".join(part.upper() if part in ("url", "id") else part.capitalize() for part in rest)


def _show(value: Any) -> str:
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, enum.Enum):
        return str(value.value)
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k}: {_show(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (tuple, list, frozenset, set)):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    return str(value)


def _diff(old: Any, new: Any, skip: Collection[str] = ()) -> list[tuple[str, Any, Any]]:
    """(field, old, new) for each differing field, declaration order; nested dataclasses are flattened."""
    found: list[tuple[str, Any, Any]] = []
    for f in dataclasses.fields(new):
        before, after = getattr(old, f.name), getattr(new, f.name)
        if f.name in skip or before == after:
            continue
        if dataclasses.is_dataclass(after) and not isinstance(after, type):
            found += _diff(before, after)
        else:
            found.append((f.name, before, after))
    return found


def _named_only(name: str) -> bool:
    # Descriptions can be paragraphs; keys, tokens and URLs (which may embed credentials) must never reach a log.
    return name == "description" or not {"key", "token", "secret", "password", "url"}.isdisjoint(name.split("_"))


def _api_keys(before: Iterable[ApiKeySpec], after: Iterable[ApiKeySpec]) -> str:
    """server.auth.apiKeys by name, as the YAML words them (``key 'reader' (role read) added``); never a key itself."""
    old, new = {k.name: k for k in before}, {k.name: k for k in after}
    parts = [f"key '{name}' (role {k.role.value}) removed" for name, k in old.items() if name not in new]
    for name, k in new.items():
        was = old.get(name)
        if was is None:
            parts.append(f"key '{name}' (role {k.role.value}) added")
            continue
        changes = [f"role {was.role.value} → {k.role.value}"] if was.role != k.role else []
        changes += ["key replaced"] if was.key != k.key else []  # said, never shown
        if changes:
            parts.append(f"key '{name}' ({'; '.join(changes)})")
    return "apiKeys: " + ", ".join(parts) if parts else "apiKeys reordered"


def _describe_one(name: str, before: Any, after: Any) -> str:
    if name == "api_keys":
        return _api_keys(before, after)
    return f"{_camel(name)} changed" if _named_only(name) else f"{_camel(name)} {_show(before)} → {_show(after)}"


def _describe(diffs: Iterable[tuple[str, Any, Any]]) -> str:
    return ", ".join(_describe_one(n, a, b) for n, a, b in diffs)


def _keyword_signature(collection: CollectionSpec) -> frozenset[tuple[str, str]]:
    # What the BM25 postings are built from (persist.keyword_fingerprint); k1, b and stopwords are query-time in bm25.py.
    return frozenset((p.name, p.tokenization.value) for p in collection.properties if p.searchable)


def _data_dir(server: ServerSpec, base_dir: str) -> str | None:
    # Relative to the config's directory (server/app.py), so moving the config file moves the data.
    return None if server.data_dir is None else os.path.normpath(os.path.join(base_dir, server.data_dir))


def _count(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


@dataclass
class _Planner:
    object_counts: Callable[[str], int] | None
    property_counts: Callable[[str, str], int] | None
    changes: list[Change] = field(default_factory=list)
    restart: list[Change] = field(default_factory=list)
    revectorize: list[tuple[str, str]] = field(default_factory=list)
    reindex: list[tuple[str, str]] = field(default_factory=list)
    rebuild_keyword: list[str] = field(default_factory=list)

    def add(self, kind: ChangeKind, action: str, address: str, summary: str, drops: str | None = None) -> None:
        self.changes.append(Change(kind, action, address, summary, drops))

    def plan(self) -> Plan:
        # A vector is either re-embedded or reindexed (collection() picks one), never both.
        return Plan(tuple(self.changes), tuple(self.revectorize), tuple(self.reindex), tuple(self.rebuild_keyword), tuple(self.restart))

    def _objects(self, collection: str) -> str:
        return "all stored objects" if self.object_counts is None else f"{self.object_counts(collection):,} objects"

    def _values(self, collection: str, prop: str) -> str:
        if self.property_counts is None:
            return f"all stored '{prop}' values"
        return f"the '{prop}' values of {self.property_counts(collection, prop):,} objects"

    def _vectors(self, collection: str, vector: str) -> str:
        return f"the '{vector}' vectors of {self._objects(collection)}"

    def server(self, applied: Spec, proposed: Spec) -> None:
        diffs = _diff(applied.server, proposed.server, skip={*SERVER_LIVE, "data_dir"})
        before_dir, after_dir = _data_dir(applied.server, applied.base_dir), _data_dir(proposed.server, proposed.base_dir)
        if before_dir != after_dir:
            # The same words in two places name two directories: then show where each one is.
            same_words = applied.server.data_dir == proposed.server.data_dir
            diffs.append(("data_dir", before_dir if same_words else applied.server.data_dir, after_dir if same_words else proposed.server.data_dir))
        for n, before, after in diffs:
            self.restart.append(Change(ChangeKind.IN_PLACE, "update", f"server.{_camel(n)}", _describe([(n, before, after)])))
        for n in sorted(SERVER_LIVE & {f.name for f in dataclasses.fields(proposed.server)}):
            before, after = getattr(applied.server, n), getattr(proposed.server, n)
            diffs = _diff(before, after) if dataclasses.is_dataclass(after) else [(n, before, after)] if before != after else []
            for name, old, new in diffs:
                if (n, name) in SERVER_BOUND_AT_START:
                    self.restart.append(Change(ChangeKind.IN_PLACE, "update", f"server.{_camel(n)}.{_camel(name)}", _describe([(name, old, new)])))
            diffs = [d for d in diffs if (n, d[0]) not in SERVER_BOUND_AT_START]
            if diffs:
                self.add(ChangeKind.IN_PLACE, "update", f"server.{_camel(n)}", _describe(diffs))

    def modules(self, applied: Mapping[str, Mapping[str, Any]], proposed: Mapping[str, Mapping[str, Any]]) -> None:
        # Settings may hold API keys: summaries list setting names only, never values.
        for name, settings in proposed.items():
            before = applied.get(name)
            if before is None:
                self.add(ChangeKind.IN_PLACE, "create", f"modules.{name}", f"new module ({', '.join(settings)})" if settings else "new module")
                continue
            missing = object()
            changed = [k for k in dict.fromkeys([*settings, *before]) if settings.get(k, missing) != before.get(k, missing)]
            if changed:
                self.add(ChangeKind.IN_PLACE, "update", f"modules.{name}", f"settings changed ({', '.join(changed)})")
        for name in applied:
            if name not in proposed:
                self.add(ChangeKind.IN_PLACE, "delete", f"modules.{name}", "module removed")

    def new_collection(self, c: CollectionSpec) -> None:
        contents = f"{_count(len(c.properties), 'property', 'properties')}, {_count(len(c.vectors), 'vector', 'vectors')}"
        self.add(ChangeKind.IN_PLACE, "create", f"collection {c.name}", f"new collection ({contents})")

    def removed_collection(self, c: CollectionSpec) -> None:
        drops = self._objects(c.name) + (" and their vectors" if c.vectors else "")
        self.add(ChangeKind.DESTRUCTIVE, "delete", f"collection {c.name}", "collection removed", drops)

    def collection(self, old: CollectionSpec, new: CollectionSpec) -> None:
        if old == new:  # most collections of a large config are unchanged: one comparison, no field walk
            return
        name = new.name
        diffs = _diff(old, new, skip=("properties", "vectors"))
        if diffs:
            self.add(ChangeKind.IN_PLACE, "update", f"collection {name}", _describe(diffs))
        for prop in new.properties:
            address, before = f"{name}.property {prop.name}", old.find_property(prop.name)
            if before is None:
                self.add(ChangeKind.IN_PLACE, "create", address, f"new {prop.type.value} property")
            elif before.type != prop.type:  # stored values no longer fit the type
                self.add(ChangeKind.DESTRUCTIVE, "replace", address, _describe(_diff(before, prop)), self._values(name, prop.name))
            elif prop_diffs := _diff(before, prop):
                self.add(ChangeKind.IN_PLACE, "update", address, _describe(prop_diffs))
        for prop in old.properties:
            if new.find_property(prop.name) is None:
                address = f"{name}.property {prop.name}"
                self.add(ChangeKind.DESTRUCTIVE, "delete", address, "property removed", self._values(name, prop.name))
        if _keyword_signature(old) != _keyword_signature(new):
            self.rebuild_keyword.append(name)
        for vector in new.vectors:
            key, address, was = (name, vector.name), f"{name}.vector {vector.name}", old.find_vector(vector.name)
            if was is None:
                what = f"{vector.vectorizer.module}, {vector.index.type} {vector.index.distance.value}"
                self.add(ChangeKind.IN_PLACE, "create", address, f"new vector ({what})")
                if not vector.vectorizer.brings_own_vectors:  # stored objects get this vector in the background
                    self.revectorize.append(key)
                continue
            vectorizer, index = _diff(was.vectorizer, vector.vectorizer), _diff(was.index, vector.index)
            rest = _diff(was, vector, skip=("vectorizer", "index"))
            re_embed = any(n not in VECTORIZER_IN_PLACE for n, _, _ in vectorizer)
            rebuild = any(n not in INDEX_SEARCH_TIME for n, _, _ in index)
            if re_embed and vector.vectorizer.brings_own_vectors:  # nothing can re-embed: the stored vectors go
                self.add(ChangeKind.DESTRUCTIVE, "replace", address, _describe(vectorizer + index + rest), self._vectors(name, vector.name))
            elif re_embed or rebuild:
                (self.revectorize if re_embed else self.reindex).append(key)
                self.add(ChangeKind.REVECTORIZE, "replace", address, _describe(vectorizer + index + rest))
            elif vectorizer or index or rest:
                self.add(ChangeKind.IN_PLACE, "update", address, _describe(vectorizer + index + rest))
        for vector in old.vectors:
            if new.find_vector(vector.name) is None:
                address = f"{name}.vector {vector.name}"
                self.add(ChangeKind.DESTRUCTIVE, "delete", address, "vector removed", self._vectors(name, vector.name))


def classify(
    applied: Spec | None,
    proposed: Spec,
    object_counts: Callable[[str], int] | None = None,
    property_counts: Callable[[str, str], int] | None = None,
) -> Plan:
    """The plan that takes ``applied`` to ``proposed``; counts only word the ``drops`` texts."""
    planner = _Planner(object_counts, property_counts)
    if applied is None:  # first start: nothing stored, so nothing to rebuild or drop
        planner.modules({}, proposed.modules)
        for c in proposed.collections:
            planner.new_collection(c)
        return planner.plan()
    planner.server(applied, proposed)
    planner.modules(applied.modules, proposed.modules)
    for c in proposed.collections:
        before = applied.find_collection(c.name)
        if before is None:
            planner.new_collection(c)
        else:
            planner.collection(before, c)
    for c in applied.collections:
        if proposed.find_collection(c.name) is None:
            planner.removed_collection(c)
    return planner.plan()
