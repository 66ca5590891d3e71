"""`searchd validate CONFIG [--format text|json]`: exit codes and the exact shape of what it prints."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from searchd.cli import main
from tests.conftest import MULTIMODAL, QUICKSTART, ROOT

WriteConfig = Callable[..., Path]

# file:line:col: path: message (hint)
ISSUE_LINE = re.compile(r"^(?P<file>.+?):(?P<line>\d+):(?P<column>\d+): (?P<path>\S+): (?P<message>.+) \((?P<hint>[^()]+)\)$")

BROKEN = """\
server:
  port: "80"
collections:
  - name: Article
    properties:
      - {name: title, type: TEXTT}
  - name: Book
    properties:
      - {name: _additional, type: TEXT}
      - {name: body, type: TEXT}
    vectors:
      v:
        vectorizer: {module: text2vec-hash, textFields: [body], dimensions: 8}
"""
# (line, column, path) of every error in BROKEN, in the order they are printed.
BROKEN_ERRORS = [
    (2, 9, "server.port"),
    (6, 29, "collections[0].properties[0].type"),
    (9, 16, "collections[1].properties[0].name"),
    (13, 77, "collections[1].vectors.v.vectorizer.dimensions"),
]


PROVIDERS = QUICKSTART.parent.parent / "providers" / "searchd.yaml"


@pytest.mark.parametrize(
    ("config", "summary"),
    [(QUICKSTART, "1 collection(s): Article"), (MULTIMODAL, "1 collection(s): Artwork"), (PROVIDERS, "2 collection(s): Product, Page")],
)
def test_valid_examples_exit_0_with_a_valid_line(capsys: pytest.CaptureFixture[str], config: Path, summary: str) -> None:
    assert main(["validate", str(config)]) == 0
    out, err = capsys.readouterr()
    assert out == f"{config}: valid ({summary})\n"
    assert err == ""


@pytest.mark.parametrize("config", [QUICKSTART, MULTIMODAL])
def test_valid_examples_in_json(capsys: pytest.CaptureFixture[str], config: Path) -> None:
    assert main(["validate", str(config), "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"valid": True, "errors": []}


def test_the_count_comes_after_the_errors_in_one_stream(write_config: WriteConfig) -> None:
    # Errors go to stdout, the count to stderr: with both on one terminal or file, the count must not land among them.
    config = write_config(BROKEN)
    environ = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}  # stdout buffered, as a shell pipe or file makes it
    run = subprocess.run([sys.executable, "-m", "searchd", "validate", str(config)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT, env=environ, check=False)
    lines = run.stdout.splitlines()
    assert run.returncode == 1
    assert lines[-1] == f"{len(BROKEN_ERRORS)} error(s) in {config}", run.stdout
    assert len(lines) == len(BROKEN_ERRORS) + 1 and all(ISSUE_LINE.match(line) for line in lines[:-1]), run.stdout


def test_broken_config_prints_one_line_per_error(capsys: pytest.CaptureFixture[str], write_config: WriteConfig) -> None:
    config = write_config(BROKEN)
    assert main(["validate", str(config)]) == 1
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert len(lines) == len(BROKEN_ERRORS), out
    parsed = []
    for line in lines:
        match = ISSUE_LINE.match(line)
        assert match, f"not in file:line:col: path: message (hint) form: {line!r}"
        parsed.append(match)
    assert [(m["file"], int(m["line"]), int(m["column"]), m["path"]) for m in parsed] == [(str(config), *e) for e in BROKEN_ERRORS]
    assert "'80' is not of type 'integer'" in parsed[0]["message"]
    assert parsed[2]["message"] == "property name '_additional' is reserved"
    assert parsed[2]["hint"] == "rename the property"
    assert parsed[3]["message"] == "8 is outside hash-v1's range 16..4096"
    assert err == f"{len(BROKEN_ERRORS)} error(s) in {config}\n"


def test_broken_config_in_json(capsys: pytest.CaptureFixture[str], write_config: WriteConfig) -> None:
    config = write_config(BROKEN)
    assert main(["validate", str(config), "--format", "json"]) == 1
    out, err = capsys.readouterr()
    body = json.loads(out)
    assert body["valid"] is False
    assert len(body["errors"]) == len(BROKEN_ERRORS)
    assert all(set(e) == {"file", "line", "column", "path", "message", "hint"} for e in body["errors"])
    assert [(e["file"], e["line"], e["column"], e["path"]) for e in body["errors"]] == [(str(config), *e) for e in BROKEN_ERRORS]
    assert all(isinstance(e["message"], str) and e["message"] and e["hint"] for e in body["errors"])
    assert body["errors"][3]["message"] == "8 is outside hash-v1's range 16..4096"
    assert err == ""


def test_json_and_text_report_the_same_errors(capsys: pytest.CaptureFixture[str], write_config: WriteConfig) -> None:
    config = write_config(BROKEN)
    main(["validate", str(config)])
    text = capsys.readouterr().out.splitlines()
    main(["validate", str(config), "--format", "json"])
    errors = json.loads(capsys.readouterr().out)["errors"]
    assert text == [f"{e['file']}:{e['line']}:{e['column']}: {e['path']}: {e['message']} ({e['hint']})" for e in errors]


def test_errors_in_a_directory_name_their_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    config = tmp_path / "config"
    (config / "collections").mkdir(parents=True)
    (config / "searchd.yaml").write_text("server:\n  port: 9000\n", encoding="utf-8")
    broken = config / "collections" / "book.yaml"
    broken.write_text("collections:\n  - name: Book\n    properties:\n      - {name: id, type: TEXT}\n", encoding="utf-8")
    assert main(["validate", str(config)]) == 1
    out, err = capsys.readouterr()
    assert out.splitlines() == [f"{broken}:4:16: collections[0].properties[0].name: property name 'id' is reserved (rename the property)"]
    assert err == f"1 error(s) in {config}\n"


def test_malformed_yaml_reports_root_path(capsys: pytest.CaptureFixture[str], write_config: WriteConfig) -> None:
    config = write_config("server:\n  port: 80\n host: x\n")
    assert main(["validate", str(config)]) == 1
    (line,) = capsys.readouterr().out.splitlines()
    match = ISSUE_LINE.match(line)
    assert match, line
    assert (match["file"], match["line"], match["column"], match["path"]) == (str(config), "3", "2", "<root>")
    assert match["message"].startswith("malformed YAML")


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_nonexistent_path_exits_1_with_a_clear_message(capsys: pytest.CaptureFixture[str], tmp_path: Path, fmt: str) -> None:
    missing = tmp_path / "no-such-config.yaml"
    assert main(["validate", str(missing), "--format", fmt]) == 1
    out, err = capsys.readouterr()
    if fmt == "text":
        assert out == f"{missing}:1:1: <root>: config path does not exist (pass a YAML file or a directory of them)\n"
        assert err == f"1 error(s) in {missing}\n"
    else:
        assert json.loads(out) == {
            "valid": False,
            "errors": [
                {
                    "file": str(missing),
                    "line": 1,
                    "column": 1,
                    "path": "",
                    "message": "config path does not exist",
                    "hint": "pass a YAML file or a directory of them",
                }
            ],
        }


def test_unknown_format_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["validate", str(QUICKSTART), "--format", "xml"])
    assert exited.value.code == 2
    assert "invalid choice: 'xml'" in capsys.readouterr().err


def run_searchd(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "searchd", *args], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )


def test_real_entry_point_on_a_valid_example() -> None:
    result = run_searchd("validate", str(QUICKSTART))
    assert (result.returncode, result.stdout, result.stderr) == (0, f"{QUICKSTART}: valid (1 collection(s): Article)\n", "")


def test_real_entry_point_on_a_broken_config(write_config: WriteConfig) -> None:
    config = write_config(BROKEN)
    result = run_searchd("validate", str(config))
    assert result.returncode == 1, result.stderr
    lines = result.stdout.splitlines()
    assert [m.group("path") for m in map(ISSUE_LINE.match, lines) if m] == [e[2] for e in BROKEN_ERRORS]
    assert len(lines) == len(BROKEN_ERRORS)
    assert result.stderr == f"{len(BROKEN_ERRORS)} error(s) in {config}\n"


def test_every_command_runs_numpy_blas_on_one_thread() -> None:
    # OpenBLAS starts as many threads as it is told (here 4, or the cores there are); searchd sets it to one whatever the command, since each
    # request runs in its own worker thread and BLAS threads of its own spin on a busy machine.
    script = (
        "import json, sys\n"
        "from threadpoolctl import threadpool_info\n"
        "import numpy\n"
        "before = [p['num_threads'] for p in threadpool_info() if p['user_api'] == 'blas']\n"
        "from searchd.cli import main\n"
        f"code = main(['validate', {str(QUICKSTART)!r}])\n"
        "after = [p['num_threads'] for p in threadpool_info() if p['user_api'] == 'blas']\n"
        "print(json.dumps({'code': code, 'before': before, 'after': after}))\n"
    )
    env = {"OPENBLAS_NUM_THREADS": "4", "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=ROOT, timeout=120, check=True)
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["code"] == 0 and len(seen["before"]) == 1  # numpy's OpenBLAS was found (it caps 4 at the cores there are)
    assert seen["after"] == [1]
