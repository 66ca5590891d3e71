"""searchd's own .proto files match the weaviate.v1 protocol field for field (checked against the v4 client's descriptors)."""

from __future__ import annotations

import importlib
from typing import Any

import pytest

from searchd.grpc.protocol import load_protocol

weaviate_proto = pytest.importorskip("weaviate.proto.v1", reason="the weaviate-client test extra is not installed")


def _theirs() -> Any:
    """The default descriptor pool, filled by the client's generated modules."""
    from google.protobuf import descriptor_pool
    from weaviate.proto import v1

    for name in ("aggregate_pb2", "batch_pb2", "batch_delete_pb2", "search_get_pb2", "tenants_pb2", "health_weaviate_pb2"):
        assert getattr(v1, name) is not None
    # The service's module sits beside the others, in the package the client picked for this protobuf version.
    importlib.import_module(v1.aggregate_pb2.__name__.rsplit(".", 1)[0] + ".weaviate_pb2")
    return descriptor_pool.Default()


def _field_facts(field: Any) -> tuple[Any, ...]:
    oneof = field.containing_oneof.name if field.containing_oneof is not None else None
    type_name = field.message_type.full_name if field.message_type is not None else field.enum_type.full_name if field.enum_type is not None else None
    return (field.number, field.type, field.label, type_name, oneof)


def test_every_message_field_and_enum_matches_weaviate() -> None:
    ours = load_protocol()
    theirs = _theirs()
    checked = 0
    for full_name, cls in ours.classes.items():
        if not full_name.startswith("weaviate.v1."):
            continue
        mine = cls.DESCRIPTOR
        other = theirs.FindMessageTypeByName(full_name)
        for field in mine.fields:
            assert field.name in other.fields_by_name, f"{full_name}.{field.name} is not in Weaviate's protocol"
            assert _field_facts(field) == _field_facts(other.fields_by_name[field.name]), f"{full_name}.{field.name} differs"
            checked += 1
        for enum in mine.enum_types:
            assert {v.name: v.number for v in enum.values} == {v.name: v.number for v in other.enum_types_by_name[enum.name].values}
    assert checked > 400  # every message we serve, not a few


def test_service_methods_match_weaviate() -> None:
    ours = load_protocol()
    theirs = _theirs()
    mine = ours.pool.FindServiceByName("weaviate.v1.Weaviate")
    other = theirs.FindServiceByName("weaviate.v1.Weaviate")
    for method in mine.methods:
        twin = other.methods_by_name[method.name]
        assert (method.input_type.full_name, method.output_type.full_name) == (twin.input_type.full_name, twin.output_type.full_name)
    assert {m.name for m in mine.methods} == {"Search", "BatchObjects", "BatchReferences", "BatchDelete", "TenantsGet", "Aggregate"}
    health = ours.pool.FindServiceByName("grpc.health.v1.Health")
    assert [m.name for m in health.methods] == ["Check"]
