"""Each package imports on its own, as the first searchd import (a benchmark or a plugin may start anywhere)."""

from __future__ import annotations

import subprocess
import sys

import pytest

FIRST_IMPORTS = ("searchd.modules", "searchd.modules.jina", "searchd.config", "searchd.engine", "searchd.reload.manager", "searchd.server", "searchd.cli")


@pytest.mark.parametrize("module", FIRST_IMPORTS)
def test_a_package_imports_first(module: str) -> None:
    done = subprocess.run([sys.executable, "-c", f"import {module}"], check=False, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]


def test_the_embedded_default_loads_neither_psycopg_nor_protoc() -> None:
    """PostgreSQL's driver is loaded only where a PostgreSQL store is chosen, and protoc runs in a child process:
    the server of the first command (SQLite) and the benchmark environments need neither installed."""
    code = "import sys, searchd.cli, searchd.server.app, searchd.grpc.service; print(sorted(m for m in ('psycopg', 'psycopg_pool', 'grpc_tools.protoc') if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"
