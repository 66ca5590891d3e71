"""Durable object storage: the source of truth every index is rebuilt from (SQLite by default, or PostgreSQL)."""

from searchd.records import StoredObject
from searchd.storage.base import Store
from searchd.storage.sqlite import SqliteStore

# The PostgreSQL store is imported where it is chosen (searchd.storage.postgres): the embedded default never loads psycopg.
__all__ = ["SqliteStore", "Store", "StoredObject"]
