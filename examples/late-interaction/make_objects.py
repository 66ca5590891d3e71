"""Regenerate objects.jsonl: toy token matrices (one 8-d row per word, from a fixed seed).

Run: python examples/late-interaction/make_objects.py
"""

from __future__ import annotations

import hashlib
import json
import uuid
from pathlib import Path

import numpy as np

PASSAGES = [
    "red apples grow on trees",
    "green pears ripen slowly",
    "the river floods in spring",
    "mountains hold snow until summer",
    "apples and pears make cider",
    "spring rain fills the river",
]


def token_vector(word: str) -> list[float]:
    seed = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=4).digest(), "little")
    row = np.random.default_rng(seed).normal(size=8)
    return [round(float(x), 5) for x in row / np.linalg.norm(row)]


def objects() -> list[dict[str, object]]:
    return [
        {
            "class": "Passage",
            "id": str(uuid.uuid5(uuid.NAMESPACE_URL, text)),
            "properties": {"text": text},
            "vectors": {"colbert": [token_vector(word) for word in text.split()]},
        }
        for text in PASSAGES
    ]


if __name__ == "__main__":
    target = Path(__file__).with_name("objects.jsonl")
    target.write_text("".join(json.dumps(o) + "\n" for o in objects()), encoding="utf-8")
    print(f"wrote {target}")
