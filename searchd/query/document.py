"""Parsing and validating GraphQL documents once, not on every request.

graphql-core parses and validates in pure Python, and a query that writes a
384-number vector inline spends most of its time lexing numbers.  Two things
keep that off the hot path:

* validated documents are cached by their text (per schema, in the catalog);
* a ``vector: [ ... ]`` literal is lifted out into a variable before parsing, so
  every nearVector query with the same shape shares one cached document and the
  numbers are read by ``json.loads``.

A lifted document that fails validation is re-run from the original text, so
error messages and locations always refer to what the client sent.
"""

from __future__ import annotations

import json
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from graphql import (
    DocumentNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLSchema,
    GraphQLSyntaxError,
    OperationDefinitionNode,
    SelectionSetNode,
    parse,
    validate,
)

# Places that matter when lifting vectors: the starts of strings, comments and `vector: [`.
_MARKS = re.compile(r'"""|"|#|\bvector\s*:\s*(?=\[)')
_ENDS = {'"""': re.compile(r'(?:[^"\\]|\\.|"(?!""))*"""', re.DOTALL), '"': re.compile(r'(?:[^"\\\n]|\\.)*"'), "#": re.compile(r"[^\n]*")}
_NUMBERS = re.compile(r"[-+\d.eE,\s\[\]]*")
_MATRIX_END = re.compile(r"\]\s*,?\s*\]")
_OPERATION = re.compile(r"\A(?P<lead>(?:\s|,|#[^\n]*)*)(?:(?P<shorthand>\{)|query\b\s*(?P<name>[_A-Za-z][_0-9A-Za-z]*)?\s*(?P<defs>\()?)")
_PREFIX = "__searchd_vector_"


@dataclass(frozen=True)
class Prepared:
    document: DocumentNode | None
    errors: list[GraphQLError]
    variables: dict[str, Any]


def _numbers(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        pass
    try:  # GraphQL lets whitespace separate list items: [1 2 3]
        return json.loads(re.sub(r"(?<=[\d.])\s+(?=[-+\d.])", ",", text))
    except ValueError:
        return None


def _code_spans(source: str) -> list[tuple[int, int, str]]:
    """(start, end, kind) of strings/comments ("skip") and of vector list literals ("vector")."""
    spans: list[tuple[int, int, str]] = []
    position = 0
    while (mark := _MARKS.search(source, position)) is not None:
        token = mark.group(0)
        if token in _ENDS:
            closed = _ENDS[token].match(source, mark.end())
            stop = closed.end() if closed else len(source)
            spans.append((mark.start(), stop, "skip"))
            position = stop
            continue
        run = _NUMBERS.match(source, mark.end())
        assert run is not None  # the pattern matches the empty string
        text = run.group(0)
        # A vector ends at its first "]", a multi-vector at its first "]]" (rows hold only numbers).
        closing = _MATRIX_END.search(text) if text[1:].lstrip().startswith("[") else None
        length = closing.end() if closing else text.find("]") + 1  # 0: no closing bracket
        stop = mark.end() + length
        if length:
            spans.append((mark.end(), stop, "vector"))
        position = max(stop, mark.end())
    return spans


def lift_vectors(source: str) -> tuple[str, dict[str, Any]] | None:
    """Replace inline ``vector: [...]`` literals with variables; None when there is nothing to lift or it is unsafe."""
    spans = _code_spans(source)
    if not any(kind == "vector" for _, _, kind in spans):
        return None
    lifted: dict[str, Any] = {}
    pieces: list[str] = []
    position = 0
    for start, stop, kind in spans:
        if kind != "vector":
            continue
        value = _numbers(source[start:stop])
        if value is None:
            continue  # not plain numbers: leave it to the GraphQL parser
        name = f"{_PREFIX}{len(lifted)}"
        lifted[name] = value
        pieces += [source[position:start], f"${name}"]
        position = stop
    if not lifted:
        return None
    rewritten = "".join([*pieces, source[position:]])
    operation = _OPERATION.match(rewritten)
    if operation is None or _top_level_blocks(source, spans) != 1:
        return None  # several operations or fragments: leave the document as it is
    definitions = ", ".join(f"${name}: Vector!" for name in lifted)
    end = operation.end()
    if operation.group("shorthand"):
        start = len(operation.group("lead"))
        rewritten = f"{rewritten[:start]}query({definitions}) {rewritten[start:]}"
    elif operation.group("defs"):
        rewritten = f"{rewritten[:end]}{definitions}, {rewritten[end:]}"
    else:
        rewritten = f"{rewritten[:end]}({definitions}) {rewritten[end:]}"
    return rewritten, lifted


def _top_level_blocks(source: str, spans: list[tuple[int, int, str]]) -> int:
    """How many top-level { } blocks the document has (one per operation or fragment)."""
    code, position = [], 0
    for start, stop, kind in spans:
        if kind == "skip":
            code.append(source[position:start])
            position = stop
    code.append(source[position:])
    depth = blocks = 0
    for brace in re.findall(r"[{}]", "".join(code)):
        if brace == "{":
            blocks += depth == 0
            depth += 1
        else:
            depth -= 1
    return blocks


def selection_depth(document: DocumentNode) -> int:
    """How deep the selections nest, following fragments (a fragment cycle counts once; validation rejects it)."""
    fragments = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}

    def depth(selection_set: SelectionSetNode | None, seen: frozenset[str]) -> int:
        if selection_set is None:
            return 0
        deepest = 0
        for selection in selection_set.selections:
            if isinstance(selection, FragmentSpreadNode):
                name = selection.name.value
                if name in fragments and name not in seen:
                    deepest = max(deepest, depth(fragments[name].selection_set, seen | {name}) - 1)
                continue
            deepest = max(deepest, depth(getattr(selection, "selection_set", None), seen))
        return deepest + 1

    return max((depth(d.selection_set, frozenset()) for d in document.definitions if isinstance(d, OperationDefinitionNode)), default=0)


class DocumentCache:
    """A bounded LRU of validated documents for one schema."""

    def __init__(self, schema: GraphQLSchema, size: int = 512, max_depth: int = 30) -> None:
        self.schema = schema
        self.size = size
        self.max_depth = max_depth
        self._documents: OrderedDict[str, DocumentNode] = OrderedDict()
        self._lock = threading.Lock()

    def _validated(self, source: str) -> tuple[DocumentNode | None, list[GraphQLError]]:
        with self._lock:
            cached = self._documents.get(source)
            if cached is not None:
                self._documents.move_to_end(source)
                return cached, []
        try:
            document = parse(source, no_location=False)
        except GraphQLSyntaxError as error:
            return None, [error]
        depth = selection_depth(document)
        if depth > self.max_depth:
            message = f"the query nests {depth} levels deep, above the maximum of {self.max_depth} (raise server.limits.maxQueryDepth, or flatten the query)"
            return None, [GraphQLError(message)]
        errors = validate(self.schema, document)
        if errors:
            return None, errors
        with self._lock:
            self._documents[source] = document
            if len(self._documents) > self.size:
                self._documents.popitem(last=False)
        return document, []

    def prepare(self, source: str) -> Prepared:
        lifted = lift_vectors(source) if "vector" in source else None
        if lifted is not None:
            document, errors = self._validated(lifted[0])
            if document is not None:
                return Prepared(document, [], lifted[1])
        document, errors = self._validated(source)
        return Prepared(document, errors, {})
