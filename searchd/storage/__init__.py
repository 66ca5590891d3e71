"""Durable object storage: the source of truth every index is rebuilt from."""

from searchd.records import StoredObject
from searchd.storage.store import ObjectStore

__all__ = ["ObjectStore", "StoredObject"]
