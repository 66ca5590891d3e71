"""The file watcher reacts to config files only (issue #13): a server log written inside the config
directory used to make it log a line about its own growth, about 20 times a second, forever."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import pytest
import watchfiles

from searchd.reload.watcher import config_events
from tests.conftest import BACKENDS, ClientFactory

pytestmark = pytest.mark.parametrize("storage_backend", BACKENDS, indirect=True)

DEADLINE_S = 30.0

CONFIG = """\
collections:
  - name: Article
    description: first
    properties:
      - {name: title, type: TEXT}
"""


def test_the_filter_passes_config_files_and_configmap_swaps_only(tmp_path: Path) -> None:
    config, data = tmp_path / "config", tmp_path / "config" / "data"
    config.mkdir()
    relevant = config_events(config, data)
    modified, added, deleted = watchfiles.Change.modified, watchfiles.Change.added, watchfiles.Change.deleted
    assert relevant(modified, str(config / "searchd.yaml")) and relevant(added, str(config / "sub" / "more.yml"))
    assert relevant(added, str(config / "..data")) and relevant(added, str(config / "..2026_12_06"))
    assert relevant(deleted, str(config / "sub"))  # a directory that held YAML files, renamed away
    assert not relevant(modified, str(config / "server.log"))
    assert not relevant(modified, str(config / "notes.txt"))
    assert not relevant(modified, str(data / "objects.sqlite"))
    assert not relevant(modified, str(config / ".searchd.yaml.swp"))

    single = config / "searchd.yaml"
    single.write_text(CONFIG, encoding="utf-8")
    relevant = config_events(single, data)
    assert relevant(modified, str(single)) and relevant(added, str(config / "..data"))
    assert not relevant(modified, str(config / "other.yaml")) and not relevant(added, str(config / "server.log"))


class _FileHandler(logging.Handler):
    """What `searchd serve config/ >> config/server.log` does: every log record is appended to a file in the config directory."""

    def __init__(self, path: Path) -> None:
        super().__init__(logging.DEBUG)
        self.path = path
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        line = f"{record.name}: {record.getMessage()}"
        self.lines.append(line)
        with self.path.open("a", encoding="utf-8") as out:
            out.write(line + "\n")


def test_a_log_file_in_the_config_directory_triggers_nothing(client_factory: ClientFactory, tmp_path: Path) -> None:
    config = tmp_path / "config"
    config.mkdir()
    (config / "searchd.yaml").write_text(CONFIG, encoding="utf-8")
    handler = _FileHandler(config / "server.log")
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.INFO)
    root.addHandler(handler)
    try:
        client = client_factory(config)
        first = client.get("/v1/config/status").json()["lastReload"]
        logging.getLogger("searchd.test").info("the log file grows")
        # A real edit afterwards: once it is applied, the watcher has handled every event before it.
        staged = config / ".searchd.yaml.new"  # saved by rename: one event, never a half-written file under load
        staged.write_text(CONFIG.replace("description: first", "description: second"), encoding="utf-8")
        os.replace(staged, config / "searchd.yaml")
        deadline = time.monotonic() + DEADLINE_S
        # The schema changes when the new catalog swaps in; lastReload is recorded just after (the applied spec is saved
        # between the two): wait for both.
        while client.get("/v1/schema/Article").json()["description"] != "second" or client.get("/v1/config/status").json()["lastReload"]["at"] == first["at"]:
            assert time.monotonic() < deadline, handler.lines
            time.sleep(0.02)
        last = client.get("/v1/config/status").json()["lastReload"]
        assert last["trigger"] == "file change" and last["result"] == "applied" and last["at"] > first["at"]
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
    watcher_lines = [line for line in handler.lines if line.startswith("watchfiles")]
    reloads = [line for line in handler.lines if line.startswith("searchd.reload: config reload (file change)")]
    assert watcher_lines == [], watcher_lines
    assert len(reloads) == 1, handler.lines

