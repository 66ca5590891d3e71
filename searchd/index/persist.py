"""Saving indexes in the data directory and loading them back only when they are still current.

Vector indexes and BM25 indexes are handled alike.  An index directory holds the index's own files and ``manifest.json`` with the
store's write sequence at save time and a fingerprint of the index settings.
On start, an index whose manifest matches the config is loaded and catches up
with the writes since its sequence (the store's change log, after a crash too);
anything else (missing, settings changed, unreadable, the log trimmed past it)
is rebuilt from the store, with progress in the log.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from searchd.config.spec import INDEX_SEARCH_TIME, CollectionSpec, IndexSpec
from searchd.index.base import VectorIndex, VectorReader, build_index, restore_index
from searchd.index.bm25 import BM25Index

log = logging.getLogger("searchd.index")
FORMAT = 3  # 3: BM25 in .npz arrays, hnsw without vectors; 2: keyed by the store's docs; 1: keyed by id text
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


_UNREADABLE = (OSError, ValueError, RuntimeError, KeyError, EOFError, zipfile.BadZipFile)  # BadZipFile: a damaged .npz


class Source(Protocol):
    """What an index is filled from: the store, seen through the engine."""

    def vectors(self, name: str, docs: Sequence[int] | None = None) -> Iterator[tuple[list[int], list[np.ndarray]]]:
        """Stored vectors named ``name`` in batches of (docs, vectors): all of them, or those of ``docs``."""
        ...

    def properties(self, docs: Sequence[int] | None = None) -> Iterator[tuple[int, dict[str, Any]]]: ...

    def vector_reader(self, name: str) -> VectorReader:
        """Reads stored vectors named ``name`` by doc, as one matrix when they share a shape."""
        ...

    def changed_since(self, seq: int) -> list[int] | None:
        """Docs written or deleted after ``seq``; None when that cannot be told (rebuild)."""
        ...


def _saved_seq(directory: Path, stamp: str, write_seq: int) -> tuple[int, int] | None:
    """(sequence, size) of a saved index built with these settings and not newer than the store."""
    try:
        manifest = json.loads((directory / "manifest.json").read_text())
    except (OSError, ValueError):
        return None
    seq, count = manifest.get("writeSeq"), manifest.get("count")
    if manifest.get("fingerprint") != stamp or not isinstance(seq, int) or not isinstance(count, int) or seq > write_seq:
        return None
    return seq, count


def open_keyword_index(source: Source, data_dir: Path, collection: CollectionSpec, write_seq: int, stale: list[int] | None = None) -> BM25Index:
    """Load the saved BM25 index and replay the writes since it was saved; rebuild it from the store when that cannot be done.

    ``stale`` collects how many writes the saved index missed (a rebuild counts every object).
    """
    directory = keyword_dir(data_dir, collection.name)
    saved = _saved_seq(directory, keyword_fingerprint(collection), write_seq)
    changed = source.changed_since(saved[0]) if saved is not None else None
    if saved is not None and changed is not None:
        try:
            index = BM25Index.restore(collection, directory)
            if len(index) == saved[1]:
                present = set()
                for doc, properties in source.properties(changed):
                    index.upsert(doc, properties)
                    present.add(doc)
                for doc in set(changed) - present:
                    index.delete(doc)
                log.info("loaded %s BM25 index (%d objects) from %s, %d changed since", collection.name, saved[1], directory, len(changed))
                if stale is not None:
                    stale.append(len(changed))
                return index
        except _UNREADABLE as exc:
            log.warning("BM25 index in %s is unreadable (%s); rebuilding it from the store", directory, exc)
    index = fill_keyword_index(BM25Index(collection), source, collection.name, quiet=not directory.exists())
    if stale is not None:
        stale.append(len(index))
    return index


def fill_keyword_index(index: BM25Index, source: Source, collection: str, quiet: bool = False, verb: str = "rebuilt") -> BM25Index:
    started = time.monotonic()
    done = 0
    for doc, properties in source.properties():
        index.upsert(doc, properties)
        done += 1
        if done % _PROGRESS_EVERY == 0:
            log.info("%s %s BM25 index: %d objects so far", "rebuilding" if verb == "rebuilt" else "building", collection, done)
    if done or not quiet:
        log.info("%s %s BM25 index from the store: %d objects in %.1fs", verb, collection, done, time.monotonic() - started)
    return index


def open_index(
    source: Source, data_dir: Path, collection: str, vector: str, spec: IndexSpec, dimensions: int, write_seq: int, stale: list[int] | None = None
) -> VectorIndex:
    """Load the saved index and replay the writes since it was saved; rebuild it from the store when that cannot be done.

    ``stale`` collects how many writes the saved index missed (a rebuild counts every vector).
    """
    directory = index_dir(data_dir, collection, vector)
    saved = _saved_seq(directory, vector_fingerprint(spec, dimensions), write_seq)
    changed = source.changed_since(saved[0]) if saved is not None else None
    if saved is not None and changed is not None:
        try:
            index = restore_index(spec, dimensions, directory, source.vector_reader(vector))
        except _UNREADABLE as exc:
            log.warning("index in %s is unreadable (%s); rebuilding it from the store", directory, exc)
        else:
            # An index restored with the store's vectors (hnsw) has already left out the docs deleted since the save.
            if getattr(index, "saved_size", len(index)) == saved[1]:
                present: set[int] = set()
                for docs, vectors in source.vectors(vector, changed):
                    usable = [(d, v) for d, v in zip(docs, vectors) if v.shape[-1] == dimensions]
                    index.upsert_many([d for d, _ in usable], [v for _, v in usable])
                    present.update(d for d, _ in usable)
                for doc in set(changed) - present:
                    index.delete(doc)
                log.info("loaded %s.%s index (%d vectors) from %s, %d changed since", collection, vector, saved[1], directory, len(changed))
                if stale is not None:
                    stale.append(len(changed))
                return index
    built = fill_index(build_index(spec, dimensions), source, vector, dimensions, label=f"{collection}.{vector} {spec.type}", quiet=not directory.exists())
    if stale is not None:
        stale.append(len(built))
    return built


def fill_index(index: VectorIndex, source: Source, name: str, dimensions: int, label: str, quiet: bool = False, verb: str = "rebuilt") -> VectorIndex:
    """Insert every stored vector named ``name`` into ``index``, in batches, with progress in the log."""
    started = time.monotonic()
    done = 0
    for docs, vectors in source.vectors(name):
        usable = [(d, v) for d, v in zip(docs, vectors) if v.shape[-1] == dimensions]  # others: written under other settings
        index.upsert_many([d for d, _ in usable], [v for _, v in usable])
        before, done = done, done + len(usable)
        if done // _PROGRESS_EVERY != before // _PROGRESS_EVERY:
            log.info("%s %s index: %d vectors so far", "rebuilding" if verb == "rebuilt" else "building", label, done)
    if done or not quiet:
        log.info("%s %s index from the store: %d vectors in %.1fs", verb, label, done, time.monotonic() - started)
    return index
