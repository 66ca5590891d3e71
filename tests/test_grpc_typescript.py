"""The TypeScript weaviate-client 3.x (npm) against a real searchd: connect, insertMany, nearVector, hybrid, an aggregate."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.grpc_support import get, graphql, running

TS = Path(__file__).parent / "ts"


def test_typescript_client(tmp_path: Path) -> None:
    node = shutil.which("node")
    if node is None:
        pytest.skip("this machine has no node; the TypeScript client needs Node.js 18 or later")
    if not (TS / "node_modules" / "weaviate-client").is_dir():
        pytest.skip(f"the TypeScript client is not installed: run 'npm ci' in {TS} (scripts/test does)")
    with running(tmp_path) as (server, grpc_port), httpx.Client(base_url=server.url, timeout=30, trust_env=False) as http:
        vector = http.get("/v1/objects/Article/" + get(http, "Article", "limit: 1", "_additional { id }")[0]["_additional"]["id"], params={"include": "vector"}).json()["vectors"]["text"]
        done = subprocess.run(
            [node, str(TS / "client.mjs"), str(server.port), str(grpc_port)],
            capture_output=True, text=True, timeout=120, cwd=TS, env={**os.environ, "QUERY_VECTOR": json.dumps(vector)}, check=False,
        )
        assert done.returncode == 0, f"{done.stdout}\n{done.stderr}\n{server.logs()}"
        found = json.loads(done.stdout.strip().splitlines()[-1])
        assert found["ready"] is True
        assert found["insertErrors"] == {"2": "property 'wordCount' expects an integer (INT), got str 'many' (send the value with the type declared in the config)"}
        stored = get(http, "Scratch", "limit: 100", "title _additional { id }")
        assert sorted((r["_additional"]["id"], r["title"]) for r in stored) == sorted(zip(found["insertedIds"], ["typescript red apples", "typescript green pears"]))
        rows = get(http, "Article", f"nearVector: {{vector: {vector}}}, limit: 3")
        assert [i for i, _ in found["nearVector"]] == [r["_additional"]["id"] for r in rows]
        assert [d for _, d in found["nearVector"]] == pytest.approx([r["_additional"]["distance"] for r in rows], abs=1e-6)
        assert found["hybrid"] == [r["_additional"]["id"] for r in get(http, "Article", 'hybrid: {query: "fruit apples", alpha: 0.5}, limit: 4')]
        (aggregate,) = graphql(http, "{ Aggregate { Article { meta { count } wordCount { sum } } } }")["Aggregate"]["Article"]
        assert (found["total"], found["wordCountSum"]) == (aggregate["meta"]["count"], aggregate["wordCount"]["sum"]) == (20, 1900)
