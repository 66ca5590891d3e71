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
