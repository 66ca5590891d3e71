#!/usr/bin/env python3
"""Config validation time by file size and shape (issue #13): is it linear, and how long does 40 MB take?

    .venv/bin/python bench/config_load.py                 # 4 and 40 MB of each shape
    .venv/bin/python bench/config_load.py --sizes 1 4     # other sizes (MB)
    .venv/bin/python bench/config_load.py --issue         # each file with one issue at its end (an invalid file's cost)
    .venv/bin/python bench/config_load.py --reload        # and what a reload does next (revision, plan, catalog)

Shapes, each one valid config file written to a temporary directory:
- ``description``: one collection whose description is one long string (few YAML events, long scalars);
- ``stopwords``: one collection with one stopword addition per line (one event per ~14 bytes);
- ``collections``: many small collections of 4 properties and a vector each (dense: one event per ~8 bytes),
  alike but for their names (a generated config: repeats.py folds it);
- ``distinct``: as many collections that share nothing (their own property and vector names, k1, dimensions).

Each file is validated with ``load_spec`` (load, schema, merge, semantic checks) in a fresh process, with
SEARCHD_CONFIG_MAX_BYTES raised above the size; the wall time and the process CPU time of the call are
printed (the run with the least CPU of ``--repeat``).  CPU time is the figure to compare on a shared machine.

``--stages`` also prints the CPU time of each stage, for both readings (``--readings``): ``fast``
(config/fastload.py: byte scans, the folding of repeated collection entries (repeats.py), rapidyaml's
parse, its JSON, json's reading, the duplicate-key, plain-subset and schema checks, the unfolding) and ``exact`` (PyYAML's events composed, the node walk with positions, the
NaN walk), then the shared stages (config schema, merge, spec, semantic checks).  The exact reading of
40 MB of the collections shape takes about half a minute.

    .venv/bin/python bench/config_load.py --stages --sizes 4 40 --readings fast

``--peers`` also times YAML loaders from PyPI that build Python objects in native code (``yaml_rs``, ``ryaml``,
``pyfastyaml``: benchmark-only, in bench/requirements.txt; one not installed is skipped), each reading the file
to plain data and nothing more, beside searchd's own reading to the same data (rapidyaml's parse, its JSON,
orjson: the fast reading without its checks).  They show the floor any Python loader of a dense file stands on::

    bench/.venv/bin/python bench/config_load.py --peers --sizes 40 --shapes stopwords distinct
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
# The same collection with nothing repeated: its own property and vector names, k1 and dimensions (no entry folds,
# no part of the spec is shared, every check runs for every collection).
DISTINCT = """\
  - name: C{i}
    description: collection number {i}
    properties:
      - {{name: title{i}, type: TEXT}}
      - {{name: body{i}, type: TEXT, tokenization: word}}
      - {{name: count{i}, type: INT}}
      - {{name: tags{i}, type: "TEXT[]"}}
    invertedIndex:
      bm25: {{k1: 1.{i:06d}, b: 0.75}}
    vectors:
      v{i}:
        vectorizer: {{module: text2vec-hash, dimensions: {dimensions}, textFields: [title{i}, body{i}]}}
        index: {{type: flat, distance: cosine}}
"""
HEAD = "collections:\n  - name: A\n    properties:\n      - {name: t, type: TEXT}\n"


# With --issue: one more collection at the end, whose vector names a property it does not have.
ISSUE = "  - name: Zz\n    properties: [{name: t, type: TEXT}]\n    vectors: {v: {vectorizer: {module: text2vec-hash, textFields: [nope]}}}\n"


def write(path: Path, shape: str, size: int, issue: bool = False) -> None:
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
                block = COLLECTION.format(i=i) if shape == "collections" else DISTINCT.format(i=i, dimensions=16 + i % 4000)
                out.write(block)
                written, i = written + len(block), i + 1
        if issue:
            out.write(ISSUE)


TIMER = """
import json, sys, time
from searchd.catalog import compile_catalog
from searchd.config import load_spec
from searchd.config.revision import redacted, revision
from searchd.errors import ConfigError
from searchd.modules import default_registry
from searchd.reload.plan import classify
registry = default_registry()
started, cpu = time.perf_counter(), time.process_time()
try:
    spec = load_spec(sys.argv[1], registry)
except ConfigError as error:
    assert sys.argv[2] == "issue" and len(error.issues) == 1, error
    spec = None
times = [time.perf_counter() - started, time.process_time() - cpu]
if sys.argv[2] == "reload" and spec is not None:
    # What a reload does next with the spec: its revision, the plan against the applied spec (here the same
    # files, applied before), the catalog.  The cyclic collector runs as in the server.
    applied = redacted(load_spec(sys.argv[1], registry))
    started, cpu = time.perf_counter(), time.process_time()
    revision(spec)
    classify(applied, redacted(spec))
    compile_catalog(spec, registry)
    times += [time.perf_counter() - started, time.process_time() - cpu]
print(json.dumps(times))
"""


# Each stage of one reading, timed apart in a fresh process (the internals of searchd/config, in the order
# build.load_spec runs them); prints {stage: CPU seconds}.
STAGES = """
import gc, json, sys, time
from pathlib import Path
import orjson, ryml
from searchd.config import build, fastload, loader, repeats, semantic, spec, validate, yamlsafe
from searchd.modules import default_registry
registry = default_registry()
validate._fast_validator(); fastload._safe_validator()
gc.disable()  # as load_spec does (loader.collector_paused)
stages, clock = {}, time.process_time
def stage(name, work):
    started = clock(); result = work(); stages[name] = clock() - started
    return result
path, reading = sys.argv[1], sys.argv[2]
raw = stage("read", lambda: Path(path).read_bytes())
if reading == "fast":
    assert stage("byte scans", lambda: fastload._plain_source(raw))
    folded = stage("fold repeats", lambda: repeats.fold(raw))
    source = raw if folded is None else folded.text
    def parse():
        tree = ryml.Tree(); tree.reserve(fastload._node_estimate(source)); ryml.parse_in_arena(source, tree=tree)
        return tree
    tree = stage("ryml parse", parse)
    text = stage("ryml JSON", lambda: ryml.emit_json(tree))
    data = stage("json read", lambda: fastload._read_json(source, text))
    assert stage("duplicate keys", lambda: text.count('":') == orjson.dumps(data).count(b'":'))
    assert stage("plain subset", lambda: fastload._safe_validator().is_valid(data))
    assert stage("config schema", lambda: validate.surely_valid(data))
    if folded is not None:
        data = stage("unfold", lambda: folded.unfold(data))
    document = loader.SourceDocument(path, data, loader.Locator(default_file=path), exact=False)
else:
    node = stage("compose", lambda: yamlsafe.compose(raw.decode(), yamlsafe.YamlLimits()))
    builder = loader._Builder(path, {})
    data = stage("build", lambda: builder.build(node, ()))
    document = loader.SourceDocument(path, data, builder.locator)
    assert stage("config schema", lambda: validate.surely_valid(data))
merged, locator, _ = stage("merge", lambda: build._merge([(document, data)], path))
if reading == "exact":
    stage("NaN walk", lambda: semantic.non_finite_issues(merged, locator))
built = stage("spec", lambda: spec.spec_from_data(merged, "."))
assert not stage("semantic", lambda: semantic.semantic_issues(built, locator, registry))
print(json.dumps(stages))
"""


# With --peers: YAML to plain Python data, and nothing else, by each loader; prints {loader: CPU seconds}.
PEERS = """
import gc, importlib, json, sys, time
from pathlib import Path
from searchd.config import fastload
gc.disable()  # as load_spec does
raw = Path(sys.argv[1]).read_bytes()
text = raw.decode()
loaders = {"searchd (rapidyaml, its JSON, orjson)": lambda: fastload._read_json(raw, fastload._parse_ryml(raw))}
for name in ("yaml_rs", "ryaml", "pyfastyaml"):
    try:
        loaders[name] = importlib.import_module(name).loads
    except ImportError:
        pass
times, first = {}, None
for name, load in loaders.items():
    started = time.process_time()
    data = load() if name.startswith("searchd") else load(text)
    # The shapes hold no value YAML 1.1 and 1.2 read apart: other data is a misreading (pyfastyaml 0.2.0 reads
    # `{name: t, type: TEXT}` as the key `{name` of a mapping).
    times[name] = (time.process_time() - started, first is None or data == first)
    first = data if first is None else first
    del data
print(json.dumps(times))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=float, nargs="+", default=[4, 40])
    parser.add_argument("--shapes", nargs="+", default=["description", "stopwords", "collections", "distinct"])
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--stages", action="store_true", help="also time each stage of each reading")
    parser.add_argument("--readings", nargs="+", default=["fast", "exact"], choices=["fast", "exact"])
    parser.add_argument("--issue", action="store_true", help="each file with one issue in its last collection (located, then reported)")
    parser.add_argument("--reload", action="store_true", help="also time what a reload does next: revision, plan, catalog")
    parser.add_argument("--peers", action="store_true", help="also time native YAML loaders from PyPI reading the file to plain data")
    args = parser.parse_args()
    env = {**os.environ, "SEARCHD_CONFIG_MAX_BYTES": str(10**10)}
    with tempfile.TemporaryDirectory() as tmp:
        mode = "issue" if args.issue else "reload" if args.reload else "load"
        extra = f" {'reload wall s':>14} {'reload CPU s':>13}" if args.reload else ""
        print(f"{'shape':<12} {'MB':>6} {'wall s':>8} {'CPU s':>8} {'MB/CPU s':>9}{extra}")
        for shape in args.shapes:
            for size in args.sizes:
                path = Path(tmp) / f"{shape}-{size}.yaml"
                write(path, shape, int(size * MB), args.issue)
                runs = [json.loads(subprocess.run([sys.executable, "-c", TIMER, str(path), mode], env=env, check=True, capture_output=True, text=True).stdout) for _ in range(args.repeat)]
                wall, cpu, *reload = min(runs, key=lambda r: r[1])
                megabytes = path.stat().st_size / MB
                shown = f" {reload[0]:>14.2f} {reload[1]:>13.2f}" if reload else ""
                print(f"{shape:<12} {megabytes:>6.1f} {wall:>8.2f} {cpu:>8.2f} {megabytes / cpu:>9.1f}{shown}", flush=True)
                for reading in args.readings if args.stages else ():
                    out = subprocess.run([sys.executable, "-c", STAGES, str(path), reading], env=env, check=True, capture_output=True, text=True).stdout
                    stages = json.loads(out)
                    shown = ", ".join(f"{name} {seconds:.2f}" for name, seconds in stages.items())
                    print(f"  {reading} reading, CPU s by stage (total {sum(stages.values()):.2f}): {shown}", flush=True)
                if args.peers:
                    out = subprocess.run([sys.executable, "-c", PEERS, str(path)], env=env, check=True, capture_output=True, text=True).stdout
                    shown = ", ".join(f"{name} {seconds:.2f}{'' if same else ' (misread the file)'}" for name, (seconds, same) in json.loads(out).items())
                    print(f"  YAML to plain data only, CPU s: {shown}", flush=True)
                path.unlink()


if __name__ == "__main__":
    main()
