"""Durable object storage: the source of truth every index is rebuilt from (SQLite by default, or PostgreSQL)."""

from searchd.records import StoredObject
from searchd.storage.base import Store
from searchd.storage.postgres import PostgresStore
from searchd.storage.sqlite import SqliteStore

__all__ = ["PostgresStore", "SqliteStore", "Store", "StoredObject"]
