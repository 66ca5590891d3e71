"""Shared helpers for the benchmarks in bench/: data, server processes, CPU accounting, load clients.

Importing this module sets OMP/OPENBLAS/MKL/NUMEXPR threads to 1 for this process and every process it
starts, so import it before numpy.  Used by bench/engine.py; it has no side effects beyond that.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.metadata
import json
import math
import os
import platform
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, Self

# Single-threaded numerics here and in every process started from here: set before numpy loads.
THREAD_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "NUMEXPR_NUM_THREADS": "1"}
os.environ.update(THREAD_ENV)

import numpy as np  # after the thread settings
from benchdata import bench_data, default_data_dir  # bench/ is on sys.path: engine.py runs as a script

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
VENV_BIN = Path(sys.executable).parent
DEFAULT_DATA = default_data_dir()  # $SEARCHD_BENCH_DATA, else ../shared/data/wordnet-minilm beside the repository
DIM = 384
K = 10
CLOCK_TICK = os.sysconf("SC_CLK_TCK")
WORDS = re.compile(r"[^\W_]+")
ID_NAMESPACE = uuid.NAMESPACE_URL


def log(message: str) -> None:
    print(message, flush=True)


# -- data ----------------------------------------------------------------------------


def vector_json(vector: np.ndarray) -> str:
    """JSON text of a float32 vector with 9 significant digits (round-trips float32 exactly)."""
    return "[" + ",".join(map("{:.9g}".format, vector.tolist())) + "]"


def exact_top(queries: np.ndarray, corpus: np.ndarray, k: int = K, allowed: np.ndarray | None = None) -> np.ndarray:
    """Exact cosine top-k corpus rows per query (unit vectors: dot product), optionally among allowed rows only."""
    out = np.empty((len(queries), k), dtype=np.int64)
    rows = np.arange(len(corpus)) if allowed is None else np.flatnonzero(allowed)
    sub = corpus[rows]
    for start in range(0, len(queries), 256):
        scores = queries[start : start + 256] @ sub.T
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1)
        out[start : start + 256] = rows[np.take_along_axis(part, order, axis=1)]
    return out


@dataclasses.dataclass
class Dataset:
    """The first n corpus rows and nq queries of the WordNet/MiniLM data set, with exact top-10 ground truth."""

    corpus: np.ndarray  # n x 384 float32, unit length
    queries: np.ndarray  # nq x 384 float32
    truth: np.ndarray  # nq x 10 corpus rows
    entries: list[dict[str, Any]]
    query_entries: list[dict[str, Any]]
    uuids: list[str]
    truth_source: str
    _vec_text: list[str] | None = None
    _query_text: list[str] | None = None

    @property
    def n(self) -> int:
        return len(self.corpus)

    @property
    def nq(self) -> int:
        return len(self.queries)

    @property
    def row_of(self) -> dict[str, int]:
        return {u: i for i, u in enumerate(self.uuids)}

    @property
    def vec_text(self) -> list[str]:
        if self._vec_text is None:
            self._vec_text = [vector_json(v) for v in self.corpus]
        return self._vec_text

    @property
    def query_text(self) -> list[str]:
        if self._query_text is None:
            self._query_text = [vector_json(v) for v in self.queries]
        return self._query_text

    def keyword_query(self, i: int, words: int = 6) -> str:
        """What a user would type: the first words of query entry i's gloss."""
        return " ".join(WORDS.findall(self.query_entries[i]["gloss"])[:words])


def read_jsonl(path: Path, count: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if len(out) == count:
                break
            out.append(json.loads(line))
    return out


def load_dataset(directory: Path, n: int, nq: int) -> Dataset:
    bench_data(directory)
    corpus_all = np.load(directory / "corpus.f16.npy", mmap_mode="r")
    queries_all = np.load(directory / "queries.f16.npy")
    if not 1 <= n <= len(corpus_all) or not 1 <= nq <= len(queries_all):
        raise SystemExit(f"n must be in 1..{len(corpus_all)} and queries in 1..{len(queries_all)}")
    corpus = np.ascontiguousarray(corpus_all[:n], dtype=np.float32)
    queries = np.ascontiguousarray(queries_all[:nq], dtype=np.float32)
    if n == len(corpus_all):
        truth = np.load(directory / "groundtruth.top100.i32.npy")[:nq, :K].astype(np.int64)
        source = "groundtruth.top100.i32.npy"
    else:
        truth = exact_top(queries, corpus)
        source = "exact top-10 recomputed with numpy over the first n rows"
    entries = read_jsonl(directory / "corpus.jsonl", n)
    uuids = [str(uuid.uuid5(ID_NAMESPACE, f"wordnet:{e['id']}")) for e in entries]
    return Dataset(corpus, queries, truth, entries, read_jsonl(directory / "queries.jsonl", nq), uuids, source)


def recall_at_k(found: Sequence[Sequence[int]], truth: np.ndarray, k: int = K) -> float:
    if not found:
        return 0.0
    return sum(len(set(rows[:k]) & set(truth[i, :k].tolist())) for i, rows in enumerate(found)) / (k * len(found))


# -- statistics ------------------------------------------------------------------------


def percentile_ms(seconds: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(seconds) * 1000.0, q)) if len(seconds) else float("nan")


def median(values: Sequence[float]) -> float | None:
    clean = [v for v in values if v is not None and not math.isnan(v)]
    return float(np.median(clean)) if clean else None


# -- CPU and memory of processes ---------------------------------------------------------


def system_busy_s() -> float:
    """CPU seconds the whole machine spent busy (not idle or iowait) since boot."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    except (OSError, ValueError):
        return 0.0
    return (sum(fields) - fields[3] - (fields[4] if len(fields) > 4 else 0)) / CLOCK_TICK


def _stat_fields(pid: int) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def process_cpu_s(pid: int) -> float:
    """utime + stime of one process (threads included)."""
    fields = _stat_fields(pid)
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICK if fields else 0.0


def tree_cpu_s(pid: int) -> float:
    """utime + stime of a process and its live descendants, plus what its reaped children used (cutime + cstime).

    PostgreSQL serves each connection from a child of the postmaster; chroma and searchd are one process.
    """
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat_fields(int(entry.name))
            if fields:
                children.setdefault(int(fields[1]), []).append(int(entry.name))
    total = 0.0
    stack = [pid]
    while stack:
        current = stack.pop()
        fields = _stat_fields(current)
        if fields:
            total += sum(int(x) for x in fields[11:15]) / CLOCK_TICK
        stack.extend(children.get(current, []))
    return total


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        return None
    return None


def disk_bytes(path: Path) -> int:
    """Allocated bytes under path (what du counts)."""
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, name)).st_blocks * 512
    return total


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return ""


# -- server processes ----------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """A server subprocess in its own session, logging to a file; every one started is stopped by stop_all()."""

    running: ClassVar[list[Server]] = []

    def __init__(self, name: str, argv: list[str], log_path: Path, env: dict[str, str] | None = None, cwd: Path | None = None) -> None:
        self.name = name
        self.log_path = log_path
        self._log = open(log_path, "ab")  # noqa: SIM115 - closed when the server stops
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(
            argv,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **THREAD_ENV, **(env or {})},
            cwd=cwd,
            start_new_session=True,
        )
        Server.running.append(self)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def cpu_s(self) -> float:
        return tree_cpu_s(self.pid)

    def rss_mb(self) -> float | None:
        return rss_mb(self.pid)

    def settled_rss_mb(self, max_s: float = 15.0) -> float | None:
        """VmRSS once it holds still: two readings a second apart within 1 MB (bounded by max_s).

        Right after an import a server may not yet have handed its freed buffers back (searchd trims when its
        writes have paused for a second; glibc keeps freed memory otherwise), so a single reading lands on
        either side of that by chance. Every system is measured this way.
        """
        last = self.rss_mb()
        deadline = time.perf_counter() + max_s
        while last is not None and time.perf_counter() < deadline:
            time.sleep(1.0)
            now = self.rss_mb()
            if now is None or abs(now - last) < 1.0:
                return now
            last = now
        return last

    def tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def wait_http(self, url: str, timeout_s: float) -> float:
        """Seconds from process start until GET url answers 200."""
        import httpx

        deadline = time.perf_counter() + timeout_s
        with httpx.Client(timeout=2.0, trust_env=False) as client:
            while time.perf_counter() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"{self.name} exited with code {self.proc.returncode}:\n{self.tail()}")
                with contextlib.suppress(httpx.HTTPError):
                    if client.get(url).status_code == 200:
                        return time.perf_counter() - self.started
                time.sleep(0.02)
        raise RuntimeError(f"{self.name} not ready at {url} after {timeout_s:.0f} s:\n{self.tail()}")

    def settle(self, max_s: float = 60.0, idle_cpu_s: float = 0.03) -> float:
        """Wait (bounded) until the server uses under idle_cpu_s of CPU in a second; seconds waited."""
        start = time.perf_counter()
        last = self.cpu_s()
        while time.perf_counter() - start < max_s:
            time.sleep(1.0)
            now = self.cpu_s()
            if now - last < idle_cpu_s:
                break
            last = now
        return time.perf_counter() - start

    def kill9(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(30)
        self._forget()

    def stop(self, timeout_s: float = 120.0) -> float:
        """SIGTERM (searchd saves its indexes), SIGKILL after timeout_s; seconds taken."""
        start = time.perf_counter()
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                log(f"  {self.name} did not stop in {timeout_s:.0f} s: SIGKILL")
                self.kill9()
        self._forget()
        return time.perf_counter() - start

    def _forget(self) -> None:
        self._log.close()
        if self in Server.running:
            Server.running.remove(self)

    @classmethod
    def stop_all(cls) -> None:
        for server in cls.running[:]:
            with contextlib.suppress(Exception):
                server.stop(timeout_s=20)


# -- searchd source -----------------------------------------------------------------------


def snapshot_searchd(rev: str, into: Path) -> str:
    """Extract searchd/ and schemas/ at a git revision into `into`, so edits in progress cannot leak in; the commit."""
    commit = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--verify", f"{rev}^{{commit}}"], capture_output=True, text=True, check=True
    ).stdout.strip()
    into.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(REPO), "archive", commit, "searchd", "schemas"], capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return commit


def git_state() -> dict[str, Any]:
    info: dict[str, Any] = {}
    with contextlib.suppress(Exception):
        info["head"] = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(REPO), "status", "--porcelain", "--", "searchd"], capture_output=True, text=True, check=True
        ).stdout
        info["searchd_tree_dirty"] = bool(dirty.strip())
    return info


def environment(packages: Sequence[str]) -> dict[str, Any]:
    cpu = ""
    with contextlib.suppress(OSError):
        cpu = next(
            (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")), ""
        )
    versions: dict[str, str | None] = {}
    for name in packages:
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
        "loadavg_at_start": loadavg(),
    }


# -- a lean HTTP client for the timed loops -----------------------------------------------------


class LeanHTTP:
    """One keep-alive HTTP/1.1 connection that sends prebuilt requests and reads Content-Length or chunked answers.

    The load generator must not compete with the server it measures: on this 2-core machine httpx spent about as
    much CPU per request as the servers did, while psycopg (the pgvector client) spends a fraction of that. Every
    HTTP system (searchd, chroma, txtai) is timed through this client, so they pay the same small client cost.
    """

    def __init__(self, base: str, timeout_s: float = 300.0) -> None:
        self._host = base.split("://", 1)[-1].rstrip("/")
        self._timeout_s = timeout_s
        self._connect()

    def _connect(self) -> None:
        host, _, port = self._host.partition(":")
        self._sock = socket.create_connection((host, int(port or 80)), timeout=self._timeout_s)
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._buffer = b""

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        head = f"{method} {path} HTTP/1.1\r\nHost: {self._host}\r\n"
        if body is not None:
            head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        message = head.encode() + b"\r\n" + (body or b"")
        try:
            self._sock.sendall(message)
            status, headers = self._head()
        except (ConnectionError, BrokenPipeError):
            # The server closed the idle keep-alive connection (between two loops): once more on a new one, as httpx does.
            self._sock.close()
            self._connect()
            self._sock.sendall(message)
            status, headers = self._head()
        if headers.get(b"transfer-encoding", b"").lower() == b"chunked":
            return status, self._chunked()
        return status, self._exactly(int(headers.get(b"content-length", b"0")))

    def post(self, path: str, body: bytes) -> bytes:
        status, content = self.request("POST", path, body)
        if status != 200:
            raise RuntimeError(f"POST {path} answered {status}: {content[:300]!r}")
        return content

    def _fill(self) -> None:
        chunk = self._sock.recv(1 << 16)
        if not chunk:
            raise ConnectionError("the server closed the connection")
        self._buffer += chunk

    def _line(self) -> bytes:
        while (end := self._buffer.find(b"\r\n")) < 0:
            self._fill()
        line, self._buffer = self._buffer[:end], self._buffer[end + 2 :]
        return line

    def _exactly(self, size: int) -> bytes:
        while len(self._buffer) < size:
            self._fill()
        out, self._buffer = self._buffer[:size], self._buffer[size:]
        return out

    def _head(self) -> tuple[int, dict[bytes, bytes]]:
        while (end := self._buffer.find(b"\r\n\r\n")) < 0:
            self._fill()
        lines = self._buffer[:end].split(b"\r\n")
        self._buffer = self._buffer[end + 4 :]
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip()
        return int(lines[0].split()[1]), headers

    def _chunked(self) -> bytes:
        parts = []
        while size := int(self._line().split(b";")[0], 16):
            parts.append(self._exactly(size))
            self._line()
        while self._line():  # trailers, up to the blank line
            pass
        return b"".join(parts)


# -- concurrent load clients ------------------------------------------------------------------


@dataclasses.dataclass
class ClientJob:
    """One load client (run in its own process): requests in a loop from start_at for duration_s, at most max_requests.

    kind "http": requests are (method, path, body) against base; "pg": requests are query parameters for sql,
    run as a prepared statement on a psycopg connection to base (a conninfo string) after the setup statements.
    """

    kind: str
    base: str
    requests: list[Any]
    offset: int
    start_at: float  # time.time() at which to start
    duration_s: float
    max_requests: int
    error_marker: bytes | None = None  # an HTTP answer containing this counts as an error (GraphQL "errors")
    sql: str = ""
    setup: tuple[str, ...] = ()


@dataclasses.dataclass
class ClientResult:
    latencies: list[float]
    errors: int
    first_error: str
    began: float  # time.time()
    ended: float
    cpu_s: float  # this client's own CPU over the timed loop


def _wait_until(at: float) -> None:
    delay = at - time.time()
    if delay > 0:
        time.sleep(delay)


def run_client(job: ClientJob) -> ClientResult:
    return _run_pg_client(job) if job.kind == "pg" else _run_http_client(job)


def _run_http_client(job: ClientJob) -> ClientResult:
    latencies: list[float] = []
    errors, first_error = 0, ""
    with LeanHTTP(job.base, timeout_s=60.0) as client:
        for method, path, body in job.requests[job.offset : job.offset + 3]:  # open the keep-alive connection
            client.request(method, path, body)
        _wait_until(job.start_at)
        cpu0, began = time.process_time(), time.time()
        deadline = time.perf_counter() + job.duration_s
        count = len(job.requests)
        i = 0
        while i < job.max_requests and time.perf_counter() < deadline:
            method, path, body = job.requests[(job.offset + i) % count]
            t = time.perf_counter()
            status, content = client.request(method, path, body)
            latencies.append(time.perf_counter() - t)
            if status != 200 or (job.error_marker is not None and job.error_marker in content):
                errors += 1
                first_error = first_error or f"{status}: {content[:300].decode(errors='replace')}"
            i += 1
        return ClientResult(latencies, errors, first_error, began, time.time(), time.process_time() - cpu0)


def _run_pg_client(job: ClientJob) -> ClientResult:
    import psycopg

    latencies: list[float] = []
    errors, first_error = 0, ""
    with psycopg.connect(job.base, autocommit=True) as conn:
        for statement in job.setup:
            conn.execute(statement)
        for params in job.requests[job.offset : job.offset + 3]:
            conn.execute(job.sql, params, prepare=True).fetchall()
        _wait_until(job.start_at)
        cpu0, began = time.process_time(), time.time()
        deadline = time.perf_counter() + job.duration_s
        count = len(job.requests)
        i = 0
        while i < job.max_requests and time.perf_counter() < deadline:
            t = time.perf_counter()
            try:
                rows = conn.execute(job.sql, job.requests[(job.offset + i) % count], prepare=True).fetchall()
                latencies.append(time.perf_counter() - t)
                if not rows:
                    errors += 1
                    first_error = first_error or "no rows"
            except psycopg.Error as exc:
                errors += 1
                first_error = first_error or str(exc)
            i += 1
        return ClientResult(latencies, errors, first_error, began, time.time(), time.process_time() - cpu0)
