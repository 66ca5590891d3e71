"""Where a server keeps its data, on each backend, and ``searchd backup`` of either into a data directory."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import pytest
from starlette.testclient import TestClient

from searchd.cli import main
from searchd.config.spec import StorageSpec
from searchd.engine import StoredObject, effective_storage, open_store
from searchd.server import create_app, open_services
from searchd.storage.pgerrors import safe_url
from tests.conftest import BACKENDS, ClientFactory

pytestmark = pytest.mark.parametrize("storage_backend", BACKENDS, indirect=True)

CONFIG = """
collections:
  - name: Doc
    properties:
      - {name: title, type: TEXT}
    vectors:
      default:
        vectorizer: {module: none, dimensions: 3}
        index: {type: flat}
"""
OBJECTS: list[dict[str, Any]] = [
    {"class": "Doc", "id": f"00000000-0000-4000-8000-00000000000{i}", "properties": {"title": f"doc {i}"}, "vector": [i, 0.5, -1.0]} for i in range(1, 6)
]


def stored(client: Any) -> list[tuple[str, str, list[float]]]:
    response = client.get("/v1/objects", params={"class": "Doc", "include": "vector", "limit": 100})
    assert response.status_code == 200, response.text
    return [(o["id"], o["properties"]["title"], o["vector"]) for o in response.json()["objects"]]


def test_objects_and_the_applied_spec_live_in_the_configured_backend(
    client_factory: ClientFactory, tmp_path: Path, storage_backend: str
) -> None:
    config = tmp_path / "searchd.yaml"
    config.write_text(CONFIG, encoding="utf-8")
    client = client_factory(config, tmp_path / "data")
    assert client.post("/v1/batch/objects", json={"objects": OBJECTS}).status_code == 200
    revision = client.get("/v1/config/status").json()["revision"]
    files = {p.name for p in (tmp_path / "data").iterdir()}
    if storage_backend == "postgres":
        assert "objects.sqlite3" not in files and "applied" not in files and "embeddings.sqlite" not in files
        with psycopg.connect(os.environ["SEARCHD_DATABASE_URL"]) as db:
            assert db.execute("SELECT revision FROM searchd_applied").fetchall() == [(revision,)]
            ((tag,),) = db.execute("SELECT tag FROM searchd_collections WHERE name = 'Doc'").fetchall()
            assert db.execute(f"SELECT id, properties->>'title' FROM searchd_o{tag} ORDER BY id").fetchall() == [
                (o["id"], o["properties"]["title"]) for o in OBJECTS
            ]
            assert db.execute("SELECT count(*) FROM searchd_changes").fetchall() == [(len(OBJECTS),)]
    else:
        assert {"objects.sqlite3", "applied"} <= files


def test_backup_by_config_copies_the_store_into_a_data_directory_a_server_starts_on(
    client_factory: ClientFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "searchd.yaml"
    config.write_text(CONFIG + "server: {dataDir: data}\n", encoding="utf-8")
    client = client_factory(config, tmp_path / "data")
    assert client.post("/v1/batch/objects", json={"objects": OBJECTS}).status_code == 200
    assert client.delete(f"/v1/objects/Doc/{OBJECTS[0]['id']}").status_code == 204
    before = stored(client)
    revision = client.get("/v1/config/status").json()["revision"]

    assert main(["backup", "--config", str(config), str(tmp_path / "copy")]) == 0  # while the server runs
    out = capsys.readouterr().out
    assert out.startswith(f"backed up 4 object(s) to {tmp_path / 'copy'} (")

    monkeypatch.delenv("SEARCHD_DATABASE_URL", raising=False)  # the copy is a data directory: SQLite
    with TestClient(create_app(open_services(config, tmp_path / "copy"))) as restored:
        assert stored(restored) == before
        status = restored.get("/v1/config/status").json()
        assert status["revision"] == revision and status["lastReload"]["plan"]["changes"] == []


def test_backup_refuses_a_destination_that_is_not_empty(client_factory: ClientFactory, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "searchd.yaml"
    config.write_text(CONFIG + "server: {dataDir: data}\n", encoding="utf-8")
    client_factory(config, tmp_path / "data")
    (tmp_path / "copy").mkdir()
    (tmp_path / "copy" / "keep.txt").write_text("mine", encoding="utf-8")
    assert main(["backup", "--config", str(config), str(tmp_path / "copy")]) == 1
    assert f"{tmp_path / 'copy'} is not empty" in capsys.readouterr().err
    assert [p.name for p in (tmp_path / "copy").iterdir()] == ["keep.txt"]


def test_plan_reads_the_applied_spec_from_the_configured_store(
    client_factory: ClientFactory, tmp_path: Path, storage_backend: str, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "searchd.yaml"
    config.write_text(CONFIG + "server: {dataDir: data}\n", encoding="utf-8")
    client = client_factory(config, tmp_path / "data")
    revision = client.get("/v1/config/status").json()["revision"]
    assert main(["plan", str(config)]) == 0
    first, second = capsys.readouterr().out.splitlines()[:2]
    where = f"Database {safe_url(os.environ['SEARCHD_DATABASE_URL'])}" if storage_backend == "postgres" else f"Data directory {tmp_path / 'data'}"
    assert first == f"{where}: applied revision {revision}"
    assert second == "No changes. The applied config matches."


def test_a_restart_loads_the_saved_index_and_catches_up_from_the_store_change_log(
    tmp_path: Path, storage_backend: str, caplog: pytest.LogCaptureFixture
) -> None:
    config = tmp_path / "searchd.yaml"
    config.write_text(CONFIG.replace("type: flat", "type: hnsw"), encoding="utf-8")
    data = tmp_path / "data"
    with TestClient(create_app(open_services(config, data))) as first:
        assert first.post("/v1/batch/objects", json={"objects": OBJECTS}).status_code == 200
    # Writes the saved index has not seen (as after a kill -9 between a commit and the next save).
    with open_store(effective_storage(StorageSpec()), data) as store:
        added = StoredObject("Doc", "00000000-0000-4000-8000-000000000009", {"title": "doc 9"}, {"default": np.array([9, 0.5, -1.0], dtype=np.float32)}, 5, 5)
        store.put_many([added])
        assert store.delete("Doc", OBJECTS[1]["id"]) is not None
    caplog.set_level(logging.INFO, logger="searchd.index")
    with TestClient(create_app(open_services(config, data))) as second:
        loaded = [r.getMessage() for r in caplog.records if r.getMessage().startswith("loaded Doc.default index")]
        assert loaded == [f"loaded Doc.default index (5 vectors) from {data / 'indexes' / 'Doc' / 'default'}, 2 changed since"]
        query = '{ Get { Doc(nearVector: {vector: [9, 0.5, -1]}, limit: 10) { title } } }'
        hits = second.post("/v1/graphql", json={"query": query}).json()["data"]["Get"]["Doc"]
        assert [h["title"] for h in hits][:1] == ["doc 9"] and "doc 2" not in {h["title"] for h in hits} and len(hits) == 5
