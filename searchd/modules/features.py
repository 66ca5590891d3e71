"""Offline features: feature hashing for text, a perceptual descriptor for images.

These are lexical and perceptual, not semantic: "car" and "automobile" share
nothing, and a red square looks like a red circle.  They are deterministic (no
seeds, no Python ``hash``), need no network and no model, and are good enough to
exercise every search path end to end.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import re
from typing import TYPE_CHECKING

import numpy as np

from searchd.errors import InvalidInput

if TYPE_CHECKING:
    from PIL import Image

IMAGE_FEATURES = 128  # 64 colour-histogram bins + 8x8 luminance layout
_WORD = re.compile(r"\w+", re.UNICODE)
_WORD_WEIGHT = 1.0
_BIGRAM_WEIGHT = 0.5
_TRIGRAM_WEIGHT = 0.25


def _bucket(feature: str, dimensions: int) -> tuple[int, float]:
    digest = hashlib.blake2b(feature.encode("utf-8"), digest_size=8).digest()
    value = int.from_bytes(digest, "little")
    # The top bit picks a sign so that collisions cancel out on average.
    return value % dimensions, (1.0 if value >> 63 else -1.0)


def _normalized(vector: np.ndarray) -> np.ndarray:
    norm = float(np.linalg.norm(vector))
    return vector / norm if norm > 0 else vector


def text_features(text: str, dimensions: int) -> np.ndarray:
    """Signed feature hashing of words, word bigrams and character trigrams; L2-normalised."""
    vector = np.zeros(dimensions, dtype=np.float64)
    words = _WORD.findall(text.lower())
    features: list[tuple[str, float]] = [(f"w:{w}", _WORD_WEIGHT) for w in words]
    features += [(f"b:{a} {b}", _BIGRAM_WEIGHT) for a, b in itertools.pairwise(words)]
    for word in words:
        padded = f"<{word}>"
        features += [(f"c:{padded[i:i + 3]}", _TRIGRAM_WEIGHT) for i in range(len(padded) - 2)]
    for feature, weight in features:
        index, sign = _bucket(feature, dimensions)
        vector[index] += sign * weight
    # Sublinear term frequency: a word said ten times is not ten times as relevant.
    vector = np.sign(vector) * np.log1p(np.abs(vector))
    return _normalized(vector).astype(np.float32)


def decode_image(data: bytes) -> Image.Image:
    """Decode image bytes fully, or raise InvalidInput saying why."""
    from PIL import Image, UnidentifiedImageError  # here, not at start: a server with no image module never loads Pillow (about 2 MB)

    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except UnidentifiedImageError as exc:
        raise InvalidInput("not a decodable image: the bytes are in no image format Pillow knows", "send a PNG, JPEG, GIF, WebP or BMP file encoded as base64") from exc
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise InvalidInput(
            f"not a decodable image ({type(exc).__name__}: {exc})",
            "send a PNG, JPEG, GIF, WebP or BMP file encoded as base64",
        ) from exc
    return image


def image_features(data: bytes) -> np.ndarray:
    """A 128-d perceptual descriptor: colour distribution plus coarse luminance layout."""
    from PIL import Image

    image = decode_image(data).convert("RGB")
    small = np.asarray(image.resize((32, 32), Image.Resampling.BILINEAR), dtype=np.float64) / 255.0
    bins = np.minimum((small * 4).astype(int), 3)
    codes = bins[..., 0] * 16 + bins[..., 1] * 4 + bins[..., 2]
    histogram = np.bincount(codes.ravel(), minlength=64).astype(np.float64)
    histogram = np.sqrt(histogram / histogram.sum())  # Hellinger: cosine behaves like a histogram distance
    luma = np.asarray(image.convert("L").resize((8, 8), Image.Resampling.BOX), dtype=np.float64).ravel() / 255.0
    layout = _normalized(luma - luma.mean())
    return _normalized(np.concatenate([histogram, 0.5 * layout])).astype(np.float32)
