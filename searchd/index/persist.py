"""Saving indexes in the data directory and loading them back only when they are still current.

An index directory holds the index's own files and ``manifest.json`` with the
store's write sequence at save time and a fingerprint of the index settings.
On start, an index whose manifest matches the store and the config is loaded
as is; anything else (missing, stale after a crash, settings changed, unreadable)
is rebuilt from the store, with progress in the log.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from searchd.config.spec import IndexSpec
from searchd.index.base import VectorIndex, build_index, restore_index
from searchd.storage import ObjectStore

log = logging.getLogger("searchd.index")
FORMAT = 1
_PROGRESS_EVERY = 20_000


def fingerprint(spec: IndexSpec, dimensions: int) -> str:
    settings = {**asdict(spec), "distance": spec.distance.value, "dimensions": dimensions, "format": FORMAT}
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def index_dir(data_dir: Path, collection: str, vector: str) -> Path:
    return data_dir / "indexes" / collection / vector


def save_index(index: VectorIndex, directory: Path, spec: IndexSpec, dimensions: int, write_seq: int) -> None:
    """Write to a temporary directory, then rename: a crash never leaves a half-written index in place."""
    staging = directory.with_name(directory.name + ".saving")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    index.save(staging)
    manifest = {"fingerprint": fingerprint(spec, dimensions), "writeSeq": write_seq, "count": len(index)}
    (staging / "manifest.json").write_text(json.dumps(manifest))
    shutil.rmtree(directory, ignore_errors=True)
    staging.rename(directory)


def _load_current(directory: Path, spec: IndexSpec, dimensions: int, write_seq: int) -> VectorIndex | None:
    try:
        manifest = json.loads((directory / "manifest.json").read_text())
    except (OSError, ValueError):
        return None
    if manifest.get("fingerprint") != fingerprint(spec, dimensions) or manifest.get("writeSeq") != write_seq:
        return None
    try:
        index = restore_index(spec, dimensions, directory)
    except (OSError, ValueError, RuntimeError, KeyError) as exc:
        log.warning("index in %s is unreadable (%s); rebuilding it from the store", directory, exc)
        return None
    return index if len(index) == manifest.get("count") else None


def open_index(store: ObjectStore, data_dir: Path, collection: str, vector: str, spec: IndexSpec, dimensions: int) -> VectorIndex:
    """Load the saved index if it is current; otherwise rebuild it from the store."""
    directory = index_dir(data_dir, collection, vector)
    loaded = _load_current(directory, spec, dimensions, store.write_seq())
    if loaded is not None:
        log.info("loaded %s.%s index (%d vectors) from %s", collection, vector, len(loaded), directory)
        return loaded
    started = time.monotonic()
    index = build_index(spec, dimensions)
    batch_ids: list[str] = []
    batch_vectors: list[np.ndarray] = []
    done = 0
    for object_id, stored in store.iter_vectors(collection, vector):
        if stored.shape[-1] != dimensions:
            continue  # written under other settings; re-vectorization will replace it
        batch_ids.append(object_id)
        batch_vectors.append(stored)
        if len(batch_ids) == 1000:
            index.upsert_many(batch_ids, batch_vectors)
            done += len(batch_ids)
            batch_ids, batch_vectors = [], []
            if done % _PROGRESS_EVERY == 0:
                log.info("rebuilding %s.%s index: %d vectors so far", collection, vector, done)
    index.upsert_many(batch_ids, batch_vectors)
    done += len(batch_ids)
    if done or directory.exists():
        log.info("rebuilt %s.%s %s index from the store: %d vectors in %.1fs", collection, vector, spec.type, done, time.monotonic() - started)
    return index
