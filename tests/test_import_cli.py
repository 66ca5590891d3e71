"""``searchd import``: JSONL and JSON array files read as a stream, errors at file:line with the id, a reject file,
the exit code, resuming (objects stored unchanged are skipped), and the progress shown on a terminal or in the log."""

from __future__ import annotations

import io
import json
import logging
import os
import pty
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from searchd.cli import main
from searchd.importer import ObjectFile
from searchd.importer import reader as reader_module
from searchd.importer.progress import Progress
from tests.conftest import ON_BOTH_BACKENDS, QUICKSTART, ClientFactory, example_objects, wait_for
from tests.test_e2e_server import StartServer, client
from tests.test_e2e_server import start_server as start_server  # noqa: PLC0414  (re-exported: the fixture, used by name)

# What reads or writes a store runs on both backends (ON_BOTH_BACKENDS); the file readers and argument checks, once.
OBJECTS = example_objects(QUICKSTART.parent / "objects.jsonl")
VECTORS_CONFIG = """\
collections:
  - name: Point
    properties:
      - {name: label, type: TEXT}
    vectors:
      own:
        vectorizer: {module: none, dimensions: 3}
        index: {type: flat}
"""


def run(capsys: pytest.CaptureFixture[str], *args: str | Path) -> tuple[int, str, str]:
    code = main(["import", *(str(a) for a in args)])
    out, err = capsys.readouterr()
    return code, out.strip(), err.strip()


def errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "searchd.import" and r.levelno == logging.ERROR]


def write_jsonl(path: Path, objects: list[Any]) -> Path:
    path.write_text("".join(json.dumps(o) + "\n" for o in objects), encoding="utf-8")
    return path


def stored_titles(client_factory: ClientFactory, data: Path) -> dict[str, str]:
    client = client_factory(QUICKSTART, data)
    listed = client.get("/v1/objects?class=Article&limit=100").json()["objects"]
    return {o["id"]: o["properties"]["title"] for o in listed}


@ON_BOTH_BACKENDS
def test_a_jsonl_file_is_imported_and_a_second_run_skips_what_is_stored_unchanged(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], client_factory: ClientFactory
) -> None:
    data, source = tmp_path / "data", write_jsonl(tmp_path / "objects.jsonl", OBJECTS)
    assert run(capsys, source, "--config", QUICKSTART, "--data", data)[:2] == (0, "8 stored, 0 already stored unchanged, 0 failed")
    assert run(capsys, source, "--config", QUICKSTART, "--data", data)[:2] == (0, "0 stored, 8 already stored unchanged, 0 failed")
    changed = [dict(o) for o in OBJECTS]
    changed[3] = {**changed[3], "properties": {**changed[3]["properties"], "title": "A new title"}}
    write_jsonl(source, changed)
    assert run(capsys, source, "--config", QUICKSTART, "--data", data)[:2] == (0, "1 stored, 7 already stored unchanged, 0 failed")
    titles = stored_titles(client_factory, data)
    assert titles == {o["id"]: o["properties"]["title"] for o in changed}


@ON_BOTH_BACKENDS
def test_a_json_array_reports_each_bad_object_at_its_line_with_its_id_and_writes_the_rejects(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture, client_factory: ClientFactory
) -> None:
    good = [dict(o) for o in OBJECTS[:3]]
    good[0] = {**good[0], "properties": {**good[0]["properties"], "body": 'Brackets ] and braces } and "quotes", inside a string: {"x": [1,'}}
    bad_type = {**OBJECTS[3], "properties": {**OBJECTS[3]["properties"], "wordCount": "many"}}
    text = "[\n" + ",\n".join(json.dumps(o, indent=2) for o in [good[0], bad_type, good[1]]) + ",\n  {\"class\": \"Article\", \"id\": tru},\n" + json.dumps(good[2]) + "\n]\n"
    source = tmp_path / "objects.json"
    source.write_text(text, encoding="utf-8")
    lines = text.splitlines()
    bad_line = next(n for n, line in enumerate(lines, 1) if '"many"' in line)
    bad_start = max(n for n in range(1, bad_line) if lines[n - 1].strip() == "{")
    broken_line = next(n for n, line in enumerate(lines, 1) if "tru}" in line)
    rejects = tmp_path / "rejects.jsonl"
    with caplog.at_level(logging.INFO):
        code, out, _ = run(capsys, source, "--config", QUICKSTART, "--data", tmp_path / "data", "--rejects", rejects)
    assert code == 1
    assert out == f"3 stored, 0 already stored unchanged, 2 failed; failed objects written to {rejects}"
    assert errors(caplog) == [
        f"{source}:{bad_start}: id {OBJECTS[3]['id']}: property 'wordCount' expects an integer (INT), got str 'many' (send the value with the type declared in the config)",
        f"{source}:{broken_line}: not valid JSON: invalid literal, expected 'true' (column 30)",
    ]
    assert rejects.read_text(encoding="utf-8").splitlines() == [json.dumps(bad_type, separators=(",", ":")), '{"class": "Article", "id": tru}']
    assert set(stored_titles(client_factory, tmp_path / "data")) == {o["id"] for o in good}


def test_malformed_jsonl_lines_are_reported_at_their_line_and_the_rest_is_imported(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    source = tmp_path / "objects.jsonl"
    source.write_text(
        json.dumps(OBJECTS[0]) + "\n\n" + '{"class": "Article", "id": \n' + json.dumps(OBJECTS[1]) + "\n" + '{"class": "Nope", "id": "' + OBJECTS[2]["id"] + '"}\n' + "[1, 2]",
        encoding="utf-8",
    )
    code, out, _ = run(capsys, source, "--config", QUICKSTART, "--data", tmp_path / "data")
    assert (code, out) == (1, "2 stored, 0 already stored unchanged, 3 failed")
    assert errors(caplog) == [
        f"{source}:3: not valid JSON: unexpected end of data (column 27)",
        f"{source}:5: id {OBJECTS[2]['id']}: collection 'Nope' is not declared in the config (declared collections: Article; add it to the YAML config)",
        f'{source}:6: an object must be a JSON object (send {{"class": ..., "properties": {{...}}}})',
    ]


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ('[\n  {"class": "Article"},\n  {"class": "Art', 3, "the file ends inside the JSON array: the object that starts at line 3 is not closed (check that the file was written completely, and close the array with ']')"),
        ('[{"class": "Article"}] {"more": 1}', 1, "text after the end of the JSON array (remove it, or put every object inside the array)"),
        ('[\n{"class": "Article"},\n]', 3, "a comma before ']' (JSON allows no trailing comma) (remove the last comma)"),
    ],
)
def test_a_json_array_that_cannot_be_read_on_fails_with_its_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture, text: str, line: int, message: str
) -> None:
    source = tmp_path / "objects.json"
    source.write_text(text, encoding="utf-8")
    code, out, _ = run(capsys, source, "--config", QUICKSTART, "--data", tmp_path / "data")
    assert (code, out) == (1, "1 stored, 0 already stored unchanged, 1 failed")  # the object before the break is imported
    assert errors(caplog) == [f"{source}:{line}: {message}"]


def test_a_missing_file_is_named_and_nothing_is_opened(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    present = write_jsonl(tmp_path / "objects.jsonl", OBJECTS)
    code, out, err = run(capsys, present, tmp_path / "missing.jsonl", "--config", QUICKSTART, "--data", tmp_path / "data")
    assert (code, out) == (2, "")
    assert err == f"nothing imported: {tmp_path / 'missing.jsonl'}: no such file (check the path; a relative one starts from the current directory)"
    assert not (tmp_path / "data").exists()


@ON_BOTH_BACKENDS
def test_resume_compares_vectors_sent_with_the_object(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "points.yaml"
    config.write_text(VECTORS_CONFIG, encoding="utf-8")
    points = [{"class": "Point", "id": f"00000000-0000-4000-8000-00000000000{i}", "properties": {"label": f"p{i}"}, "vector": [i, 0.5, 1.0]} for i in range(3)]
    source = write_jsonl(tmp_path / "points.jsonl", points)
    data = tmp_path / "data"
    assert run(capsys, source, "--config", config, "--data", data)[:2] == (0, "3 stored, 0 already stored unchanged, 0 failed")
    points[1]["vector"] = [1, 0.5, 1.5]
    del points[2]["vector"]  # no vector sent: storing it would remove the stored one
    write_jsonl(source, points)
    assert run(capsys, source, "--config", config, "--data", data)[:2] == (0, "2 stored, 1 already stored unchanged, 0 failed")
    assert run(capsys, source, "--config", config, "--data", data)[:2] == (0, "0 stored, 3 already stored unchanged, 0 failed")


def test_the_array_scanner_is_exact_across_chunk_boundaries(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    values: list[Any] = [
        {"a": 'esc \\" quote', "b": ["]", "}", ",", "\\\\"], "c": {"d": [1, {"e": None}]}},
        {"unicode": "é 漢字 ✓", "nested": [[[]]], "empty": {}},
        "a string element",
        12.5,
        {"multi": "line"},
    ]
    text = "\ufeff[ " + json.dumps(values[0]) + " ,\n\n" + json.dumps(values[1], ensure_ascii=False) + ",\n" + json.dumps(values[2]) + ",13e-1,\n" + json.dumps(values[4], indent=4) + "\n]\n"
    values[3] = 1.3
    source = tmp_path / "values.json"
    source.write_text(text, encoding="utf-8")
    for size in (1, 2, 3, 7, 64, 1 << 20):
        monkeypatch.setattr(reader_module, "CHUNK_BYTES", size)
        records = list(ObjectFile(source))
        assert [r.error for r in records] == [None] * 5, size
        assert [r.payload for r in records] == values, size
        assert [r.line for r in records] == [1, 3, 4, 4, 5], size


def test_progress_is_a_bar_on_a_terminal_and_log_lines_otherwise(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    terminal = io.StringIO()
    bar = Progress(1000, terminal, clock=lambda: now[0])
    now[0] = 10.0
    bar.update(100, 0, 250)
    assert terminal.getvalue() == "\r[######------------------] 25%, 100 object(s), 10/s, ETA 0:30\x1b[K"
    with caplog.at_level(logging.INFO, logger="searchd.import"):
        lines = Progress(1000, None, clock=lambda: now[0])
        now[0] = 15.0
        lines.update(50, 0, 100)  # less than LOG_EVERY_S since the start: nothing yet
        now[0] = 20.0
        lines.update(200, 3, 500)
        lines.update(400, 3, 1000, final=True)
    assert [r.getMessage() for r in caplog.records] == ["import: 50%, 200 object(s), 20/s, ETA 0:10, 3 failed", "import: 100%, 400 object(s), 40/s, ETA 0:00, 3 failed"]


def test_jsonl_lines_are_exact_across_chunk_boundaries(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = tmp_path / "values.jsonl"
    source.write_bytes(b'\xef\xbb\xbf{"a": 1}\r\n\r\n  {"b": "\\u00e9 x"}\n{"c": \n[]')  # a BOM, CRLF, a blank line, no final newline
    for size in (1, 2, 5, 1 << 20):
        monkeypatch.setattr(reader_module, "CHUNK_BYTES", size)
        records = list(ObjectFile(source))
        assert [(r.line, r.payload, r.error) for r in records] == [
            (1, {"a": 1}, None),
            (3, {"b": "é x"}, None),
            (4, None, "not valid JSON: unexpected end of data (column 6)"),
            (5, [], None),
        ], size


def test_a_terminal_gets_the_progress_bar(tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "objects.jsonl", OBJECTS)
    leader, follower = pty.openpty()
    try:
        process = subprocess.run(
            [sys.executable, "-m", "searchd", "import", str(source), "--config", str(QUICKSTART), "--data", str(tmp_path / "data"), "--log-level", "warning"],
            stderr=follower, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, timeout=120, check=False,
        )
        os.close(follower)
        follower = -1
        chunks = []
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # the terminal has no writer left
                break
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(leader)
        if follower >= 0:
            os.close(follower)
    shown = b"".join(chunks).decode()
    assert process.returncode == 0 and process.stdout.decode().strip() == "8 stored, 0 already stored unchanged, 0 failed"
    assert shown.startswith("\r[########################] 100%, 8 object(s), "), shown
    assert shown.endswith("/s, ETA 0:00\x1b[K\r\n"), shown  # the terminal turns "\n" into "\r\n"


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(alphabet=st.characters(codec="utf-8"), max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(alphabet='ab"\\,[]{}\n é', max_size=5), inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(values=st.lists(JSON_VALUES, max_size=6), indent=st.sampled_from([None, 0, 2]), chunk=st.integers(1, 40))
def test_the_array_scanner_agrees_with_json_on_any_document(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, values: list[Any], indent: int | None, chunk: int) -> None:
    pieces = [json.dumps(v, indent=indent, ensure_ascii=False) for v in values]
    text, lines = "[\n", []
    for position, piece in enumerate(pieces):
        lines.append(text.count("\n") + 1)
        text += piece + (",\n" if position + 1 < len(pieces) else "\n")
    text += "]"
    source = tmp_path / "values.json"
    source.write_text(text, encoding="utf-8")
    monkeypatch.setattr(reader_module, "CHUNK_BYTES", chunk)
    records = list(ObjectFile(source))
    assert [(r.line, r.payload, r.error) for r in records] == [(line, value, None) for line, value in zip(lines, values)]


@ON_BOTH_BACKENDS
def test_import_through_a_running_server_reports_like_the_offline_import(
    tmp_path: Path, start_server: StartServer, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    pipe = tmp_path / "held.jsonl"
    os.mkfifo(pipe)  # holds the server in "not ready" until this test writes it
    server = start_server(QUICKSTART, tmp_path / "data", "--load", str(pipe), ready=False)
    bad = {**OBJECTS[1], "properties": {**OBJECTS[1]["properties"], "rating": "high"}}
    source = write_jsonl(tmp_path / "objects.jsonl", [OBJECTS[0], bad, *OBJECTS[2:]])
    with client(server) as http:

        def starting() -> bool:
            try:
                phase: str = http.get("/v1/.well-known/ready").json()["phase"]
                return phase.startswith("loading")
            except httpx.TransportError:
                return False

        wait_for(starting, "the server to start importing")
        code, out, err = run(capsys, source, "--url", server.url)
        assert (code, out, err) == (2, "", f"import stopped: the server at {server.url} is not ready (loading {pipe}) (wait until GET /v1/.well-known/ready answers 200, then import)")
        with pipe.open("w", encoding="utf-8"):
            pass  # an empty load: the server becomes ready
        wait_for(lambda: http.get("/v1/.well-known/ready").status_code == 200, "the server to be ready")
        rejects = tmp_path / "rejects.jsonl"
        code, out, _ = run(capsys, source, "--url", server.url, "--rejects", rejects)
        assert (code, out) == (1, f"7 stored, 0 already stored unchanged, 1 failed; failed objects written to {rejects}")
        assert errors(caplog) == [f"{source}:2: id {bad['id']}: property 'rating' expects a finite number (NUMBER), got str 'high' (send the value with the type declared in the config)"]
        assert [json.loads(line) for line in rejects.read_text(encoding="utf-8").splitlines()] == [bad]
        count = http.post("/v1/graphql", json={"query": "{ Aggregate { Article { meta { count } } } }"}).json()
        assert count == {"data": {"Aggregate": {"Article": [{"meta": {"count": 7}}]}}}


def test_import_needs_either_a_config_or_a_url(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = write_jsonl(tmp_path / "objects.jsonl", OBJECTS)
    message = "nothing imported: give --config (and --data) to write into a stopped server's data directory, or --url to import through a running server"
    assert run(capsys, source) == (2, "", message)
    assert run(capsys, source, "--config", QUICKSTART, "--url", "http://127.0.0.1:9") == (2, "", message)


