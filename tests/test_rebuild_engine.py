"""The engine side of a background rebuild: writes that race its start are not lost."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from searchd.catalog import Catalog, CompiledVector, compile_catalog
from searchd.index.base import build_index
from searchd.modules.registry import default_registry
from searchd.reload.rebuild import Progress, rebuild_vector, vector_shadow
from searchd.server.app import Services
from searchd.storage import StoredObject
from tests.conftest import ClientFactory, next_millisecond

CONFIG = """
server: {reload: {watch: false}}
collections:
  - name: Note
    properties:
      - {name: body, type: TEXT}
    vectors:
      text:
        vectorizer: {module: text2vec-hash, dimensions: 64}
        index: {type: hnsw}
"""


def _note(i: int) -> dict[str, Any]:
    return {"class": "Note", "id": f"00000000-0000-0000-0000-{i:012d}", "properties": {"body": f"note number {i} about topic {i % 3}"}}


def _smaller(catalog: Catalog) -> CompiledVector:
    """The Note collection's vector at 32 dimensions: a re-vectorization's target."""
    spec = catalog.spec
    collection = spec.collections[0]
    vector = collection.vectors[0]
    smaller = dataclasses.replace(vector, vectorizer=dataclasses.replace(vector.vectorizer, dimensions=32))
    spec = dataclasses.replace(spec, collections=(dataclasses.replace(collection, vectors=(smaller,)),))
    return compile_catalog(spec, default_registry()).collections["Note"].vectors["text"]


def test_a_write_embedded_before_the_rebuild_began_still_gets_the_new_vector(client_factory: ClientFactory, write_config: Any) -> None:
    client = client_factory(write_config(CONFIG))
    assert client.post("/v1/batch/objects", json={"objects": [_note(i) for i in range(5)]}).status_code == 200
    services: Services = client.app.state.services  # type: ignore[attr-defined]
    engine, catalog = services.engine, services.holder.current
    target = _smaller(catalog)

    # Embedded (with the old settings only) before the rebuild begins, committed after it began.
    draft = engine.draft(catalog, _note(5))
    assert asyncio.run(engine.embed([draft])) == [None]
    shadow = vector_shadow("Note", target, reembed=True)
    engine.begin_shadow(shadow)
    engine.commit([draft])
    assert shadow.unstaged == {draft.id}

    progress = Progress("Note", "text", "re-vectorize", 6)
    asyncio.run(rebuild_vector(engine, shadow, target, progress, lambda: None))

    stored = {o.id: o for o in engine.store.list_objects("Note", 100, 0, None)}
    assert len(stored) == 6
    expected = asyncio.run(target.vectorizer.embed_objects([o.properties for o in stored.values()]))  # type: ignore[union-attr]
    for obj, want in zip(stored.values(), expected):
        assert obj.vectors["text"].shape == (32,)
        assert isinstance(want, np.ndarray)
        np.testing.assert_allclose(obj.vectors["text"], want, atol=1e-6)
        hits = engine.search_hits(catalog.collections["Note"], target, obj.vectors["text"], 1)
        assert engine.ids("Note", [hits[0].id]) == [obj.id] and abs(hits[0].distance) < 1e-5
    assert not engine.shadows()


def test_a_delete_during_the_rebuild_leaves_the_new_index_too(client_factory: ClientFactory, write_config: Any, tmp_path: Path) -> None:
    client = client_factory(write_config(CONFIG))
    assert client.post("/v1/batch/objects", json={"objects": [_note(i) for i in range(4)]}).status_code == 200
    services: Services = client.app.state.services  # type: ignore[attr-defined]
    engine, catalog = services.engine, services.holder.current
    target = catalog.collections["Note"].vectors["text"]  # a reindex: same vectors, new index
    shadow = vector_shadow("Note", target, reembed=False)
    engine.begin_shadow(shadow)
    engine.delete(catalog, "Note", _note(2)["id"])
    asyncio.run(rebuild_vector(engine, shadow, target, Progress("Note", "text", "reindex", 4), lambda: None))
    assert engine.index_size("Note", "text") == 3


def test_a_catch_up_vector_does_not_overwrite_a_newer_write_in_the_new_index(client_factory: ClientFactory, write_config: Any) -> None:
    client = client_factory(write_config(CONFIG))
    note = _note(1)
    assert client.post("/v1/batch/objects", json={"objects": [note]}).status_code == 200
    services: Services = client.app.state.services  # type: ignore[attr-defined]
    engine, catalog = services.engine, services.holder.current
    target = _smaller(catalog)
    assert target.vectorizer is not None

    def rewrite(body: str) -> None:
        draft = engine.draft(catalog, {**note, "properties": {"body": body}})
        assert asyncio.run(engine.embed([draft])) == [None]
        next_millisecond()  # objects are versioned by updated_ms
        engine.commit([draft])

    # W1 is embedded before the rebuild begins and committed after: it waits for a catch-up vector.
    first = engine.draft(catalog, {**note, "properties": {"body": "first rewrite"}})
    assert asyncio.run(engine.embed([first])) == [None]
    shadow = vector_shadow("Note", target, reembed=True)
    engine.begin_shadow(shadow)
    engine.commit([first])
    # The catch-up embeds W1; meanwhile W2 (embedded for both settings) is committed; then the catch-up stages W1's vector.
    (object_id,) = engine.take_unstaged(shadow)
    read = engine.store.get_many("Note", [object_id])[object_id]
    (stale,) = asyncio.run(target.vectorizer.embed_objects([read.properties]))
    rewrite("second rewrite")
    assert isinstance(stale, np.ndarray)
    engine.stage(shadow, [(object_id, read.updated_ms, stale)])
    built = build_index(target.spec.index, target.dimensions)
    assert engine.finish_shadow(shadow, built, lambda: None)

    (want,) = asyncio.run(target.vectorizer.embed_objects([{"body": "second rewrite"}]))
    assert isinstance(want, np.ndarray)
    stored = engine.store.get("Note", object_id)
    assert stored is not None and stored.properties["body"] == "second rewrite"
    np.testing.assert_allclose(stored.vectors["text"], want, atol=1e-6)
    hits = engine.search_hits(catalog.collections["Note"], target, want, 1)
    assert engine.ids("Note", [hits[0].id]) == [object_id] and abs(hits[0].distance) < 1e-5, hits  # the index holds W2's vector, not W1's


def test_each_commit_gets_a_later_updated_ms_than_the_one_before(client_factory: ClientFactory, write_config: Any) -> None:
    """updated_ms versions an object: a re-vectorization's conditional write compares it, so two writes never share one."""
    client = client_factory(write_config(CONFIG))
    services: Services = client.app.state.services  # type: ignore[attr-defined]
    engine, catalog = services.engine, services.holder.current
    stamps = []
    for round_number in range(20):  # far more commits than milliseconds pass
        draft = engine.draft(catalog, {**_note(1), "properties": {"body": f"version {round_number}"}})
        assert asyncio.run(engine.embed([draft])) == [None]
        (stored,) = engine.commit([draft])
        assert isinstance(stored, StoredObject)
        stamps.append(stored.updated_ms)
    assert stamps == sorted(set(stamps)) and len(stamps) == 20, stamps
