"""Reading a saved BM25 index (``bm25.json`` + ``bm25.npz``, written by ``BM25Index.save``): every array is
checked against the header and against the others, and anything unexpected is a ValueError, so the caller
rebuilds the index from the store instead of loading it."""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from searchd.index.vocab import Vocabulary


@dataclass(frozen=True)
class SavedProperty:
    """One property's postings as saved: its vocabulary (term → id), the base postings and the doc lengths."""

    vocab: Vocabulary
    offsets: np.ndarray
    docs: np.ndarray
    freqs: np.ndarray
    lengths: np.ndarray
    documents: int
    total_length: int


def header_count(mapping: Mapping[str, Any], key: str, most: int = 2**62) -> int:
    value = mapping.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= most:
        raise ValueError(f"saved BM25 header has a bad {key!r}: {value!r}")
    return value


def checksum(arrays: Mapping[str, np.ndarray]) -> int:
    """CRC-32 over every array's name and bytes: ties the header to the arrays of the same save."""
    crc = 0
    for name in sorted(arrays):
        crc = zlib.crc32(np.ascontiguousarray(arrays[name]).data, zlib.crc32(name.encode(), crc))
    return crc


def load_arrays(path: Path) -> dict[str, np.ndarray]:
    try:
        with open(path, "rb") as source, np.lib.npyio.NpzFile(source, allow_pickle=False) as stored:
            return {name: stored[name] for name in stored.files}
    except (OSError, ValueError):
        raise
    except Exception as exc:
        # A damaged zip surfaces as BadZipFile, EOFError, KeyError, an unsupported-compression error,
        # RuntimeError ("encrypted") or a decompressor's own error: all mean "rebuild it" here.
        raise ValueError(f"{path} is unreadable ({type(exc).__name__}: {exc})") from exc


def checked_array(arrays: Mapping[str, np.ndarray], name: str, dtype: type[np.generic], length: int | None) -> np.ndarray:
    value = arrays.get(name)
    if value is None:
        raise ValueError(f"saved BM25 index lacks the array {name!r}")
    if value.dtype != np.dtype(dtype) or value.ndim != 1 or (length is not None and len(value) != length):
        raise ValueError(f"saved BM25 array {name!r} is {value.dtype}{list(value.shape)}, expected {np.dtype(dtype)}[{length if length is not None else 'n'}]")
    return value


def read_property(arrays: Mapping[str, np.ndarray], prefix: str, about: Mapping[str, Any], size: int) -> SavedProperty:
    """One property's saved arrays, each checked against the header and the others (ValueError on any mismatch)."""
    terms, postings, documents, total_length = (header_count(about, key) for key in ("terms", "postings", "documents", "totalLength"))
    text = checked_array(arrays, prefix + "terms", np.uint8, None).tobytes().decode("utf-8", "surrogatepass")
    ends = checked_array(arrays, prefix + "term_ends", np.int64, terms)
    offsets = checked_array(arrays, prefix + "offsets", np.int64, terms + 1)
    docs = checked_array(arrays, prefix + "docs", np.int32, postings)
    freqs = checked_array(arrays, prefix + "freqs", np.int32, postings)
    lengths = checked_array(arrays, prefix + "lengths", np.int32, size)
    if terms and (ends[0] < 0 or np.any(np.diff(ends) < 0) or ends[-1] != len(text)) or (not terms and text):
        raise ValueError(f"saved BM25 vocabulary of {about.get('name')!r} does not match its term boundaries")
    if offsets[0] != 0 or offsets[-1] != postings or np.any(np.diff(offsets) < 0):
        raise ValueError(f"saved BM25 postings of {about.get('name')!r} do not match their offsets")
    if postings and (docs.min() < 0 or docs.max() >= size or freqs.min() < 1):
        raise ValueError(f"saved BM25 postings of {about.get('name')!r} hold docs out of range or frequencies below 1")
    if size and lengths.min() < 0:
        raise ValueError(f"saved BM25 lengths of {about.get('name')!r} are negative")
    # Every doc's frequencies add up to its length: this catches most damage to docs, freqs and lengths at once.
    if not np.array_equal(np.bincount(docs, weights=freqs, minlength=size), lengths):
        raise ValueError(f"saved BM25 postings of {about.get('name')!r} do not add up to the saved lengths")
    if int(np.count_nonzero(lengths)) != documents or int(lengths.sum(dtype=np.int64)) != total_length:
        raise ValueError(f"saved BM25 lengths of {about.get('name')!r} do not match the header's counts")
    bounds = [0, *ends.tolist()]
    try:
        vocab = Vocabulary([text[bounds[t] : bounds[t + 1]] for t in range(terms)])
    except ValueError:
        raise ValueError(f"saved BM25 vocabulary of {about.get('name')!r} repeats a term") from None
    return SavedProperty(vocab, offsets, docs, freqs, lengths, documents, total_length)
