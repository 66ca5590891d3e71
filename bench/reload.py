#!/usr/bin/env python3
"""Config reload benchmark (issue #6): time from file write to applied, and re-vectorization throughput.

    bench/.venv/bin/python bench/reload.py                    # full run: 20,000 WordNet glosses, provider phase 4,096 (~1 min on 2 cores)
    bench/.venv/bin/python bench/reload.py --quick            # smoke run: 3,000 objects, 5 repetitions, provider phase 1,024
    bench/.venv/bin/python bench/reload.py --skip-provider    # phases a-c only

A real ``python -m searchd serve`` subprocess on a config with one collection (``text`` TEXT, ``pos`` TEXT
field-tokenized; vector ``v``: text2vec-hash, 256 dimensions, hnsw cosine with the defaults), loaded with N
objects ("<first lemma>: <gloss>" of the WordNet entries, wordnet-minilm: see bench/benchdata.py) over
``POST /v1/batch/objects`` (batches of 500, one client).

a. In-place edits through the file watcher: ``--reps`` times, the collection's description (even
   repetitions) or its bm25 k1 (odd ones) is changed and the YAML file rewritten in place; then
   ``GET /v1/config/status`` is polled every ``--poll-ms`` (5 ms) until ``lastReload.at`` changes (it must be
   ``applied``, trigger ``file change``).  Reported: client-observed write -> applied (p50/p90/max ms) and
   the server's own stamp (``lastReload.at`` minus the wall-clock time of the write, same clock).  The
   watcher (searchd/reload/manager.py) uses watchfiles with debounce=200 ms and step=25 ms: changes are
   yielded once no further change has come for 25 ms (at most 200 ms after the first), so ~25-50 ms of the
   figure is that wait by design.
b. Re-vectorization: the vector's dimensions are changed 256 -> 128 in the file; the status is polled
   (every 20 ms) until the rebuild's state is ``done``: objects/s = N / (done - write).  Then a fresh server
   on the 128-dimension config (watcher off) imports the same objects the same way: objects/s, and the ratio.
c. ``POST /v1/config/reload`` after an in-place edit (on the second server, watcher off): request latency
   p50/p90/max (the reload runs inside the request).
d. Re-vectorization through a remote provider against a fresh import through the same provider: the Jina
   fake (tests/fakes/jina.py) in its own process, started with bench/providers.py's ``FakeProcess`` (that
   script with ``--serve-fake jina``; it accepts the key ``providers.KEY``, passed to searchd as
   JINAAI_APIKEY, and answers ``/__bench/stats`` with its request count, items and ``in_flight_max``), with
   ``--provider-latency`` (50 ms) added to every request.  Vector ``v``: text2vec-jinaai, jina-embeddings-v3,
   256 dimensions, hnsw cosine; module settings batchSize 128, maxConcurrency 4, baseURL the fake.
   ``--provider-n`` (4,096) objects are imported (batches of 500, one client: ceil(500/128) = 4 provider
   requests per batch), then the dimensions are changed 256 -> 128 in the file and the status polled until
   the rebuild is ``done``: objects/s.  Then a fresh server on the 128-dimension config with an empty data
   directory (so an empty embedding cache, DATA/embeddings.sqlite) imports the same objects: objects/s, and
   the ratio.  For each: the fake's requests, items and largest number of requests in flight, and the
   fraction of the bound maxConcurrency x batchSize / latency (4 x 128 / 50 ms = 10,240 items/s).

Prints a table; writes bench/results-reload.json.
"""

from __future__ import annotations

import os
import sys

if sys.path and os.path.realpath(sys.path[0] or ".") == os.path.dirname(os.path.realpath(__file__)):
    del sys.path[0]
if os.path.dirname(os.path.dirname(os.path.realpath(__file__))) not in sys.path:  # the repository root: bench.benchdata
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.realpath(__file__))))

THREAD_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "NUMEXPR_NUM_THREADS": "1"}
os.environ.update(THREAD_ENV)

import argparse
import json
import math
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from bench.benchdata import bench_data

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
IMPORT_BATCH = 500
DEBOUNCE_MS, STEP_MS = 200, 25  # searchd/reload/manager.py ConfigManager._watch
PROVIDER_BATCH, PROVIDER_CONCURRENCY = 128, 4  # phase d: modules.text2vec-jinaai batchSize / maxConcurrency


def log(message: str = "") -> None:
    print(message, flush=True)


def config(description: str, k1: float, dims: int, watch: bool) -> str:
    return f"""# bench/reload.py
server:
  reload: {{watch: {str(watch).lower()}}}
collections:
  - name: Gloss
    description: "{description}"
    properties:
      - {{name: text, type: TEXT}}
      - {{name: pos, type: TEXT, tokenization: field}}
    invertedIndex:
      bm25: {{k1: {k1}, b: 0.75}}
    vectors:
      v:
        vectorizer: {{module: text2vec-hash, dimensions: {dims}, textFields: [text]}}
        index: {{type: hnsw, distance: cosine}}
"""


def provider_config(base_url: str, dims: int, watch: bool) -> str:
    return f"""# bench/reload.py, phase d
server:
  reload: {{watch: {str(watch).lower()}}}
modules:
  text2vec-jinaai: {{baseURL: "{base_url}", batchSize: {PROVIDER_BATCH}, maxConcurrency: {PROVIDER_CONCURRENCY}}}
collections:
  - name: Gloss
    description: "WordNet glosses"
    properties:
      - {{name: text, type: TEXT}}
      - {{name: pos, type: TEXT, tokenization: field}}
    vectors:
      v:
        vectorizer: {{module: text2vec-jinaai, model: jina-embeddings-v3, dimensions: {dims}, textFields: [text]}}
        index: {{type: hnsw, distance: cosine}}
"""


def providers_module() -> Any:
    """bench/providers.py, imported by path (bench/ is not a package): its FakeProcess runs a fake in its own process."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_providers", HERE / "providers.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the file executes
    spec.loader.exec_module(module)
    return module


def write(path: Path, text: str) -> float:
    """Rewrite the file in place (as an editor saving it would); the wall-clock time just before."""
    at = time.time()
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text)
    return at


def system_busy_s() -> float:
    """CPU seconds the whole machine has been busy (all cores, not idle or iowait) since boot."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    except (OSError, ValueError):
        return 0.0
    return (sum(fields) - fields[3] - (fields[4] if len(fields) > 4 else 0)) / os.sysconf("SC_CLK_TCK")


def proc_cpu(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Meter:
    """Cores busy during a phase: the server's, and the rest of the machine's (not the server, not this client)."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.t, self.busy, self.own, self.srv = time.perf_counter(), system_busy_s(), time.process_time(), proc_cpu(server.proc.pid)

    def read(self) -> dict[str, float]:
        elapsed = time.perf_counter() - self.t
        srv = proc_cpu(self.server.proc.pid) - self.srv
        other = max(0.0, system_busy_s() - self.busy - srv - (time.process_time() - self.own))
        return {"server_cores": srv / elapsed, "other_cores": other / elapsed}


def wait_quiet(max_s: float) -> float:
    """Wait (bounded) until other work on the machine stays under 0.2 core for 2 s in a row; seconds waited."""
    start = time.perf_counter()
    last, quiet = system_busy_s(), 0
    while time.perf_counter() - start < max_s:
        time.sleep(1.0)
        now = system_busy_s()
        quiet = quiet + 1 if now - last < 0.2 else 0
        last = now
        if quiet >= 2:
            break
    return time.perf_counter() - start


def cores_text(m: dict[str, float]) -> str:
    flag = f"; OTHER LOAD {m['other_cores']:.2f} cores" if m["other_cores"] >= 0.25 else ""
    return f"server {m['server_cores']:.2f} cores, other load {m['other_cores']:.2f} cores{flag}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


LOG_ISSUES: list[str] = []  # warning / error lines of every server's log, gathered at stop()


class Server:
    def __init__(self, config_path: Path, data: Path, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.log_path = config_path.parent / f"server-{self.port}.log"
        self._log = open(self.log_path, "w")  # noqa: SIM115 - closed by stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "searchd", "serve", str(config_path), "--data", str(data), "--port", str(self.port), "--grpc-port", "0", "--log-level", "warning"],
            stdout=self._log,
            stderr=self._log,
            env={**os.environ, **THREAD_ENV, **(env or {})},
            cwd=ROOT,
        )
        self.client = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=600)
        deadline = time.monotonic() + 60
        while True:
            try:
                if self.client.get("/v1/.well-known/ready").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"searchd did not start: {self.log_path.read_text()[-2000:]}")
            time.sleep(0.05)

    def status(self) -> dict[str, Any]:
        return dict(self.client.get("/v1/config/status").json())

    def stop(self) -> None:
        self.client.close()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self._log.close()
        issues = [ln for ln in self.log_path.read_text(errors="replace").splitlines() if any(w in ln.lower() for w in ("warning", "error", "traceback"))]
        LOG_ISSUES.extend(f"{self.log_path.name}: {ln[:500]}" for ln in issues[:20])


def load(n: int) -> list[dict[str, Any]]:
    out = []
    with open(bench_data(needs=("corpus.jsonl",)) / "corpus.jsonl", encoding="utf-8") as handle:
        for line in handle:
            e = json.loads(line)
            out.append({"class": "Gloss", "id": str(uuid.uuid5(uuid.NAMESPACE_OID, e["id"])), "properties": {"text": f"{e['lemmas'][0]}: {e['gloss']}", "pos": e["pos"]}})
            if len(out) == n:
                break
    return out


def import_all(server: Server, bodies: list[bytes], n: int) -> tuple[float, dict[str, float]]:
    """Import the pre-serialized batches sequentially; objects/s and the cores busy meanwhile."""
    meter = Meter(server)
    started = time.perf_counter()
    for body in bodies:
        response = server.client.post("/v1/batch/objects", content=body, headers={"Content-Type": "application/json"})
        response.raise_for_status()
        failed = [r for r in response.json() if r["result"]["status"] != "SUCCESS"]
        if failed:
            raise RuntimeError(f"import failed ({len(failed)} objects): {failed[0]}; server log: {server.log_path.read_text()[-2000:]}")
    return n / (time.perf_counter() - started), meter.read()


def wait_rebuild(server: Server, t0: float, timeout_s: float = 600) -> tuple[dict[str, Any], float, float | None]:
    """Poll the status every 20 ms until the rebuild of Gloss.v ends: its last state, seconds since t0, and
    seconds since t0 when every object had been embedded and staged (then the new index is built)."""
    state = None
    embedded_s = None
    while True:
        status = server.status()
        rebuilds = [r for r in status["rebuilds"] if r["collection"] == "Gloss" and r["target"] == "v"]
        if rebuilds:
            state = rebuilds[-1]
            if embedded_s is None and state["done"] >= state["total"]:
                embedded_s = time.perf_counter() - t0
            if state["state"] in ("done", "failed", "cancelled"):
                break
        if time.perf_counter() - t0 > timeout_s:
            raise RuntimeError(f"re-vectorization did not finish within {timeout_s:.0f} s: {state}")
        time.sleep(0.02)
    elapsed = time.perf_counter() - t0
    if state is None or state["state"] != "done":
        raise RuntimeError(f"re-vectorization ended {state}; server log: {server.log_path.read_text()[-2000:]}")
    return state, elapsed, embedded_s


def percentiles(values_ms: list[float]) -> dict[str, float]:
    ordered = sorted(values_ms)
    return {
        "n": len(ordered),
        "p50_ms": statistics.median(ordered),
        "p90_ms": ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))],
        "max_ms": ordered[-1],
        "min_ms": ordered[0],
    }


def fmt_p(p: dict[str, float]) -> str:
    return f"p50 {p['p50_ms']:.1f} ms, p90 {p['p90_ms']:.1f} ms, max {p['max_ms']:.1f} ms (min {p['min_ms']:.1f}, n={p['n']})"


def count(server: Server) -> int:
    body = server.client.post("/v1/graphql", json={"query": "{ Aggregate { Gloss { meta { count } } } }"}).json()
    return int(body["data"]["Aggregate"]["Gloss"][0]["meta"]["count"])


def near_text_ok(server: Server) -> bool:
    body = server.client.post("/v1/graphql", json={"query": '{ Get { Gloss(nearText: {concepts: ["a small dog"]}, limit: 3) { text } } }'}).json()
    return not body.get("errors") and len(body["data"]["Get"]["Gloss"]) == 3


def provider_phase(objects: list[dict[str, Any]], latency: float, quiet_wait: float, work: Path) -> dict[str, Any]:
    """Phase d: through the Jina fake, import at 256 dims, re-vectorize 256 -> 128, fresh import at 128 dims."""
    providers = providers_module()
    n = len(objects)
    bodies = [json.dumps({"objects": objects[i : i + IMPORT_BATCH]}).encode() for i in range(0, n, IMPORT_BATCH)]
    bound = PROVIDER_CONCURRENCY * PROVIDER_BATCH / latency
    env = {"JINAAI_APIKEY": providers.KEY}
    out: dict[str, Any] = {
        "n": n, "latency_s": latency, "batch_size": PROVIDER_BATCH, "max_concurrency": PROVIDER_CONCURRENCY, "bound_items_per_s": bound,
        "model": "jina-embeddings-v3", "import_batch": IMPORT_BATCH, "requests_per_import_batch": math.ceil(IMPORT_BATCH / PROVIDER_BATCH),
    }
    fake = providers.FakeProcess("jina", latency)
    servers: list[Server] = []

    def measured(server: Server, before: dict[str, Any], meter: Meter, seconds: float) -> dict[str, Any]:
        after = fake.stats()
        cores = meter.read()
        fake_cores = (after["cpu"] - before["cpu"]) / seconds
        cores["other_cores"] = max(0.0, cores["other_cores"] - fake_cores)  # Meter counts the fake as "other"
        return {
            "seconds": seconds, "objects_per_s": n / seconds, "of_bound": n / seconds / bound,
            "provider_requests": after["requests"], "provider_items": after["items"], "in_flight_max": after["inFlightMax"],
            "fake_cores": fake_cores, **cores,
        }

    def line(what: str, m: dict[str, Any]) -> str:
        return (
            f"  {what}: {n:,} objects in {m['seconds']:.2f} s = {m['objects_per_s']:,.0f} objects/s, {m['of_bound']:.1%} of the bound {bound:,.0f}/s; "
            f"provider requests {m['provider_requests']} ({m['provider_items']:,} items), max {m['in_flight_max']} in flight; "
            f"cores: fake {m['fake_cores']:.2f}, server {m['server_cores']:.2f}, other {m['other_cores']:.2f}{'; OTHER LOAD' if m['other_cores'] >= 0.25 else ''}"
        )

    try:
        log(f"\n== d. through a provider: text2vec-jinaai on the Jina fake ({latency * 1000:.0f} ms per request, {fake.url}), batchSize {PROVIDER_BATCH}, maxConcurrency {PROVIDER_CONCURRENCY}; bound {bound:,.0f} items/s ==")
        path_c = work / "c" / "searchd.yaml"
        path_c.parent.mkdir()
        write(path_c, provider_config(fake.url, 256, watch=True))
        c = Server(path_c, work / "c" / "data", env)
        servers.append(c)
        waited = wait_quiet(quiet_wait)
        before, meter, t0 = fake.reset(), Meter(c), time.perf_counter()
        import_all(c, bodies, n)
        out["import_256"] = measured(c, before, meter, time.perf_counter() - t0)
        log(line(f"import at 256 dimensions (server C, watcher on; waited {waited:.0f} s for quiet)", out["import_256"]))
        time.sleep(1.0)

        waited = wait_quiet(quiet_wait)
        before, meter, t0 = fake.reset(), Meter(c), time.perf_counter()
        write(path_c, provider_config(fake.url, 128, watch=True))
        state, seconds, embedded_s = wait_rebuild(c, t0)
        out["revectorize"] = {**measured(c, before, meter, seconds), "embedded_s": embedded_s, "server": state}
        out["revectorize"]["near_text_after"] = near_text_ok(c)
        log(line(f"re-vectorization 256 -> 128, write -> done (waited {waited:.0f} s for quiet)", out["revectorize"]))
        if embedded_s is not None:
            log(f"    of which embedding + staging {embedded_s:.2f} s ({n / embedded_s:,.0f} objects/s), index build + swap {seconds - embedded_s:.2f} s; server's ratePerSecond {state['ratePerSecond']:,.0f}, failed {state['failed']}; nearText after: {'ok' if out['revectorize']['near_text_after'] else 'FAILED'}")
        c.stop()
        servers.remove(c)

        path_d = work / "d" / "searchd.yaml"
        path_d.parent.mkdir()
        write(path_d, provider_config(fake.url, 128, watch=False))
        d = Server(path_d, work / "d" / "data", env)  # an empty data dir: an empty embedding cache
        servers.append(d)
        waited = wait_quiet(quiet_wait)
        before, meter, t0 = fake.reset(), Meter(d), time.perf_counter()
        import_all(d, bodies, n)
        out["fresh_import_128"] = measured(d, before, meter, time.perf_counter() - t0)
        out["fresh_import_128"]["stored"] = count(d)
        log(line(f"fresh import at 128 dimensions (server D, empty data dir; waited {waited:.0f} s for quiet)", out["fresh_import_128"]))
        out["revectorize_over_fresh_import"] = out["revectorize"]["objects_per_s"] / out["fresh_import_128"]["objects_per_s"]
        log(f"  re-vectorization / fresh import = {out['revectorize']['objects_per_s']:,.0f} / {out['fresh_import_128']['objects_per_s']:,.0f} = {out['revectorize_over_fresh_import']:.2f}x")
    finally:
        for server in servers:
            server.stop()
        fake.stop()
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=20_000, help="objects (default 20,000)")
    parser.add_argument("--reps", type=int, default=20, help="in-place edits through the watcher, and POST reloads (default 20)")
    parser.add_argument("--poll-ms", type=float, default=5.0, help="status poll interval while waiting for a reload (default 5 ms)")
    parser.add_argument("--quick", action="store_true", help="3,000 objects, 5 repetitions, provider phase 1,024 objects")
    parser.add_argument("--provider-n", type=int, default=None, help="objects in the provider phase d (default 4,096; --quick 1,024)")
    parser.add_argument("--provider-latency", type=float, default=0.05, help="seconds the Jina fake adds to each request (default 0.05)")
    parser.add_argument("--skip-provider", action="store_true", help="skip phase d (re-vectorization through the Jina fake)")
    parser.add_argument("--quiet-wait", type=float, default=20.0, help="before each throughput phase, wait up to this long for other work on the machine to stop (default 20 s)")
    parser.add_argument("--out", type=Path, default=HERE / "results-reload.json")
    args = parser.parse_args()
    bench_data(needs=("corpus.jsonl",))  # before any work: a missing data set is said at once
    if args.quick:
        args.n, args.reps = 3000, 5
    if args.provider_n is None:
        args.provider_n = 1024 if args.quick else 4096
    poll = args.poll_ms / 1000

    import searchd

    env = {"nproc": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(), "loadavg_at_start": " ".join(f"{x:.2f}" for x in os.getloadavg()), "searchd": searchd.__file__}
    log(f"searchd {searchd.__file__}; {env['nproc']} cores, Python {env['python']}, load average {env['loadavg_at_start']}")
    began = time.perf_counter()
    loaded = load(max(args.n, 0 if args.skip_provider else args.provider_n))
    objects = loaded[: args.n]
    n = len(objects)
    bodies = [json.dumps({"objects": objects[i : i + IMPORT_BATCH]}).encode() for i in range(0, n, IMPORT_BATCH)]
    work = Path(tempfile.mkdtemp(prefix="searchd-bench-reload-"))
    results: dict[str, Any] = {"n": n, "reps": args.reps, "poll_ms": args.poll_ms, "watcher": {"debounce_ms": DEBOUNCE_MS, "step_ms": STEP_MS}}
    servers: list[Server] = []
    try:
        # -- server A: watcher on, 256 dimensions ------------------------------------------------------
        path_a = work / "a" / "searchd.yaml"
        path_a.parent.mkdir()
        write(path_a, config("WordNet glosses", 1.2, 256, watch=True))
        a = Server(path_a, work / "a" / "data")
        servers.append(a)
        waited = wait_quiet(args.quiet_wait)
        rate, cores = import_all(a, bodies, n)
        results["import_256_objects_per_s"] = rate
        results["import_256_cores"] = cores
        log(f"\nserver A (watcher on; waited {waited:.0f} s for quiet): imported {n:,} objects at 256 dimensions: {rate:,.0f} objects/s (batches of {IMPORT_BATCH}, one client; {cores_text(cores)})")
        time.sleep(1.0)  # let the import's last writes settle

        log(f"\n== a. in-place edit written to the file -> applied (watcher; debounce {DEBOUNCE_MS} ms, step {STEP_MS} ms; poll every {args.poll_ms:g} ms) ==")
        observed: list[float] = []
        stamped: list[float] = []
        polls: list[int] = []
        k1 = 1.2
        description = "WordNet glosses"
        meter = Meter(a)
        for rep in range(args.reps):
            before = a.status()["lastReload"]
            if rep % 2 == 0:
                description = f"WordNet glosses (edit {rep})"
            else:
                k1 = round(1.2 + 0.01 * (rep + 1), 2)
            text = config(description, k1, 256, watch=True)
            t0 = time.perf_counter()
            wall = write(path_a, text)
            tries = 0
            while True:
                tries += 1
                last = a.status()["lastReload"]
                if last and (before is None or last["at"] != before["at"]):
                    break
                if time.perf_counter() - t0 > 30:
                    raise RuntimeError("no reload within 30 s of the write")
                time.sleep(poll)
            elapsed = 1000 * (time.perf_counter() - t0)
            if last["result"] != "applied" or last["trigger"] != "file change":
                raise RuntimeError(f"expected an applied file-change reload, got {last}")
            observed.append(elapsed)
            stamped.append(1000 * (last["at"] - wall))
            polls.append(tries)
            time.sleep(0.3)  # past the watcher's debounce window before the next write
        results["watch_in_place"] = {"observed": percentiles(observed), "server_stamp": percentiles(stamped), "samples_ms": observed, "polls": polls, "cores": meter.read()}
        log(f"  write -> applied, observed by polling: {fmt_p(results['watch_in_place']['observed'])}")
        log(f"  write -> lastReload.at (server clock):   {fmt_p(results['watch_in_place']['server_stamp'])}")
        log(f"  ({cores_text(results['watch_in_place']['cores'])}, including the 5 ms polling and 0.3 s pauses)")

        waited = wait_quiet(args.quiet_wait)
        log(f"\n== b. re-vectorization: dimensions 256 -> 128 written to the file == (waited {waited:.0f} s for quiet)")
        meter = Meter(a)
        t0 = time.perf_counter()
        write(path_a, config(description, k1, 128, watch=True))
        state, revec_s, embedded_s = wait_rebuild(a, t0)
        revec_cores = meter.read()
        ok = near_text_ok(a)
        schema = a.client.get("/v1/config/status").json()
        results["revectorize"] = {"seconds": revec_s, "embedded_s": embedded_s, "objects_per_s": n / revec_s, "server": state, "near_text_after": ok, "revision": schema["revision"], "cores": revec_cores}
        log(f"  write -> rebuild done: {revec_s:.2f} s = {n / revec_s:,.0f} objects/s (server's ratePerSecond {state['ratePerSecond']:,.0f}, done {state['done']}/{state['total']}, failed {state['failed']}); nearText after: {'ok' if ok else 'FAILED'}")
        if embedded_s is not None:
            log(f"  of which: embedding + staging {embedded_s:.2f} s ({n / embedded_s:,.0f} objects/s), then building the 128-d index and swapping {revec_s - embedded_s:.2f} s (polled every 20 ms)")
        log(f"  ({cores_text(revec_cores)})")
        a.stop()
        servers.remove(a)

        # -- server B: watcher off, 128 dimensions from the start ------------------------------------------
        path_b = work / "b" / "searchd.yaml"
        path_b.parent.mkdir()
        write(path_b, config("WordNet glosses", 1.2, 128, watch=False))
        b = Server(path_b, work / "b" / "data")
        servers.append(b)
        waited = wait_quiet(args.quiet_wait)
        rate128, cores128 = import_all(b, bodies, n)
        stored = count(b)
        results["fresh_import_128"] = {"objects_per_s": rate128, "stored": stored, "cores": cores128, "waited_s": waited}
        results["revectorize_over_fresh_import"] = (n / revec_s) / rate128
        log(f"\n  fresh server at 128 dimensions (waited {waited:.0f} s for quiet): imported {n:,} objects at {rate128:,.0f} objects/s (stored {stored:,}; {cores_text(cores128)})")
        log(f"  re-vectorization / fresh import = {n / revec_s:,.0f} / {rate128:,.0f} = {results['revectorize_over_fresh_import']:.2f}x")
        time.sleep(1.0)

        log("\n== c. POST /v1/config/reload after an in-place edit (server B, watcher off) ==")
        post_ms: list[float] = []
        meter = Meter(b)
        for rep in range(args.reps):
            text = config(f"WordNet glosses (post {rep})", 1.2, 128, watch=False) if rep % 2 == 0 else config(f"WordNet glosses (post {rep})", round(1.3 + 0.01 * rep, 2), 128, watch=False)
            write(path_b, text)
            t0 = time.perf_counter()
            response = b.client.post("/v1/config/reload")
            post_ms.append(1000 * (time.perf_counter() - t0))
            body = response.json()
            if response.status_code != 200 or body.get("result") != "applied":
                raise RuntimeError(f"POST /v1/config/reload: {response.status_code} {body}")
        unchanged_ms: list[float] = []
        for _ in range(args.reps):
            t0 = time.perf_counter()
            response = b.client.post("/v1/config/reload")
            unchanged_ms.append(1000 * (time.perf_counter() - t0))
            if response.json().get("result") != "unchanged":
                raise RuntimeError(f"expected unchanged: {response.json()}")
        status_ms: list[float] = []
        for _ in range(50):
            t0 = time.perf_counter()
            b.status()
            status_ms.append(1000 * (time.perf_counter() - t0))
        results["post_reload_in_place"] = {**percentiles(post_ms), "samples_ms": post_ms}  # the first is the first apply after start
        results["post_reload_unchanged"] = percentiles(unchanged_ms)
        results["get_status"] = percentiles(status_ms)
        results["post_reload_cores"] = meter.read()
        log(f"  in-place change applied: {fmt_p(results['post_reload_in_place'])}")
        log(f"  nothing changed:         {fmt_p(results['post_reload_unchanged'])}")
        log(f"  (GET /v1/config/status alone: {fmt_p(results['get_status'])}; {cores_text(results['post_reload_cores'])})")
        b.stop()
        servers.remove(b)

        if not args.skip_provider:
            results["provider"] = provider_phase(loaded[: args.provider_n], args.provider_latency, args.quiet_wait, work)
    finally:
        for server in servers:
            server.stop()
        shutil.rmtree(work, ignore_errors=True)

    elapsed = time.perf_counter() - began
    results["server_log_issues"] = LOG_ISSUES
    log(f"\nserver logs: {len(LOG_ISSUES)} warning/error lines" + "".join(f"\n  {ln}" for ln in LOG_ISSUES[:10]))
    w = results["watch_in_place"]
    rows = [
        ("in-place edit, file write -> applied (watcher, observed)", f"p50 {w['observed']['p50_ms']:.0f} ms / p90 {w['observed']['p90_ms']:.0f} ms / max {w['observed']['max_ms']:.0f} ms", f"{args.reps} edits; debounce {DEBOUNCE_MS} ms, step {STEP_MS} ms; poll {args.poll_ms:g} ms"),
        ("in-place edit, file write -> lastReload.at (server stamp)", f"p50 {w['server_stamp']['p50_ms']:.0f} ms / p90 {w['server_stamp']['p90_ms']:.0f} ms / max {w['server_stamp']['max_ms']:.0f} ms", "same edits, no poll granularity"),
        ("POST /v1/config/reload, in-place change", f"p50 {results['post_reload_in_place']['p50_ms']:.1f} ms / p90 {results['post_reload_in_place']['p90_ms']:.1f} ms / max {results['post_reload_in_place']['max_ms']:.1f} ms", "watcher off"),
        ("POST /v1/config/reload, nothing changed", f"p50 {results['post_reload_unchanged']['p50_ms']:.1f} ms / p90 {results['post_reload_unchanged']['p90_ms']:.1f} ms / max {results['post_reload_unchanged']['max_ms']:.1f} ms", ""),
        ("import at 256 dims (server A)", f"{results['import_256_objects_per_s']:,.0f} objects/s", f"{n:,} objects, batches of {IMPORT_BATCH}, one client"),
        ("re-vectorization 256 -> 128 (write -> done)", f"{results['revectorize']['objects_per_s']:,.0f} objects/s ({results['revectorize']['seconds']:.1f} s)", f"embedding + staging {results['revectorize']['embedded_s'] or 0:.1f} s, index build + swap {results['revectorize']['seconds'] - (results['revectorize']['embedded_s'] or 0):.1f} s; other load {results['revectorize']['cores']['other_cores']:.2f} cores"),
        ("fresh import at 128 dims (server B)", f"{results['fresh_import_128']['objects_per_s']:,.0f} objects/s", f"{n:,} objects, batches of {IMPORT_BATCH}, one client; other load {results['fresh_import_128']['cores']['other_cores']:.2f} cores"),
        ("re-vectorization / fresh import", f"{results['revectorize_over_fresh_import']:.2f}x", ""),
    ]
    if "provider" in results:
        pr = results["provider"]

        def prow(m: dict[str, Any]) -> str:
            return f"max {m['in_flight_max']} in flight, {m['provider_requests']} requests; cores: fake {m['fake_cores']:.2f}, server {m['server_cores']:.2f}, other {m['other_cores']:.2f}"

        rv = pr["revectorize"]
        rows += [
            ("provider bound: maxConcurrency x batchSize / latency", f"{pr['bound_items_per_s']:,.0f} items/s", f"{PROVIDER_CONCURRENCY} x {PROVIDER_BATCH} / {pr['latency_s'] * 1000:.0f} ms (Jina fake, own process)"),
            ("provider: import at 256 dims", f"{pr['import_256']['objects_per_s']:,.0f} objects/s ({pr['import_256']['of_bound']:.1%} of bound)", f"{pr['n']:,} objects, batches of {IMPORT_BATCH}, one client; {prow(pr['import_256'])}"),
            ("provider: re-vectorization 256 -> 128 (write -> done)", f"{rv['objects_per_s']:,.0f} objects/s ({rv['of_bound']:.1%} of bound; {rv['seconds']:.1f} s)", f"embedding + staging {rv['embedded_s'] or 0:.1f} s, index build + swap {rv['seconds'] - (rv['embedded_s'] or 0):.1f} s; {prow(rv)}"),
            ("provider: fresh import at 128 dims (empty data dir)", f"{pr['fresh_import_128']['objects_per_s']:,.0f} objects/s ({pr['fresh_import_128']['of_bound']:.1%} of bound)", prow(pr["fresh_import_128"])),
            ("provider: re-vectorization / fresh import", f"{pr['revectorize_over_fresh_import']:.2f}x", ""),
        ]
    extra = f"; provider rows: {results['provider']['n']:,} objects, text2vec-jinaai on the Jina fake" if "provider" in results else ""
    log(f"\n== results: {n:,} objects, text2vec-hash + hnsw{extra} ({elapsed / 60:.1f} min) ==")
    width = max(len(r[0]) for r in rows)
    width2 = max(len(r[1]) for r in rows)
    for what, value, note in rows:
        log(f"{what.ljust(width)}  {value.ljust(width2)}  {note}")
    results.update(
        command=" ".join([Path(sys.executable).name, *sys.argv]),
        elapsed_s=elapsed,
        environment=env,
        loadavg_at_end=" ".join(f"{x:.2f}" for x in os.getloadavg()),
        table=[{"what": r[0], "value": r[1], "note": r[2]} for r in rows],
    )
    args.out.write_text(json.dumps(results, indent=2))
    log(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
