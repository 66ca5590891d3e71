"""What applying a config to a data directory changes: the plan against the spec applied there last.

The applied spec itself is kept by the store (``searchd.storage``); the edges
(``searchd plan``, a server's start) ask reload/, which owns applying configs, and do
not reach into storage.
"""

from __future__ import annotations

from collections.abc import Callable

from searchd.config.revision import redacted
from searchd.config.spec import Spec
from searchd.reload.plan import Plan, classify
from searchd.storage.applied import Applied


def plan_against_applied(
    applied: Applied | None,
    spec: Spec,
    object_counts: Callable[[str], int] | None = None,
    property_counts: Callable[[str, str], int] | None = None,
) -> tuple[Applied | None, Plan]:
    """The spec applied last (None: a first start, as the store says) and the plan from it to ``spec``; counts only word what would be dropped."""
    return applied, classify(applied.spec if applied else None, redacted(spec), object_counts, property_counts)
