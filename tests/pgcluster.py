"""The tests' throwaway PostgreSQL cluster: ``scripts.pgcluster``, which the benchmarks start too (they do not import
the tests).  The ``pg_cluster`` fixture (tests/conftest.py) starts one per session; each test gets a database of its
own, dropped afterwards."""

from __future__ import annotations

from scripts.pgcluster import HOW_TO_ENABLE, PG_BIN, Cluster, missing, required

__all__ = ["HOW_TO_ENABLE", "PG_BIN", "Cluster", "missing", "required"]
