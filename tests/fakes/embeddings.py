"""Deterministic fake embeddings with real structure.

Pure functions: the fake servers use them to answer, and tests use them to compute the vectors they expect.
Every vector is a float32 unit vector. Structure that tests can rely on:

- the same token always maps to the same random unit vector (stable hash, not Python's salted ``hash``);
- a text is the normalised mean of its token vectors, so texts that share words are close;
- a ``salt`` (a Jina task, "query"/"passage", ...) adds a small fixed perturbation: same text, different salt = close but not equal;
- an image is mostly the text vector of "<colour> image picture photo" for its mean colour, so a red square is close to "a red image";
- Matryoshka: models compute the full-size vector, then :func:`truncate_dims` keeps a prefix and renormalises.
"""

from __future__ import annotations

import hashlib
import io
import re
from functools import lru_cache

import numpy as np
import numpy.typing as npt
from PIL import Image

Vector = npt.NDArray[np.float32]

# Weight of the salt vector added to a unit text vector: small enough that query and passage stay close (cos ~0.995).
SALT_WEIGHT = 0.1
# Weight of the whole-input context term in late chunking.
LATE_CHUNK_CONTEXT_WEIGHT = 0.25
# Image vector = colour caption part + perceptual part.
IMAGE_CAPTION_WEIGHT = 0.8
IMAGE_PERCEPTUAL_WEIGHT = 0.2
# Side of the square grid of patches an image is cut into (patch rows of image_matrix, perceptual part of image_vector).
PATCH_GRID = 2

PALETTE: tuple[tuple[str, tuple[int, int, int]], ...] = (
    ("red", (220, 20, 20)),
    ("green", (20, 160, 20)),
    ("blue", (20, 20, 220)),
    ("yellow", (240, 230, 20)),
    ("orange", (250, 140, 0)),
    ("purple", (128, 0, 128)),
    ("black", (0, 0, 0)),
    ("white", (255, 255, 255)),
    ("gray", (128, 128, 128)),
    ("pink", (255, 170, 200)),
    ("brown", (130, 70, 20)),
    ("cyan", (0, 230, 230)),
)

_TOKEN_RE = re.compile(r"\w+")


def normalise(vector: npt.NDArray[np.floating]) -> Vector:
    """L2-normalise (a zero vector stays zero) and return float32."""
    v = np.asarray(vector, dtype=np.float32)
    norm = float(np.linalg.norm(v))
    return v / norm if norm > 0 else v.copy()


def _seed(text: str) -> int:
    # blake2b, not hash(): stable across processes and PYTHONHASHSEED.
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "little")


@lru_cache(maxsize=1 << 16)
def _cached_token_vector(token: str, dims: int) -> Vector:
    # A bounded memo of a pure function (building a Generator costs ~25 µs; benchmarks embed millions of tokens).
    # The array is read-only so no caller can change what later callers get.
    v = normalise(np.random.default_rng(_seed(token)).standard_normal(dims, dtype=np.float32))
    v.setflags(write=False)
    return v


def token_vector(token: str, dims: int) -> Vector:
    """A float32 unit vector from a stable hash of ``token``; the same token always gives the same vector."""
    return _cached_token_vector(token, dims).copy()


def tokens(text: str) -> list[str]:
    """Lower-case word tokens."""
    return _TOKEN_RE.findall(text.lower())


def _token_rows(text: str, dims: int) -> Vector:
    # An empty text still needs a vector: it gets the vector of a token no real text can produce.
    words = tokens(text) or ["\x00empty"]
    return np.stack([_cached_token_vector(w, dims) for w in words])


def _salted(vector: Vector, dims: int, salt: str) -> Vector:
    if not salt:
        return normalise(vector)
    return normalise(normalise(vector) + SALT_WEIGHT * _cached_token_vector("\x00salt:" + salt, dims))


def text_vector(text: str, dims: int, *, salt: str = "") -> Vector:
    """L2-normalised mean of the token vectors, perturbed by ``salt`` (if any)."""
    return _salted(_token_rows(text, dims).mean(axis=0), dims, salt)


def token_matrix(text: str, dims: int, *, salt: str = "") -> Vector:
    """Shape (n_tokens, dims): one unit row per token (multi-vector / ColBERT style); each row salted like text_vector."""
    return np.stack([_salted(row, dims, salt) for row in _token_rows(text, dims)])


def late_chunk_vectors(chunks: list[str], dims: int, *, salt: str = "") -> list[Vector]:
    """Item i = normalise(mean token vector of chunk i + 0.25 * mean token vector of all chunks), then salted.

    The context term stands in for "the transformer saw the whole document": changing a neighbour changes item i.
    """
    rows = [_token_rows(chunk, dims) for chunk in chunks]
    if not rows:
        return []
    context = np.concatenate(rows).mean(axis=0)
    return [_salted(normalise(r.mean(axis=0) + LATE_CHUNK_CONTEXT_WEIGHT * context), dims, salt) for r in rows]


def truncate_dims(vector: npt.NDArray[np.floating], dims: int) -> Vector:
    """Matryoshka truncation: the first ``dims`` components, renormalised (works row-wise on a matrix too)."""
    v = np.asarray(vector, dtype=np.float32)[..., :dims]
    if v.ndim == 1:
        return normalise(v)
    norms = np.linalg.norm(v, axis=-1, keepdims=True)
    return (v / np.where(norms > 0, norms, 1.0)).astype(np.float32)


def _thumbnail(data: bytes) -> npt.NDArray[np.float64]:
    """Decode ``data`` and return a small RGB thumbnail (side = 8 * PATCH_GRID) as floats; ValueError if not an image."""
    side = 8 * PATCH_GRID
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            small = img.convert("RGB").resize((side, side), Image.Resampling.BOX)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise ValueError(f"not a decodable image ({type(exc).__name__}: {exc})") from exc
    return np.asarray(small, dtype=np.float64)


def _nearest_colour(rgb: npt.NDArray[np.float64]) -> str:
    names = [name for name, _ in PALETTE]
    centres = np.array([c for _, c in PALETTE], dtype=np.float64)
    return names[int(np.argmin(np.linalg.norm(centres - rgb, axis=1)))]


def _patch_colours(thumb: npt.NDArray[np.float64]) -> list[tuple[int, npt.NDArray[np.float64]]]:
    step = thumb.shape[0] // PATCH_GRID
    return [
        (i * PATCH_GRID + j, thumb[i * step : (i + 1) * step, j * step : (j + 1) * step].reshape(-1, 3).mean(axis=0))
        for i in range(PATCH_GRID)
        for j in range(PATCH_GRID)
    ]


def _patch_rows(thumb: npt.NDArray[np.float64], dims: int) -> Vector:
    # Each patch hashes its position and coarsely quantised colour: identical images match exactly,
    # images that differ only by small noise usually match too.
    return np.stack(
        [_cached_token_vector(f"\x00patch:{pos}:" + ":".join(str(int(c) // 32) for c in rgb), dims) for pos, rgb in _patch_colours(thumb)]
    )


def _caption(colour: str) -> str:
    return f"{colour} image picture photo"


def colour_name(data: bytes) -> str:
    """The palette name nearest to the image's mean RGB colour; ValueError if ``data`` is not an image."""
    return _nearest_colour(_thumbnail(data).reshape(-1, 3).mean(axis=0))


def image_vector(data: bytes, dims: int) -> Vector:
    """0.8 * text_vector("<colour> image picture photo") + 0.2 * perceptual part, normalised; ValueError if not an image."""
    thumb = _thumbnail(data)
    colour = _nearest_colour(thumb.reshape(-1, 3).mean(axis=0))
    perceptual = normalise(_patch_rows(thumb, dims).mean(axis=0))
    return normalise(IMAGE_CAPTION_WEIGHT * text_vector(_caption(colour), dims) + IMAGE_PERCEPTUAL_WEIGHT * perceptual)


def image_matrix(data: bytes, dims: int) -> Vector:
    """Multi-vector form of an image: the caption's token rows, then one row per patch (PATCH_GRID**2 rows)."""
    thumb = _thumbnail(data)
    colour = _nearest_colour(thumb.reshape(-1, 3).mean(axis=0))
    return np.concatenate([token_matrix(_caption(colour), dims), _patch_rows(thumb, dims)])
