"""Expensive documents against a real server while a probe query runs beside them (#13, the fuzzing of #7).

The documents come from test_openapi_fuzz's generator (aliases, fragments spread through chains,
filter operands and depth, many fields of many rows).  Each must be refused with 422 naming the
setting; meanwhile a probe thread sends a small query and the live probe back to back over its own
keep-alive connection, and every probe must answer correctly.

The probe's latency is recorded, not asserted: this machine is shared (two cores, several agents),
so any wall-clock bound would either flake or be too loose to mean anything.  The figures are
printed at the end (``-s``) and recorded in bench/RESULTS.md; bench/hardening.py checks the probe
against its target under a real load.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import yaml
from hypothesis import HealthCheck, given, settings

from tests.conftest import QUICKSTART, example_objects
from tests.grpc_support import running
from tests.test_e2e_server import Server
from tests.test_openapi_fuzz import assert_error_body, expensive_documents

OBJECTS = example_objects(QUICKSTART.parent / "objects.jsonl")
PROBE_QUERY = "{ Get { Article(limit: 1) { title } } }"
EXAMPLES = 60


class Probe(threading.Thread):
    """The small query and the live probe, back to back, until stopped; each answer is checked."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.latencies: list[float] = []
        self.wrong: list[str] = []
        self.stop = threading.Event()

    def run(self) -> None:
        expected = {"data": {"Get": {"Article": [{"title": OBJECTS[0]["properties"]["title"]}]}}}
        with httpx.Client(base_url=self.url, timeout=30, trust_env=False) as client:
            while not self.stop.is_set():
                started = time.perf_counter()
                answer = client.post("/v1/graphql", json={"query": PROBE_QUERY})
                live = client.get("/v1/.well-known/live")
                self.latencies.append(time.perf_counter() - started)
                if answer.status_code != 200 or answer.json() != expected or live.status_code != 200:
                    self.wrong.append(f"{answer.status_code} {answer.text[:200]} / live {live.status_code}")

    def figures(self) -> dict[str, float]:
        ordered = sorted(self.latencies)
        return {
            "probes": len(ordered),
            "p50_ms": ordered[len(ordered) // 2] * 1000,
            "p99_ms": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000,
            "max_ms": ordered[-1] * 1000,
        }


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Probe, list[int]]]:
    data = yaml.safe_load(QUICKSTART.read_text(encoding="utf-8"))
    data["server"] = {"host": "127.0.0.1", "reload": {"watch": False}}
    with running(tmp_path_factory.mktemp("fuzz-probe"), config_yaml=yaml.safe_dump(data)) as (server, _grpc_port):
        with httpx.Client(base_url=server.url, timeout=60, trust_env=False) as client:
            assert client.post("/v1/batch/objects", json={"objects": OBJECTS}).status_code == 200
        probe = Probe(server.url)
        probe.start()
        try:
            yield server, probe, []
        finally:
            probe.stop.set()
            probe.join(60)


def test_expensive_documents_are_refused_while_the_probe_answers(served: tuple[Server, Probe, list[int]]) -> None:
    """One test (not two sharing the module fixture), so the probe's checks see every refusal under any test distribution."""
    server, probe, refused = served

    @given(case=expensive_documents())
    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
    def refuse(case: tuple[str, dict[str, Any], set[str]]) -> None:
        query, variables, settings_named = case
        with httpx.Client(base_url=server.url, timeout=120, trust_env=False) as client:
            response = client.post("/v1/graphql", json={"query": query, "variables": variables})
        assert response.status_code == 422, (query[:300], response.text)
        assert_error_body(response)
        message = response.json()["error"][0]["message"]
        assert any(f"(server.limits.{setting})" in message for setting in settings_named), message
        refused.append(len(probe.latencies))  # how many probes had answered by this refusal

    refuse()
    assert len(refused) == EXAMPLES
    probe.stop.set()
    probe.join(60)
    assert not probe.is_alive()
    assert probe.wrong == []
    assert probe.latencies and refused[-1] > refused[0]  # the probe kept answering while the documents were refused
    figures = probe.figures()
    print(f"\nprobe query + live probe during {EXAMPLES} expensive documents: {figures}")
    assert "Traceback" not in server.logs()
