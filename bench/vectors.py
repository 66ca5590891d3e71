#!/usr/bin/env python3
"""Vector-index benchmark: searchd (in-process and over HTTP) against hnswlib, annoy, chromadb and txtai.

    bash bench/setup.sh                                   # once: bench/.venv with searchd + the peers
    bench/.venv/bin/python bench/vectors.py               # full run (n=30000, 1000 queries), ~10 min on 2 cores
    bench/.venv/bin/python bench/vectors.py --quick       # smoke run (n=5000, 200 queries)
    bench/.venv/bin/python bench/vectors.py --only searchd,hnswlib --n 10000

Data: WordNet glosses with all-MiniLM-L6-v2 vectors (see the data set's README): the first N corpus
rows are indexed; recall@10 is measured against the exact top-10 (the shipped ground truth for
N = 60000, recomputed with numpy on the float32 vectors otherwise).

Every measurement: one client, sequential requests, one thread wherever the library lets us
(OMP/BLAS threads = 1, hnswlib num_threads = 1); 20 warm-up queries, then every query is timed.
HTTP request bodies are serialized before the timed loop (the same 9-significant-digit vector
text for every server), so HTTP QPS is transport + server; chromadb.HttpClient does its own
serialization, which is why it is measured separately from raw HTTP.

Sections (--only takes these names): searchd (a: in-process indexes), http (b: searchd server),
hnswlib, annoy, chroma (in-process, server via HttpClient and raw HTTP, import throughput), txtai.
"""

from __future__ import annotations

import os
import sys

# Python puts this script's directory first on sys.path; a module in bench/ named like a stdlib
# module (bench/keyword.py, say) would then shadow it for everything imported below.  The
# benchmark imports nothing from bench/, so take the directory off the path.
if sys.path and os.path.realpath(sys.path[0] or ".") == os.path.dirname(os.path.realpath(__file__)):
    del sys.path[0]
if os.path.dirname(os.path.dirname(os.path.realpath(__file__))) not in sys.path:  # the repository root: bench.benchdata
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.realpath(__file__))))

# Single-threaded numerics in this process and every server it starts (set before numpy loads).
THREAD_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "NUMEXPR_NUM_THREADS": "1"}
os.environ.update(THREAD_ENV)

import argparse
import contextlib
import dataclasses
import gc
import importlib.metadata
import json
import platform
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import traceback
import urllib.parse
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bench.benchdata import bench_data, default_data_dir

HERE = Path(__file__).resolve().parent
VENV_BIN = Path(sys.executable).parent
DEFAULT_DATA = default_data_dir()  # $SEARCHD_BENCH_DATA, else ../shared/data/wordnet-minilm beside the repository
K = 10
DIM = 384
TARGET = 0.95
WARMUP = 20
MEASURE_BUDGET_S = 90.0  # one measurement stops early (and says so) past this
MIN_PASS_S = 1.0  # fast searches: repeat the query set until timed for at least this long
MAX_PASSES = 20
RETRY_OTHER_LOAD = 0.25  # cores of other work during a timed loop that make it worth measuring again
MAX_RETRIES = 2
QUIET_WAIT_S = 60.0
ID_NAMESPACE = uuid.NAMESPACE_URL
SECTIONS = ("searchd", "http", "hnswlib", "annoy", "chroma", "txtai")

# searchd in-process settings (IndexSpec field names).  Search-time settings are rebuilt, not
# patched into a built index, so every row measures exactly what that spec builds.
SEARCHD_PLANS: dict[str, list[dict[str, Any]]] = {
    "flat": [{}],
    "hnsw": [{"max_connections": 16, "ef_construction": 128, "ef": ef} for ef in (16, 24, 32, 48, 64, 128)],
    "annoy": [{"trees": 32, "search_k": sk} for sk in (0, 5000, 10000, 20000)] + [{"trees": 64, "search_k": sk} for sk in (0, 10000)],
}
CAMEL = {"max_connections": "maxConnections", "ef_construction": "efConstruction", "ef": "ef", "trees": "trees", "search_k": "searchK", "merge_threshold": "mergeThreshold"}
HNSWLIB_EFS = (10, 16, 24, 32, 48, 64, 96, 128)
ANNOY_PLANS = [(32, sk) for sk in (1000, 2560, 5000, 8000, 10000, 20000)] + [(64, sk) for sk in (5120, 10000)]
CHROMA_EFS = (16, 24, 32, 48, 64, 100, 128, 200)  # 100 is chroma's default ef_search
CHROMA_DEFAULT_EF = 100


# -- output ------------------------------------------------------------------------


def log(message: str) -> None:
    print(message, flush=True)


@dataclasses.dataclass
class Row:
    section: str
    system: str
    setting: str
    recall: float | None = None
    qps: float | None = None
    p50_ms: float | None = None
    p99_ms: float | None = None
    queries: int | None = None
    cpu_ms: float | None = None  # CPU ms per query of the searching process (in-process: this one; HTTP: the server)
    other_load: float | None = None  # cores busy with other work during the timed loop
    import_per_s: float | None = None
    build_s: float | None = None
    notes: str = ""


ROWS: list[Row] = []
SKIPS: list[dict[str, str]] = []
EXTRA: dict[str, Any] = {}


def add_row(row: Row) -> Row:
    ROWS.append(row)
    parts = [f"[{row.section}] {row.system} {row.setting}:"]
    if row.build_s is not None:
        parts.append(f"build {row.build_s:.1f} s")
    if row.import_per_s is not None:
        parts.append(f"import {row.import_per_s:,.0f} obj/s")
    if row.recall is not None:
        parts.append(f"recall@10 {row.recall:.4f}, {row.qps:,.0f} QPS, p50 {row.p50_ms:.2f} ms, p99 {row.p99_ms:.2f} ms, CPU {fmt(row.cpu_ms, '.3f')} ms/query")
    if row.notes:
        parts.append(f"({row.notes})")
    log(" ".join(parts))
    return row


def skip(section: str, what: str, why: str) -> None:
    SKIPS.append({"section": section, "what": what, "why": why})
    log(f"[{section}] SKIP {what}: {why}")


def fmt(value: float | None, spec: str) -> str:
    return "" if value is None else format(value, spec)


def table(rows: Sequence[Row], markdown: bool = False) -> str:
    head = ["section", "system", "setting", "recall@10", "QPS", "p50 ms", "p99 ms", "CPU ms/q", "other cores", "import obj/s", "build s", "notes"]
    body = [
        [r.section, r.system, r.setting, fmt(r.recall, ".4f"), fmt(r.qps, ",.0f"), fmt(r.p50_ms, ".2f"), fmt(r.p99_ms, ".2f"), fmt(r.cpu_ms, ".3f"), fmt(r.other_load, ".2f"), fmt(r.import_per_s, ",.0f"), fmt(r.build_s, ".1f"), r.notes]
        for r in rows
    ]
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" if i < 3 or i == 11 else "--:" for i in range(len(head))) + "|"]
        lines += ["| " + " | ".join(c.replace("|", "/") for c in line) + " |" for line in body]
        return "\n".join(lines)
    widths = [max(len(h), *(len(line[i]) for line in body)) if body else len(h) for i, h in enumerate(head)]
    out = ["  ".join(h.ljust(w) for h, w in zip(head, widths)), "  ".join("-" * w for w in widths)]
    out += ["  ".join(c.ljust(w) if i in (0, 1, 2, 11) else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths))) for line in body]
    return "\n".join(out)


# -- data --------------------------------------------------------------------------


@dataclasses.dataclass
class Data:
    corpus: np.ndarray  # n x 384 float32
    queries: np.ndarray  # nq x 384 float32
    truth: list[set[int]]  # exact top-10 corpus rows per query
    glosses: list[str]
    uuids: list[str]
    row_of: dict[str, int]
    _vec_text: list[str] | None = None
    _query_text: list[str] | None = None

    @property
    def n(self) -> int:
        return len(self.corpus)

    @property
    def nq(self) -> int:
        return len(self.queries)

    @property
    def vec_text(self) -> list[str]:
        """JSON text of each corpus vector (9 significant digits: float32 round-trips)."""
        if self._vec_text is None:
            self._vec_text = [vector_json(v) for v in self.corpus]
        return self._vec_text

    @property
    def query_text(self) -> list[str]:
        if self._query_text is None:
            self._query_text = [vector_json(v) for v in self.queries]
        return self._query_text


def vector_json(vector: np.ndarray) -> str:
    return "[" + ",".join(map("{:.9g}".format, vector.tolist())) + "]"


def load_data(directory: Path, n: int, nq: int) -> Data:
    bench_data(directory)
    corpus_all = np.load(directory / "corpus.f16.npy", mmap_mode="r")
    queries_all = np.load(directory / "queries.f16.npy")
    if not 1 <= n <= len(corpus_all):
        raise SystemExit(f"--n must be between 1 and {len(corpus_all)}")
    if not 1 <= nq <= len(queries_all):
        raise SystemExit(f"--queries must be between 1 and {len(queries_all)}")
    corpus = np.ascontiguousarray(corpus_all[:n], dtype=np.float32)
    queries = np.ascontiguousarray(queries_all[:nq], dtype=np.float32)
    if n == len(corpus_all):
        top = np.load(directory / "groundtruth.top100.i32.npy")[:nq, :K]
        source = "groundtruth.top100.i32.npy"
    else:
        scores = queries @ corpus.T
        part = np.argpartition(-scores, K - 1, axis=1)[:, :K]
        top = np.take_along_axis(part, np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1), axis=1)
        source = "exact top-10 recomputed with numpy over the first N rows"
    entries = []
    with open(directory / "corpus.jsonl", encoding="utf-8") as handle:
        for line in handle:
            entries.append(json.loads(line))
            if len(entries) == n:
                break
    uuids = [str(uuid.uuid5(ID_NAMESPACE, f"wordnet:{e['id']}")) for e in entries]
    EXTRA["ground_truth"] = source
    return Data(corpus, queries, [set(map(int, row)) for row in top], [e["gloss"] for e in entries], uuids, {u: i for i, u in enumerate(uuids)})


# -- measuring ---------------------------------------------------------------------


def system_busy_s() -> float:
    """CPU seconds spent by the whole machine (all cores, not idle or iowait) since boot."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    except (OSError, ValueError):
        return 0.0
    busy = sum(fields) - fields[3] - (fields[4] if len(fields) > 4 else 0)
    return busy / os.sysconf("SC_CLK_TCK")


class LoadMeter:
    """Cores of other work on the machine between start and stop (not this process, not ``server``)."""

    def __init__(self, server: Server | None = None) -> None:
        self.server = server
        self.t = time.perf_counter()
        self.busy = system_busy_s()
        self.own = time.process_time()
        self.srv = server.cpu_s() if server else 0.0

    def other(self) -> float:
        elapsed = time.perf_counter() - self.t
        used = (time.process_time() - self.own) + ((self.server.cpu_s() - self.srv) if self.server else 0.0)
        return max(0.0, (system_busy_s() - self.busy) - used) / elapsed if elapsed > 0 else 0.0


def wait_quiet(max_s: float = QUIET_WAIT_S) -> float:
    """Wait (bounded) until the machine's other work drops below 0.1 core for 2 s in a row; seconds waited."""
    start = time.perf_counter()
    quiet = 0
    last = system_busy_s()
    while time.perf_counter() - start < max_s:
        time.sleep(1.0)
        now = system_busy_s()
        quiet = quiet + 1 if now - last < 0.1 else 0
        last = now
        if quiet >= 2:
            break
    return time.perf_counter() - start


def measure(data: Data, search: Callable[[int], Sequence[int]], budget_s: float = MEASURE_BUDGET_S, cpu: Callable[[], float] = time.process_time) -> dict[str, Any]:
    """One measurement; if other work on the machine disturbed it, wait for quiet and measure again (bounded)."""
    best = _measure_once(data, search, budget_s, cpu)
    retries = 0
    while best["other_load_cores"] >= RETRY_OTHER_LOAD and retries < MAX_RETRIES:
        retries += 1
        waited = wait_quiet()
        log(f"  (other load {best['other_load_cores']:.2f} cores during timing: waited {waited:.0f} s for quiet, measuring again)")
        again = _measure_once(data, search, budget_s, cpu)
        if again["other_load_cores"] < best["other_load_cores"]:
            best = again
    if retries:
        best["note"] = "; ".join(x for x in (best["note"], f"best of {retries + 1} tries (least other load)") if x)
    return best


def _measure_once(data: Data, search: Callable[[int], Sequence[int]], budget_s: float, cpu: Callable[[], float]) -> dict[str, Any]:
    """Warm up, then time every query sequentially; recall@10 over the first pass.

    A pass that takes under MIN_PASS_S is repeated (up to MAX_PASSES) so that fast in-process
    searches are timed over at least that long; QPS and latencies cover every timed pass.
    ``cpu`` returns cumulative CPU seconds of whatever does the searching (this process by default,
    the server process for HTTP): CPU ms per query is far less disturbed by other load than QPS.
    "other load" is the machine's busy CPU during the timed loop that neither this process nor
    the measured server used, in cores: above ~0.1 the wall-clock numbers were disturbed.
    """
    for i in range(min(WARMUP, data.nq)):
        search(i)
    latencies: list[float] = []
    found: list[Sequence[int]] = []
    passes = 0
    stopped = False
    cpu_start = cpu()
    own_start = time.process_time() if cpu is not time.process_time else 0.0
    busy_start = system_busy_s()
    start = time.perf_counter()
    while passes < MAX_PASSES and not stopped:
        for i in range(data.nq):
            t = time.perf_counter()
            rows = search(i)
            latencies.append(time.perf_counter() - t)
            if passes == 0:
                found.append(rows)
            if time.perf_counter() - start > budget_s:
                stopped = True
                break
        passes += 1
        if time.perf_counter() - start >= MIN_PASS_S:
            break
    elapsed = time.perf_counter() - start
    cpu_used = cpu() - cpu_start
    own = (time.process_time() - own_start) if cpu is not time.process_time else 0.0
    other = max(0.0, (system_busy_s() - busy_start) - cpu_used - own) / elapsed
    done = len(found)
    recall = sum(len(set(rows[:K]) & data.truth[i]) for i, rows in enumerate(found)) / (K * done)
    lat = np.asarray(latencies) * 1000.0
    note = f"stopped after {done}/{data.nq} queries ({budget_s:.0f} s budget)" if done < data.nq else ""
    if passes > 1:
        note = "; ".join(x for x in (note, f"timed over {passes} passes") if x)
    if other >= 0.1:
        note = "; ".join(x for x in (note, f"OTHER LOAD {other:.2f} cores during timing") if x)
    return {"recall": recall, "qps": len(latencies) / elapsed, "p50_ms": float(np.percentile(lat, 50)), "p99_ms": float(np.percentile(lat, 99)), "queries": done, "timed_queries": len(latencies), "cpu_ms": cpu_used * 1000 / len(latencies), "other_load_cores": other, "note": note}


def row_from(section: str, system: str, setting: str, m: dict[str, Any], notes: str = "", **extra: Any) -> Row:
    note = "; ".join(x for x in (notes, m.get("note", "")) if x)
    return add_row(Row(section, system, setting, m["recall"], m["qps"], m["p50_ms"], m["p99_ms"], m["queries"], m.get("cpu_ms"), m.get("other_load_cores"), notes=note, **extra))


def best_at_target(rows: Sequence[Row]) -> Row | None:
    """The fastest row that reaches recall@10 >= 0.95."""
    ok = [r for r in rows if r.recall is not None and r.recall >= TARGET and r.qps]
    return max(ok, key=lambda r: r.qps) if ok else None


# -- processes ---------------------------------------------------------------------

RUNNING: list[Server] = []
SEARCHD_SRC: Path | None = None  # set by --searchd-rev: a snapshot of that commit's searchd/, used instead of the live tree


def searchd_argv() -> list[str]:
    if SEARCHD_SRC is None:
        return [str(VENV_BIN / "searchd")]
    return [sys.executable, "-m", "searchd"]


def searchd_env() -> dict[str, str]:
    return {} if SEARCHD_SRC is None else {"PYTHONPATH": str(SEARCHD_SRC)}


def snapshot_searchd(rev: str, into: Path) -> tuple[Path, str]:
    """Extract searchd/ at a git revision of the repository, so edits in progress do not leak in."""
    repo = HERE.parent
    commit = subprocess.run(["git", "-C", str(repo), "rev-parse", "--verify", f"{rev}^{{commit}}"], capture_output=True, text=True, check=True).stdout.strip()
    into.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(repo), "archive", commit, "searchd", "schemas"], capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into, commit


def searchd_source() -> dict[str, Any]:
    repo = HERE.parent
    info: dict[str, Any] = {"snapshot_of_rev": None}
    with contextlib.suppress(Exception):
        info["head"] = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--", "searchd"], capture_output=True, text=True, check=True).stdout
        info["searchd_tree_dirty"] = bool(dirty.strip())
    return info


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """A server subprocess in its own session, on 127.0.0.1, logged to a file."""

    def __init__(self, name: str, argv: list[str], log_path: Path, env: dict[str, str] | None = None, cwd: Path | None = None) -> None:
        self.name = name
        self.log_path = log_path
        self._log = open(log_path, "ab")  # noqa: SIM115 (held open for the life of a process)
        full_env = {**os.environ, **THREAD_ENV, **(env or {})}
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(argv, stdout=self._log, stderr=subprocess.STDOUT, env=full_env, cwd=cwd, start_new_session=True)
        RUNNING.append(self)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def wait_http(self, url: str, timeout_s: float) -> float:
        """Seconds from process start until GET url answers 200."""
        import httpx

        deadline = time.perf_counter() + timeout_s
        while time.perf_counter() < deadline:
            if self.proc.poll() is not None:
                lines = [x for x in self.tail(40).splitlines() if x.strip()]
                raise RuntimeError(f"{self.name} exited with code {self.proc.returncode}: {lines[-1] if lines else 'no output'} (log: {self.log_path.name})")
            try:
                if httpx.get(url, timeout=2.0).status_code == 200:
                    return time.perf_counter() - self.started
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"{self.name} not ready at {url} after {timeout_s:.0f} s:\n{self.tail()}")

    def rss_mb(self) -> float | None:
        try:
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
        except OSError:
            return None
        return None

    def cpu_s(self) -> float:
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def settle(self, max_s: float = 120.0, idle_cpu_s: float = 0.03) -> float:
        """Wait until the server is idle (background work such as index merges done); seconds waited."""
        start = time.perf_counter()
        last = self.cpu_s()
        while time.perf_counter() - start < max_s:
            time.sleep(1.0)
            now = self.cpu_s()
            if now - last < idle_cpu_s:
                return time.perf_counter() - start
            last = now
        return time.perf_counter() - start

    def stop(self, timeout_s: float = 120.0) -> float:
        """SIGTERM (graceful: searchd saves its indexes), SIGKILL if it does not exit; seconds taken."""
        start = time.perf_counter()
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                log(f"  {self.name} did not stop in {timeout_s:.0f} s: SIGKILL")
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(30)
        self._log.close()
        if self in RUNNING:
            RUNNING.remove(self)
        return time.perf_counter() - start


def kill_all() -> None:
    for server in RUNNING[:]:  # a copy: stop() removes the server from RUNNING
        with contextlib.suppress(Exception):
            server.stop(timeout_s=20)


def http_client(base_url: str) -> Any:
    import httpx

    return httpx.Client(base_url=base_url, timeout=httpx.Timeout(120.0), headers={"Content-Type": "application/json"})


# -- a. searchd in-process -----------------------------------------------------------


def setting_text(params: dict[str, Any]) -> str:
    short = {"max_connections": "M", "ef_construction": "efC", "ef": "ef", "trees": "trees", "search_k": "searchK"}
    return " ".join(f"{short.get(k, k)}={v}" for k, v in params.items()) or "-"


def section_searchd(data: Data) -> dict[str, list[Row]]:
    from searchd.config.spec import Distance, IndexSpec
    from searchd.index import build_index

    fields = {f.name: f for f in dataclasses.fields(IndexSpec)}
    EXTRA["searchd_indexspec_fields"] = sorted(fields)
    log(f"[a] IndexSpec fields: {', '.join(sorted(fields))}")
    ids = [str(i) for i in range(data.n)]
    results: dict[str, list[Row]] = {}
    for kind, plans in SEARCHD_PLANS.items():
        for params in plans:
            unknown = sorted(set(params) - set(fields))
            if unknown:
                skip("a", f"searchd {kind} {setting_text(params)}", f"IndexSpec has no field(s) {', '.join(unknown)}")
                continue
            try:
                index = build_index(IndexSpec(type=kind, distance=Distance.COSINE, **params), DIM)
            except Exception as exc:  # noqa: BLE001 - reported, then the next measurement goes on
                skip("a", f"searchd {kind}", f"build_index rejected it: {type(exc).__name__}: {exc}")
                break
            if kind != "flat" and type(index).__name__ == "FlatIndex":
                skip("a", f"searchd {kind}", "build_index returned a FlatIndex (type not implemented yet)")
                break
            defaults = all(fields[k].default == v for k, v in params.items())
            try:
                start = time.perf_counter()
                if hasattr(index, "upsert_many"):
                    index.upsert_many(ids, data.corpus)
                    how = "upsert_many"
                else:
                    for i, object_id in enumerate(ids):
                        index.upsert(object_id, data.corpus[i])
                    how = "upsert loop"
                if hasattr(index, "wait_for_merges"):
                    index.wait_for_merges()
                build_s = time.perf_counter() - start
                queries = data.queries
                m = measure(data, lambda i, index=index, queries=queries: [int(h.id) for h in index.search(queries[i], K)])
                notes = ", ".join(x for x in (how, "searchd default" if defaults and params else "") if x)
                results.setdefault(kind, []).append(
                    row_from("a", f"searchd {kind} (in-process)", setting_text(params), m, notes, build_s=build_s, import_per_s=data.n / build_s)
                )
            finally:
                with contextlib.suppress(Exception):
                    if hasattr(index, "close"):
                        index.close()
                index = None
                gc.collect()
    return results


# -- b. searchd over HTTP ------------------------------------------------------------


def searchd_config(kind: str, params: dict[str, Any]) -> dict[str, Any]:
    index = {"type": kind, "distance": "cosine", **{CAMEL[k]: v for k, v in params.items()}}
    return {
        "server": {"host": "127.0.0.1"},
        "collections": [
            {
                "name": "Gloss",
                "properties": [{"name": "text", "type": "TEXT"}],
                "vectors": {"v": {"vectorizer": {"module": "none", "dimensions": DIM}, "index": index}},
            }
        ],
    }


def searchd_batches(data: Data, size: int) -> Iterator[tuple[int, bytes]]:
    texts = data.vec_text
    for start in range(0, data.n, size):
        rows = range(start, min(start + size, data.n))
        objects = ",".join(
            f'{{"class":"Gloss","id":"{data.uuids[r]}","properties":{{"text":{json.dumps(data.glosses[r])}}},"vector":{texts[r]}}}' for r in rows
        )
        yield len(rows), ('{"objects":[' + objects + "]}").encode()


def graphql_bodies(data: Data) -> list[bytes]:
    template = '{"query": "{ Get { Gloss(nearVector: {vector: %s}, limit: 10) { _additional { id } } } }"}'
    return [(template % text).encode() for text in data.query_text]


def type_text(ref: dict[str, Any]) -> str:
    if ref["kind"] == "NON_NULL":
        return type_text(ref["ofType"]) + "!"
    if ref["kind"] == "LIST":
        return "[" + type_text(ref["ofType"]) + "]"
    return str(ref["name"])


def innermost(ref: dict[str, Any]) -> str:
    while ref.get("ofType"):
        ref = ref["ofType"]
    return str(ref["name"])


TYPE_REF = "kind name ofType { kind name ofType { kind name ofType { kind name } } }"


def vector_variable_type(client: Any) -> str:
    """The GraphQL type of Get.Gloss(nearVector: {vector}), found by introspection (searchd may use [Float] or a scalar)."""

    def ask(query: str) -> dict[str, Any]:
        answer = client.post("/v1/graphql", json={"query": query}).json()
        if answer.get("errors"):
            raise RuntimeError(f"introspection failed: {answer['errors']}")
        return dict(answer["data"])

    fields = ask(f"{{ __schema {{ queryType {{ fields {{ name type {{ {TYPE_REF} }} }} }} }} }}")["__schema"]["queryType"]["fields"]
    get = innermost(next(f for f in fields if f["name"] == "Get")["type"])
    classes = ask(f'{{ __type(name: "{get}") {{ fields {{ name args {{ name type {{ {TYPE_REF} }} }} }} }} }}')["__type"]["fields"]
    near = innermost(next(a for a in next(f for f in classes if f["name"] == "Gloss")["args"] if a["name"] == "nearVector")["type"])
    inputs = ask(f'{{ __type(name: "{near}") {{ inputFields {{ name type {{ {TYPE_REF} }} }} }} }}')["__type"]["inputFields"]
    return type_text(next(f for f in inputs if f["name"] == "vector")["type"])


def graphql_variable_bodies(data: Data, var_type: str) -> list[bytes]:
    query = f"query Q($v: {var_type}) {{ Get {{ Gloss(nearVector: {{vector: $v}}, limit: 10) {{ _additional {{ id }} }} }} }}"
    return [(f'{{"query": {json.dumps(query)}, "variables": {{"v": {text}}}}}').encode() for text in data.query_text]


def graphql_parse_validate_ms(client: Any, bodies: Sequence[bytes], count: int = 200) -> dict[str, float]:
    """graphql-core parse and validate time per query (against the server's schema, rebuilt from introspection)."""
    from graphql import build_client_schema, get_introspection_query, parse, validate

    answer = client.post("/v1/graphql", json={"query": get_introspection_query()}).json()
    schema = build_client_schema(answer["data"])
    queries = [json.loads(b)["query"] for b in bodies[:count]]
    t = time.perf_counter()
    documents = [parse(q) for q in queries]
    parse_ms = (time.perf_counter() - t) * 1000 / len(queries)
    t = time.perf_counter()
    errors = [validate(schema, d) for d in documents]
    validate_ms = (time.perf_counter() - t) * 1000 / len(queries)
    if any(errors):
        raise RuntimeError(f"validation errors against the introspected schema: {next(e for e in errors if e)}")
    return {"parse_ms": parse_ms, "validate_ms": validate_ms}


def section_http(data: Data, plans: list[tuple[str, dict[str, Any]]], tmp: Path) -> dict[str, Row]:
    results: dict[str, Row] = {}
    batches = list(searchd_batches(data, 500))
    bodies = graphql_bodies(data)
    for kind, params in plans:
        label = f"searchd {kind} (HTTP nearVector)"
        work = Path(tempfile.mkdtemp(prefix=f"searchd-{kind}-", dir=tmp))
        config = work / "searchd.yaml"
        config.write_text(json.dumps(searchd_config(kind, params), indent=2))  # JSON is YAML
        data_dir = work / "data"
        server: Server | None = None
        try:
            argv = [*searchd_argv(), "serve", str(config), "--data", str(data_dir), "--grpc-port", "0", "--log-level", "warning"]

            def start() -> tuple[Server, str, float]:
                port = free_port()
                s = Server(f"searchd-{kind}", [*argv, "--port", str(port)], work / "server.log", env=searchd_env(), cwd=work)
                url = f"http://127.0.0.1:{port}"
                return s, url, s.wait_http(url + "/v1/.well-known/ready", 300)

            try:
                server, url, first_start = start()
            except RuntimeError as exc:
                skip("b", label, f"the server did not start: {exc}")
                continue
            # import
            wait_quiet()
            with http_client(url) as client:
                meter = LoadMeter(server)
                t0 = time.perf_counter()
                for count, body in batches:
                    response = client.post("/v1/batch/objects", content=body)
                    if response.status_code != 200:
                        raise RuntimeError(f"batch import answered {response.status_code}: {response.text[:500]}")
                    failed = [o for o in response.json() if o.get("result", {}).get("status") != "SUCCESS"]
                    if failed or len(response.json()) != count:
                        raise RuntimeError(f"batch import: {len(failed)} failed, e.g. {failed[:1]}")
                import_s = time.perf_counter() - t0
                import_other = meter.other()
            settle_after_import = server.settle()
            rss_after_import = server.rss_mb()
            shutdown_s = server.stop()
            # restart with the data already there (graceful stop saved the index)
            server, url, startup_s = start()
            settle_s = server.settle()
            rss = server.rss_mb()
            with http_client(url) as client:
                t = time.perf_counter()
                first = client.post("/v1/graphql", content=bodies[0])
                first_query_ms = (time.perf_counter() - t) * 1000

                def search(i: int) -> list[int]:
                    answer = client.post("/v1/graphql", content=bodies[i]).json()
                    if answer.get("errors"):
                        raise RuntimeError(f"GraphQL errors: {answer['errors']}")
                    return [data.row_of[hit["_additional"]["id"]] for hit in answer["data"]["Get"]["Gloss"]]

                if first.status_code != 200:
                    raise RuntimeError(f"first query answered {first.status_code}: {first.text[:500]}")
                m = measure(data, search, cpu=server.cpu_s)
                # the same searches with the vector passed as a GraphQL variable instead of an inline literal
                m_var: dict[str, Any] | None = None
                var_note = ""
                try:
                    var_type = vector_variable_type(client)
                    var_bodies = graphql_variable_bodies(data, var_type)

                    def search_var(i: int) -> list[int]:
                        answer = client.post("/v1/graphql", content=var_bodies[i]).json()
                        if answer.get("errors"):
                            raise RuntimeError(f"GraphQL errors: {answer['errors']}")
                        return [data.row_of[hit["_additional"]["id"]] for hit in answer["data"]["Get"]["Gloss"]]

                    m_var = measure(data, search_var, cpu=server.cpu_s)
                    var_note = f"query($v: {var_type}), variables {{v: [...]}}"
                except Exception as exc:  # noqa: BLE001 - reported, then the next measurement goes on
                    skip("b", f"searchd {kind} (HTTP nearVector, GraphQL variable)", f"{type(exc).__name__}: {exc}")
                breakdown: dict[str, float] = {}
                with contextlib.suppress(Exception):
                    breakdown = graphql_parse_validate_ms(client, bodies)
            server.stop()
            # cold start: no saved index, rebuilt from the store
            saved = data_dir / "indexes"
            rebuild_s: float | None = None
            if saved.exists():
                shutil.rmtree(saved)
                server, url, rebuild_s = start()
                server.stop()
            details = {
                "import_s": import_s,
                "import_other_load_cores": import_other,
                "settle_after_import_s": settle_after_import,
                "rss_after_import_mb": rss_after_import,
                "shutdown_s": shutdown_s,
                "first_start_empty_s": first_start,
                "startup_s": startup_s,
                "settle_after_startup_s": settle_s,
                "rss_after_startup_mb": rss,
                "first_query_ms": first_query_ms,
                "startup_rebuild_s": rebuild_s,
                "graphql_inline_literal_client_side_parse_validate": breakdown,
            }
            EXTRA.setdefault("searchd_http", {})[f"{kind} {setting_text(params)}"] = details
            notes = (
                f"start-up {startup_s:.1f} s (saved index), "
                + (f"{rebuild_s:.1f} s (rebuild from store), " if rebuild_s is not None else "")
                + f"RSS {rss:.0f} MB after restart ({rss_after_import:.0f} MB after import), shutdown {shutdown_s:.1f} s, "
                + f"settle after import {settle_after_import:.0f} s"
                + (f"; OTHER LOAD {import_other:.2f} cores during import" if import_other >= 0.1 else "")
            )
            if breakdown:
                notes += f"; graphql-core parse {breakdown['parse_ms']:.2f} ms + validate {breakdown['validate_ms']:.2f} ms per inline-literal query (measured client-side)"
            results[kind] = row_from("b", label, setting_text(params), m, notes, import_per_s=data.n / import_s)
            if m_var is not None:
                results[kind + "/variable"] = row_from("b", f"searchd {kind} (HTTP nearVector, GraphQL variable)", setting_text(params), m_var, var_note)
        except Exception as exc:  # noqa: BLE001 - reported, then the next measurement goes on
            skip("b", label, f"{type(exc).__name__}: {exc}")
            traceback.print_exc()
        finally:
            if server is not None:
                server.stop()
            shutil.rmtree(work, ignore_errors=True)
    return results


# -- c. peers: hnswlib, annoy ----------------------------------------------------------


def section_hnswlib(data: Data) -> list[Row]:
    try:
        import hnswlib
    except ImportError as exc:
        skip("c", "hnswlib", f"not importable: {exc}")
        return []
    graph = hnswlib.Index(space="cosine", dim=DIM)
    graph.init_index(max_elements=data.n, ef_construction=128, M=16, random_seed=100)
    graph.set_num_threads(1)
    start = time.perf_counter()
    graph.add_items(data.corpus, np.arange(data.n))
    build_s = time.perf_counter() - start
    rows = []
    queries = data.queries
    for ef in HNSWLIB_EFS:
        graph.set_ef(ef)
        m = measure(data, lambda i: graph.knn_query(queries[i], k=K)[0][0].tolist())
        rows.append(row_from("c", "hnswlib (raw)", f"M=16 efC=128 ef={ef}", m, "1 thread", build_s=build_s, import_per_s=data.n / build_s))
    return rows


def section_annoy(data: Data) -> list[Row]:
    try:
        import annoy
    except ImportError as exc:
        skip("c", "annoy", f"not importable: {exc}")
        return []
    rows = []
    for trees in sorted({t for t, _ in ANNOY_PLANS}):
        forest = annoy.AnnoyIndex(DIM, "angular")
        start = time.perf_counter()
        for i in range(data.n):
            forest.add_item(i, data.corpus[i])
        forest.build(trees, n_jobs=1)
        build_s = time.perf_counter() - start
        queries = data.queries
        for _, search_k in [p for p in ANNOY_PLANS if p[0] == trees]:
            m = measure(data, lambda i: forest.get_nns_by_vector(queries[i], K, search_k=search_k))
            rows.append(row_from("c", "annoy (raw)", f"trees={trees} searchK={search_k}", m, "1 thread", build_s=build_s, import_per_s=data.n / build_s))
        forest.unload()
    return rows


# -- c/d. chromadb -----------------------------------------------------------------------


def chroma_metadata(ef: int) -> dict[str, Any]:
    return {"hnsw:space": "cosine", "hnsw:search_ef": ef}


def section_chroma(data: Data, tmp: Path) -> dict[str, Any]:
    try:
        import chromadb
    except ImportError as exc:
        skip("c", "chromadb", f"not importable: {exc}")
        return {}
    out: dict[str, Any] = {"inprocess": []}
    settings = chromadb.Settings(anonymized_telemetry=False)
    ids = [str(i) for i in range(data.n)]
    queries = data.queries

    # in-process: one collection per ef_search (chroma applies ef_search when the index is created;
    # collection.modify(configuration=...) did not change recall of an open index in a probe)
    path = Path(tempfile.mkdtemp(prefix="chroma-inproc-", dir=tmp))
    client = chromadb.PersistentClient(path=str(path), settings=settings)
    batch = min(5000, client.get_max_batch_size())
    reached: int | None = None
    try:
        for ef in CHROMA_EFS:
            if reached is not None and ef != CHROMA_DEFAULT_EF:
                continue
            collection = client.create_collection(f"gloss-ef{ef}", metadata=chroma_metadata(ef), embedding_function=None)
            start = time.perf_counter()
            for s in range(0, data.n, batch):
                collection.add(ids=ids[s : s + batch], embeddings=data.corpus[s : s + batch], documents=data.glosses[s : s + batch])
            add_s = time.perf_counter() - start
            t = time.perf_counter()
            collection.query(query_embeddings=queries[:1], n_results=K, include=[])
            first_ms = (time.perf_counter() - t) * 1000
            m = measure(data, lambda i: [int(x) for x in collection.query(query_embeddings=queries[i : i + 1], n_results=K, include=[])["ids"][0]])
            note = f"batches of {batch}; first query {first_ms:.0f} ms" + ("; chroma default ef_search" if ef == CHROMA_DEFAULT_EF else "")
            out["inprocess"].append(row_from("c", "chromadb (in-process)", f"M=16 efC=100 ef_search={ef}", m, note, import_per_s=data.n / add_s))
            if reached is None and m["recall"] >= TARGET:
                reached = ef
            client.delete_collection(f"gloss-ef{ef}")
    finally:
        del client
        gc.collect()
        shutil.rmtree(path, ignore_errors=True)
    ef95 = reached if reached is not None else CHROMA_DEFAULT_EF
    out["ef95"] = ef95

    # server
    work = Path(tempfile.mkdtemp(prefix="chroma-server-", dir=tmp))
    server: Server | None = None
    try:
        port = free_port()
        argv = [str(VENV_BIN / "chroma"), "run", "--path", str(work / "db"), "--host", "127.0.0.1", "--port", str(port)]
        env = {"ANONYMIZED_TELEMETRY": "False"}
        server = Server("chroma", argv, work / "server.log", env=env)
        base = f"http://127.0.0.1:{port}"
        try:
            startup_empty = server.wait_http(base + "/api/v2/heartbeat", 120)
        except RuntimeError as exc:
            skip("c", "chroma server", str(exc))
            return out
        http = chromadb.HttpClient(host="127.0.0.1", port=port, settings=settings)
        tenant, database = "default_tenant", "default_database"
        prefix = f"/api/v2/tenants/{tenant}/databases/{database}/collections"

        def raw_import(client: Any, collection_id: str, size: int) -> float:
            start = time.perf_counter()
            for s in range(0, data.n, size):
                e = min(s + size, data.n)
                body = (
                    '{"ids":' + json.dumps(ids[s:e]) + ',"embeddings":[' + ",".join(data.vec_text[s:e]) + '],"documents":' + json.dumps(data.glosses[s:e]) + ',"metadatas":null,"uris":null}'
                ).encode()
                response = client.post(f"{prefix}/{collection_id}/add", content=body)
                if response.status_code not in (200, 201):
                    raise RuntimeError(f"chroma add answered {response.status_code}: {response.text[:300]}")
            return time.perf_counter() - start

        with http_client(base) as raw:
            # d. import throughput over HTTP: raw JSON (float lists, like searchd) in batches of 1000 and 100,
            # and chromadb.HttpClient (which sends base64-packed float32) in batches of 1000.
            imports: dict[str, float] = {}
            collections = {}
            for name, size, how in (("gloss-raw1000", 1000, "raw"), ("gloss-raw100", 100, "raw"), ("gloss-client1000", 1000, "client")):
                collection = http.create_collection(name, metadata=chroma_metadata(ef95), embedding_function=None)
                collections[name] = collection
                wait_quiet()
                meter = LoadMeter(server)
                if how == "raw":
                    seconds = raw_import(raw, str(collection.id), size)
                else:
                    start = time.perf_counter()
                    for s in range(0, data.n, size):
                        collection.add(ids=ids[s : s + size], embeddings=data.corpus[s : s + size], documents=data.glosses[s : s + size])
                    seconds = time.perf_counter() - start
                t = time.perf_counter()
                collection.query(query_embeddings=queries[:1], n_results=K, include=[])
                queryable = time.perf_counter() - t
                imports[name] = seconds
                add_row(
                    Row(
                        "d",
                        "chromadb server import" + (" (raw HTTP, JSON floats)" if how == "raw" else " (HttpClient, base64 floats)"),
                        f"batch {size}",
                        import_per_s=data.n / seconds,
                        notes=f"{seconds:.1f} s; first query after import {queryable * 1000:.0f} ms" + (f"; OTHER LOAD {other:.2f} cores" if (other := meter.other()) >= 0.1 else ""),
                    )
                )
            for name in ("gloss-raw100", "gloss-client1000"):
                http.delete_collection(name)
            rss_after_import = server.rss_mb()
            query_bodies = [('{"query_embeddings":[' + text + '],"n_results":10,"include":[],"ids":null,"where":null,"where_document":null}').encode() for text in data.query_text]
            # The server's graph is built from other batches than the in-process one: if its recall at
            # the in-process pick is below 0.95, step ef_search up (a new collection each time, bounded).
            ef, name, collection = ef95, "gloss-raw1000", collections["gloss-raw1000"]
            out["client"], out["raw"] = [], []
            for attempt in range(3):
                cid = str(collection.id)
                url = f"{prefix}/{cid}/query"
                m = measure(data, lambda i: [int(x) for x in collection.query(query_embeddings=queries[i : i + 1], n_results=K, include=[])["ids"][0]], cpu=server.cpu_s)
                out["client"].append(row_from("c", "chromadb server (HttpClient)", f"ef_search={ef}", m, "imported over raw HTTP, batches of 1000", import_per_s=data.n / imports["gloss-raw1000"]))

                def raw_search(i: int) -> list[int]:
                    response = raw.post(url, content=query_bodies[i])
                    if response.status_code != 200:
                        raise RuntimeError(f"chroma query answered {response.status_code}: {response.text[:300]}")
                    return [int(x) for x in response.json()["ids"][0]]

                m = measure(data, raw_search, cpu=server.cpu_s)
                out["raw"].append(row_from("c", "chromadb server (raw HTTP)", f"ef_search={ef}", m, f"POST {prefix.replace(tenant, '{tenant}').replace(database, '{db}')}/{{id}}/query", import_per_s=data.n / imports["gloss-raw1000"]))
                higher = [e for e in CHROMA_EFS if e > ef]
                if m["recall"] >= TARGET or attempt == 2 or not higher:
                    break
                log(f"  chromadb server: recall {m['recall']:.4f} < {TARGET} at ef_search={ef}; trying ef_search={higher[0]} (new collection)")
                http.delete_collection(name)
                ef, name = higher[0], f"gloss-ef{higher[0]}"
                collection = http.create_collection(name, metadata=chroma_metadata(ef), embedding_function=None)
                raw_import(raw, str(collection.id), 1000)
        rss = server.rss_mb()
        del http
        shutdown_s = server.stop()
        port = free_port()
        argv[-1] = str(port)
        server = Server("chroma", argv, work / "server.log", env=env)
        base = f"http://127.0.0.1:{port}"
        startup_s = server.wait_http(base + "/api/v2/heartbeat", 120)
        with http_client(base) as raw:
            t = time.perf_counter()
            response = raw.post(f"{prefix}/{cid}/query", content=query_bodies[0])
            first_query_ms = (time.perf_counter() - t) * 1000
            if response.status_code != 200:
                raise RuntimeError(f"chroma query after restart answered {response.status_code}: {response.text[:300]}")
        rss_restart = server.rss_mb()
        out["server"] = {
            "startup_empty_s": startup_empty,
            "rss_after_import_mb": rss_after_import,
            "rss_after_queries_mb": rss,
            "shutdown_s": shutdown_s,
            "startup_s": startup_s,
            "first_query_after_restart_ms": first_query_ms,
            "rss_after_restart_and_first_query_mb": rss_restart,
        }
        EXTRA["chroma_server"] = out["server"]
        log(
            f"[c] chromadb server: start-up {startup_s:.1f} s with data, first query after restart {first_query_ms:.0f} ms, "
            f"RSS {rss:.0f} MB after import+queries ({rss_after_import:.0f} MB after import, 4 collections' worth of imports), "
            f"{rss_restart:.0f} MB after restart + 1 query"
        )
    except Exception as exc:  # noqa: BLE001 - reported, then the next measurement goes on
        skip("c", "chroma server", f"{type(exc).__name__}: {exc}")
        traceback.print_exc()
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(work, ignore_errors=True)
    return out


# -- c. txtai API ------------------------------------------------------------------------


def section_txtai(data: Data, tmp: Path, start_ef: int) -> list[Row]:
    try:
        importlib.metadata.version("txtai")
        importlib.metadata.version("fastapi")
    except importlib.metadata.PackageNotFoundError as exc:
        skip("c", "txtai API", f"not installed: {exc}")
        return []
    rows: list[Row] = []
    efs = [ef for ef in HNSWLIB_EFS if ef >= start_ef][:3] or [start_ef]
    adds = []
    for s in range(0, data.n, 500):
        e = min(s + 500, data.n)
        # "text" carries the vector as JSON text: a JSON list would be taken for a list of tokens
        adds.append(("[" + ",".join(f'{{"id":"{data.uuids[r]}","text":"{data.vec_text[r]}"}}' for r in range(s, e)) + "]").encode())
    urls = ["/search?" + urllib.parse.urlencode({"query": text, "limit": K}) for text in data.query_text]
    for ef in efs:
        work = Path(tempfile.mkdtemp(prefix="txtai-", dir=tmp))
        server: Server | None = None
        try:
            config = work / "config.yml"
            config.write_text(
                json.dumps(
                    {
                        "writable": True,
                        "embeddings": {
                            "method": "external",
                            "transform": "txtai_transform.transform",
                            "backend": "hnsw",
                            "hnsw": {"m": 16, "efconstruction": 128, "efsearch": ef},
                        },
                    }
                )
            )
            # only the transform module on the server's path (not all of bench/)
            modules = work / "modules"
            modules.mkdir()
            shutil.copy(HERE / "txtai_transform.py", modules / "txtai_transform.py")
            port = free_port()
            env = {"CONFIG": str(config), "ALLOW_RESOLVE_TRANSFORM": "True", "PYTHONPATH": str(modules), "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"}
            argv = [sys.executable, "-m", "uvicorn", "txtai.api:app", "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
            server = Server("txtai", argv, work / "server.log", env=env, cwd=work)
            base = f"http://127.0.0.1:{port}"
            try:
                startup_empty = server.wait_http(base + "/count", 180)
            except RuntimeError as exc:
                skip("c", "txtai API", str(exc))
                return rows
            wait_quiet()
            with http_client(base) as client:
                meter = LoadMeter(server)
                start = time.perf_counter()
                for body in adds:
                    response = client.post("/add", content=body)
                    if response.status_code != 200:
                        raise RuntimeError(f"txtai /add answered {response.status_code}: {response.text[:300]}")
                add_s = time.perf_counter() - start
                response = client.get("/index")
                if response.status_code != 200:
                    raise RuntimeError(f"txtai /index answered {response.status_code}: {response.text[:300]}")
                import_s = time.perf_counter() - start
                import_other = meter.other()
                count = int(client.get("/count").text)
                if count != data.n:
                    raise RuntimeError(f"txtai indexed {count} documents, expected {data.n}")
                rss = server.rss_mb()

                def search(i: int) -> list[int]:
                    response = client.get(urls[i])
                    if response.status_code != 200:
                        raise RuntimeError(f"txtai /search answered {response.status_code}: {response.text[:300]}")
                    return [data.row_of[hit["id"]] for hit in response.json()]

                m = measure(data, search, cpu=server.cpu_s)
            note = (
                f"GET /search?query=<vector as JSON text>; external vectors; /add {add_s:.1f} s + /index {import_s - add_s:.1f} s "
                f"(hnswlib build uses all cores); start-up {startup_empty:.1f} s empty; RSS {rss:.0f} MB"
                + (f"; OTHER LOAD {import_other:.2f} cores during import" if import_other >= 0.1 else "")
            )
            rows.append(row_from("c", "txtai API (hnsw backend)", f"M=16 efC=128 efsearch={ef}", m, note, import_per_s=data.n / import_s))
            if m["recall"] >= TARGET:
                break
        except Exception as exc:  # noqa: BLE001 - reported, then the next measurement goes on
            skip("c", "txtai API", f"{type(exc).__name__}: {exc}")
            traceback.print_exc()
            break
        finally:
            if server is not None:
                server.stop()
            shutil.rmtree(work, ignore_errors=True)
    return rows


# -- environment ------------------------------------------------------------------------


def environment() -> dict[str, Any]:
    cpu = ""
    with contextlib.suppress(OSError):
        cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")), "")
    versions = {}
    for name in ("searchd", "numpy", "hnswlib", "annoy", "chromadb", "txtai", "faiss-cpu", "torch", "httpx", "uvicorn", "starlette", "fastapi", "graphql-core"):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": versions,
        "thread_env": THREAD_ENV,
        "openblas_env": {k: os.environ.get(k) for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")},
        "loadavg_at_start": loadavg(),
    }


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return ""


# -- main --------------------------------------------------------------------------------


def ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.3g}x" if a and b else "n/a"


def summary(searchd_rows: dict[str, list[Row]], http_rows: dict[str, Row], hnsw_rows: list[Row], annoy_rows: list[Row], chroma: dict[str, Any], txtai_rows: list[Row]) -> list[str]:
    lines = []
    http_hnsw = http_rows.get("hnsw")
    peers: list[tuple[str, Row | None]] = [
        ("hnswlib (raw, in-process)", best_at_target(hnsw_rows)),
        ("annoy (raw, in-process)", best_at_target(annoy_rows)),
        ("chromadb (in-process)", best_at_target(chroma.get("inprocess", []))),
        ("chromadb server (HttpClient)", best_at_target(chroma.get("client", []))),
        ("chromadb server (raw HTTP)", best_at_target(chroma.get("raw", []))),
        ("txtai API (raw HTTP)", best_at_target(txtai_rows)),
    ]
    for key, how in (("hnsw", "inline vector literal, as Weaviate clients send it"), ("hnsw/variable", "vector as a GraphQL variable")):
        mine = http_rows.get(key)
        if mine is None:
            lines.append(f"searchd HTTP hnsw ({how}): not measured")
            continue
        ok = mine if (mine.recall or 0) >= TARGET else None
        lines.append(f"searchd HTTP hnsw nearVector ({how}) [{mine.setting}]: recall@10 {mine.recall:.4f}, {mine.qps:,.0f} QPS, p50 {mine.p50_ms:.2f} ms" + ("" if ok else " (below 0.95: ratios not given)"))
        for name, peer in peers:
            if peer is None:
                lines.append(f"  / {name}: n/a (peer not measured or never reached recall 0.95)")
            else:
                lines.append(f"  / {name} [{peer.setting}, recall {peer.recall:.4f}, {peer.qps:,.0f} QPS]: {ratio(ok.qps if ok else None, peer.qps)}")
    inproc = best_at_target(searchd_rows.get("hnsw", []))
    raw = best_at_target(hnsw_rows)
    if inproc and raw:
        lines.append(f"searchd in-process hnsw [{inproc.setting}, {inproc.qps:,.0f} QPS] / raw hnswlib [{raw.setting}, {raw.qps:,.0f} QPS], both at recall >= 0.95: {ratio(inproc.qps, raw.qps)}")
    raw_by_ef = {r.setting.split("ef=")[-1]: r for r in hnsw_rows}
    for row in searchd_rows.get("hnsw", []):
        ef = row.setting.split("ef=")[-1]
        if ef in raw_by_ef:
            lines.append(f"  same settings M=16 efC=128 ef={ef}: searchd {row.qps:,.0f} QPS (recall {row.recall:.4f}) / hnswlib {raw_by_ef[ef].qps:,.0f} QPS (recall {raw_by_ef[ef].recall:.4f}) = {ratio(row.qps, raw_by_ef[ef].qps)}")
    a_in, a_raw = best_at_target(searchd_rows.get("annoy", [])), best_at_target(annoy_rows)
    if a_in and a_raw:
        lines.append(f"searchd in-process annoy [{a_in.setting}, {a_in.qps:,.0f} QPS] / raw annoy [{a_raw.setting}, {a_raw.qps:,.0f} QPS], both at recall >= 0.95: {ratio(a_in.qps, a_raw.qps)}")
    http_flat = http_rows.get("flat")
    in_flat = (searchd_rows.get("flat") or [None])[0]
    if http_flat and in_flat:
        lines.append(f"searchd flat: HTTP {http_flat.qps:,.0f} QPS / in-process {in_flat.qps:,.0f} QPS = {ratio(http_flat.qps, in_flat.qps)}")
    if http_hnsw and inproc:
        same = next((r for r in searchd_rows.get("hnsw", []) if r.setting == http_hnsw.setting), None)
        if same:
            lines.append(
                f"searchd hnsw {same.setting}: HTTP {http_hnsw.qps:,.0f} QPS (p50 {http_hnsw.p50_ms:.2f} ms) / in-process {same.qps:,.0f} QPS (p50 {same.p50_ms:.2f} ms) = {ratio(http_hnsw.qps, same.qps)}; "
                f"per-query HTTP+GraphQL overhead ~{1000 / http_hnsw.qps - 1000 / same.qps:.2f} ms wall"
            )
            for key, how in (("hnsw", "inline literal"), ("hnsw/variable", "GraphQL variable")):
                row = http_rows.get(key)
                if row and row.cpu_ms is not None and same.cpu_ms is not None:
                    lines.append(f"  server CPU per query ({how}): {row.cpu_ms:.2f} ms vs {same.cpu_ms:.3f} ms for the in-process search: {row.cpu_ms - same.cpu_ms:.2f} ms is HTTP + GraphQL + object fetch")
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=None, help="corpus rows to index (default 30000; --quick: 5000)")
    parser.add_argument("--queries", type=int, default=None, help="queries (default 1000; --quick: 200)")
    parser.add_argument("--quick", action="store_true", help="smoke run: n=5000, 200 queries")
    parser.add_argument("--only", default=",".join(SECTIONS), help=f"comma-separated sections: {','.join(SECTIONS)}")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the wordnet-minilm data directory")
    parser.add_argument("--out", type=Path, default=HERE / "results-vectors.json", help="JSON results")
    parser.add_argument("--searchd-rev", default=None, help="benchmark searchd as committed at this git revision (e.g. HEAD) instead of the working tree")
    parser.add_argument("--md", type=Path, default=None, help="also write the results table as Markdown here")
    args = parser.parse_args(argv)
    n = args.n or (5000 if args.quick else 30000)
    nq = args.queries or (200 if args.quick else 1000)
    only = {s.strip() for s in args.only.split(",") if s.strip()}
    unknown = only - set(SECTIONS)
    if unknown:
        parser.error(f"unknown section(s) {', '.join(sorted(unknown))}; choose from {', '.join(SECTIONS)}")

    global SEARCHD_SRC
    tmp = Path(tempfile.mkdtemp(prefix="searchd-bench-"))
    env = environment()
    env["searchd_source"] = searchd_source()
    if args.searchd_rev:
        SEARCHD_SRC, commit = snapshot_searchd(args.searchd_rev, tmp / "searchd-src")
        sys.path.insert(0, str(SEARCHD_SRC))
        env["searchd_source"]["snapshot_of_rev"] = commit
        log(f"searchd: snapshot of {args.searchd_rev} = {commit}")
    import searchd

    env["searchd_source"]["module"] = searchd.__file__
    log(f"searchd: {searchd.__file__} ({env['searchd_source']})")
    log(f"machine: {env['nproc']} cores, {env['cpu']}, Python {env['python']}, load average {env['loadavg_at_start']}")
    log("versions: " + ", ".join(f"{k} {v}" for k, v in env["versions"].items() if v))
    began = time.perf_counter()
    data = load_data(args.data, n, nq)
    log(f"data: {data.n} corpus rows x {DIM}, {data.nq} queries; ground truth: {EXTRA['ground_truth']}")
    searchd_rows: dict[str, list[Row]] = {}
    http_rows: dict[str, Row] = {}
    hnsw_rows: list[Row] = []
    annoy_rows: list[Row] = []
    chroma: dict[str, Any] = {}
    txtai_rows: list[Row] = []
    try:
        if "searchd" in only:
            log(f"\n== a. searchd in-process == (load average {loadavg()})")
            searchd_rows = section_searchd(data)
        if "hnswlib" in only:
            log(f"\n== c. hnswlib (raw) == (load average {loadavg()})")
            hnsw_rows = section_hnswlib(data)
        if "annoy" in only:
            log(f"\n== c. annoy (raw) == (load average {loadavg()})")
            annoy_rows = section_annoy(data)
        if "http" in only:
            log(f"\n== b. searchd over HTTP == (load average {loadavg()})")
            plans: list[tuple[str, dict[str, Any]]] = [("flat", {})]
            for kind in ("hnsw", "annoy"):
                if "searchd" in only and kind not in searchd_rows:
                    skip("b", f"searchd {kind} (HTTP)", "not usable in-process (see section a)")
                    continue
                pick = best_at_target(searchd_rows.get(kind, []))
                if pick is None and searchd_rows.get(kind):
                    pick = max(searchd_rows[kind], key=lambda r: r.recall or 0)  # closest to the target
                params = next((p for p in SEARCHD_PLANS[kind] if setting_text(p) == pick.setting), {}) if pick else {}
                plans.append((kind, params))
            http_rows = section_http(data, plans, tmp)
        if "chroma" in only:
            log(f"\n== c/d. chromadb == (load average {loadavg()})")
            chroma = section_chroma(data, tmp)
        if "txtai" in only:
            log(f"\n== c. txtai API == (load average {loadavg()})")
            pick = best_at_target(hnsw_rows)
            start_ef = int(pick.setting.split("ef=")[-1]) if pick else 32
            txtai_rows = section_txtai(data, tmp, start_ef)
    except KeyboardInterrupt:
        log("interrupted: writing what was measured")
    finally:
        kill_all()
        shutil.rmtree(tmp, ignore_errors=True)

    elapsed = time.perf_counter() - began
    lines = summary(searchd_rows, http_rows, hnsw_rows, annoy_rows, chroma, txtai_rows)
    log(f"\n== results: n={data.n}, {data.nq} queries, recall@10, one sequential client ({elapsed / 60:.1f} min) ==")
    log(table(ROWS))
    if SKIPS:
        log("\nskipped:")
        for s in SKIPS:
            log(f"  [{s['section']}] {s['what']}: {s['why']}")
    log(f"\n== summary (e) == (load average {loadavg()})")
    for line in lines:
        log(line)
    result = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "n": data.n,
        "queries": data.nq,
        "k": K,
        "elapsed_s": elapsed,
        "environment": env,
        "rows": [dataclasses.asdict(r) for r in ROWS],
        "skipped": SKIPS,
        "summary": lines,
        "details": EXTRA,
        "loadavg_at_end": loadavg(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    log(f"\nwrote {args.out}")
    if args.md:
        args.md.write_text(table(ROWS, markdown=True) + "\n")
        log(f"wrote {args.md}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    finally:
        kill_all()
