#!/usr/bin/env python3
"""Config reload benchmark (issue #6): time from file write to applied, and re-vectorization throughput.

    bench/.venv/bin/python bench/reload.py            # full run: 20,000 WordNet glosses (~2-3 min on 2 cores)
    bench/.venv/bin/python bench/reload.py --quick    # smoke run: 3,000 objects, 5 repetitions

A real ``python -m searchd serve`` subprocess on a config with one collection (``text`` TEXT, ``pos`` TEXT
field-tokenized; vector ``v``: text2vec-hash, 256 dimensions, hnsw cosine with the defaults), loaded with N
objects ("<first lemma>: <gloss>" of the WordNet entries, /work/shared/data/wordnet-minilm) over
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

Prints a table; writes bench/results-reload.json.
"""

from __future__ import annotations

import os
import sys

if sys.path and os.path.realpath(sys.path[0] or ".") == os.path.dirname(os.path.realpath(__file__)):
    del sys.path[0]

THREAD_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "NUMEXPR_NUM_THREADS": "1"}
os.environ.update(THREAD_ENV)

import argparse
import json
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

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DATA = Path(os.environ.get("SEARCHD_BENCH_DATA", "/work/shared/data/wordnet-minilm"))
IMPORT_BATCH = 500
DEBOUNCE_MS, STEP_MS = 200, 25  # searchd/reload/manager.py ConfigManager._watch


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


class Server:
    def __init__(self, config_path: Path, data: Path) -> None:
        self.port = free_port()
        self.log_path = config_path.parent / f"server-{self.port}.log"
        self._log = open(self.log_path, "w")  # noqa: SIM115 - closed by stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "searchd", "serve", str(config_path), "--data", str(data), "--port", str(self.port), "--log-level", "warning"],
            stdout=self._log,
            stderr=self._log,
            env={**os.environ, **THREAD_ENV},
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


def load(n: int) -> list[dict[str, Any]]:
    out = []
    with open(DATA / "corpus.jsonl", encoding="utf-8") as handle:
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
            raise RuntimeError(f"import failed: {failed[0]}")
    return n / (time.perf_counter() - started), meter.read()


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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=20_000, help="objects (default 20,000)")
    parser.add_argument("--reps", type=int, default=20, help="in-place edits through the watcher, and POST reloads (default 20)")
    parser.add_argument("--poll-ms", type=float, default=5.0, help="status poll interval while waiting for a reload (default 5 ms)")
    parser.add_argument("--quick", action="store_true", help="3,000 objects, 5 repetitions")
    parser.add_argument("--quiet-wait", type=float, default=20.0, help="before each throughput phase, wait up to this long for other work on the machine to stop (default 20 s)")
    parser.add_argument("--out", type=Path, default=HERE / "results-reload.json")
    args = parser.parse_args()
    if args.quick:
        args.n, args.reps = 3000, 5
    poll = args.poll_ms / 1000

    import searchd

    env = {"nproc": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(), "loadavg_at_start": " ".join(f"{x:.2f}" for x in os.getloadavg()), "searchd": searchd.__file__}
    log(f"searchd {searchd.__file__}; {env['nproc']} cores, Python {env['python']}, load average {env['loadavg_at_start']}")
    began = time.perf_counter()
    objects = load(args.n)
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
        state = None
        embedded_s = None  # when every object had been embedded and staged (then the new index is built)
        while True:
            status = a.status()
            rebuilds = [r for r in status["rebuilds"] if r["collection"] == "Gloss" and r["target"] == "v"]
            if rebuilds:
                state = rebuilds[-1]
                if embedded_s is None and state["done"] >= state["total"]:
                    embedded_s = time.perf_counter() - t0
                if state["state"] in ("done", "failed", "cancelled"):
                    break
            if time.perf_counter() - t0 > 600:
                raise RuntimeError("re-vectorization did not finish within 600 s")
            time.sleep(0.02)
        revec_s = time.perf_counter() - t0
        revec_cores = meter.read()
        if state is None or state["state"] != "done":
            raise RuntimeError(f"re-vectorization ended {state}")
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
        results["post_reload_in_place"] = percentiles(post_ms)
        results["post_reload_unchanged"] = percentiles(unchanged_ms)
        results["get_status"] = percentiles(status_ms)
        results["post_reload_cores"] = meter.read()
        log(f"  in-place change applied: {fmt_p(results['post_reload_in_place'])}")
        log(f"  nothing changed:         {fmt_p(results['post_reload_unchanged'])}")
        log(f"  (GET /v1/config/status alone: {fmt_p(results['get_status'])}; {cores_text(results['post_reload_cores'])})")
    finally:
        for server in servers:
            server.stop()
        shutil.rmtree(work, ignore_errors=True)

    elapsed = time.perf_counter() - began
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
    log(f"\n== results: {n:,} objects, text2vec-hash + hnsw ({elapsed / 60:.1f} min) ==")
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
