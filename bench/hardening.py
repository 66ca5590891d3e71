#!/usr/bin/env python3
"""Hardening benchmark (issue #13): does one hostile client stall the server for everyone else?

    .venv/bin/python bench/hardening.py            # 20,000 WordNet glosses, 30 s of load
    .venv/bin/python bench/hardening.py --quick    # 5,000 objects, 12 s of load

A real searchd (``searchd serve``) with its default ``server.limits`` (or ``--limits``), started with an open-file soft
limit of ``--server-nofile`` (1,024, the usual default; the hard limit is left as it is) on a config with one
collection ``Gloss`` (text, lemma; vector ``v``: 384 dimensions brought by the client, hnsw cosine).
It imports ``--n`` objects of /work/shared/data/wordnet-minilm (batches of 500), then for ``--duration``
seconds runs, all at once:

* the normal load: 8 client processes, each with one keep-alive connection, sending nearVector queries
  (``limit: 10``, ``_additional { id distance }``, the data set's query vectors inline) back to back;
  a request fails on any status but 200 or a GraphQL ``errors`` member;
* a health probe: GET /v1/.well-known/live at 20/s from its own keep-alive connection (its latencies give
  p50/p99/max, the target), and the same at 2/s on a new connection each time (can new clients get in?);
* the attacks, each from its own thread, starting 2 s into the load (none with ``--only-load``, the baseline):
  - the 10,000-alias document: ``query($v: Vector!) { Get { a0: Gloss(nearVector: {vector: $v}, limit: 10)
    { lemma _additional { id distance } } a1: ... } }`` (about 1.1 MB), sent ``--attack-repeats`` times;
  - a 50,000-operand filter: ``where: {operator: Or, operands: [50,000 x {path: ["lemma"], operator: Equal,
    valueText: ...}]}``, as a literal in the document and as a variable, each ``--attack-repeats`` times;
  - 40 aliased Aggregates over every Gloss (``lemma { topOccurrences }``: each reads every object), and a cheap
    query whose 20 aliases repeat 20 fields of 100 stored 50 KB texts (collection ``Page``; about 2 GB of JSON),
    the two the independent check of #13 found admitted, each ``--attack-repeats`` times;
  - 1,100 idle connections (``--idle``), opened from a child process with its own raised open-file limit:
    half send nothing, half send a request line and one header but never finish; they are held until the
    load ends.  Reported: how many opened, and how many the server had closed by the end.

Reported (printed, and written as JSON to ``--out``): the probe's p50/p99/max and failures, the load's
requests, failures and QPS, each attack's statuses and latencies, the idle connections, and the number of
tracebacks in the server log.  Targets: probe p99 <= 50 ms and no failed normal request.
"""

from __future__ import annotations

import os

# Single-threaded numerics here and in every process started from here (as bench/common.py sets): before numpy loads.
os.environ.update({"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "NUMEXPR_NUM_THREADS": "1"})

import argparse
import contextlib
import json
import multiprocessing
import resource
import shutil
import socket
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Sequence
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import httpx

# bench/ is sys.path[0] when this runs as a script (and in the forked client processes).
from common import DEFAULT_DATA, ClientJob, ClientResult, Server, free_port, git_state, load_dataset, log, percentile_ms, run_client

CLIENTS = 8
PROBE_HZ = 20.0
BATCH = 500
ALIASES = 10_000
OPERANDS = 50_000
AGGREGATES = 40
PAGES, PAGE_BYTES, PAGE_FIELDS = 100, 50_000, 20  # 20 aliases x 20 fields x 100 pages x 50 KB
TARGET_PROBE_P99_MS = 50.0

SERVE = "import resource, sys; from searchd.cli import main; soft = int(sys.argv[1]); hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]; "
SERVE += "resource.setrlimit(resource.RLIMIT_NOFILE, (min(soft, hard), hard)); sys.exit(main(sys.argv[2:]))"


def config(limits: dict[str, Any]) -> dict[str, Any]:
    return {
        "server": {"host": "127.0.0.1", "reload": {"watch": False}, **({"limits": limits} if limits else {})},
        "collections": [
            {
                "name": "Gloss",
                "properties": [{"name": "text", "type": "TEXT"}, {"name": "lemma", "type": "TEXT"}],
                "vectors": {"v": {"vectorizer": {"module": "none", "dimensions": 384}, "index": {"type": "hnsw", "distance": "cosine"}}},
            },
            {"name": "Page", "properties": [{"name": "body", "type": "TEXT", "indexSearchable": False}]},
        ],
    }


def graphql_body(query: str, variables: dict[str, Any] | None = None) -> bytes:
    return json.dumps({"query": query, **({"variables": variables} if variables else {})}).encode()


def near_body(vector_text: str) -> bytes:
    return graphql_body("{ Get { Gloss(nearVector: {vector: " + vector_text + "}, limit: 10) { _additional { id distance } } } }")


def alias_document(vector: list[float]) -> bytes:
    aliases = " ".join(f"a{i}: Gloss(nearVector: {{vector: $v}}, limit: 10) {{ lemma _additional {{ id distance }} }}" for i in range(ALIASES))
    return graphql_body("query($v: Vector!) { Get { " + aliases + " } }", {"v": vector})


def cheap_but_large_documents() -> dict[str, bytes]:
    """What the cost model admitted before it counted what an Aggregate reads and the response's bytes."""
    aggregates = " ".join(f"a{i}: Gloss {{ lemma {{ topOccurrences(limit: 3) {{ value }} }} }}" for i in range(AGGREGATES))
    fields = " ".join(f"f{j}: body" for j in range(PAGE_FIELDS))
    pages = " ".join(f"a{i}: Page(limit: {PAGES}) {{ {fields} }}" for i in range(PAGE_FIELDS))
    return {f"aggregates-{AGGREGATES}": graphql_body("{ Aggregate { " + aggregates + " } }"), "response-2GB": graphql_body("{ Get { " + pages + " } }")}


def operand_documents() -> dict[str, bytes]:
    operands = [{"path": ["lemma"], "operator": "Equal", "valueText": f"word{i}"} for i in range(OPERANDS)]
    literal = ", ".join(f'{{path: ["lemma"], operator: Equal, valueText: "word{i}"}}' for i in range(OPERANDS))
    return {
        "filter-literal": graphql_body("{ Get { Gloss(where: {operator: Or, operands: [" + literal + "]}, limit: 10) { lemma } } }"),
        "filter-variable": graphql_body("query($w: WhereInpObj) { Get { Gloss(where: $w, limit: 10) { lemma } } }", {"w": {"operator": "Or", "operands": operands}}),
    }


# -- the pieces that run during the load ------------------------------------------------------------


class Prober(threading.Thread):
    """GET the live probe at ``hz`` until stopped: over one keep-alive connection, or each on a new one (``fresh``)."""

    def __init__(self, url: str, hz: float = PROBE_HZ, fresh: bool = False) -> None:
        super().__init__(daemon=True)
        self.url, self.hz, self.fresh = url, hz, fresh
        self.latencies: list[float] = []
        self.sent: list[float] = []  # time.time() of each probe
        self.outcomes: list[bool] = []
        self.failures = 0
        self.first_failure = ""
        self.stop = threading.Event()

    def run(self) -> None:
        with httpx.Client(timeout=10.0, trust_env=False, limits=httpx.Limits(max_keepalive_connections=0 if self.fresh else None)) as client:
            while not self.stop.is_set():
                t = time.perf_counter()
                self.sent.append(time.time())
                try:
                    response = client.get(self.url)
                    ok = response.status_code == 200
                    problem = f"{response.status_code}"
                except httpx.HTTPError as exc:
                    ok, problem = False, f"{type(exc).__name__}: {exc}"
                self.latencies.append(time.perf_counter() - t)
                self.outcomes.append(ok)
                if not ok:
                    self.failures += 1
                    self.first_failure = self.first_failure or problem
                self.stop.wait(max(0.0, 1.0 / self.hz - (time.perf_counter() - t)))


class Attack(threading.Thread):
    """POST one hostile body ``repeats`` times (one at a time, each on a new connection), recording status and latency."""

    def __init__(self, url: str, name: str, body: bytes, repeats: int, start_at: float) -> None:
        super().__init__(daemon=True)
        self.url, self.name, self.body, self.repeats, self.start_at = url, name, body, repeats, start_at
        self.statuses: Counter[str] = Counter()
        self.latencies: list[float] = []
        self.message = ""

    def run(self) -> None:
        time.sleep(max(0.0, self.start_at - time.time()))
        for _ in range(self.repeats):
            t = time.perf_counter()
            try:
                with httpx.Client(timeout=120.0, trust_env=False) as client:
                    response = client.post(self.url + "/v1/graphql", content=self.body, headers={"Content-Type": "application/json"})
                self.statuses[str(response.status_code)] += 1
                self.message = self.message or response.text[:300]
            except httpx.HTTPError as exc:
                self.statuses[type(exc).__name__] += 1
            self.latencies.append(time.perf_counter() - t)

    def report(self) -> dict[str, Any]:
        return {
            "bytes": len(self.body),
            "statuses": dict(self.statuses),
            "latency_ms": {"p50": percentile_ms(self.latencies, 50), "max": max(self.latencies) * 1000} if self.latencies else None,
            "answer": self.message,
        }


def hold_idle_connections(port: int, count: int, start_at: float, pipe: Connection) -> None:
    """In a child process (its own open-file limit): open ``count`` connections, report, hold them until told, report again."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, count + 256)), hard))
    time.sleep(max(0.0, start_at - time.time()))
    sockets: list[socket.socket] = []
    refused: Counter[str] = Counter()
    for i in range(count):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(5.0)
        try:
            s.connect(("127.0.0.1", port))
            if i % 2:
                s.sendall(b"GET /v1/meta HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # never finished
            sockets.append(s)
        except OSError as exc:
            refused[type(exc).__name__] += 1
            s.close()
    pipe.send({"opened": len(sockets), "failed": dict(refused)})
    pipe.recv()  # the load is over
    closed = 0
    for s in sockets:
        s.setblocking(False)
        try:
            closed += s.recv(65536) == b""  # the server hung up (an answer, e.g. a 408, counts as open)
        except BlockingIOError:
            pass
        except OSError:
            closed += 1
        s.close()
    pipe.send({"closed_by_server": closed})


# -- the run ------------------------------------------------------------------------------------------


def start_server(work: Path, nofile: int, limits: dict[str, Any]) -> tuple[Server, str]:
    (work / "searchd.yaml").write_text(json.dumps(config(limits), indent=2))  # JSON is YAML
    port = free_port()
    argv = [sys.executable, "-c", SERVE, str(nofile), "serve", str(work / "searchd.yaml"), "--data", str(work / "data"), "--port", str(port), "--no-access-log", "--log-level", "warning"]
    server = Server("searchd", argv, work / "server.log", cwd=work)
    url = f"http://127.0.0.1:{port}"
    server.wait_http(url + "/v1/.well-known/ready", 300)
    return server, url


def import_objects(url: str, n: int, data: Any) -> float:
    t0 = time.perf_counter()
    with httpx.Client(base_url=url, timeout=300.0, trust_env=False) as client:
        for start in range(0, n, BATCH):
            rows = range(start, min(start + BATCH, n))
            objects = ",".join(
                f'{{"class":"Gloss","id":"{data.uuids[r]}","properties":{json.dumps({"text": data.entries[r]["gloss"], "lemma": data.entries[r]["lemmas"][0]})},"vector":{data.vec_text[r]}}}'
                for r in rows
            )
            response = client.post("/v1/batch/objects", content=('{"objects":[' + objects + "]}").encode(), headers={"Content-Type": "application/json"})
            if response.status_code != 200 or any(o.get("result", {}).get("status") != "SUCCESS" for o in response.json()):
                raise RuntimeError(f"batch import answered {response.status_code}: {response.text[:300]}")
        pages = [{"class": "Page", "properties": {"body": (f"page {i} " + "lorem ipsum " * PAGE_BYTES)[:PAGE_BYTES]}} for i in range(PAGES)]
        response = client.post("/v1/batch/objects", json={"objects": pages})
        if response.status_code != 200:
            raise RuntimeError(f"the pages' import answered {response.status_code}: {response.text[:300]}")
    return time.perf_counter() - t0


def run(args: argparse.Namespace) -> dict[str, Any]:
    data = load_dataset(Path(args.data), args.n, args.queries)
    work = Path(tempfile.mkdtemp(prefix="searchd-hardening-"))
    server, url = start_server(work, args.server_nofile, json.loads(args.limits))
    try:
        seconds = import_objects(url, args.n, data)
        log(f"imported {args.n} objects in {seconds:.1f} s")
        start_at = time.time() + 2.0  # the load starts 2 s from now; the attacks 2 s later, the idle connections halfway
        attacks_at, idle_at = start_at + 2.0, start_at + args.duration / 2
        bodies = {} if args.only_load else {"aliases-10000": alias_document(data.queries[0].tolist()), **operand_documents(), **cheap_but_large_documents()}
        attacks = [Attack(url, name, body, args.attack_repeats, attacks_at) for name, body in bodies.items()]
        near = [("POST", "/v1/graphql", near_body(text)) for text in data.query_text]
        step = max(1, len(near) // CLIENTS)
        jobs = [ClientJob("http", url, near, c * step, start_at, args.duration, 10**9, b'"errors"') for c in range(CLIENTS)]
        parent, child = multiprocessing.Pipe()
        idle_count = 0 if args.only_load else args.idle
        idle = multiprocessing.Process(target=hold_idle_connections, args=(int(url.rsplit(":", 1)[1]), idle_count, idle_at, child), daemon=True)
        idle.start()
        with multiprocessing.Pool(CLIENTS) as pool:
            pending = pool.map_async(run_client, jobs)
            time.sleep(max(0.0, start_at - time.time()))
            prober = Prober(url + "/v1/.well-known/live")
            fresh = Prober(url + "/v1/.well-known/live", hz=2.0, fresh=True)
            prober.start()
            fresh.start()
            for attack in attacks:
                attack.start()
            results: list[ClientResult] = pending.get(timeout=args.duration + 300)
            for probing in (prober, fresh):
                probing.stop.set()
                probing.join(30)
        opened = parent.recv() if parent.poll(60) else {"opened": None}
        parent.send("done")
        closed = parent.recv() if parent.poll(60) else {"closed_by_server": None}
        idle.join(30)
        for attack in attacks:
            attack.join(300)
        latencies = [x for r in results for x in r.latencies]
        elapsed = max(r.ended for r in results) - min(r.began for r in results)
        failed = sum(r.errors for r in results)
        log_text = (work / "server.log").read_text(errors="replace")
        report = {
            "git": git_state(),
            "settings": {"only_load": args.only_load, "limits": json.loads(args.limits), "n": args.n, "duration_s": args.duration, "clients": CLIENTS, "idle_connections": args.idle, "server_nofile": args.server_nofile, "attack_repeats": args.attack_repeats},
            "probe": {
                "count": len(prober.latencies),
                "p50_ms": percentile_ms(prober.latencies, 50),
                "p99_ms": percentile_ms(prober.latencies, 99),
                "max_ms": max(prober.latencies) * 1000 if prober.latencies else None,
                "failures": prober.failures,
                "first_failure": prober.first_failure,
                # The slowest probes, by when they were sent (seconds since the load began): which part of the run stalled.
                "slowest": [
                    {"at_s": round(at - start_at, 2), "ms": round(latency * 1000, 1)}
                    for latency, at in sorted(zip(prober.latencies, prober.sent), reverse=True)[:8]
                ],
                "attacks_at_s": round(attacks_at - start_at, 2),
                "idle_at_s": round(idle_at - start_at, 2),
            },
            "fresh_connection_probe": {
                "count": len(fresh.latencies),
                "p99_ms": percentile_ms(fresh.latencies, 99),
                "failures": fresh.failures,
                "failures_after_idle": sum(1 for at, ok in zip(fresh.sent, fresh.outcomes) if not ok and at >= idle_at),
                "first_failure": fresh.first_failure,
            },
            "load": {
                "requests": len(latencies),
                "failed": failed,
                "first_failure": next((r.first_error for r in results if r.first_error), ""),
                "qps": len(latencies) / elapsed if elapsed else None,
                "p50_ms": percentile_ms(latencies, 50),
                "p99_ms": percentile_ms(latencies, 99),
            },
            "attacks": {attack.name: attack.report() for attack in attacks},
            "idle_connections": {**opened, **closed},
            "server_log": {"bytes": len(log_text.encode()), "tracebacks": log_text.count("Traceback")},
        }
        report["targets"] = {
            "probe_p99_ms<=50": report["probe"]["p99_ms"] <= TARGET_PROBE_P99_MS and prober.failures == 0,
            "no_failed_normal_requests": failed == 0,
        }
        return report
    finally:
        server.stop(timeout_s=60)
        shutil.rmtree(work, ignore_errors=True)


def print_report(report: dict[str, Any]) -> None:
    probe, load = report["probe"], report["load"]
    log(f"probe: {probe['count']} GET /v1/.well-known/live, p50 {probe['p50_ms']:.1f} ms, p99 {probe['p99_ms']:.1f} ms, max {probe['max_ms']:.1f} ms, {probe['failures']} failed {probe['first_failure']}")
    slowest = ", ".join(f"{p['at_s']}: {p['ms']}" for p in probe["slowest"])
    log(f"slowest probes (s into the load: ms): {slowest}; attacks at {probe['attacks_at_s']} s, idle connections at {probe['idle_at_s']} s")
    fresh = report["fresh_connection_probe"]
    log(f"probe on a new connection each time (2/s): {fresh['count']}, p99 {fresh['p99_ms']:.1f} ms, {fresh['failures']} failed ({fresh['failures_after_idle']} after the idle connections opened) {fresh['first_failure'][:120]}")
    log(f"load: {load['requests']} nearVector queries from {CLIENTS} clients, {load['qps']:.0f} QPS, p50 {load['p50_ms']:.1f} ms, p99 {load['p99_ms']:.1f} ms, {load['failed']} failed {load['first_failure'][:200]}")
    for name, attack in report["attacks"].items():
        latency = attack["latency_ms"] or {}
        log(f"attack {name} ({attack['bytes']:,} bytes): {attack['statuses']}, p50 {latency.get('p50', float('nan')):.0f} ms, max {latency.get('max', float('nan')):.0f} ms: {attack['answer'][:160]}")
    idle = report["idle_connections"]
    log(f"idle connections: {idle}")
    log(f"server log: {report['server_log']['bytes']:,} bytes, {report['server_log']['tracebacks']} tracebacks")
    for target, met in report["targets"].items():
        log(f"target {target}: {'met' if met else 'NOT met'}")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="the WordNet/MiniLM data set directory")
    parser.add_argument("--n", type=int, default=20_000, help="objects to import")
    parser.add_argument("--queries", type=int, default=1_000, help="query vectors the load cycles through")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds of load")
    parser.add_argument("--idle", type=int, default=1_100, help="idle connections to hold open")
    parser.add_argument("--attack-repeats", type=int, default=3, help="times each hostile document is sent")
    parser.add_argument("--server-nofile", type=int, default=1_024, help="the server's open-file soft limit")
    parser.add_argument("--quick", action="store_true", help="5,000 objects and 12 s of load")
    parser.add_argument("--limits", default="{}", help='server.limits for the server, as JSON (default: none, so the defaults), e.g. \'{"maxConcurrentQueries": 4}\'')
    parser.add_argument("--only-load", action="store_true", help="the baseline: the load and the probe, no attacks")
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results-hardening.json"))
    args = parser.parse_args(argv)
    if args.quick:
        args.n, args.duration = 5_000, 12.0
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        report = run(args)
    finally:
        Server.stop_all()
    print_report(report)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    log(f"wrote {args.out}")
    return 0 if all(report["targets"].values()) else 1


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
