"""Compose YAML into nodes with bounded work: nesting depth, aliases and their expansion are limited.

PyYAML's own composer is recursive (a deeply nested file ends in RecursionError),
links a recursive alias into a cycle (the builder then recurses forever), and lets
a few lines of aliases stand for billions of nodes (billion laughs).  This composer
reads libyaml's event stream (the C parser, when PyYAML has it: linear and fast)
in a loop, and refuses, at the event that crosses a limit:

- nesting deeper than ``max_depth``, counting what aliases bring along;
- more than ``max_aliases`` aliases;
- aliases that together copy more than ``max_alias_nodes`` nodes into the document
  (each alias stands for the whole subtree of its anchor: the sum is exactly what
  building the data would add, so it is known before anything is built);
- aliases that together copy more than ``max_alias_chars`` characters of scalar text
  (keys and values, the anchor's own aliases expanded): one long string aliased a
  thousand times is few nodes, but every later stage (the revision's JSON, the plan)
  writes each copy out;
- an alias to an anchor that is still open, i.e. a node that contains itself.

Nodes are PyYAML's ``ScalarNode`` / ``SequenceNode`` / ``MappingNode`` with their
marks, so positions stay exact; an alias yields its anchor's node object again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import yaml
from yaml.events import (
    AliasEvent,
    DocumentStartEvent,
    MappingEndEvent,
    MappingStartEvent,
    ScalarEvent,
    SequenceEndEvent,
    SequenceStartEvent,
)

STR_TAG = "tag:yaml.org,2002:str"
DEFAULT_MAX_FILE_BYTES = 8 * 1024 * 1024
MAX_BYTES_ENV = "SEARCHD_CONFIG_MAX_BYTES"
# The C parser when PyYAML was built with libyaml: ~10x faster, and its events are the same.
_PARSER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass(frozen=True)
class YamlLimits:
    """What one config file may ask of the loader (docs/operations.md, "Config loader limits")."""

    max_depth: int = 64  # a config nests about 7 deep; JSON Schema's own documents rarely pass 20
    max_aliases: int = 10_000
    max_alias_nodes: int = 100_000  # nodes all aliases together may copy into the document
    # Characters of text all aliases together may copy in.  The loader sets it to the file size limit: an expanded
    # document is then at most twice the largest file it accepts written out, whose cost a load is sized for.
    max_alias_chars: int = DEFAULT_MAX_FILE_BYTES


class YamlRefused(Exception):
    """A limit was crossed or the structure is unusable; ``mark`` is where (internal: the loader turns it into a ConfigIssue)."""

    def __init__(self, mark: Any, message: str, hint: str) -> None:  # a yaml.Mark (libyaml's or PyYAML's)
        super().__init__(message)
        self.mark, self.message, self.hint = mark, message, hint


@dataclass
class _Open:
    node: yaml.SequenceNode | yaml.MappingNode
    anchor: str | None
    size: int = 1  # nodes in the subtree once expanded
    text_at: int = 0  # the document's expanded text (characters) when this node opened: its own is the growth since
    height: int = 1  # levels in the subtree once expanded
    sequence: bool = False  # a SequenceNode (else a MappingNode)
    key: yaml.Node | None = None  # a mapping's key waiting for its value


def compose(text: str, limits: YamlLimits) -> yaml.Node | None:
    """The single document of ``text`` as a node graph (None when empty); raises YamlRefused or yaml.MarkedYAMLError."""
    loader = _PARSER(text)
    try:
        return _Composer(loader, limits).run()
    finally:
        loader.dispose()


class _Composer:
    def __init__(self, loader: Any, limits: YamlLimits) -> None:
        self.loader = loader
        self.limits = limits
        self.resolve: Callable[[type[yaml.Node], str | None, Any], str] = yaml.resolver.Resolver().resolve
        self.anchors: dict[str, tuple[yaml.Node, int, int, int]] = {}  # anchor → (node, expanded size, height, text)
        self.open_anchors: dict[str, Any] = {}  # anchor → the mark where its node starts
        self.aliases = 0
        self.copied = 0
        self.copied_chars = 0
        self.stack: list[_Open] = []
        self.root: yaml.Node | None = None
        self.documents = 0
        self.plain_tags: dict[str, str] = {}  # a plain scalar's tag depends on its text only
        implicit = yaml.resolver.Resolver.yaml_implicit_resolvers
        # The first characters an implicit tag (int, float, bool, null, merge …) can start with (a None key would match any).
        self.typed_starts: frozenset[str] | None = None if None in implicit else frozenset(implicit)

    def _resolve_plain(self, value: str) -> str:
        if value and self.typed_starts is not None and value[0] not in self.typed_starts:  # no implicit type starts so: a string
            return STR_TAG
        tag = self.plain_tags.get(value)
        if tag is None:
            tag = self.plain_tags[value] = self.resolve(yaml.ScalarNode, value, (True, False))
        return tag

    def run(self) -> yaml.Node | None:
        """The loop over events; scalars, the most frequent, are handled first and inline (this loop is the loader's cost)."""
        loader, stack, anchors = self.loader, self.stack, self.anchors
        check, get = loader.check_event, loader.get_event
        # Characters of scalar text so far, aliases expanded, counted only inside an anchored node (all that is asked
        # of it: an anchor's text is the growth while it is open); a local, as it is counted per scalar.
        text, open_anchors = 0, self.open_anchors
        while check():
            event = get()
            kind = type(event)
            if kind is ScalarEvent:
                tag = event.tag
                if tag is None or tag == "!":
                    tag = self._resolve_plain(event.value) if event.implicit[0] else self.resolve(yaml.ScalarNode, event.value, event.implicit)
                scalar = yaml.ScalarNode(tag, event.value, event.start_mark, event.end_mark, style=event.style or None)  # libyaml: "" for plain
                if open_anchors:
                    text += len(event.value)
                if event.anchor is not None:
                    self._check_anchor(event)
                    anchors[event.anchor] = (scalar, 1, 1, len(event.value))
                if stack:
                    self._attach(scalar, 1, 1)
                else:
                    self.root = scalar
            elif kind is SequenceEndEvent or kind is MappingEndEvent:
                done = stack.pop()
                done.node.end_mark = event.end_mark
                if done.anchor is not None:
                    del self.open_anchors[done.anchor]
                    anchors[done.anchor] = (done.node, done.size, done.height, text - done.text_at)
                if stack:
                    self._attach(done.node, done.size, done.height)
                else:
                    self.root = done.node
            elif kind is SequenceStartEvent or kind is MappingStartEvent:
                self._open(event, text)
            elif kind is AliasEvent:
                node, size, height, chars = self._alias(event, len(stack) + 1)
                text += chars  # (outside an anchor too: cheaper than asking, and harmless)
                if stack:
                    self._attach(node, size, height)
                else:
                    self.root = node
            elif kind is DocumentStartEvent:
                self.documents += 1
                if self.documents > 1:
                    raise yaml.composer.ComposerError("expected a single document in the stream", None, "but found another document", event.start_mark)
        return self.root

    def _check_anchor(self, event: Any) -> None:
        if event.anchor in self.anchors or event.anchor in self.open_anchors:
            raise YamlRefused(event.start_mark, f"duplicate anchor &{event.anchor}", "give each anchor its own name")

    def _open(self, event: Any, text: int) -> None:  # a SequenceStartEvent or MappingStartEvent
        if len(self.stack) + 1 > self.limits.max_depth:
            raise YamlRefused(event.start_mark, f"nesting is deeper than {self.limits.max_depth} levels", "flatten the document; a config nests about 7 levels")
        kind = yaml.SequenceNode if isinstance(event, SequenceStartEvent) else yaml.MappingNode
        tag = event.tag if event.tag not in (None, "!") else self.resolve(kind, None, event.implicit)
        node = kind(tag, [], event.start_mark, None, flow_style=event.flow_style)
        if event.anchor is not None:
            self._check_anchor(event)
            self.open_anchors[event.anchor] = event.start_mark
        self.stack.append(_Open(node, event.anchor, text_at=text, sequence=kind is yaml.SequenceNode))

    def _alias(self, event: Any, depth: int) -> tuple[yaml.Node, int, int, int]:
        name = event.anchor
        if name in self.open_anchors:
            line = self.open_anchors[name].line + 1
            raise YamlRefused(event.start_mark, f"recursive alias *{name}: the node anchored &{name} on line {line} would contain itself", "an alias may only name a node that ends before it")
        if name not in self.anchors:
            raise YamlRefused(event.start_mark, f"alias *{name} names no anchor", f"define &{name} before this alias")
        self.aliases += 1
        if self.aliases > self.limits.max_aliases:
            raise YamlRefused(event.start_mark, f"more than {self.limits.max_aliases} aliases", "write the repeated values out, or share fewer of them")
        node, size, height, chars = self.anchors[name]
        self.copied += size
        if self.copied > self.limits.max_alias_nodes:
            raise YamlRefused(
                event.start_mark,
                f"aliases expand to more than {self.limits.max_alias_nodes} nodes (alias *{name} alone copies {size})",
                "aliases that nest other aliases multiply; share smaller parts or write them out",
            )
        self.copied_chars += chars
        if self.copied_chars > self.limits.max_alias_chars:
            raise YamlRefused(
                event.start_mark,
                f"aliases expand to more than {self.limits.max_alias_chars:,} characters of text (alias *{name} alone copies {chars:,})",
                "aliases may copy in at most as much text as a config file may hold: write a long value once, "
                f"or raise the file size limit with --config-max-bytes or {MAX_BYTES_ENV}",
            )
        if depth - 1 + height > self.limits.max_depth:
            raise YamlRefused(event.start_mark, f"alias *{name} nests deeper than {self.limits.max_depth} levels", "flatten the anchored node")
        return node, size, height, chars

    def _attach(self, node: yaml.Node, size: int, height: int) -> None:
        parent = self.stack[-1]
        parent.size += size
        if height >= parent.height:
            parent.height = height + 1
        if parent.sequence:
            parent.node.value.append(node)
        elif parent.key is None:
            parent.key = node
        else:
            parent.node.value.append((parent.key, node))
            parent.key = None
