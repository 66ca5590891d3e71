"""The spec that serves while rebuilds run: each vector being rebuilt at its applied settings until its rebuild is done."""

from __future__ import annotations

import dataclasses

from searchd.config.spec import CollectionSpec, NamedVectorSpec, Spec

Key = tuple[str, str]


def served_spec(target: Spec, applied: Spec | None, pending: set[Key]) -> Spec:
    """``target`` with each pending vector at its applied settings (or absent, when it is new)."""
    collections = []
    for collection in target.collections:
        old = applied.find_collection(collection.name) if applied else None
        vectors: list[NamedVectorSpec] = []
        for vector in collection.vectors:
            if (collection.name, vector.name) not in pending:
                vectors.append(vector)
            elif old is not None and (previous := old.find_vector(vector.name)) is not None:
                vectors.append(previous)
        collections.append(dataclasses.replace(collection, vectors=tuple(vectors)))
    return dataclasses.replace(target, collections=tuple(collections))


def with_vector(served: Spec, target: Spec, key: Key) -> Spec:
    """The served spec once ``key``'s rebuild is complete: that vector at its target settings."""
    collection, name = key
    wanted = target.find_collection(collection)
    vector = wanted.find_vector(name) if wanted else None
    out: list[CollectionSpec] = []
    for c in served.collections:
        if c.name == collection and vector is not None:
            order = [v.name for v in wanted.vectors] if wanted else []
            merged = {v.name: v for v in c.vectors} | {name: vector}
            c = dataclasses.replace(c, vectors=tuple(merged[n] for n in order if n in merged))
        out.append(c)
    return dataclasses.replace(served, collections=tuple(out))
