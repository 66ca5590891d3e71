"""What a GraphQL request costs, known before it runs, and the limits (``server.limits``) that refuse it.

Three steps, each cheap next to the work it guards:

1. ``check_body`` counts the braces and brackets of the request body before its JSON is parsed, and
   ``check_tokens`` the lexical tokens of the document before graphql-core parses it (its pure-Python
   lexer takes seconds on a 1.4 MB document); both stop at the limit, so such a request is refused in
   milliseconds.
2. ``estimate``: a walk over the parsed, not yet validated document (validation can be quadratic
   in the number of fields, so it comes after).  It collects fields as graphql-core's executor
   does: fragment spreads expanded (each fragment once per selection set, as the executor merges
   them), inline fragments flattened, every alias a query of its own.  Each Get or Aggregate
   collection query becomes a ``Fetch``: its arguments as written (literals or variables) and how
   many fields each of its rows shows.  The walk counts its own steps against the cost limit, so
   no document makes it long.
3. ``Estimate.cost``: per request, with the variables: each fetch's candidates (limit + offset, the
   index's ef or candidates for a vector search, both legs of a hybrid, over-fetch under a filter)
   plus, for each row it returns, the fields it shows.  ``Cost.check`` refuses a request over a
   limit with a ``LimitExceeded`` that names the amount, the limit and its setting.

The estimate ignores ``@skip``/``@include`` and type conditions: it may count a field that will
not run, never the other way round.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from graphql import (
    BooleanValueNode,
    DocumentNode,
    EnumValueNode,
    FieldNode,
    FloatValueNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    InlineFragmentNode,
    IntValueNode,
    ListValueNode,
    NullValueNode,
    ObjectValueNode,
    OperationDefinitionNode,
    SelectionNode,
    SelectionSetNode,
    StringValueNode,
    ValueNode,
    VariableNode,
)

from searchd.config.spec import LimitsSpec
from searchd.errors import LimitExceeded

SEARCHES = ("nearVector", "nearObject", "nearText", "nearImage", "bm25", "hybrid")
HYBRID_MIN_CANDIDATES = 100  # each hybrid leg fetches at least this many (searchd.query.search)
GROUP_BY_MIN_FETCH = 100  # a groupBy search fetches at least this many (searchd.query.get)
DEFAULT_AGGREGATE_GROUPS = 100  # Aggregate's groupBy returns this many groups unless limit says (searchd.query.aggregate)
AGGREGATE_SCAN_FACTOR = 100  # an Aggregate without near* covers at most queryLimitMax x this many objects
FILTER_OVER_FETCH = 2  # a filtered vector search fetches at least twice its candidates (searchd.index.base)
COUNTED_ARGUMENTS = ("limit", "offset", "where", "groupBy", "objectLimit")
FLATTEN = "flatten the filter: And and Or take any number of operands"

# One token of GraphQL's lexical grammar: block string, string, comment, name, number, "...", or any
# other punctuator; commas and whitespace are insignificant.  Unknown characters count as a token each.
_TOKEN = re.compile(r'"""(?:[^"\\]|\\.|"(?!""))*(?:"""|\Z)|"(?:[^"\\\n]|\\.)*"?|#[^\n\r]*|[_A-Za-z][_0-9A-Za-z]*|-?\d[\d.eE+-]*|\.\.\.|[^\s,\ufeff]')


def _over(what: str, amount: str, limit: float, setting: str, hint: str) -> LimitExceeded:
    return LimitExceeded(f"this query has {amount} {what}; the limit is {limit} (server.limits.{setting})", hint)


# Brackets a query within the limits needs beyond its selections and filters: argument lists, search
# objects (nearText's moveTo objects, hybrid's searches), multi-vectors, groupBy.
NESTING_SLACK = 16
_OPEN, _CLOSE = frozenset("{[("), frozenset("}])")


def nesting_bound(limits: LimitsSpec) -> int:
    """The deepest bracket nesting a query within maxQueryDepth and maxFilterDepth can have (a filter level is a { and a [)."""
    return limits.max_query_depth + 2 * limits.max_filter_depth + NESTING_SLACK


def check_tokens(source: str, limits: LimitsSpec) -> None:
    """Refuse a document with more lexical tokens than ``maxQueryTokens``, or nested deeper than any query within the limits.

    Counted no further than a limit, before the document is parsed: graphql-core's parser is
    recursive, and a literal nested a hundred levels deep would end in its own "nested too deeply"
    syntax error (or not, depending on how deep the stack already was) instead of this clear 422.
    """
    most, deepest = limits.max_query_tokens, nesting_bound(limits)
    if len(source) <= most and source.count("{") + source.count("[") + source.count("(") <= deepest:
        return  # every token is at least one character, and no more brackets than that can nest
    # A Python loop, not one C call over the whole text: the GIL is released between tokens, so other threads
    # (the event loop above all) keep running while a long document is counted.
    depth = 0
    for count, token in enumerate(_TOKEN.finditer(source)):
        if count >= most:
            raise _over("tokens", f"more than {most}", most, "maxQueryTokens", "send vectors and long filters as variables, or split the query")
        text = token.group()
        if text in _OPEN:
            depth += 1
            if depth > deepest:
                raise LimitExceeded(
                    f"this query nests brackets more than {deepest} levels deep, deeper than any query can within the limits of "
                    f"{limits.max_query_depth} (server.limits.maxQueryDepth) and {limits.max_filter_depth} (server.limits.maxFilterDepth)",
                    FLATTEN,
                )
        elif text in _CLOSE:
            depth -= 1


def check_body(body: bytes, limits: LimitsSpec) -> None:
    """Refuse a GraphQL request body with more JSON objects and lists than ``maxQueryTokens``, before it is parsed.

    A variable holding fifty thousand small objects takes the JSON parser a long time, in one call
    that holds the GIL; the objects and lists of the variables count as tokens of the query.
    Counting braces and brackets (inside strings too: they are the query's own tokens) is one quick
    scan of the bytes.
    """
    most = limits.max_query_tokens
    if len(body) > most and body.count(b"{") + body.count(b"[") > most:
        raise _over("tokens (counting the braces and brackets of the request body)", f"more than {most}", most, "maxQueryTokens", "send fewer or smaller variables, or split the query")


# -- the static estimate -----------------------------------------------------------------------


@dataclass(frozen=True)
class Fetch:
    """One Get or Aggregate collection query as written: what it is, its arguments, and the fields of each row."""

    root: str  # "Get" or "Aggregate"
    collection: str
    arguments: Mapping[str, ValueNode]
    fields: int  # field selections per row (nested ones included), at least 1
    counts_only: bool = False  # an Aggregate that selects nothing but meta { count }: it reads no object


@dataclass(frozen=True)
class Estimate:
    """The fetches of each operation (by name; None for an anonymous one), and the other fields they select."""

    operations: Mapping[str | None, tuple[tuple[Fetch, ...], int]]

    def cost(
        self, variables: Mapping[str, Any], operation_name: str | None, limits: LimitsSpec, floors: Mapping[str, int], sizes: Callable[[str], int | None] = lambda _: None
    ) -> Cost:
        """The cost of the operation that will run (all of them when that is not clear yet: graphql-core will refuse).

        ``sizes``: how many objects a collection holds now (None: not known), which an Aggregate without near* reads.
        """
        named = operation_name is None or isinstance(operation_name, str)  # anything else: graphql-core refuses it
        chosen = [self.operations[operation_name]] if named and operation_name in self.operations else list(self.operations.values())
        total = Cost()
        checked: dict[int, Any] = {}  # filters already checked (kept, so their ids stay theirs): a variable every alias uses is walked once
        for fetches, others in chosen:
            total = total + Cost(0, others)
            for fetch in fetches:
                total = total + _fetch_cost(fetch, variables, limits, floors.get(fetch.collection, 0), checked, sizes)
        return total


@dataclass
class _Steps:
    """Counts the walk's steps: every field selection visited is one unit of cost, so the walk is bounded by the cost limit."""

    limits: LimitsSpec
    taken: int = 0

    def step(self, n: int = 1) -> None:
        self.taken += n
        if self.taken > self.limits.max_query_cost:
            most = self.limits.max_query_cost
            raise _over("field selections (fragments expanded)", f"more than {most}", most, "maxQueryCost", "select fewer fields, or spread fragments fewer times")


def _collect(selection_sets: Iterable[SelectionSetNode], fragments: Mapping[str, FragmentDefinitionNode], steps: _Steps) -> dict[str, list[FieldNode]]:
    """The fields of one level by response key, as graphql-core's collect_fields (each fragment spread once per level)."""
    groups: dict[str, list[FieldNode]] = {}
    visited: set[str] = set()
    pending: list[SelectionNode] = [s for selection_set in selection_sets for s in reversed(selection_set.selections)]
    while pending:
        selection = pending.pop()
        steps.step()
        if isinstance(selection, FieldNode):
            groups.setdefault(selection.alias.value if selection.alias else selection.name.value, []).append(selection)
        elif isinstance(selection, InlineFragmentNode):
            pending.extend(reversed(selection.selection_set.selections))
        elif isinstance(selection, FragmentSpreadNode):
            name = selection.name.value
            if name not in visited and name in fragments:
                visited.add(name)
                pending.extend(reversed(fragments[name].selection_set.selections))
    return groups


def _sub_selections(nodes: Sequence[FieldNode]) -> list[SelectionSetNode]:
    return [n.selection_set for n in nodes if n.selection_set is not None]


def _row_fields(nodes: Sequence[FieldNode], fragments: Mapping[str, FragmentDefinitionNode], steps: _Steps) -> int:
    """How many fields one row of these (merged) field nodes shows, at every depth."""
    total = 0
    pending = [_sub_selections(nodes)]
    while pending:
        for group in _collect(pending.pop(), fragments, steps).values():
            total += 1
            inner = _sub_selections(group)
            if inner:
                pending.append(inner)
    return max(total, 1)


def _operation(operation: OperationDefinitionNode, fragments: Mapping[str, FragmentDefinitionNode], limits: LimitsSpec) -> tuple[tuple[Fetch, ...], int]:
    steps = _Steps(limits)
    fetches: list[tuple[str, str, FieldNode, list[FieldNode]]] = []
    others = 0
    for root in _collect([operation.selection_set], fragments, steps).values():
        name = root[0].name.value
        if name not in ("Get", "Aggregate"):
            others += _row_fields(root, fragments, steps)
            continue
        for collection in _collect(_sub_selections(root), fragments, steps).values():
            fetches.append((name, collection[0].name.value, collection[0], collection))
            if len(fetches) > limits.max_searches_per_query:  # refused before any more of the document is walked
                most = limits.max_searches_per_query
                raise _over("searches", f"more than {most}", most, "maxSearchesPerQuery", "split the query, or search fewer collections and aliases at once")
    return tuple(
        Fetch(kind, collection, {a.name.value: a.value for a in first.arguments or ()}, _row_fields(nodes, fragments, steps), kind == "Aggregate" and counts_only(nodes))
        for kind, collection, first, nodes in fetches
    ), others


def counts_only(nodes: Sequence[FieldNode]) -> bool:
    """Whether these (merged) Aggregate field nodes select ``meta { count }`` and nothing else (fragments: not looked into)."""
    for node in nodes:
        for selection in node.selection_set.selections if node.selection_set else ():
            if not isinstance(selection, FieldNode):
                return False
            name = selection.name.value
            if name == "meta":
                inner = selection.selection_set.selections if selection.selection_set else ()
                if not all(isinstance(s, FieldNode) and s.name.value in ("count", "__typename") for s in inner):
                    return False
            elif name != "__typename":
                return False
    return True


def estimate(document: DocumentNode, limits: LimitsSpec) -> Estimate:
    """The static estimate of a parsed document; raises LimitExceeded when the document alone is over a limit."""
    fragments = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}
    operations: dict[str | None, tuple[tuple[Fetch, ...], int]] = {}
    for definition in document.definitions:
        if isinstance(definition, OperationDefinitionNode):
            operations[definition.name.value if definition.name else None] = _operation(definition, fragments, limits)
    found = Estimate(operations)
    for fetches, _others in operations.values():
        for fetch in fetches:  # filters written as literals are checked now; variables per request
            where = fetch.arguments.get("where")
            if where is not None and not isinstance(where, VariableNode):
                check_filter(_literal(where, {}, limits), limits)
    return found


# -- values ----------------------------------------------------------------------------------


def _plain(node: ValueNode, variables: Mapping[str, Any]) -> Any:
    """A literal as plain data, variables substituted (anything malformed becomes None: validation reports it later)."""
    if isinstance(node, VariableNode):
        return variables.get(node.name.value)
    if isinstance(node, IntValueNode):
        return int(node.value)
    if isinstance(node, FloatValueNode):
        try:
            return float(node.value)
        except ValueError:
            return None
    if isinstance(node, (StringValueNode, EnumValueNode)):
        return node.value
    if isinstance(node, BooleanValueNode):
        return node.value
    if isinstance(node, ListValueNode):
        return [_plain(v, variables) for v in node.values]
    if isinstance(node, ObjectValueNode):
        return {f.name.value: _plain(f.value, variables) for f in node.fields}
    return None


def _literal(node: ValueNode, variables: Mapping[str, Any], limits: LimitsSpec) -> Any:
    try:
        return _plain(node, variables)
    except RecursionError:  # the parser let it through, but it nests deeper than any filter may
        raise LimitExceeded(
            f"this query has a where filter nested more than {limits.max_filter_depth} levels deep; the limit is {limits.max_filter_depth} (server.limits.maxFilterDepth)",
            FLATTEN,
        ) from None


def _given(node: ValueNode | None, variables: Mapping[str, Any]) -> bool:
    if node is None or isinstance(node, NullValueNode):
        return False
    return not isinstance(node, VariableNode) or variables.get(node.name.value) is not None


def _int(value: Any, default: int, most: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        return default
    return min(max(value, 0), most)


def _nodes(where: Any) -> Iterator[tuple[Mapping[str, Any], int]]:
    """Each filter node with its depth (a condition alone is depth 1), without recursion: a filter may nest deeper than Python's stack."""
    pending = [(where, 1)]
    while pending:
        node, depth = pending.pop()
        if isinstance(node, Mapping):
            yield node, depth
            operands = node.get("operands")
            if isinstance(operands, list):
                pending.extend((o, depth + 1) for o in operands)


class FilterBudget:
    """A where filter's operands and depth, counted node by node as it is walked or translated.

    Each node is counted as it is met, so a walk stops at the first node over a limit and even a
    filter of a hundred thousand operands (or one nested thousands deep) costs no more than the limits
    allow to walk; the count it reports is a lower bound.  GraphQL's check and the gRPC edge's
    translation of a Filters message share it, so both refuse with the same message.
    """

    def __init__(self, limits: LimitsSpec) -> None:
        self.limits = limits
        self.operands = 0

    def visit(self, depth: int, operands: int) -> None:
        """Count a node at ``depth`` (a condition alone is depth 1) with its operands (child filters and listed values)."""
        limits = self.limits
        if depth > limits.max_filter_depth:
            raise LimitExceeded(
                f"this query has a where filter nested more than {limits.max_filter_depth} levels deep; the limit is {limits.max_filter_depth} (server.limits.maxFilterDepth)",
                FLATTEN,
            )
        self.operands += operands
        if self.operands > limits.max_filter_operands:
            raise _over(
                "filter operands in one where filter", f"at least {self.operands}", limits.max_filter_operands, "maxFilterOperands", "use ContainsAny with fewer values, or narrow the filter"
            )


def check_filter(where: Any, limits: LimitsSpec) -> None:
    """Refuse a where filter with too many operands or too deep a nesting, before it is parsed or run."""
    budget = FilterBudget(limits)
    for node, depth in _nodes(where):
        children = node.get("operands")
        values = sum(len(v) for key, v in node.items() if isinstance(key, str) and key.startswith("value") and isinstance(v, list))
        budget.visit(depth, (len(children) if isinstance(children, list) else 0) + values)


# -- the cost of one request -----------------------------------------------------------------


@dataclass(frozen=True)
class Cost:
    searches: int = 0
    units: int = 0  # candidates fetched plus fields shown per row returned

    def __add__(self, other: Cost) -> Cost:
        return Cost(self.searches + other.searches, self.units + other.units)

    def check(self, limits: LimitsSpec) -> None:
        if self.searches > limits.max_searches_per_query:
            raise _over("searches", str(self.searches), limits.max_searches_per_query, "maxSearchesPerQuery", "split the query, or search fewer collections and aliases at once")
        if self.units > limits.max_query_cost:
            raise LimitExceeded(
                f"this query costs {self.units}; the limit is {limits.max_query_cost} (server.limits.maxQueryCost)",
                "ask for fewer results (limit), fewer fields or fewer searches; docs/operations.md explains the cost",
            )


def _fetch_cost(fetch: Fetch, variables: Mapping[str, Any], limits: LimitsSpec, floor: int, checked: dict[int, Any], sizes: Callable[[str], int | None]) -> Cost:
    args = {name: _literal(node, variables, limits) for name, node in fetch.arguments.items() if name in COUNTED_ARGUMENTS}
    where = args.get("where")
    if where is not None and id(where) not in checked:
        check_filter(where, limits)
        checked[id(where)] = where
    most = limits.query_limit_max
    search = next((name for name in SEARCHES if _given(fetch.arguments.get(name), variables)), None)
    if fetch.root == "Aggregate":
        groups = _int(args.get("limit"), DEFAULT_AGGREGATE_GROUPS, most) if args.get("groupBy") is not None else 1
        if search is not None:
            scanned = _int(args.get("objectLimit"), most, most * AGGREGATE_SCAN_FACTOR)
        elif fetch.counts_only and args.get("groupBy") is None:
            scanned = 0  # counted, not read
        else:  # every object the filter passes is read: at most the collection, and at most the scan's bound
            size = sizes(fetch.collection)
            scanned = most * AGGREGATE_SCAN_FACTOR if size is None else min(size, most * AGGREGATE_SCAN_FACTOR)
        return Cost(1, scanned + max(groups, 1) * fetch.fields)
    limit = _int(args.get("limit"), limits.query_limit_default, most)
    offset = _int(args.get("offset"), 0, most)
    fetched, rows = limit + offset, limit
    group_by = args.get("groupBy")
    if isinstance(group_by, Mapping):
        groups, per_group = _int(group_by.get("groups"), 0, most), _int(group_by.get("objectsPerGroup"), 0, most)
        fetched = max(fetched, groups * per_group * 4, GROUP_BY_MIN_FETCH)
        rows = groups * (1 + per_group)
    if search in (None, "bm25"):
        candidates = fetched
    elif search == "hybrid":
        candidates = 2 * max(HYBRID_MIN_CANDIDATES, fetched, floor)
    else:
        candidates = max(fetched, floor)
    if search is not None and search != "bm25" and where is not None:
        candidates *= FILTER_OVER_FETCH
    return Cost(1, candidates + max(rows, 1) * fetch.fields)
