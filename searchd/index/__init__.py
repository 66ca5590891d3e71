"""Vector indexes: derived from the object store, rebuilt from it when missing."""

from searchd.index.base import Hit, VectorIndex, build_index
from searchd.index.flat import FlatIndex

__all__ = ["FlatIndex", "Hit", "VectorIndex", "build_index"]
