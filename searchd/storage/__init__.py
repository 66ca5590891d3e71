"""Durable object storage: the source of truth every index is rebuilt from."""

from searchd.storage.store import ObjectStore, StoredObject

__all__ = ["ObjectStore", "StoredObject"]
