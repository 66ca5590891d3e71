"""A collection's documents in memory: doc ↔ id, timestamps, and a column per filterable property.

Every index keys objects by ``doc``, the store's integer for an object.  The table
maps docs to ids (and back) and answers ``where`` filters as a boolean mask over
docs in microseconds to milliseconds, with the semantics ``searchd.where`` states
(the same as the SQL backends').  A filter on a property that has no column (not
filterable, or holding a value a column cannot represent) is answered by the store.

Writes happen under the engine's write lock; queries read concurrently.  Arrays
only ever grow, and grow before ``_size`` moves, so a reader that takes ``_size``
first always finds every array at least that long.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from searchd import deadline
from searchd.config.spec import CollectionSpec, PropertyType
from searchd.index.ids import IdMap
from searchd.where import COMPARISONS, ID_PATHS, TIME_PATHS, Combination, Condition, Filter, epoch_seconds, like_regex

_COMPARE: dict[str, Callable[[Any, Any], Any]] = {
    "Equal": lambda a, b: a == b,
    "NotEqual": lambda a, b: a != b,
    "GreaterThan": lambda a, b: a > b,
    "GreaterThanEqual": lambda a, b: a >= b,
    "LessThan": lambda a, b: a < b,
    "LessThanEqual": lambda a, b: a <= b,
}


def _grown(array: np.ndarray, size: int, fill: Any) -> np.ndarray:
    if len(array) >= size:
        return array
    bigger = np.full(max(size, 2 * len(array), 64), fill, dtype=array.dtype)
    bigger[: len(array)] = array
    return bigger


class _Scalar:
    """INT, NUMBER, DATE (epoch seconds) and BOOLEAN (0/1) values, with a mask of docs that have one."""

    def __init__(self, kind: PropertyType) -> None:
        self.kind = kind
        self.dtype = np.int64 if kind in (PropertyType.INT, PropertyType.BOOLEAN) else np.float64
        self.values = np.zeros(0, dtype=self.dtype)
        self.present = np.zeros(0, dtype=bool)

    def grow(self, size: int) -> None:
        self.values = _grown(self.values, size, 0)
        self.present = _grown(self.present, size, False)

    def put(self, doc: int, value: Any) -> bool:
        if self.kind is PropertyType.DATE:
            value = epoch_seconds(value)
        if value is None or isinstance(value, (list, dict, str)):
            self.present[doc] = False
            return value is None
        try:
            self.values[doc] = int(value) if self.dtype is np.int64 else float(value)
        except (OverflowError, ValueError, TypeError):
            self.present[doc] = False
            return False  # the store answers filters on it from now on
        self.present[doc] = True
        return True

    def remove(self, doc: int) -> None:
        self.present[doc] = False

    def match(self, condition: Condition, size: int) -> np.ndarray:
        op, value = condition.operator, condition.value
        present, values = self.present[:size], self.values[:size]
        if op == "IsNull":
            return ~present if value else present.copy()
        if op == "NotEqual":
            return np.asarray(~present | (values != value), dtype=bool)
        if op in _COMPARE:
            return np.asarray(present & _COMPARE[op](values, value), dtype=bool)
        listed = np.asarray(value, dtype=self.dtype)
        if op == "ContainsAny":
            return present & np.isin(values, listed)
        if op == "ContainsNone":
            return ~present | ~np.isin(values, listed)
        # ContainsAll on a single value: it must equal every listed value.
        return present & (values == listed[0]) if len(set(value)) == 1 else np.zeros(size, dtype=bool)


class _Text:
    """TEXT and UUID values as codes into a list of distinct values (-1: none)."""

    def __init__(self) -> None:
        self.codes = np.zeros(0, dtype=np.int32)
        self.values: list[str] = []
        self.code_of: dict[str, int] = {}

    def grow(self, size: int) -> None:
        self.codes = _grown(self.codes, size, -1)

    def code(self, value: str) -> int:
        found = self.code_of.get(value)
        if found is None:
            found = self.code_of[value] = len(self.values)
            self.values.append(value)
        return found

    def put(self, doc: int, value: Any) -> bool:
        if not isinstance(value, str):
            self.codes[doc] = -1
            return value is None
        self.codes[doc] = self.code(value)
        return True

    def remove(self, doc: int) -> None:
        self.codes[doc] = -1

    def matching_codes(self, test: Callable[[str], bool]) -> np.ndarray:
        return np.fromiter((c for c, v in enumerate(deadline.checked(self.values)) if test(v)), dtype=np.int32)

    def match(self, condition: Condition, size: int) -> np.ndarray:
        op, value = condition.operator, condition.value
        codes = self.codes[:size]
        present = codes >= 0
        if op == "IsNull":
            return ~present if value else present
        if op in ("Equal", "NotEqual"):
            hit = np.asarray(codes == self.code_of.get(value, -2), dtype=bool)
            return hit if op == "Equal" else ~hit
        if op == "Like":
            pattern = like_regex(value)
            return np.isin(codes, self.matching_codes(lambda v: pattern.fullmatch(v) is not None))
        if op in _COMPARE:
            compare = _COMPARE[op]
            return np.isin(codes, self.matching_codes(lambda v: bool(compare(v, value))))
        listed = np.asarray([self.code_of.get(v, -2) for v in value], dtype=np.int32)
        if op == "ContainsAny":
            return np.isin(codes, listed)
        if op == "ContainsNone":
            return ~np.isin(codes, listed)
        return codes == listed[0] if len(set(value)) == 1 else np.zeros(size, dtype=bool)


class _TextArray:
    """TEXT[] values: for each distinct element, the docs whose array holds it."""

    def __init__(self) -> None:
        self.present = np.zeros(0, dtype=bool)
        self.docs_of: dict[str, set[int]] = {}
        self.elements: dict[int, frozenset[str]] = {}

    def grow(self, size: int) -> None:
        self.present = _grown(self.present, size, False)

    def remove(self, doc: int) -> None:
        self.present[doc] = False
        for element in self.elements.pop(doc, ()):
            holders = self.docs_of[element]
            holders.discard(doc)
            if not holders:
                del self.docs_of[element]

    def put(self, doc: int, value: Any) -> bool:
        self.remove(doc)
        if not isinstance(value, list):
            return value is None
        elements = frozenset(v for v in value if isinstance(v, str))
        if len(elements) != len(set(map(repr, value))):
            return False  # a non-text element: SQL compares it by its own rules
        self.present[doc] = True
        self.elements[doc] = elements
        for element in elements:
            self.docs_of.setdefault(element, set()).add(doc)
        return True

    def _holding(self, elements: Iterable[str], size: int) -> np.ndarray:
        mask = np.zeros(size, dtype=bool)
        for element in deadline.checked(elements):
            docs = [d for d in self.docs_of.get(element, ()) if d < size]
            mask[docs] = True
        return mask

    def match(self, condition: Condition, size: int) -> np.ndarray:
        op, value = condition.operator, condition.value
        if op == "IsNull":
            return ~self.present[:size] if value else self.present[:size].copy()
        if op in ("Equal", "NotEqual"):
            hit = self._holding([value], size)
            return hit if op == "Equal" else ~hit
        if op == "Like":
            pattern = like_regex(value)
            return self._holding([e for e in deadline.checked(list(self.docs_of)) if pattern.fullmatch(e)], size)
        if op in _COMPARE:
            compare = _COMPARE[op]
            return self._holding([e for e in deadline.checked(list(self.docs_of)) if compare(e, value)], size)
        if op == "ContainsAny":
            return self._holding(value, size)
        if op == "ContainsNone":
            return ~self._holding(value, size)
        mask = self.present[:size].copy()
        for element in set(value):
            mask &= self._holding([element], size)
        return mask


_Column = _Scalar | _Text | _TextArray


def _column_for(kind: PropertyType) -> _Column:
    if kind in (PropertyType.TEXT, PropertyType.UUID):
        return _Text()
    if kind is PropertyType.TEXT_ARRAY:
        return _TextArray()
    return _Scalar(kind)


# A TEXT column is kept while at most half its documents have a value of their own (or below this floor).
_DISTINCT_TEXT_MIN = 1000


# answers_cheaply: up to this many numeric comparisons over up to this many docs (about 30 us a comparison at 60k).
INLINE_FILTER_LEAVES = 4
INLINE_FILTER_DOCS = 250_000
_NUMERIC = frozenset({PropertyType.INT, PropertyType.NUMBER, PropertyType.DATE, PropertyType.BOOLEAN})


def _numeric_leaves(where: Filter, most: int) -> bool:
    """Whether ``where`` is at most ``most`` plain comparisons of numbers, dates, booleans or timestamps."""
    pending: list[Filter] = [where]
    leaves = 0
    while pending:
        node = pending.pop()
        if isinstance(node, Combination):
            pending.extend(node.operands)
            continue
        leaves += 1
        numeric = node.kind in _NUMERIC or (node.kind is None and node.path in TIME_PATHS)
        if leaves > most or not numeric or node.operator not in COMPARISONS:
            return False
    return True



class DocTable:
    def __init__(self, collection: CollectionSpec) -> None:
        self._size = 0  # every doc is below it; arrays are at least this long
        self.live = np.zeros(0, dtype=bool)
        self.created = np.zeros(0, dtype=np.int64)
        self.updated = np.zeros(0, dtype=np.int64)
        self._ids = IdMap()
        self._columns: dict[str, _Column] = {p.name: _column_for(p.type) for p in collection.properties if p.filterable}
        self.columns = tuple((p.name, p.type) for p in collection.properties if p.filterable)
        self._inexact: set[str] = set()  # columns that met a value they cannot represent

    def __len__(self) -> int:
        return len(self._ids)

    @property
    def size(self) -> int:
        """One past the highest doc: the length of a mask."""
        return self._size

    def doc_of(self, object_id: str) -> int | None:
        return self._ids.doc_of(object_id)

    def id_of(self, doc: int) -> str | None:
        return self._ids.id_of(doc)

    def alive(self, docs: np.ndarray) -> np.ndarray:
        """``live`` for an array of docs (False past the end)."""
        live = self.live
        result = np.zeros(len(docs), dtype=bool)
        inside = (docs >= 0) & (docs < len(live))
        result[inside] = live[docs[inside]]
        return result

    def ids_of(self, docs: Sequence[int]) -> list[str | None]:
        """``id_of`` for many docs at once (a search's hits)."""
        return self._ids.ids_of(docs)

    def _grow(self, doc: int) -> None:
        if doc < self._size:
            return
        size = doc + 1
        self.live = _grown(self.live, size, False)
        self.created = _grown(self.created, size, 0)
        self.updated = _grown(self.updated, size, 0)
        for column in self._columns.values():
            column.grow(size)
        self._size = size

    def put(self, doc: int, object_id: str, properties: Mapping[str, Any], created_ms: int, updated_ms: int) -> None:
        self._grow(doc)
        for name, column in list(self._columns.items()):
            if not column.put(doc, properties.get(name)):
                self._drop(name)
            elif isinstance(column, _Text) and len(column.values) > max(_DISTINCT_TEXT_MIN, len(self._ids) // 2):
                self._drop(name)  # nearly every value distinct (a description, a gloss): a copy of the text, of little use to filters
        self.created[doc], self.updated[doc] = created_ms, updated_ms
        self._ids.put(doc, object_id)
        self.live[doc] = True

    def _drop(self, name: str) -> None:
        """Stop answering filters on ``name`` (the store does, with its expression index) and free the column."""
        self._inexact.add(name)
        del self._columns[name]

    def remove(self, doc: int) -> None:
        if doc >= self._size or not self.live[doc]:
            return
        self.live[doc] = False
        self._ids.remove(doc)
        for column in self._columns.values():
            column.remove(doc)

    def answers(self, where: Filter) -> bool:
        """Whether the columns answer this filter (else the store does)."""
        if isinstance(where, Combination):
            return all(self.answers(o) for o in where.operands)
        return where.path in ID_PATHS or where.path in TIME_PATHS or (where.path in self._columns and where.path not in self._inexact)

    def answers_cheaply(self, where: Filter) -> bool:
        """Whether ``where`` is a few numeric comparisons over a collection small enough to mask at once (on the event loop)."""
        return self._size <= INLINE_FILTER_DOCS and _numeric_leaves(where, INLINE_FILTER_LEAVES)

    def mask_or_none(self, where: Filter) -> np.ndarray | None:
        """``mask``, or None when the columns do not answer the filter (the store does then).

        A write may drop a column between the check and the evaluation: that is a None too.
        """
        if not self.answers(where):
            return None
        try:
            return self.mask(where)
        except KeyError:
            return None

    def mask(self, where: Filter) -> np.ndarray:
        """Docs that pass the filter, as a boolean mask of length ``size``."""
        size = self._size
        return self._match(where, size) & self.live[:size]

    def _match(self, where: Filter, size: int) -> np.ndarray:
        deadline.check()  # once per operand: thousands of them each scan the collection
        if isinstance(where, Combination):
            parts = [self._match(o, size) for o in where.operands]
            if where.operator == "Not":
                return ~parts[0]
            combined = parts[0].copy()
            for part in parts[1:]:
                if where.operator == "And":
                    combined &= part
                else:
                    combined |= part
            return combined
        if where.path in TIME_PATHS:
            column = self.created if where.path == "_creationTimeUnix" else self.updated
            return _time_match(column[:size], where, size)
        if where.path in ID_PATHS:
            return self._id_match(where, size)
        return self._columns[where.path].match(where, size)

    def _id_match(self, condition: Condition, size: int) -> np.ndarray:
        op, value = condition.operator, condition.value
        if op == "IsNull":
            return np.zeros(size, dtype=bool) if value else np.ones(size, dtype=bool)
        if op in ("Equal", "NotEqual", "ContainsAny", "ContainsNone", "ContainsAll"):
            listed = [value] if op in ("Equal", "NotEqual") else list(value)
            if op == "ContainsAll" and len(set(listed)) > 1:
                return np.zeros(size, dtype=bool)
            mask = np.zeros(size, dtype=bool)
            docs = [d for d in (self._ids.doc_of(v) for v in listed) if d is not None and d < size]
            mask[docs] = True
            return ~mask if op in ("NotEqual", "ContainsNone") else mask
        return self._ids.compare(_COMPARE[op], value, size)


def _time_match(column: np.ndarray, condition: Condition, size: int) -> np.ndarray:
    op, value = condition.operator, condition.value
    if op == "IsNull":
        return np.zeros(size, dtype=bool) if value else np.ones(size, dtype=bool)
    if op in _COMPARE:
        return np.asarray(_COMPARE[op](column, value), dtype=bool)
    listed = np.asarray(value, dtype=np.int64)
    if op == "ContainsAny":
        return np.isin(column, listed)
    if op == "ContainsNone":
        return ~np.isin(column, listed)
    return column == listed[0] if len(set(value)) == 1 else np.zeros(size, dtype=bool)
