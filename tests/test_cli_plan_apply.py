"""``searchd plan`` and ``searchd apply`` as a user runs them: subprocesses on a server's data directory.

One data directory is made once per module by a real ``searchd serve`` (objects
imported, then stopped); tests that change it work on a copy.  On PostgreSQL the store is
the module's database, and a copy is a database made from it as a template.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from searchd.config import load_spec
from searchd.config.revision import revision
from searchd.config.spec import StorageSpec
from searchd.engine import effective_storage, open_store
from searchd.modules import default_registry
from searchd.storage.pgerrors import safe_url
from tests import pgcluster
from tests.conftest import BACKENDS
from tests.test_e2e_server import HTTP_TIMEOUT_S, Server, child_env, free_port, searchd_module, wait_ready
from tests.test_reload_e2e import ARTICLES, BASE, N_ARTICLES, article, replaced

pytestmark = pytest.mark.parametrize("storage_backend", BACKENDS, indirect=True)

CLI_TIMEOUT_S = 60.0

# Edits of BASE, one per change class.
DESCRIPTION = ("description: Articles for the reload tests.", "description: Articles, planned.")
K1 = ("bm25: {k1: 1.2, b: 0.75}", "bm25: {k1: 1.5, b: 0.75}")
NEW_PROPERTY = ("      - {name: year, type: INT}\n", "      - {name: year, type: INT}\n      - {name: summary, type: TEXT}\n")
DIMENSIONS = ("dimensions: 256", "dimensions: 128")
REMOVE_YEAR = ("      - {name: year, type: INT}\n", "")


@dataclass
class Run:
    code: int
    out: str
    err: str

    def __str__(self) -> str:
        return f"exit {self.code}\n--- stdout ---\n{self.out}\n--- stderr ---\n{self.err}"


def searchd(*args: str | Path, cwd: Path) -> Run:
    done = subprocess.run(
        [*searchd_module(), *map(str, args)],
        check=False,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
        cwd=cwd,
        env=child_env(),
        stdin=subprocess.DEVNULL,
    )
    return Run(done.returncode, done.stdout, done.stderr)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def start(config: Path, data: Path, logs: Path) -> Server:
    """``searchd serve`` until ready; like tests.test_e2e_server's start_server, retried if another process took the port."""
    for _ in range(3):
        port = free_port()
        # Closed by Server.stop(), like tests.test_e2e_server's servers.
        stdout, stderr = open(logs / f"serve-{port}.stdout", "wb"), open(logs / f"serve-{port}.stderr", "wb")  # noqa: SIM115
        args = [*searchd_module(), "serve", str(config), "--data", str(data), "--host", "127.0.0.1", "--port", str(port), "--grpc-port", "0"]
        process = subprocess.Popen(args, stdout=stdout, stderr=stderr, stdin=subprocess.DEVNULL, cwd=logs, env=child_env())
        server = Server(process, port, logs / f"serve-{port}.stdout", logs / f"serve-{port}.stderr", [stdout, stderr])
        try:
            wait_ready(server)
            return server
        except pytest.fail.Exception:
            server.stop()
            if server.process.returncode is not None and "address already in use" in server.logs().lower():
                continue
            raise
        except BaseException:
            server.stop()
            raise
    pytest.fail(f"could not find a free port in 3 attempts\n{server.logs()}")


@dataclass
class Stopped:
    """A data directory left by a stopped server that served BASE with ARTICLES."""

    data: Path
    config: Path
    revision: str
    database: str | None  # on PostgreSQL, the database the objects are in


@pytest.fixture(scope="module")
def stopped_once(tmp_path_factory: pytest.TempPathFactory, storage_backend: str) -> Iterator[Stopped]:
    root = tmp_path_factory.mktemp("stopped")
    config = write(root / "config" / "searchd.yaml", BASE)
    server = start(config, root / "data", root)
    try:
        with httpx.Client(base_url=server.url, timeout=HTTP_TIMEOUT_S, trust_env=False) as http:
            response = http.post("/v1/batch/objects", json={"objects": ARTICLES})
            assert response.status_code == 200 and all(r["result"]["status"] == "SUCCESS" for r in response.json()), response.text
            applied = http.get("/v1/config/status").json()["revision"]
    finally:
        server.stop()
    # uvicorn re-raises SIGTERM after its graceful shutdown, so the exit status is -15; the log shows it finished.
    assert server.process.returncode in (0, -15) and "Application shutdown complete" in server.logs(), server.logs()
    url = os.environ.get("SEARCHD_DATABASE_URL") if storage_backend == "postgres" else None
    yield Stopped(root / "data", config, applied, urlsplit(url).path.lstrip("/") if url else None)


@pytest.fixture
def stopped(stopped_once: Stopped, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Stopped:
    """The stopped server's store: on PostgreSQL, the commands a test runs use the module's database, not the test's own."""
    if stopped_once.database is not None:
        cluster: pgcluster.Cluster = request.getfixturevalue("pg_cluster")
        monkeypatch.setenv("SEARCHD_DATABASE_URL", cluster.url(stopped_once.database))
    return stopped_once


@pytest.fixture
def copied(stopped: Stopped, tmp_path: Path, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A copy of the stopped server's data directory (and database), for a test that changes it."""
    shutil.copytree(stopped.data, tmp_path / "data")
    if stopped.database is None:
        yield tmp_path / "data"
        return
    cluster: pgcluster.Cluster = request.getfixturevalue("pg_cluster")
    database = cluster.new_database(template=stopped.database)
    monkeypatch.setenv("SEARCHD_DATABASE_URL", cluster.url(database))
    yield tmp_path / "data"
    cluster.drop_database(database)


def plan_lines(run: Run) -> list[str]:
    return run.out.splitlines()


def store_line(data: Path) -> str:
    """How plan names the store it compares with: the data directory, or on PostgreSQL the database (without secrets)."""
    url = os.environ.get("SEARCHD_DATABASE_URL")
    return f"Database {safe_url(url)}" if url else f"Data directory {data}"


def problems(run: Run) -> str:
    """stderr without the log line that names the PostgreSQL store being opened (SQLite's opening logs nothing)."""
    return "".join(line for line in run.err.splitlines(keepends=True) if " INFO searchd.storage: object store: PostgreSQL " not in line)


# -- plan --------------------------------------------------------------------------------------


def test_plan_unchanged_exits_0_with_no_changes(stopped: Stopped, tmp_path: Path) -> None:
    run = searchd("plan", stopped.config, "--data", stopped.data, cwd=tmp_path)
    assert run.code == 0, run
    assert plan_lines(run) == [
        f"{store_line(stopped.data)}: applied revision {stopped.revision}",
        "No changes. The applied config matches.",
    ], run
    assert problems(run) == ""


def test_plan_in_place_changes_exits_0(stopped: Stopped, tmp_path: Path) -> None:
    config = write(tmp_path / "c" / "searchd.yaml", replaced(BASE, DESCRIPTION, K1, NEW_PROPERTY))
    run = searchd("plan", config, "--data", stopped.data, cwd=tmp_path)
    assert run.code == 0, run
    assert plan_lines(run)[1:] == [
        "  + Article.property summary: new TEXT property",
        "  ~ collection Article: description changed, k1 1.2 → 1.5",
        "",
        "Background work after apply:",
        "  rebuild the BM25 index of Article",
        "",
        "Plan: 1 to create, 1 to change in place, 0 to re-vectorize, 0 destructive.",
    ], run


def test_plan_revectorize_exits_0(stopped: Stopped, tmp_path: Path) -> None:
    config = write(tmp_path / "c" / "searchd.yaml", replaced(BASE, DIMENSIONS))
    run = searchd("plan", config, "--data", stopped.data, cwd=tmp_path)
    assert run.code == 0, run
    assert plan_lines(run)[1:] == [
        "-/+ Article.vector text: dimensions 256 → 128",
        "",
        "Background work after apply:",
        "  re-embed Article.text from stored objects",
        "",
        "Plan: 0 to create, 0 to change in place, 1 to re-vectorize, 0 destructive.",
    ], run


def test_plan_destructive_exits_2_unless_allowed(stopped: Stopped, tmp_path: Path) -> None:
    config = write(tmp_path / "c" / "searchd.yaml", replaced(BASE, REMOVE_YEAR))
    drop = f"  - Article.property year: property removed; would drop the 'year' values of {N_ARTICLES} objects"
    run = searchd("plan", config, "--data", stopped.data, cwd=tmp_path)
    assert run.code == 2, run
    assert plan_lines(run)[1:] == [drop, "", "Plan: 0 to create, 0 to change in place, 0 to re-vectorize, 1 destructive (refused)."], run
    assert problems(run).startswith("refusing 1 destructive change(s) that would drop stored data:\n" + drop), run
    assert "--allow-destructive" in run.err and "allowDestructive: true" in run.err

    allowed = searchd("plan", config, "--data", stopped.data, "--allow-destructive", cwd=tmp_path)
    assert allowed.code == 0, allowed
    assert plan_lines(allowed)[-1] == "Plan: 0 to create, 0 to change in place, 0 to re-vectorize, 1 destructive (allowed).", allowed
    in_config = write(
        tmp_path / "d" / "searchd.yaml",
        replaced(BASE, REMOVE_YEAR, ("host: 127.0.0.1\n", "host: 127.0.0.1\n  reload: {allowDestructive: true}\n")),
    )
    assert searchd("plan", in_config, "--data", stopped.data, cwd=tmp_path).code == 0


def test_plan_invalid_config_exits_1_with_the_line(stopped: Stopped, tmp_path: Path) -> None:
    text = replaced(BASE, ("{name: year, type: INT}", "{name: year, type: INTEGER}"))
    config = write(tmp_path / "c" / "searchd.yaml", text)
    run = searchd("plan", config, "--data", stopped.data, cwd=tmp_path)
    assert run.code == 1, run
    line = next(n for n, line in enumerate(text.splitlines(), 1) if "INTEGER" in line)
    assert re.search(rf"^{re.escape(str(config))}:{line}:\d+: .*INTEGER", run.err, re.MULTILINE), run
    assert run.out == ""


def test_plan_json(stopped: Stopped, tmp_path: Path) -> None:
    config = write(tmp_path / "c" / "searchd.yaml", replaced(BASE, DIMENSIONS, REMOVE_YEAR))
    run = searchd("plan", config, "--data", stopped.data, "--format", "json", cwd=tmp_path)
    assert run.code == 2, run
    body = json.loads(run.out)
    assert body["appliedRevision"] == stopped.revision and body["refused"] is True
    assert body["counts"] == {"create": 0, "inPlace": 0, "revectorize": 1, "destructive": 1, "restart": 0}
    assert body["revectorize"] == [{"collection": "Article", "vector": "text"}]


def test_plan_needs_no_lock_while_a_server_runs(copied: Path, stopped: Stopped, tmp_path: Path) -> None:
    server = start(stopped.config, copied, tmp_path)
    try:
        with httpx.Client(base_url=server.url, timeout=HTTP_TIMEOUT_S, trust_env=False) as http:
            response = http.post("/v1/batch/objects", json={"objects": [article(N_ARTICLES)]})
            assert response.status_code == 200, response.text
            assert searchd("plan", stopped.config, "--data", copied, cwd=tmp_path).out.endswith("No changes. The applied config matches.\n")

            config = write(tmp_path / "c" / "searchd.yaml", replaced(BASE, REMOVE_YEAR))
            run = searchd("plan", config, "--data", copied, cwd=tmp_path)
            assert run.code == 2, f"{run}\n{server.logs()}"
            # Reads what the running server has written, including its last write.
            assert f"would drop the 'year' values of {N_ARTICLES + 1} objects" in run.out, run

            # apply, unlike plan, needs the data directory to itself.
            run = searchd("apply", config, "--data", copied, "--allow-destructive", cwd=tmp_path)
            assert run.code == 1 and re.search(r"not applied: data directory .* is in use", run.err), run

            assert server.process.poll() is None, server.logs()
            assert http.get(f"/v1/objects/Article/{ARTICLES[0]['id']}").json()["properties"] == ARTICLES[0]["properties"]
            assert http.get("/v1/config/status").json()["revision"] == stopped.revision
    finally:
        server.stop()


def test_plan_against_another_config_needs_no_data_and_no_secrets(tmp_path: Path) -> None:
    """A pull request's check: the branch's config against main's, in CI, where no data directory or key exists."""
    keyed = replaced(BASE, ("collections:\n", "modules:\n  text2vec-jinaai: {apiKey: \"${JINA_KEY_IN_PRODUCTION}\"}\ncollections:\n"))
    main = write(tmp_path / "main" / "searchd.yaml", keyed)
    branch = write(tmp_path / "branch" / "searchd.yaml", replaced(keyed, DESCRIPTION, DIMENSIONS))
    run = searchd("plan", branch, "--against", main, cwd=tmp_path)
    assert run.code == 0, run
    assert plan_lines(run) == [
        f"Config {main}: revision {revision(load_spec(main, default_registry(), {'JINA_KEY_IN_PRODUCTION': '${JINA_KEY_IN_PRODUCTION}'}))}",
        "  ~ collection Article: description changed",
        "-/+ Article.vector text: dimensions 256 → 128",
        "",
        "Background work after apply:",
        "  re-embed Article.text from stored objects",
        "",
        "Plan: 0 to create, 1 to change in place, 1 to re-vectorize, 0 destructive.",
    ], run

    # Renaming the key's variable is a (reported) module change; a destructive change fails the check.
    renamed = write(tmp_path / "renamed" / "searchd.yaml", replaced(keyed, ("JINA_KEY_IN_PRODUCTION", "JINA_KEY"), REMOVE_YEAR))
    run = searchd("plan", renamed, "--against", main, "--format", "json", cwd=tmp_path)
    assert run.code == 2, run
    body = json.loads(run.out)
    assert body["refused"] is True and [c["address"] for c in body["changes"]] == ["modules.text2vec-jinaai", "Article.property year"], body
    assert body["changes"][1]["drops"] == "all stored 'year' values", body  # no data directory: no counts
    # A broken base config is named as such.
    broken = write(tmp_path / "broken" / "searchd.yaml", "collections: [")
    run = searchd("plan", branch, "--against", broken, cwd=tmp_path)
    assert run.code == 1 and f"error(s) in the --against config {broken}" in run.err, run


def test_plan_against_a_copy_of_the_same_config_sees_no_change(tmp_path: Path) -> None:
    """The README's CI recipe: main's config copied out by `git show` to another directory; a relative dataDir is the same one."""
    text = replaced(BASE, ("server:\n", "server:\n  dataDir: ../../data/articles\n"))
    branch = write(tmp_path / "repo" / "config" / "searchd.yaml", text)
    copy = write(tmp_path / "ci" / "main.yaml", text)
    run = searchd("plan", branch, "--against", copy, cwd=tmp_path)
    assert run.code == 0, run
    assert plan_lines(run)[1:] == ["No changes. The applied config matches."], run
    # A really different data directory still needs a restart, and says which.
    moved = write(tmp_path / "repo" / "config" / "moved.yaml", replaced(text, ("../../data/articles", "../data/articles")))
    run = searchd("plan", moved, "--against", copy, cwd=tmp_path)
    assert plan_lines(run)[1:4] == ["", "Needs a restart (not applied live):", "  ~ server.dataDir: dataDir ../../data/articles → ../data/articles"], run


# -- apply --------------------------------------------------------------------------------------


def test_apply_applies_and_a_following_plan_says_no_changes(copied: Path, tmp_path: Path) -> None:
    config = write(tmp_path / "c" / "searchd.yaml", replaced(BASE, DESCRIPTION, NEW_PROPERTY, DIMENSIONS))
    run = searchd("apply", config, "--data", copied, cwd=tmp_path)
    assert run.code == 0, run
    target = revision(load_spec(config, default_registry()))
    assert f"re-vectorize Article.text: done ({N_ARTICLES}/{N_ARTICLES})" in run.out, run
    assert f"bm25 Article.bm25: done ({N_ARTICLES}/{N_ARTICLES})" in run.out, run
    assert plan_lines(run)[-1] == f"applied revision {target}", run

    again = searchd("plan", config, "--data", copied, cwd=tmp_path)
    assert again.code == 0, again
    assert plan_lines(again) == [f"{store_line(copied)}: applied revision {target}", "No changes. The applied config matches."], again

    with open_store(effective_storage(StorageSpec()), copied) as store:  # the backend the commands used
        for obj in ARTICLES:
            stored = store.get("Article", obj["id"])
            assert stored is not None and stored.properties == obj["properties"] and stored.vectors["text"].shape == (128,), obj["id"]
        assert store.count("Article") == N_ARTICLES


def test_apply_refuses_a_destructive_change_until_allowed(copied: Path, stopped: Stopped, tmp_path: Path) -> None:
    config = write(tmp_path / "c" / "searchd.yaml", replaced(BASE, REMOVE_YEAR))
    run = searchd("apply", config, "--data", copied, cwd=tmp_path)
    assert run.code == 2 and "refusing 1 destructive change(s)" in run.err, run
    assert "applied revision" not in run.out.splitlines()[-1]
    assert searchd("plan", stopped.config, "--data", copied, cwd=tmp_path).out.endswith("No changes. The applied config matches.\n")

    run = searchd("apply", config, "--data", copied, "--allow-destructive", cwd=tmp_path)
    assert run.code == 0, run
    assert searchd("plan", config, "--data", copied, cwd=tmp_path).out.endswith("No changes. The applied config matches.\n")
    with open_store(effective_storage(StorageSpec()), copied) as store:
        stored = store.get("Article", ARTICLES[0]["id"])
        assert stored is not None and stored.properties == {k: v for k, v in ARTICLES[0]["properties"].items() if k != "year"}
        assert store.count("Article") == N_ARTICLES


def test_apply_invalid_config_exits_1(copied: Path, stopped: Stopped, tmp_path: Path) -> None:
    config = write(tmp_path / "c" / "searchd.yaml", replaced(BASE, ("textFields: [title, body]", "textFields: [title, year]")))
    run = searchd("apply", config, "--data", copied, cwd=tmp_path)
    assert run.code == 1 and str(config) in run.err and "year" in run.err, run
    assert searchd("plan", stopped.config, "--data", copied, cwd=tmp_path).out.endswith("No changes. The applied config matches.\n")


# -- serve on a changed config --------------------------------------------------------------------


def test_serve_on_a_destructive_config_exits_nonzero_with_the_refusal(copied: Path, stopped: Stopped, tmp_path: Path) -> None:
    config = write(tmp_path / "c" / "searchd.yaml", replaced(BASE, REMOVE_YEAR))
    args = ["serve", config, "--data", copied, "--host", "127.0.0.1", "--port", str(free_port()), "--grpc-port", "0"]
    process = subprocess.Popen(
        [*searchd_module(), *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        cwd=tmp_path,
        env=child_env(),
    )
    try:
        out, err = process.communicate(timeout=CLI_TIMEOUT_S)
    finally:
        if process.poll() is None:  # it started serving instead of refusing: stop it
            process.kill()
            process.communicate(timeout=10)
    run = Run(process.returncode, out.decode(errors="replace"), err.decode(errors="replace"))
    assert run.code not in (0, None), run
    assert "not starting: refusing 1 destructive change(s)" in run.err, run
    assert f"Article.property year: property removed; would drop the 'year' values of {N_ARTICLES} objects" in run.err, run
    assert f"revision {stopped.revision}" in run.err, run  # how to get back
    # Nothing was applied.
    assert searchd("plan", stopped.config, "--data", copied, cwd=tmp_path).out.endswith("No changes. The applied config matches.\n")

    # Allowed in the config, the same start goes ahead (the same path as a reload).
    allowed = write(
        tmp_path / "c" / "searchd.yaml",
        replaced(BASE, REMOVE_YEAR, ("host: 127.0.0.1\n", "host: 127.0.0.1\n  reload: {allowDestructive: true}\n")),
    )
    server = start(allowed, copied, tmp_path)
    try:
        with httpx.Client(base_url=server.url, timeout=HTTP_TIMEOUT_S, trust_env=False) as http:
            last = http.get("/v1/config/status").json()["lastReload"]
            assert (last["trigger"], last["result"], last["plan"]["counts"]["destructive"]) == ("start", "applied", 1), last
            assert "year" not in http.get(f"/v1/objects/Article/{ARTICLES[0]['id']}").json()["properties"]
    finally:
        server.stop()
