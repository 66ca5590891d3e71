#!/usr/bin/env python3
"""Provider-module import throughput against the fake providers (issue #5).

    bench/.venv/bin/python bench/providers.py            # full run (~4-5 min on 2 cores)
    bench/.venv/bin/python bench/providers.py --quick    # smoke run (~1 min)
    bench/.venv/bin/python bench/providers.py --cases text2vec-jinaai,text2vec-nvidia --latency 0.05

For each module, against its fake (tests/fakes) with ``--latency`` (50 ms) added to every request and
the module's default maxConcurrency (4):

  a. in-process: the catalog is compiled (``compile_catalog`` with a ``ModuleRuntime`` holding a real
     on-disk ``EmbeddingCache`` in a fresh temp dir), then ``vectorizer.embed_objects`` is called once
     on N objects (one text field, or one image field for the multi2vec modules); N is a multiple of
     maxConcurrency x batchSize and gives at least 20 provider requests.  Items/s and the fraction of the
     bound maxConcurrency x batchSize / latency.  Then the same call again: everything comes from the
     cache (provider requests must be 0).
  b. HTTP: a real ``python -m searchd serve`` subprocess (flat index, the property not BM25-indexed, so
     that index cost stays out), ``POST /v1/batch/objects`` with batches of max(maxConcurrency x batchSize,
     200) objects, ``--http-clients`` (2) requests in flight (so the commit of one batch overlaps the
     embedding of the next).  Objects/s and the fraction of the same bound.
  c. a second import of the same objects into the same server: provider requests (must be 0) and objects/s.

Each is run at the provider's batch limit (Jina 512, NVIDIA 50, Weaviate 200 texts / 2 images) and, when
the CPU of this 2-core machine caps that run below 80 % of its bound, again with a smaller batchSize whose
bound the machine can reach (the largest power of two whose bound is at most half of the items/s measured
at the limit; ``--small-batch`` overrides).

Every fake runs in its own process (this script with ``--serve-fake``, uvicorn on a loopback port), so
its CPU work (building the vectors, encoding JSON) does not share a GIL with searchd.  Columns beside each
figure: the cores the fake and searchd kept busy during the run, their CPU per provider request, the
"searchd-CPU ceiling" (items/s / searchd cores: what one core of searchd would sustain if nothing else
limited it) and the other load on the machine (busy CPU that is neither the fake, searchd nor this
client; >= 0.25 cores is flagged).  A fake at ~1 core is the fake's ceiling, not searchd's.  The cost of
decoding one full answer of each provider in searchd's client (``response.json()``) is measured separately,
and, where the provider offers it, the same answer in base64.  Results: bench/results-providers.json.
"""

from __future__ import annotations

import os
import sys

# This script's directory comes first on sys.path; keep bench/ modules from shadowing anything, and put the
# repository root on the path so that tests.fakes imports.
if sys.path and os.path.realpath(sys.path[0] or ".") == os.path.dirname(os.path.realpath(__file__)):
    del sys.path[0]
ROOT = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

THREAD_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "NUMEXPR_NUM_THREADS": "1"}
os.environ.update(THREAD_ENV)

import argparse
import asyncio
import base64
import dataclasses
import io
import json
import math
import platform
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench.benchdata import bench_data

HERE = Path(__file__).resolve().parent
KEY = "bench-key"
CLUSTER = "https://bench-cluster.weaviate.cloud"
CONCURRENCY = 4  # the modules' default maxConcurrency
MIN_REQUESTS = 20
TARGET = 0.80


def log(message: str = "") -> None:
    print(message, flush=True)


# -- the fake, in its own process --------------------------------------------------------------------


def serve_fake(kind: str, latency: float) -> None:
    """``--serve-fake KIND``: serve one fake on a free loopback port; print ``PORT <n>``; run until SIGTERM."""
    import uvicorn
    from starlette.responses import JSONResponse

    from tests.fakes import FakeJina, FakeNvidia, FakeWeaviateEmbed

    fake = {"jina": FakeJina, "nvidia": FakeNvidia, "weaviate": FakeWeaviateEmbed}[kind](api_keys=[KEY], latency=latency)

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        # /__bench/stats and /__bench/reset are answered here; everything else goes to the fake (and is recorded).
        if scope["type"] == "http" and scope["path"].startswith("/__bench/"):
            if scope["path"] == "/__bench/reset":
                fake.reset()
            requests = fake.requests
            items = sum(len(r.body["input"]) for r in requests if isinstance(r.body, dict) and isinstance(r.body.get("input"), list))
            payload = {"requests": len(requests), "items": items, "inFlightMax": fake.in_flight_max, "cpu": time.process_time(), "latency": fake.latency}
            await JSONResponse(payload)(scope, receive, send)
            return
        await fake.app(scope, receive, send)

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    print(f"PORT {sock.getsockname()[1]}", flush=True)
    config = uvicorn.Config(app, log_level="warning", lifespan="off", ws="none", access_log=False, timeout_graceful_shutdown=1, backlog=256)
    uvicorn.Server(config).run(sockets=[sock])


class FakeProcess:
    def __init__(self, kind: str, latency: float) -> None:
        self.kind = kind
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--serve-fake", kind, "--latency", str(latency)],
            stdout=subprocess.PIPE,
            stderr=None,
            text=True,
            env={**os.environ, **THREAD_ENV},
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith("PORT "):
            self.proc.kill()
            raise RuntimeError(f"fake {kind} did not start: {line!r}")
        self.url = f"http://127.0.0.1:{int(line.split()[1])}"
        import httpx

        self._client = httpx.Client(base_url=self.url, timeout=30)
        deadline = time.monotonic() + 20
        while True:
            try:
                self.stats()
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def stats(self) -> dict[str, Any]:
        return dict(self._client.get("/__bench/stats").json())

    def reset(self) -> dict[str, Any]:
        return dict(self._client.get("/__bench/reset").json())

    def stop(self) -> None:
        self._client.close()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


# -- cases -------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Case:
    module: str
    fake: str  # jina | nvidia | weaviate
    limit: int  # the provider's items per request
    images: bool  # objects hold one image (BLOB) instead of one text
    model: str
    dims: int  # what each answer row holds (and the vector's dimensions)
    multivector: bool = False
    vectorizer: tuple[tuple[str, Any], ...] = ()  # extra vectorizer keys
    optional: bool = False  # only with --cases or --all

    @property
    def env(self) -> dict[str, str]:
        return {"jina": {"JINAAI_APIKEY": KEY}, "nvidia": {"NVIDIA_APIKEY": KEY}, "weaviate": {"WEAVIATE_APIKEY": KEY, "WEAVIATE_CLUSTER_URL": CLUSTER}}[self.fake]


CASES = [
    Case("text2vec-jinaai", "jina", 512, False, "jina-embeddings-v2-base-en", 768),
    Case("multi2vec-jinaai", "jina", 512, True, "jina-clip-v2", 1024),
    Case("text2vec-nvidia", "nvidia", 50, False, "nvidia/nv-embedqa-e5-v5", 1024),
    Case("multi2vec-nvidia", "nvidia", 50, True, "nvidia/nvclip", 1024),
    Case("text2vec-weaviate", "weaviate", 200, False, "Snowflake/snowflake-arctic-embed-l-v2.0", 1024),
    Case("multi2multivec-weaviate", "weaviate", 2, True, "ModernVBERT/colmodernvbert", 128, multivector=True),
    Case("text2multivec-jinaai", "jina", 512, False, "jina-colbert-v2", 128, multivector=True, vectorizer=(("dimensions", 128),), optional=True),
]


def config_yaml(case: Case, base_url: str, batch: int, watch: bool = False) -> str:
    prop = {"name": "photo", "type": "BLOB"} if case.images else {"name": "text", "type": "TEXT", "indexSearchable": False, "indexFilterable": False}
    fields = {"imageFields": ["photo"]} if case.images else {"textFields": ["text"]}
    vectorizer = {"module": case.module, "model": case.model, **fields, **dict(case.vectorizer)}
    index = {"type": "multivector", "distance": "cosine"} if case.multivector else {"type": "flat", "distance": "cosine"}
    spec = {
        "server": {"reload": {"watch": watch}},
        "modules": {case.module: {"baseURL": base_url, "maxConcurrency": CONCURRENCY, "batchSize": batch, "timeoutSeconds": 60}},
        "collections": [{"name": "Doc", "properties": [prop], "vectors": {"v": {"vectorizer": vectorizer, "index": index}}}],
    }
    return json.dumps(spec, indent=1)  # JSON is YAML


# -- data --------------------------------------------------------------------------------------------


_TEXTS: list[str] = []


def texts(n: int) -> list[str]:
    """'<first lemma>: <gloss>' of the WordNet entries (unique), cycling with a suffix past the end."""
    if not _TEXTS:
        seen: dict[str, None] = {}
        with open(bench_data(needs=("corpus.jsonl",)) / "corpus.jsonl", encoding="utf-8") as handle:
            for line in handle:
                entry = json.loads(line)
                seen[f"{entry['lemmas'][0]}: {entry['gloss']}"] = None
        _TEXTS.extend(seen)
    return [_TEXTS[i % len(_TEXTS)] + ("" if i < len(_TEXTS) else f" ({i // len(_TEXTS)})") for i in range(n)]


_IMAGES: list[str] = []


def images(n: int) -> list[str]:
    """n distinct 16x16 PNGs (noise over a base colour), base64."""
    import numpy as np
    from PIL import Image

    while len(_IMAGES) < n:
        rng = np.random.default_rng(len(_IMAGES))  # image i depends on i alone
        base = rng.integers(0, 256, 3)
        pixels = np.clip(base + rng.integers(-40, 41, (16, 16, 3)), 0, 255).astype(np.uint8)
        out = io.BytesIO()
        Image.fromarray(pixels, "RGB").save(out, "PNG")
        _IMAGES.append(base64.b64encode(out.getvalue()).decode())
    return _IMAGES[:n]


def objects(case: Case, n: int, salt: str = "") -> list[dict[str, Any]]:
    if case.images:
        return [{"photo": img} for img in images(n)]
    return [{"text": t + salt} for t in texts(n)]


def sizes(batch: int, latency: float, min_items: int, min_requests: int, seconds: float) -> int:
    """N: at least ``min_requests`` provider requests, and ``min_items`` items unless that takes over ``seconds``
    at the bound; a multiple of one full wave (maxConcurrency x batchSize) and of an HTTP batch."""
    wave = CONCURRENCY * batch
    http_batch = max(wave, 200)
    unit = math.lcm(wave, http_batch)
    wanted = max(min_requests * batch, min(min_items, wave / latency * seconds))
    return int(math.ceil(wanted / unit) * unit)


# -- measuring ---------------------------------------------------------------------------------------


def proc_cpu(pid: int) -> float:
    """CPU seconds (user + system) of a process, from /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def system_busy_s() -> float:
    """CPU seconds the whole machine has been busy (all cores, not idle or iowait) since boot."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    except (OSError, ValueError):
        return 0.0
    return (sum(fields) - fields[3] - (fields[4] if len(fields) > 4 else 0)) / os.sysconf("SC_CLK_TCK")


def wait_quiet(max_s: float) -> float:
    """Wait (bounded) until other work on the machine stays under 0.2 core for 1 s; seconds waited."""
    start = time.perf_counter()
    last, own = system_busy_s(), time.process_time()
    while time.perf_counter() - start < max_s:
        time.sleep(1.0)
        now, mine = system_busy_s(), time.process_time()
        if (now - last) - (mine - own) < 0.2:
            break
        last, own = now, mine
    return time.perf_counter() - start


@dataclasses.dataclass
class Row:
    module: str
    run: str  # in-process | in-process, cached | HTTP import | HTTP re-import (cached)
    batch: int
    n: int
    requests: int
    in_flight_max: int | None
    per_s: float
    bound: float | None
    fake_cores: float | None
    searchd_cores: float | None
    seconds: float
    notes: str = ""
    other_cores: float | None = None  # the rest of the machine's busy CPU during the run (not the fake, searchd or this client)

    @property
    def fraction(self) -> float | None:
        return self.per_s / self.bound if self.bound else None

    @property
    def ceiling(self) -> float | None:
        """Items/s if searchd's CPU (one core) were the only limit: items/s / searchd cores."""
        return self.per_s / self.searchd_cores if self.searchd_cores else None

    def cpu_ms_per_request(self, cores: float | None) -> float | None:
        return None if cores is None or not self.requests else 1000 * cores * self.seconds / self.requests


ROWS: list[Row] = []


def add(row: Row) -> Row:
    ROWS.append(row)
    frac = f", {row.fraction:.0%} of the bound {row.bound:,.0f}/s" if row.fraction is not None else ""
    cores = f"; cores busy: fake {fmt(row.fake_cores, '.2f')}, searchd {fmt(row.searchd_cores, '.2f')}"
    if row.other_cores is not None:
        cores += f", other {row.other_cores:.2f}"
    if row.requests:
        cores += f" (CPU per provider request: fake {row.cpu_ms_per_request(row.fake_cores):.1f} ms, searchd {row.cpu_ms_per_request(row.searchd_cores):.1f} ms)"
    log(f"  [{row.module}] {row.run}, batchSize {row.batch}: {row.n:,} in {row.seconds:.2f} s = {row.per_s:,.0f}/s{frac}; provider requests {row.requests} (max {row.in_flight_max} in flight){cores}{'; ' + row.notes if row.notes else ''}")
    return row


def fmt(value: float | None, spec: str) -> str:
    return "" if value is None else format(value, spec)


def cpu_note(fake: float | None, searchd: float | None, other: float | None = None) -> str:
    notes = []
    if other is not None and other >= 0.25:
        notes.append(f"OTHER LOAD {other:.2f} cores")
    if fake is not None and fake >= 0.85:
        notes.append("CAPPED by the fake's CPU")
    if searchd is not None and searchd >= 0.85:
        notes.append("CAPPED by searchd's CPU")
    if fake is not None and searchd is not None and fake + searchd >= 1.7 and not notes:
        notes.append("CAPPED by the machine's 2 cores")
    return ", ".join(notes)


def in_process(case: Case, fake: FakeProcess, batch: int, n: int, latency: float, work: Path) -> Row:
    """Compile a catalog on the fake, embed n objects twice (second time from the cache)."""
    from searchd.catalog import compile_catalog
    from searchd.config import load_spec
    from searchd.errors import SearchdError
    from searchd.modules.base import ModuleRuntime
    from searchd.modules.cache import EmbeddingCache
    from searchd.modules.provider import HttpPool
    from searchd.modules.registry import default_registry

    directory = Path(tempfile.mkdtemp(prefix="inproc-", dir=work))
    (directory / "searchd.yaml").write_text(config_yaml(case, fake.url, batch))
    environ = {**os.environ, **case.env}
    spec = load_spec(directory / "searchd.yaml", default_registry(), environ)
    runtime = ModuleRuntime(HttpPool(), EmbeddingCache(directory), environ)
    catalog = compile_catalog(spec, default_registry(), runtime)
    vectorizer = catalog.collections["Doc"].vectors["v"].vectorizer
    assert vectorizer is not None
    items = objects(case, n)
    warm = objects(case, n + CONCURRENCY)[n:] if case.images else [{"text": f"warm-up text {i}"} for i in range(CONCURRENCY)]
    bound = CONCURRENCY * batch / latency

    def check(results: list[Any]) -> None:
        errors = [r for r in results if isinstance(r, SearchdError) or r is None]
        if errors:
            raise RuntimeError(f"{case.module}: {len(errors)} of {len(results)} objects failed: {errors[0]}")

    async def run() -> tuple[Row, Row]:
        try:
            check(await vectorizer.embed_objects(warm))  # connections, imports
            before = fake.reset()
            busy, cpu, started = system_busy_s(), time.process_time(), time.perf_counter()
            results = await vectorizer.embed_objects(items)
            elapsed = time.perf_counter() - started
            own = time.process_time() - cpu
            after = fake.stats()
            check(results)
            fake_cores = (after["cpu"] - before["cpu"]) / elapsed
            other = max(0.0, system_busy_s() - busy - own - (after["cpu"] - before["cpu"])) / elapsed
            first = Row(case.module, "a. in-process", batch, n, after["requests"], after["inFlightMax"], n / elapsed, bound, fake_cores, own / elapsed, elapsed, cpu_note(fake_cores, own / elapsed, other), other)
            if after["items"] != n:
                first.notes = "; ".join(x for x in (first.notes, f"fake saw {after['items']} items") if x)
            before = fake.reset()
            cpu, started = time.process_time(), time.perf_counter()
            results = await vectorizer.embed_objects(items)
            elapsed = time.perf_counter() - started
            own = time.process_time() - cpu
            after = fake.stats()
            check(results)
            second = Row(case.module, "a. in-process again (cache)", batch, n, after["requests"], None, n / elapsed, None, (after["cpu"] - before["cpu"]) / elapsed, own / elapsed, elapsed)
            second.notes = "" if after["requests"] == 0 else "THE CACHE WAS MISSED"
            return first, second
        finally:
            await runtime.pool.aclose()

    try:
        first, second = asyncio.run(run())
    finally:
        runtime.cache.close()
        shutil.rmtree(directory, ignore_errors=True)
    add(first)
    add(second)
    return first


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_import(case: Case, fake: FakeProcess, batch: int, n: int, latency: float, work: Path, clients: int) -> Row:
    """A real server on the fake: import n objects over HTTP, then the same objects again."""
    import httpx

    directory = Path(tempfile.mkdtemp(prefix="http-", dir=work))
    (directory / "searchd.yaml").write_text(config_yaml(case, fake.url, batch))
    port = free_port()
    server_log = open(directory / "server.log", "w")  # noqa: SIM115 - closed in the finally below
    env = {**os.environ, **THREAD_ENV, **case.env}
    server = subprocess.Popen(
        [sys.executable, "-m", "searchd", "serve", str(directory / "searchd.yaml"), "--data", str(directory / "data"), "--port", str(port), "--grpc-port", "0", "--log-level", "warning"],
        stdout=server_log,
        stderr=server_log,
        env=env,
        cwd=ROOT,
    )
    base = f"http://127.0.0.1:{port}"
    http_batch = max(CONCURRENCY * batch, 200)
    props = objects(case, n)
    ids = [str(uuid.uuid5(uuid.NAMESPACE_OID, f"{case.module}:{i}")) for i in range(n)]
    bodies = [
        json.dumps({"objects": [{"class": "Doc", "id": ids[i], "properties": props[i]} for i in range(start, min(n, start + http_batch))]}).encode()
        for start in range(0, n, http_batch)
    ]
    bound = CONCURRENCY * batch / latency
    local = [httpx.Client(base_url=base, timeout=600, headers={"Content-Type": "application/json"}) for _ in range(clients)]
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if local[0].get("/v1/.well-known/ready").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"searchd did not start: {(directory / 'server.log').read_text()[-2000:]}")
            time.sleep(0.05)
        # warm-up: one small batch of other objects (connections to the fake, first-request code paths)
        warm = objects(case, n + CONCURRENCY)[n:] if case.images else [{"text": f"warm-up text {i}"} for i in range(CONCURRENCY)]
        answer = local[0].post("/v1/batch/objects", content=json.dumps({"objects": [{"class": "Doc", "properties": p} for p in warm]}).encode())
        answer.raise_for_status()

        def send(index: int) -> int:
            client = local[index % clients]
            failed = 0
            for body in bodies[index::clients]:
                response = client.post("/v1/batch/objects", content=body)
                response.raise_for_status()
                failed += sum(1 for r in response.json() if r["result"]["status"] != "SUCCESS")
            return failed

        def timed(label: str) -> tuple[float, float, float, dict[str, Any], float]:
            before = fake.reset()
            srv, busy, own = proc_cpu(server.pid), system_busy_s(), time.process_time()
            started = time.perf_counter()
            with ThreadPoolExecutor(clients) as pool:
                failed = sum(pool.map(send, range(clients)))
            elapsed = time.perf_counter() - started
            after = fake.stats()
            srv_used, own = proc_cpu(server.pid) - srv, time.process_time() - own
            other = max(0.0, system_busy_s() - busy - srv_used - own - (after["cpu"] - before["cpu"])) / elapsed
            if failed:
                raise RuntimeError(f"{case.module} {label}: {failed} objects failed; server log: {(directory / 'server.log').read_text()[-2000:]}")
            return elapsed, (after["cpu"] - before["cpu"]) / elapsed, srv_used / elapsed, after, other

        elapsed, fake_cores, srv_cores, after, other = timed("import")
        count = local[0].post("/v1/graphql", json={"query": "{ Aggregate { Doc { meta { count } } } }"}).json()
        stored = count.get("data", {}).get("Aggregate", {}).get("Doc", [{}])[0].get("meta", {}).get("count")
        note = cpu_note(fake_cores, srv_cores, other)
        if stored is not None and stored != n + len(warm):
            note = "; ".join(x for x in (note, f"server holds {stored} objects, expected {n + len(warm)}") if x)
        first = add(Row(case.module, f"b. HTTP import ({clients} in flight, {http_batch}/batch)", batch, n, after["requests"], after["inFlightMax"], n / elapsed, bound, fake_cores, srv_cores, elapsed, note, other))
        elapsed, fake_cores, srv_cores, after, other = timed("re-import")
        note = "; ".join(x for x in (cpu_note(None, srv_cores, other), "" if after["requests"] == 0 else "THE CACHE WAS MISSED") if x)
        add(Row(case.module, "c. HTTP re-import, same objects (cache)", batch, n, after["requests"], None, n / elapsed, None, fake_cores, srv_cores, elapsed, note, other))
        return first
    finally:
        for client in local:
            client.close()
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(60)
        except subprocess.TimeoutExpired:
            server.kill()
        server_log.close()
        shutil.rmtree(directory, ignore_errors=True)


def decode_cost(case: Case, fake: FakeProcess, batch: int) -> dict[str, Any]:
    """Time searchd's client decoding one full answer (httpx ``response.json()``, then numpy rows), in this process.

    Where the provider can answer in base64 (Jina ``embedding_type``, NVIDIA ``encoding_format``; searchd asks
    for floats), the same answer in base64 is decoded too, for comparison.
    """
    import httpx
    import numpy as np

    from searchd.modules.remote import rows

    items = objects(case, batch, salt=" (decode)")
    colbert = case.module == "text2multivec-jinaai"
    encoding_key = None
    if case.fake == "jina":
        wire: list[Any] = [{"image": o["photo"]} for o in items] if case.images else [o["text"] for o in items]
        path = "/v1/multi-vector" if colbert else "/v1/embeddings"
        body: dict[str, Any] = {"model": case.model, "input": wire, "embedding_type": "float"}
        if colbert:
            body["dimensions"] = case.dims
        else:
            encoding_key = "embedding_type"
    elif case.fake == "nvidia":
        path = "/v1/embeddings"
        body = {"model": case.model, "input": [f"data:image/png;base64,{o['photo']}" for o in items] if case.images else [o["text"] for o in items], "encoding_format": "float"}
        if not case.images:
            body.update(input_type="passage", truncate="END")
        encoding_key = "encoding_format"
    else:
        path = "/v1/embeddings/embed"
        body = {"model": case.model, "input": [o["photo"] for o in items] if case.images else [o["text"] for o in items]}
    headers = {"Authorization": f"Bearer {KEY}", "X-Weaviate-Cluster-Url": CLUSTER}

    def best_of_3(response: httpx.Response, decode: Any) -> float:
        runs = []
        for _ in range(3):
            started = time.perf_counter()
            decoded = decode(response.json())
            runs.append(time.perf_counter() - started)
            assert len(decoded) == batch
        return min(runs)

    def floats(answer: Any) -> list[Any]:
        if case.fake == "weaviate":
            return [np.asarray(e, dtype=np.float32) for e in answer["embeddings"]]
        return rows(answer["data"], "embeddings" if colbert else "embedding")

    def base64s(answer: Any) -> list[Any]:
        return [np.frombuffer(base64.b64decode(d["embedding"]), dtype="<f4") for d in sorted(answer["data"], key=lambda d: d["index"])]

    with httpx.Client(base_url=fake.url, timeout=120) as client:
        response = client.post(path, json=body, headers=headers)
        response.raise_for_status()
        out: dict[str, Any] = {"bytes": len(response.content), "ms": 1000 * best_of_3(response, floats)}
        out["us_per_item"] = 1000 * out["ms"] / batch
        if encoding_key is not None:
            response = client.post(path, json={**body, encoding_key: "base64"}, headers=headers)
            response.raise_for_status()
            out["base64_bytes"] = len(response.content)
            out["base64_ms"] = 1000 * best_of_3(response, base64s)
    fake.reset()
    return out


def decode_text(batch: int, d: dict[str, Any]) -> str:
    text = f"decoding one answer of {batch} items in searchd's client: {d['ms']:.1f} ms ({d['bytes'] / 1e6:.2f} MB of JSON floats, {d['us_per_item']:.0f} us per item)"
    if "base64_ms" in d:
        text += f"; the same answer in base64 (not what searchd asks for): {d['base64_ms']:.1f} ms ({d['base64_bytes'] / 1e6:.2f} MB)"
    return text


def reachable_batch(case: Case, measured_per_s: float, latency: float) -> int:
    """The largest power of two below the limit whose bound is at most half of what the limit run achieved."""
    batch = 1
    while batch * 2 < case.limit and CONCURRENCY * batch * 2 / latency <= 0.5 * measured_per_s:
        batch *= 2
    return batch


# -- main --------------------------------------------------------------------------------------------


def table(rows: list[Row], markdown: bool = False) -> str:
    head = ["module", "run", "batchSize", "N", "provider requests", "in flight max", "items/s", "bound/s", "of bound", "fake cores", "searchd cores", "fake CPU ms/req", "searchd CPU ms/req", "searchd-CPU ceiling/s", "other cores", "notes"]
    body = [
        [
            r.module, r.run, str(r.batch), f"{r.n:,}", str(r.requests), fmt(r.in_flight_max, "d"), f"{r.per_s:,.0f}", fmt(r.bound, ",.0f"), fmt(r.fraction, ".0%"),
            fmt(r.fake_cores, ".2f"), fmt(r.searchd_cores, ".2f"), fmt(r.cpu_ms_per_request(r.fake_cores), ".1f"), fmt(r.cpu_ms_per_request(r.searchd_cores), ".1f"),
            fmt(r.ceiling, ",.0f"), fmt(r.other_cores, ".2f"), r.notes,
        ]
        for r in rows
    ]
    text_columns = (0, 1, len(head) - 1)
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" if i in text_columns else "--:" for i in range(len(head))) + "|"]
        return "\n".join(lines + ["| " + " | ".join(c.replace("|", "/") for c in line) + " |" for line in body])
    widths = [max(len(h), *(len(line[i]) for line in body)) for i, h in enumerate(head)]
    out = ["  ".join(h.ljust(w) for h, w in zip(head, widths)), "  ".join("-" * w for w in widths)]
    return "\n".join(out + ["  ".join(c.ljust(w) if i in text_columns else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths))) for line in body])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smoke run: 3 modules, fewer objects, no HTTP run at the small batch")
    parser.add_argument("--cases", help="comma-separated module names (default: all but text2multivec-jinaai)")
    parser.add_argument("--latency", type=float, default=0.05, help="seconds the fake adds to each request (default 0.05)")
    parser.add_argument("--min-items", type=int, default=None, help="at least this many objects per run (default 2000; quick 400)")
    parser.add_argument("--http-clients", type=int, default=2, help="HTTP batch requests in flight (default 2)")
    parser.add_argument("--small-batch", type=int, default=None, help="the smaller batchSize (default: chosen from the limit run)")
    parser.add_argument("--quiet-wait", type=float, default=10.0, help="before each module, wait up to this long for other work on the machine to stop (default 10 s)")
    parser.add_argument("--out", type=Path, default=HERE / "results-providers.json")
    parser.add_argument("--md", type=Path, default=None, help="also write the table as markdown here")
    parser.add_argument("--serve-fake", help=argparse.SUPPRESS)
    args = parser.parse_args()
    bench_data(needs=("corpus.jsonl",))  # before any work: a missing data set is said at once
    if args.serve_fake:
        serve_fake(args.serve_fake, args.latency)
        return 0

    if args.cases:
        wanted = [c.strip() for c in args.cases.split(",") if c.strip()]
        unknown = set(wanted) - {c.module for c in CASES}
        if unknown:
            raise SystemExit(f"unknown --cases {sorted(unknown)}; known: {', '.join(c.module for c in CASES)}")
        cases = [c for c in CASES if c.module in wanted]
    elif args.quick:
        cases = [c for c in CASES if c.module in ("text2vec-jinaai", "text2vec-nvidia", "multi2multivec-weaviate")]
    else:
        cases = [c for c in CASES if not c.optional]
    min_items = args.min_items or (400 if args.quick else 2000)
    min_requests = 8 if args.quick else MIN_REQUESTS
    seconds = 1.0 if args.quick else 3.0  # a run at the bound lasts about this long (at least min_requests requests)
    work = Path(tempfile.mkdtemp(prefix="searchd-bench-providers-"))
    import importlib.metadata

    import searchd
    import searchd.config  # first: importing searchd.modules.* before it is a circular import

    env = {
        "nproc": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "loadavg_at_start": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "versions": {p: importlib.metadata.version(p) for p in ("httpx", "uvicorn", "starlette", "numpy", "uvloop", "httptools") if _installed(p)},
        "searchd": searchd.__file__,
    }
    log(f"searchd {searchd.__file__}; {env['nproc']} cores, Python {env['python']}, load average {env['loadavg_at_start']}")
    log(f"latency {args.latency * 1000:.0f} ms per request, maxConcurrency {CONCURRENCY}, bound = {CONCURRENCY} x batchSize / {args.latency:g} s")
    began = time.perf_counter()
    fakes: dict[str, FakeProcess] = {}
    decode: dict[str, dict[str, float]] = {}
    summary: list[dict[str, Any]] = []
    try:
        for case in cases:
            if case.fake not in fakes:
                fakes[case.fake] = FakeProcess(case.fake, args.latency)
            fake = fakes[case.fake]
            waited = wait_quiet(args.quiet_wait)
            log(f"\n== {case.module} ({case.model}, {case.dims}-d{', images' if case.images else ''}; provider limit {case.limit}/request) == (load average {os.getloadavg()[0]:.2f}; waited {waited:.0f} s for quiet)")
            decode[case.module] = decode_cost(case, fake, case.limit)
            log("  " + decode_text(case.limit, decode[case.module]))
            n = sizes(case.limit, args.latency, min_items, min_requests, seconds)
            limit_row = in_process(case, fake, case.limit, n, args.latency, work)
            http_row = http_import(case, fake, case.limit, n, args.latency, work, args.http_clients)
            entry: dict[str, Any] = {"module": case.module, "limit": {"batch": case.limit, "in_process": limit_row.fraction, "http": http_row.fraction}}
            if (limit_row.fraction or 0) < TARGET or (http_row.fraction or 0) < TARGET:
                small = args.small_batch or reachable_batch(case, min(limit_row.per_s, http_row.per_s), args.latency)
                if small < case.limit:
                    log(f"  -> below {TARGET:.0%} of the bound at the limit; again at batchSize {small} (bound {CONCURRENCY * small / args.latency:,.0f}/s)")
                    n_small = sizes(small, args.latency, min_items, min_requests, seconds)
                    small_row = in_process(case, fake, small, n_small, args.latency, work)
                    entry["small"] = {"batch": small, "in_process": small_row.fraction}
                    if not args.quick:
                        entry["small"]["http"] = http_import(case, fake, small, n_small, args.latency, work, args.http_clients).fraction
            summary.append(entry)
    except KeyboardInterrupt:
        log("interrupted: reporting what was measured")
    finally:
        for fake in fakes.values():
            fake.stop()
        shutil.rmtree(work, ignore_errors=True)
    elapsed = time.perf_counter() - began
    log(f"\n== results ({elapsed / 60:.1f} min; latency {args.latency * 1000:.0f} ms, maxConcurrency {CONCURRENCY}; bound = {CONCURRENCY} x batchSize / latency) ==")
    log(table(ROWS))
    log("\ndecode cost of one full answer in searchd's client (httpx response.json() + numpy rows, on the event loop):")
    for case in cases:
        if case.module in decode:
            log(f"  {case.module}: " + decode_text(case.limit, decode[case.module]))
    result = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "latency_s": args.latency,
        "max_concurrency": CONCURRENCY,
        "http_clients": args.http_clients,
        "elapsed_s": elapsed,
        "environment": env,
        "loadavg_at_end": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "rows": [{**dataclasses.asdict(r), "fraction": r.fraction, "searchd_cpu_ceiling_per_s": r.ceiling} for r in ROWS],
        "decode": decode,
        "summary": summary,
    }
    args.out.write_text(json.dumps(result, indent=2))
    log(f"\nwrote {args.out}")
    if args.md:
        args.md.write_text(table(ROWS, markdown=True) + "\n")
        log(f"wrote {args.md}")
    return 0


def _installed(name: str) -> bool:
    import importlib.metadata

    try:
        importlib.metadata.version(name)
        return True
    except importlib.metadata.PackageNotFoundError:
        return False


if __name__ == "__main__":
    sys.exit(main())
