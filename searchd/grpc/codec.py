"""Protocol values ↔ the values searchd's query layer and write path take: vectors, filters, properties.

The gRPC edge turns each request into the same arguments a GraphQL document gives the
query layer (``where`` trees, ``nearVector`` inputs …), so both edges share one
implementation of every check and every search.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from google.protobuf import json_format

from searchd.catalog import CompiledCollection
from searchd.config.spec import LimitsSpec, PropertySpec, PropertyType
from searchd.errors import QueryError
from searchd.query.cost import FilterBudget
from searchd.where import TIME_PATHS

SINGLE_FP32 = 1  # weaviate.v1.Vectors.VectorType
MULTI_FP32 = 2

OPERATORS = {
    1: "Equal",
    2: "NotEqual",
    3: "GreaterThan",
    4: "GreaterThanEqual",
    5: "LessThan",
    6: "LessThanEqual",
    7: "And",
    8: "Or",
    10: "Like",
    11: "IsNull",
    12: "ContainsAny",
    13: "ContainsAll",
    14: "ContainsNone",
    15: "Not",
}
_ARRAYS = {"value_text_array": "valueText", "value_int_array": "valueInt", "value_boolean_array": "valueBoolean", "value_number_array": "valueNumber"}
_SCALARS = {"value_text": "valueText", "value_int": "valueInt", "value_boolean": "valueBoolean", "value_number": "valueNumber"}


# -- vectors ------------------------------------------------------------------------


def single_vector(data: bytes, what: str) -> np.ndarray:
    if not data or len(data) % 4:
        raise QueryError(f"{what} holds {len(data)} bytes, which is not a whole number of 32-bit floats", "send the vector as little-endian float32s")
    return np.frombuffer(data, dtype="<f4")


def multi_vector(data: bytes, what: str) -> np.ndarray:
    """A multi-vector: a little-endian uint16 row width, then the rows' float32s."""
    width = int(np.frombuffer(data[:2], dtype="<u2")[0]) if len(data) >= 2 else 0
    body = data[2:]
    if width == 0 or not body or len(body) % (4 * width):
        raise QueryError(f"{what} is not a multi-vector (a uint16 row width, then whole rows of float32s)", "send rows of equal width")
    return np.frombuffer(body, dtype="<f4").reshape(-1, width)


def typed_vector(vectors: Any, what: str) -> np.ndarray:
    """One ``weaviate.v1.Vectors`` entry as an array."""
    if vectors.type == MULTI_FP32:
        return multi_vector(vectors.vector_bytes, what)
    return single_vector(vectors.vector_bytes, what)


def vector_bytes(array: np.ndarray) -> tuple[bytes, int]:
    """An array in the protocol's encoding, with its VectorType."""
    if array.ndim == 2:
        return np.asarray([array.shape[1]], dtype="<u2").tobytes() + np.ascontiguousarray(array, dtype="<f4").tobytes(), MULTI_FP32
    return np.ascontiguousarray(array, dtype="<f4").tobytes(), SINGLE_FP32


def target_names(message: Any) -> list[str]:
    """The target vectors a near* message names (``targets`` or the deprecated ``target_vectors``)."""
    if message.HasField("targets"):
        targets = message.targets
        if len(targets.target_vectors) > 1 and (targets.combination or len(targets.weights_for_targets)):
            raise QueryError("combining several target vectors is not supported", "search one target vector per query")
        return list(targets.target_vectors)
    return list(message.target_vectors)


def near_vector_input(message: Any, what: str = "near_vector") -> tuple[np.ndarray, list[str]]:
    """The query vector of a NearVector (any of its encodings) and the target vectors it names."""
    targets = target_names(message)
    if len(message.vectors):
        if len(message.vectors) > 1:
            raise QueryError(f"{what} holds {len(message.vectors)} vectors; searching with several at once is not supported", "send one vector")
        entry = message.vectors[0]
        return typed_vector(entry, what), targets or ([entry.name] if entry.name else [])
    if len(getattr(message, "vector_for_targets", ())):  # NearVector only (Hybrid has vectors and vector_bytes)
        if len(message.vector_for_targets) > 1:
            raise QueryError(f"{what} names {len(message.vector_for_targets)} target vectors; searching several at once is not supported", "search one target vector")
        entry = message.vector_for_targets[0]
        if len(entry.vectors) > 1:
            raise QueryError(f"{what} holds several vectors for '{entry.name}'; searching with several at once is not supported", "send one vector")
        array = typed_vector(entry.vectors[0], what) if len(entry.vectors) else single_vector(entry.vector_bytes, what)
        return array, [entry.name]
    if message.vector_bytes:
        return single_vector(message.vector_bytes, what), targets
    if len(message.vector):
        return np.asarray(message.vector, dtype=np.float32), targets
    if len(getattr(message, "vector_per_target", ())):
        if len(message.vector_per_target) > 1:
            raise QueryError(f"{what} names several target vectors; searching several at once is not supported", "search one target vector")
        ((name, data),) = message.vector_per_target.items()
        return single_vector(data, what), [name]
    raise QueryError(f"{what} carries no vector", "send the query vector")


# -- filters ------------------------------------------------------------------------


def _path(filters: Any) -> str:
    if filters.HasField("target"):
        kind = filters.target.WhichOneof("target")
        if kind != "property":
            raise QueryError("filters on cross-references are not supported (searchd collections have no reference properties)", "filter on a property of the collection")
        return str(filters.target.property)
    if len(filters.on) != 1:
        raise QueryError(f"filter path must name one property, got {list(filters.on)!r}", "filter on one property of the collection")
    return str(filters.on[0])


def _coerced(collection: CompiledCollection, path: str, key: str, value: Any) -> tuple[str, Any]:
    """The clients' spellings of a value, as the GraphQL ``where`` keys searchd checks."""
    prop = collection.spec.find_property(path)
    if path in TIME_PATHS and key == "valueText":
        values = value if isinstance(value, list) else [value]
        if not all(isinstance(v, str) and v.isascii() and v.isdigit() for v in values):
            return "valueDate", value  # the clients send a datetime as RFC 3339 text
    if prop is not None and prop.type is PropertyType.INT and key == "valueNumber":
        values = value if isinstance(value, list) else [value]
        if all(float(v).is_integer() for v in values):
            return "valueInt", [int(v) for v in value] if isinstance(value, list) else int(value)
    return key, value


def _operator(filters: Any) -> str:
    operator = OPERATORS.get(filters.operator)
    if operator is None:
        name = filters.DESCRIPTOR.fields_by_name["operator"].enum_type.values_by_number.get(filters.operator)
        label = name.name if name is not None else str(filters.operator)
        raise QueryError(f"filter operator {label} is not supported", f"use one of: {', '.join(OPERATORS.values())}")
    return operator


def where_of(collection: CompiledCollection, filters: Any, limits: LimitsSpec) -> dict[str, Any]:
    """A ``weaviate.v1.Filters`` tree as the GraphQL ``where`` argument it stands for.

    Translated without recursion, each node counted against server.limits.maxFilterOperands and
    maxFilterDepth as it is met: a hostile message is refused (as GraphQL refuses its twin) after
    at most the limits' worth of work, never by a deep recursion or a walk of fifty thousand nodes.
    """
    budget = FilterBudget(limits)
    root: dict[str, Any] = {}
    pending: list[tuple[Any, dict[str, Any], int]] = [(filters, root, 1)]
    while pending:
        message, where, depth = pending.pop()
        operator = _operator(message)
        if operator in ("And", "Or", "Not"):
            budget.visit(depth, len(message.filters))
            operands: list[dict[str, Any]] = [{} for _ in message.filters]
            where.update(operator=operator, operands=operands)
            pending.extend(reversed([(child, into, depth + 1) for child, into in zip(message.filters, operands)]))  # in order
            continue
        kind = message.WhichOneof("test_value")
        budget.visit(depth, len(getattr(message, kind).values) if kind in _ARRAYS else 0)
        path = _path(message)
        where.update(operator=operator, path=[path])
        if kind in _SCALARS:
            key, value = _coerced(collection, path, _SCALARS[kind], getattr(message, kind))
            where[key] = value
        elif kind in _ARRAYS:
            key, value = _coerced(collection, path, _ARRAYS[kind], list(getattr(message, kind).values))
            where[key] = value
        elif kind is not None:
            raise QueryError(f"filter value {kind} is not supported", "filter with text, int, number, boolean or date values")
    return root


# -- properties ---------------------------------------------------------------------


def batch_properties(properties: Any) -> dict[str, Any]:
    """A BatchObject's properties as the JSON object a REST client would send."""
    values: dict[str, Any] = {}
    if properties.HasField("non_ref_properties"):
        values.update(json_format.MessageToDict(properties.non_ref_properties))
    for entry in properties.text_array_properties:
        values[entry.prop_name] = list(entry.values)
    for entry in properties.int_array_properties:
        values[entry.prop_name] = list(entry.values)
    for entry in properties.boolean_array_properties:
        values[entry.prop_name] = list(entry.values)
    for entry in properties.number_array_properties:
        values[entry.prop_name] = np.frombuffer(entry.values_bytes, dtype="<f8").tolist() if entry.values_bytes else list(entry.values)
    for name in properties.empty_list_props:
        values[name] = []
    if len(properties.single_target_ref_props) or len(properties.multi_target_ref_props) or len(properties.object_properties) or len(properties.object_array_properties):
        raise QueryError("references and object properties are not supported (searchd has neither)", "send the collection's declared properties only")
    return values


_VALUE_FIELDS: dict[PropertyType, tuple[str, Callable[[Any], Any]]] = {
    PropertyType.TEXT: ("text_value", str),
    PropertyType.INT: ("int_value", int),
    PropertyType.NUMBER: ("number_value", float),
    PropertyType.BOOLEAN: ("bool_value", bool),
    PropertyType.DATE: ("date_value", str),  # RFC 3339, as stored
    PropertyType.UUID: ("uuid_value", str),
    PropertyType.BLOB: ("blob_value", str),  # base64, as stored
}


def set_value(target: Any, prop: PropertySpec, value: Any) -> None:
    """Fill a ``weaviate.v1.Value`` with a stored property value, typed as the clients decode it."""
    if prop.type is PropertyType.TEXT_ARRAY:
        target.list_value.text_values.values.extend(value)
        return
    field, convert = _VALUE_FIELDS[prop.type]
    setattr(target, field, convert(value))


def uuid_bytes(object_id: str) -> bytes:
    return uuid.UUID(object_id).bytes


def wanted_properties(collection: CompiledCollection, names: Sequence[str] | None) -> list[PropertySpec]:
    """The properties a request returns: those named, or every one but BLOBs (as Weaviate)."""
    if names is None:
        return [p for p in collection.spec.properties if p.type is not PropertyType.BLOB]
    found = []
    for name in names:
        prop = collection.spec.find_property(name)
        if prop is None:
            known = ", ".join(p.name for p in collection.spec.properties) or "none"
            raise QueryError(f"no property '{name}' in collection '{collection.name}'", f"its properties are: {known}")
        found.append(prop)
    return found
