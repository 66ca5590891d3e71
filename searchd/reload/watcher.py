"""What the config manager's file watcher reacts to, and when a changed config is read."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import anyio.to_thread
import watchfiles

from searchd.config.loader import YAML_SUFFIXES, config_digest

# The watcher reads a changed config again until it holds still (an editor saving in place truncates first).
SETTLE_S = 0.1
SETTLE_READS = 10


def config_events(config_path: Path, data_dir: Path) -> Callable[[watchfiles.Change, str], bool]:
    """The watcher's filter: only events that can change what the config files hold.

    That is a YAML file (or, for a single-file config, that file), or a hidden entry
    starting with ``..`` (a Kubernetes ConfigMap swaps its ``..data`` link and
    ``..<timestamp>`` directory).  Anything else in the directory (a server log, the
    data directory, editor swap files) is ignored, so it cannot trigger anything at all;
    what passes is still compared by content digest before a reload.
    """
    usual = watchfiles.DefaultFilter()
    single = None if config_path.is_dir() else {os.path.abspath(config_path), os.path.realpath(config_path)}
    inside_data = tuple({str(data_dir.absolute()) + os.sep, str(data_dir.resolve()) + os.sep})

    def relevant(change: watchfiles.Change, path: str) -> bool:
        path = os.path.abspath(path)
        if path.startswith(inside_data) or not usual(change, path):
            return False
        name = os.path.basename(path)
        if single is not None:
            return path in single or name.startswith("..")
        # A directory added or removed (a rename of one holding YAML files) has no suffix; a growing log file is only modified.
        return name.endswith(YAML_SUFFIXES) or name.startswith("..") or change is not watchfiles.Change.modified

    return relevant


async def settled_digest(config_path: Path) -> str:
    """The config's digest once two reads ``SETTLE_S`` apart agree (at most ``SETTLE_READS`` reads).

    An editor that saves in place truncates the file and then writes it: read in between, the config is
    empty or cut short, and its reload would fail.  A file still changing is read again instead.
    """
    digest = await anyio.to_thread.run_sync(config_digest, config_path)
    for _ in range(SETTLE_READS):
        await anyio.sleep(SETTLE_S)
        again = await anyio.to_thread.run_sync(config_digest, config_path)
        if again == digest:
            break
        digest = again
    return digest
