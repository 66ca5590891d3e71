"""txtai 'external' vectors for the benchmark: documents and queries carry their own vectors.

txtai's API takes text (GET /search?query=<str>, POST /add with {"id", "text"}), so the
vector travels as JSON text (or, in /add, as a JSON list) and this function turns it back
into a float32 matrix.  It is named in txtai's config as `transform: txtai_transform.transform`
(the server runs with PYTHONPATH=bench and ALLOW_RESOLVE_TRANSFORM=True).
"""

from __future__ import annotations

import json

import numpy as np


def transform(data):  # noqa: ANN001, ANN201 - txtai calls this with a list of inputs
    return np.asarray([json.loads(x) if isinstance(x, str) else x for x in data], dtype=np.float32)
