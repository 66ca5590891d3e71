"""Allowed destructive changes: what a new spec no longer declares is dropped (see Plan.destructive)."""

from __future__ import annotations

import logging
import shutil

from searchd.config.spec import Spec
from searchd.engine import Engine
from searchd.index.persist import index_dir

log = logging.getLogger("searchd.reload")


def drop_removed(engine: Engine, old: Spec | None, new: Spec, stored: bool = True) -> None:
    """Execute allowed destructive changes: drop what the new spec no longer declares (``stored``: in the store too;
    a follower only drops its own indexes, the leader dropped the data)."""
    if old is None:
        return
    store, data_dir = engine.store, engine.data_dir
    for collection in old.collections:
        wanted = new.find_collection(collection.name)
        if wanted is None:
            if stored:
                log.warning("dropping collection %s and its %d objects (allowed destructive change)", collection.name, store.count(collection.name))
                store.drop_collection(collection.name)
            engine.drop(collection.name)
            shutil.rmtree(data_dir / "indexes" / collection.name, ignore_errors=True)
            continue
        for prop in collection.properties:
            kept = wanted.find_property(prop.name)
            if stored and (kept is None or kept.type is not prop.type):
                log.warning("dropping the values of %s.%s (allowed destructive change)", collection.name, prop.name)
                store.drop_property(collection.name, prop.name)
        for vector in collection.vectors:
            kept_vector = wanted.find_vector(vector.name)
            # A brought vector whose settings change cannot be re-embedded: it is dropped.
            if kept_vector is None or (kept_vector.vectorizer.brings_own_vectors and kept_vector.vectorizer != vector.vectorizer):
                if stored:
                    log.warning("dropping the vectors of %s.%s (allowed destructive change)", collection.name, vector.name)
                    store.drop_vectors(collection.name, vector.name)
                engine.drop(collection.name, vector.name)
                shutil.rmtree(index_dir(data_dir, collection.name, vector.name), ignore_errors=True)
