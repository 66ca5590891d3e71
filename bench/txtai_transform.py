"""txtai 'external' vectors for the benchmark: documents and queries carry their own vectors.

txtai's API takes text (GET /search?query=<str>, POST /add with {"id", "text"}), so the
vector travels as JSON text (in /add too: txtai takes a JSON list for a list of tokens) and
this function turns it back into a float32 matrix.  It is named in txtai's config as `transform: txtai_transform.transform`
(bench/vectors.py copies it into a directory of its own on the server's PYTHONPATH and sets
ALLOW_RESOLVE_TRANSFORM=True).
"""

from __future__ import annotations

import json

import numpy as np


def transform(data):
    return np.asarray([json.loads(x) if isinstance(x, str) else x for x in data], dtype=np.float32)
