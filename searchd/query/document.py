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

import dataclasses
import json
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
from graphql import (
    DocumentNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLSchema,
    GraphQLSyntaxError,
    InlineFragmentNode,
    ListTypeNode,
    Location,
    NamedTypeNode,
    NameNode,
    Node,
    NonNullTypeNode,
    OperationDefinitionNode,
    SelectionSetNode,
    Source,
    TypeNode,
    VariableDefinitionNode,
    parse,
    validate,
)
from graphql.language import get_location

from searchd.config.spec import LimitsSpec
from searchd.query.cost import Cost, Estimate, check_tokens, estimate
from searchd.query.plan import GetPlan, compile_get

# Places that matter when lifting vectors: the starts of strings, comments and `vector: [`.
_MARKS = re.compile(r'"""|"|#|\bvector\s*:\s*(?=\[)')
_ENDS = {'"""': re.compile(r'(?:[^"\\]|\\.|"(?!""))*"""', re.DOTALL), '"': re.compile(r'(?:[^"\\\n]|\\.)*"'), "#": re.compile(r"[^\n]*")}
_NUMBERS = re.compile(r"[-+\d.eE,\s\[\]]*")
_MATRIX_END = re.compile(r"\]\s*,?\s*\]")
_OPERATION = re.compile(r"\A(?P<lead>(?:\s|,|#[^\n]*)*)(?:(?P<shorthand>\{)|query\b\s*(?P<name>[_A-Za-z][_0-9A-Za-z]*)?\s*(?P<defs>\()?)")
_PREFIX = "__searchd_vector_"
_TEXT_PREFIX = "__searchd_text_"
# A bm25 or hybrid `query: "..."`: each search's text differs, so it is lifted too (one cached document per shape).
_QUERY_KEY = re.compile(r"\bquery\s*:\s*\Z")


@dataclass(frozen=True)
class Prepared:
    document: DocumentNode | None
    errors: list[GraphQLError]
    variables: dict[str, Any]
    plan: GetPlan | None = None  # the compiled plan of a plain Get (``document`` is then the cached one, not relocated)
    lifted: _Lifted | None = None
    source: str = ""
    estimate: Estimate | None = None  # what the document costs, before its variables are known (searchd.query.cost)

    def locate(self, node: Node) -> list[dict[str, int]]:
        """Where a node of ``document`` is in the client's text, as GraphQL error locations."""
        if node.loc is None:
            return []
        offset = self.lifted.original_offset(node.loc.start) if self.lifted is not None else node.loc.start
        location = get_location(Source(self.source), offset)
        return [{"line": location.line, "column": location.column}]

    def executable(self) -> DocumentNode | None:
        """The document for graphql-core, located in the client's text."""
        if self.plan is not None and self.lifted is not None and self.document is not None:
            return _relocated(self.document, self.lifted, Source(self.source))
        return self.document


_INT64 = 2.0**63


def _huge(value: Any) -> bool:
    """Whether a parsed literal holds a whole number of 64 bits or more: orjson reads such an integer as a float."""
    try:
        array = np.asarray(value, dtype=np.float64)
    except (ValueError, TypeError):  # ragged rows, or not numbers: look element by element
        return isinstance(value, list) and any(_huge(item) for item in value)
    return bool(np.any((np.abs(array) >= _INT64) & (array == np.floor(array))))


def _numbers(text: str) -> Any:
    # orjson first: several times faster than json on 384 numbers.  An integer beyond 64 bits is an int to json
    # (and GraphQL), a float to orjson, so a literal holding one is read again by json.
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        pass
    else:
        if not _huge(value):
            return value
    try:
        return json.loads(text)
    except ValueError:
        pass
    except RecursionError:  # nested deeper than any vector: the GraphQL parser refuses it with its own message
        return None
    try:  # GraphQL lets whitespace separate list items: [1 2 3]
        return json.loads(re.sub(r"(?<=[\d.])\s+(?=[-+\d.])", ",", text))
    except (ValueError, RecursionError):
        return None


def _flat_vector(text: str) -> np.ndarray | None:
    """A ``[n, n, ...]`` literal read at once, when it is a JSON array of numbers that orjson reads exactly; else None."""
    try:
        array = np.asarray(orjson.loads(text))
    except (orjson.JSONDecodeError, ValueError, TypeError, OverflowError):
        return None
    if array.ndim != 1 or array.size == 0 or array.dtype.kind not in "iuf":
        return None
    if array.dtype.kind == "f" and np.abs(array).max() >= _INT64 and _huge(array):
        return None  # a whole number of 64 bits or more, which orjson made a float: read as GraphQL does, below
    return array


def _code_spans(source: str, vectors: dict[int, np.ndarray] | None = None) -> list[tuple[int, int, str]]:
    """(start, end, kind) of strings/comments ("skip"), of vector list literals ("vector") and of `query: "..."` strings ("text").

    A flat vector that reads as JSON numbers is put in ``vectors`` (by its start) as it is found, so it is parsed once.
    """
    spans: list[tuple[int, int, str]] = []
    position = 0
    while (mark := _MARKS.search(source, position)) is not None:
        if vectors is not None and mark.group(0) not in _ENDS:
            # The fast way: a flat list up to the first "]" that is all JSON numbers spans exactly what the
            # character-class scan below finds, in a fraction of its time.
            close = source.find("]", mark.end()) + 1
            if close and not source[mark.end() + 1 : close].lstrip().startswith("[") and (array := _flat_vector(source[mark.end() : close])) is not None:
                spans.append((mark.end(), close, "vector"))
                vectors[mark.end()] = array
                position = close
                continue
        token = mark.group(0)
        if token in _ENDS:
            closed = _ENDS[token].match(source, mark.end())
            stop = closed.end() if closed else len(source)
            is_query = token == '"' and closed is not None and _QUERY_KEY.search(source, max(0, mark.start() - 64), mark.start()) is not None
            spans.append((mark.start(), stop, "text" if is_query else "skip"))
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


def lift_literals(source: str) -> tuple[str, dict[str, Any]] | None:
    """Replace inline ``vector: [...]`` and ``query: "..."`` literals with variables; None when there is nothing to lift or it is unsafe."""
    lifted = _lift(source)
    return None if lifted is None else (lifted.text, {name: value.tolist() if isinstance(value, np.ndarray) else value for name, value in lifted.values.items()})


@dataclass(frozen=True)
class _Lifted:
    text: str
    values: dict[str, Any]
    # (start, end, inserted length) of each change, in the client's text, in order: the variable
    # definitions (nothing removed) and each vector literal (replaced by its variable).
    edits: tuple[tuple[int, int, int], ...]

    def original_offset(self, position: int) -> int:
        """Where a character offset in the rewritten text was in the client's text (inside an edit: where the edit is)."""
        delta = 0  # client's offset minus rewritten offset, up to here
        for start, end, inserted in self.edits:
            rewritten_start = start - delta
            if position < rewritten_start:
                break
            if position < rewritten_start + inserted:
                return start
            delta += (end - start) - inserted
        return position + delta


def _text(literal: str) -> str | None:
    """A plain "..." literal's value; None for escapes where GraphQL and JSON might differ (\\u): left to the parser."""
    if "\\u" in literal:
        return None
    try:
        value = json.loads(literal)
    except ValueError:
        return None
    return value if isinstance(value, str) else None


def _lift(source: str) -> _Lifted | None:
    read: dict[int, np.ndarray] = {}
    spans = _code_spans(source, read)
    if not any(kind in ("vector", "text") for _, _, kind in spans):
        return None
    lifted: dict[str, Any] = {}
    pieces: list[str] = []
    edits: list[tuple[int, int, int]] = []
    position = 0
    for start, stop, kind in spans:
        if kind == "skip":
            continue
        value = (read[start] if start in read else _numbers(source[start:stop])) if kind == "vector" else _text(source[start:stop])
        if value is None:
            continue  # not plain numbers (or text): leave it to the GraphQL parser
        name = f"{_PREFIX if kind == 'vector' else _TEXT_PREFIX}{len(lifted)}"
        lifted[name] = value
        pieces += [source[position:start], f"${name}"]
        edits.append((start, stop, len(name) + 1))
        position = stop
    if not lifted:
        return None
    rewritten = "".join([*pieces, source[position:]])
    operation = _OPERATION.match(rewritten)
    if operation is None or _top_level_blocks(source, spans) != 1:
        return None  # several operations or fragments: leave the document as it is
    definitions = ", ".join(f"${name}: {'Vector' if name.startswith(_PREFIX) else 'String'}!" for name in lifted)
    # The operation's head comes before every vector literal, so it is at the same offset in the client's text.
    end = operation.end()
    if operation.group("shorthand"):
        at, header = len(operation.group("lead")), f"query({definitions}) "
    elif operation.group("defs"):
        at, header = end, f"{definitions}, "
    else:
        at, header = end, f"({definitions}) "
    rewritten = f"{rewritten[:at]}{header}{rewritten[at:]}"
    return _Lifted(rewritten, lifted, ((at, at, len(header)), *edits))


def _as_vector(value: Any) -> np.ndarray | None:
    """What the Vector scalar (searchd.query.types) accepts, as an array: a list of numbers, or a list of equally long lists of them."""
    try:
        array = np.asarray(value)
    except (ValueError, OverflowError):  # ragged rows
        return None
    return array if array.dtype.kind in "iuf" and array.ndim in (1, 2) and array.size > 0 else None


def _float_list(node: TypeNode) -> bool:
    """Whether a variable's type is [Float] or [[Float]] (any nullability): how Weaviate's schema types a vector."""
    depth = 0
    while True:
        if isinstance(node, NonNullTypeNode):
            node = node.type
        elif isinstance(node, ListTypeNode):
            node, depth = node.type, depth + 1
        else:
            return isinstance(node, NamedTypeNode) and node.name.value == "Float" and depth in (1, 2)


def _vectors_as_weaviate_types_them(document: DocumentNode) -> DocumentNode:
    """The document with each ``[Float]`` variable declared as searchd's ``Vector`` scalar, so that
    ``query($v: [Float]!) {... nearVector: {vector: $v}}`` validates as it does against Weaviate (whose schema types
    a vector ``[Float]``; a vector is the only list of numbers a query takes)."""

    def as_vector(variable: VariableDefinitionNode) -> VariableDefinitionNode:
        if not _float_list(variable.type):
            return variable
        # Non-null, as the search arguments take it: a null vector is refused when the variables are coerced.
        named = NamedTypeNode(name=NameNode(value="Vector"), loc=variable.type.loc)
        return dataclasses.replace(variable, type=NonNullTypeNode(type=named, loc=variable.type.loc))

    definitions = [
        dataclasses.replace(d, variable_definitions=tuple(as_vector(v) for v in d.variable_definitions))
        if isinstance(d, OperationDefinitionNode) and d.variable_definitions and any(_float_list(v.type) for v in d.variable_definitions)
        else d
        for d in document.definitions
    ]
    return document if all(a is b for a, b in zip(definitions, document.definitions)) else dataclasses.replace(document, definitions=tuple(definitions))


def _relocated(document: DocumentNode, lifted: _Lifted, source: Source) -> DocumentNode:
    """A copy of a cached lifted document whose locations are in the client's text, so errors point where they wrote.

    The cached document is shared by every query of the same shape (whatever their vectors), so it is copied
    per request; without its numbers it is small.
    """

    def copied(node: Node) -> Node:
        changes: dict[str, Any] = {}
        for key in node.keys:
            value = getattr(node, key)
            if isinstance(value, Node):
                changes[key] = copied(value)
            elif isinstance(value, tuple) and value and isinstance(value[0], Node):
                changes[key] = tuple(copied(v) for v in value)
        if node.loc is not None:
            location = Location(node.loc.start_token, node.loc.end_token, source)
            location.start, location.end = lifted.original_offset(node.loc.start), lifted.original_offset(node.loc.end)
            changes["loc"] = location
        return dataclasses.replace(node, **changes)

    relocated = copied(document)
    assert isinstance(relocated, DocumentNode)
    return relocated


def _top_level_blocks(source: str, spans: list[tuple[int, int, str]]) -> int:
    """How many top-level { } blocks the document has (one per operation or fragment)."""
    code, position = [], 0
    for start, stop, _ in spans:  # strings, comments and vectors hold no braces of the document's own
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


def _spread_names(selection_set: SelectionSetNode) -> list[str]:
    """The fragments spread anywhere inside a selection set (at any nesting)."""
    names: list[str] = []
    pending = [selection_set]
    while pending:
        for selection in pending.pop().selections:
            if isinstance(selection, FragmentSpreadNode):
                names.append(selection.name.value)
            elif (inner := getattr(selection, "selection_set", None)) is not None:
                pending.append(inner)
    return names


def selection_depth(document: DocumentNode) -> int:
    """How deep the selections nest, following fragments (a fragment cycle counts once; validation rejects it).

    A fragment spread or an inline fragment adds no level of its own: its selections sit where it is spread.
    Each fragment is measured once, in dependency order (an explicit stack, not recursion), so neither a
    long chain of fragments nor fragments spread many times over can make this slow or exhaust the stack.
    The recursion left follows nesting inside one definition, which the parser already bounds.
    """
    fragments = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}
    measured: dict[str, int] = {}

    def depth(selection_set: SelectionSetNode | None) -> int:
        if selection_set is None:
            return 0
        deepest = 0
        for selection in selection_set.selections:
            if isinstance(selection, FragmentSpreadNode):
                # Unknown fragments and a cycle's way back count as nothing here.
                deepest = max(deepest, measured.get(selection.name.value, 1) - 1)
            elif isinstance(selection, InlineFragmentNode):
                deepest = max(deepest, depth(selection.selection_set) - 1)
            else:
                deepest = max(deepest, depth(getattr(selection, "selection_set", None)))
        return deepest + 1

    state: dict[str, bool] = {}  # False while on the stack, True once measured
    for root, definition in fragments.items():
        if root in state:
            continue
        state[root] = False
        stack = [(root, iter(_spread_names(definition.selection_set)))]
        while stack:
            name, spreads = stack[-1]
            child = next((s for s in spreads if s in fragments and s not in state), None)
            if child is None:
                stack.pop()
                measured[name] = depth(fragments[name].selection_set)
                state[name] = True
            else:
                state[child] = False
                stack.append((child, iter(_spread_names(fragments[child].selection_set))))

    return max((depth(d.selection_set) for d in document.definitions if isinstance(d, OperationDefinitionNode)), default=0)


_Validated = tuple[DocumentNode | None, list[GraphQLError], GetPlan | None, Estimate | None]


class DocumentCache:
    """A bounded LRU of validated documents for one schema, with what each costs.

    A document over a limit of ``limits`` (searchd.query.cost) raises LimitExceeded, before it is
    parsed (too many tokens) or before it is validated (too many searches, fields or filter operands).
    ``floors`` holds each collection's least candidates per vector search (its index's ef or candidates).
    """

    def __init__(
        self, schema: GraphQLSchema, size: int = 512, max_depth: int | None = None, limits: LimitsSpec | None = None, floors: Mapping[str, int] | None = None
    ) -> None:
        self.schema = schema
        self.size = size
        self.limits = limits or LimitsSpec()
        self.max_depth = self.limits.max_query_depth if max_depth is None else max_depth
        self.floors = floors or {}
        self._documents: OrderedDict[str, tuple[DocumentNode, GetPlan | None, Estimate]] = OrderedDict()
        self._lock = threading.Lock()

    def _validated(self, source: str) -> _Validated:
        with self._lock:
            cached = self._documents.get(source)
            if cached is not None:
                self._documents.move_to_end(source)
                return cached[0], [], cached[1], cached[2]
        check_tokens(source, self.limits)
        try:
            document = parse(source, no_location=False)
        except GraphQLSyntaxError as error:
            return None, [error], None, None
        depth = selection_depth(document)
        if depth > self.max_depth:
            message = f"the query nests {depth} levels deep, above the maximum of {self.max_depth} (raise server.limits.maxQueryDepth, or flatten the query)"
            return None, [GraphQLError(message)], None, None
        cost = estimate(document, self.limits)  # before validation, which can take quadratic time in the number of fields
        document = _vectors_as_weaviate_types_them(document)
        errors = validate(self.schema, document)
        if errors:
            return None, errors, None, None
        plan = compile_get(self.schema, document)
        with self._lock:
            self._documents[source] = (document, plan, cost)
            if len(self._documents) > self.size:
                self._documents.popitem(last=False)
        return document, [], plan, cost

    def cost(self, prepared: Prepared, variables: Mapping[str, object], operation_name: str | None, sizes: Callable[[str], int | None] = lambda _: None) -> Cost:
        """What running the prepared document with these variables costs (checked by the caller, summed over a batch);
        ``sizes``: how many objects each collection holds now."""
        if prepared.estimate is None:
            return Cost()
        return prepared.estimate.cost(variables, operation_name, self.limits, self.floors, sizes)

    def prepare(self, source: str) -> Prepared:
        lifted = _lift(source) if "vector" in source or "query" in source else None
        # A value the Vector scalar would refuse stays in the text, so the error names what the client wrote
        # (not an internal variable) and points at it.
        arrays = {name: _as_vector(value) if name.startswith(_PREFIX) else value for name, value in lifted.values.items()} if lifted is not None else {}
        if lifted is not None and all(a is not None for a in arrays.values()):
            # The Vector scalar and the search take the arrays as they are: the numbers are read once.
            document, errors, plan, cost = self._validated(lifted.text)
            if document is not None and plan is not None:  # no relocated copy: the plan locates its own errors
                return Prepared(document, [], arrays, plan, lifted, source, cost)
            if document is not None:
                return Prepared(_relocated(document, lifted, Source(source)), [], arrays, estimate=cost)
        document, errors, plan, cost = self._validated(source)
        return Prepared(document, errors, {}, plan, None, source, cost)
