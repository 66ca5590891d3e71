"""Importing JSONL / JSON array files of objects through the engine core (``searchd import``, ``serve --load``)."""

from searchd.importer.progress import Snapshot
from searchd.importer.reader import ObjectFile, Record
from searchd.importer.run import EngineTarget, Importer, Summary, Target, open_files

__all__ = ["EngineTarget", "Importer", "ObjectFile", "Record", "Snapshot", "Summary", "Target", "open_files"]
