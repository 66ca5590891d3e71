#!/usr/bin/env python3
"""Config validation time by file size and shape (issue #13): is it linear, and how long does 40 MB take?

    .venv/bin/python bench/config_load.py                 # 4 and 40 MB of each shape
    .venv/bin/python bench/config_load.py --sizes 1 4     # other sizes (MB)

Shapes, each one valid config file written to a temporary directory:
- ``description``: one collection whose description is one long string (few YAML events, long scalars);
- ``stopwords``: one collection with one stopword addition per line (one event per ~14 bytes);
- ``collections``: many small collections of 4 properties and a vector each (dense: one event per ~8 bytes).

Each file is validated with ``load_spec`` (load, schema, merge, semantic checks) in a fresh process, with
SEARCHD_CONFIG_MAX_BYTES raised above the size; the wall time and the process CPU time of the call are
printed (the run with the least CPU of ``--repeat``).  CPU time is the figure to compare on a shared machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

MB = 1_000_000
COLLECTION = """\
  - name: C{i}
    description: collection number {i}
    properties:
      - {{name: title, type: TEXT}}
      - {{name: body, type: TEXT, tokenization: word}}
      - {{name: count, type: INT}}
      - {{name: tags, type: "TEXT[]"}}
    invertedIndex:
      bm25: {{k1: 1.2, b: 0.75}}
    vectors:
      v:
        vectorizer: {{module: text2vec-hash, dimensions: 64, textFields: [title, body]}}
        index: {{type: flat, distance: cosine}}
"""
HEAD = "collections:\n  - name: A\n    properties:\n      - {name: t, type: TEXT}\n"


def write(path: Path, shape: str, size: int) -> None:
    with path.open("w", encoding="utf-8") as out:
        if shape == "description":
            out.write(HEAD + '    description: "')
            word, written = "lorem ipsum ", 0
            while written < size:
                out.write(word * 1000)
                written += len(word) * 1000
            out.write('"\n')
        elif shape == "stopwords":
            out.write(HEAD + "    invertedIndex:\n      stopwords:\n        additions:\n")
            written, i = 0, 0
            while written < size:
                line = f"          - word{i}\n"
                out.write(line)
                written, i = written + len(line), i + 1
        else:
            out.write("collections:\n")
            written, i = 0, 0
            while written < size:
                block = COLLECTION.format(i=i)
                out.write(block)
                written, i = written + len(block), i + 1


TIMER = """
import json, sys, time
from searchd.config import load_spec
from searchd.modules import default_registry
registry = default_registry()
started, cpu = time.perf_counter(), time.process_time()
load_spec(sys.argv[1], registry)
print(json.dumps([time.perf_counter() - started, time.process_time() - cpu]))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=float, nargs="+", default=[4, 40])
    parser.add_argument("--shapes", nargs="+", default=["description", "stopwords", "collections"])
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    env = {**os.environ, "SEARCHD_CONFIG_MAX_BYTES": str(10**10)}
    with tempfile.TemporaryDirectory() as tmp:
        print(f"{'shape':<12} {'MB':>6} {'wall s':>8} {'CPU s':>8} {'MB/CPU s':>9}")
        for shape in args.shapes:
            for size in args.sizes:
                path = Path(tmp) / f"{shape}-{size}.yaml"
                write(path, shape, int(size * MB))
                runs = [json.loads(subprocess.run([sys.executable, "-c", TIMER, str(path)], env=env, check=True, capture_output=True, text=True).stdout) for _ in range(args.repeat)]
                wall, cpu = min(runs, key=lambda r: r[1])
                megabytes = path.stat().st_size / MB
                print(f"{shape:<12} {megabytes:>6.1f} {wall:>8.2f} {cpu:>8.2f} {megabytes / cpu:>9.1f}", flush=True)
                path.unlink()


if __name__ == "__main__":
    main()
