"""What applying a config to a data directory changes: the plan against the spec applied there last.

The applied spec itself is kept by storage/ (``searchd.storage.applied``); the edges
(``searchd plan``, a server's start) ask reload/, which owns applying configs, and do
not reach into storage.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from searchd.config.revision import redacted
from searchd.config.spec import Spec
from searchd.reload.plan import Plan, classify
from searchd.storage.applied import Applied, load_applied


def plan_against_applied(
    data_dir: Path,
    spec: Spec,
    object_counts: Callable[[str], int] | None = None,
    property_counts: Callable[[str, str], int] | None = None,
) -> tuple[Applied | None, Plan]:
    """The spec applied in ``data_dir`` (None: a first start) and the plan from it to ``spec``; counts only word what would be dropped."""
    applied = load_applied(data_dir)
    return applied, classify(applied.spec if applied else None, redacted(spec), object_counts, property_counts)
