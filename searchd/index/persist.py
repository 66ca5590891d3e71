"""Saving indexes in the data directory and loading them back only when they are still current.

Vector indexes and BM25 indexes are handled alike.  An index directory holds the index's own files and ``manifest.json`` with the
store's write sequence at save time and a fingerprint of the index settings.
On start, an index whose manifest matches the store and the config is loaded
as is; anything else (missing, stale after a crash, settings changed, unreadable)
is rebuilt from the store, with progress in the log.
"""

from __future__ import annotations

import hashlib
import json
import logging
import pickle
import shutil
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from searchd.config.spec import INDEX_SEARCH_TIME, CollectionSpec, IndexSpec
from searchd.index.base import VectorIndex, build_index, restore_index
from searchd.index.bm25 import BM25Index
from searchd.storage import ObjectStore

log = logging.getLogger("searchd.index")
FORMAT = 1
_PROGRESS_EVERY = 20_000


def fingerprint(settings: Any) -> str:
    """A short hash of whatever determines an index's content."""
    return hashlib.sha256(json.dumps({"settings": settings, "format": FORMAT}, sort_keys=True, default=str).encode()).hexdigest()[:16]


def vector_fingerprint(spec: IndexSpec, dimensions: int) -> str:
    # Settings read at search time do not change what is saved, so changing them keeps the index.
    built = {k: v for k, v in asdict(spec).items() if k not in INDEX_SEARCH_TIME}
    return fingerprint({**built, "distance": spec.distance.value, "dimensions": dimensions})


def keyword_fingerprint(collection: CollectionSpec) -> str:
    # k1, b and stopwords apply at query time, so changing them keeps the saved postings valid.
    return fingerprint([(p.name, p.tokenization.value) for p in collection.properties if p.searchable])


def index_dir(data_dir: Path, collection: str, vector: str) -> Path:
    return data_dir / "indexes" / collection / vector


def keyword_dir(data_dir: Path, collection: str) -> Path:
    return data_dir / "indexes" / collection / "_bm25"


class Saveable(Protocol):
    def save(self, directory: Path) -> None: ...

    def __len__(self) -> int: ...


def save_index(index: Saveable, directory: Path, stamp: str, write_seq: int) -> None:
    """Write to a temporary directory, then rename: a crash never leaves a half-written index in place."""
    staging = directory.with_name(directory.name + ".saving")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    index.save(staging)
    (staging / "manifest.json").write_text(json.dumps({"fingerprint": stamp, "writeSeq": write_seq, "count": len(index)}))
    shutil.rmtree(directory, ignore_errors=True)
    staging.rename(directory)


def _current_count(directory: Path, stamp: str, write_seq: int) -> int | None:
    """The saved index's size if it matches these settings and the store's write sequence."""
    try:
        manifest = json.loads((directory / "manifest.json").read_text())
    except (OSError, ValueError):
        return None
    if manifest.get("fingerprint") != stamp or manifest.get("writeSeq") != write_seq:
        return None
    count = manifest.get("count")
    return count if isinstance(count, int) else None


_UNREADABLE = (OSError, ValueError, RuntimeError, KeyError, EOFError, pickle.UnpicklingError)


def _load_current(directory: Path, spec: IndexSpec, dimensions: int, write_seq: int) -> VectorIndex | None:
    count = _current_count(directory, vector_fingerprint(spec, dimensions), write_seq)
    if count is None:
        return None
    try:
        index = restore_index(spec, dimensions, directory)
    except _UNREADABLE as exc:
        log.warning("index in %s is unreadable (%s); rebuilding it from the store", directory, exc)
        return None
    return index if len(index) == count else None


def open_keyword_index(store: ObjectStore, data_dir: Path, collection: CollectionSpec) -> BM25Index:
    """Load the saved BM25 index if it is current; otherwise rebuild it from the store."""
    directory = keyword_dir(data_dir, collection.name)
    count = _current_count(directory, keyword_fingerprint(collection), store.write_seq())
    if count is not None:
        try:
            index = BM25Index.restore(collection, directory)
            if len(index) == count:
                log.info("loaded %s BM25 index (%d objects) from %s", collection.name, count, directory)
                return index
        except _UNREADABLE as exc:
            log.warning("BM25 index in %s is unreadable (%s); rebuilding it from the store", directory, exc)
    return fill_keyword_index(BM25Index(collection), store, collection.name, quiet=not directory.exists())


def fill_keyword_index(index: BM25Index, store: ObjectStore, collection: str, quiet: bool = False, verb: str = "rebuilt") -> BM25Index:
    started = time.monotonic()
    done = 0
    for object_id, properties in store.iter_properties(collection):
        index.upsert(object_id, properties)
        done += 1
        if done % _PROGRESS_EVERY == 0:
            log.info("%s %s BM25 index: %d objects so far", "rebuilding" if verb == "rebuilt" else "building", collection, done)
    if done or not quiet:
        log.info("%s %s BM25 index from the store: %d objects in %.1fs", verb, collection, done, time.monotonic() - started)
    return index


def open_index(store: ObjectStore, data_dir: Path, collection: str, vector: str, spec: IndexSpec, dimensions: int) -> VectorIndex:
    """Load the saved index if it is current; otherwise rebuild it from the store."""
    directory = index_dir(data_dir, collection, vector)
    loaded = _load_current(directory, spec, dimensions, store.write_seq())
    if loaded is not None:
        log.info("loaded %s.%s index (%d vectors) from %s", collection, vector, len(loaded), directory)
        return loaded
    return fill_index(build_index(spec, dimensions), store, collection, vector, dimensions, label=f"{collection}.{vector} {spec.type}", quiet=not directory.exists())


def fill_index(index: VectorIndex, store: ObjectStore, collection: str, source: str, dimensions: int, label: str, quiet: bool = False, verb: str = "rebuilt") -> VectorIndex:
    """Insert every stored vector named ``source`` into ``index``, in batches, with progress in the log."""
    started = time.monotonic()
    batch_ids: list[str] = []
    batch_vectors: list[np.ndarray] = []
    done = 0
    for object_id, stored in store.iter_vectors(collection, source):
        if stored.shape[-1] != dimensions:
            continue  # written under other settings; re-vectorization will replace it
        batch_ids.append(object_id)
        batch_vectors.append(stored)
        if len(batch_ids) == 1000:
            index.upsert_many(batch_ids, batch_vectors)
            done += len(batch_ids)
            batch_ids, batch_vectors = [], []
            if done % _PROGRESS_EVERY == 0:
                log.info("%s %s index: %d vectors so far", "rebuilding" if verb == "rebuilt" else "building", label, done)
    index.upsert_many(batch_ids, batch_vectors)
    done += len(batch_ids)
    if done or not quiet:
        log.info("%s %s index from the store: %d vectors in %.1fs", verb, label, done, time.monotonic() - started)
    return index
