"""What the SQLite and PostgreSQL stores read the same way, each through its own filter compiler and connections."""

from __future__ import annotations

import abc
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Any

from searchd.records import StoredObject
from searchd.storage.tables import TaggedTables
from searchd.where import Filter, SortKey

PAGE = 5000  # rows per page when a whole table is read (an index rebuilt from the store)


class SqlStore(TaggedTables):
    """A ``Store`` over SQL tables (``searchd.storage.tables``); statements are written with ``?`` marks."""

    @abc.abstractmethod
    def _read(self, bulk: bool = False) -> AbstractContextManager[Any]:
        """A reader connection; ``bulk`` for reads of a whole table."""

    @abc.abstractmethod
    def _to_sql(self, where: Filter) -> tuple[str, list[Any]]:
        """The filter as this backend's boolean expression over the table aliased ``objects``, and its parameters."""

    @abc.abstractmethod
    def _order_sql(self, order: Sequence[SortKey]) -> str:
        """ORDER BY terms (each followed by ", ") before the id."""

    @abc.abstractmethod
    def _objects(self, collection: str, rows: list[tuple[Any, ...]], vectors: bool) -> list[StoredObject]:
        """(doc, id, properties, created_ms, updated_ms) rows as objects, with their vectors when asked."""

    @abc.abstractmethod
    def get_many(self, collection: str, object_ids: Sequence[str], vectors: bool = True) -> dict[str, StoredObject]: ...

    @abc.abstractmethod
    def get_docs(self, collection: str, docs: Sequence[int], vectors: bool = False) -> dict[int, StoredObject]: ...

    def _hint(self, collection: str, where: Filter) -> str:
        """Text after the table in a filtered read (SQLite's INDEXED BY); none by default."""
        return ""

    def _properties(self, stored: Any) -> dict[str, Any]:
        """Properties as the driver returns them (already a dict unless a backend says otherwise)."""
        properties: dict[str, Any] = stored
        return properties

    def get(self, collection: str, object_id: str, vectors: bool = True) -> StoredObject | None:
        return self.get_many(collection, [object_id], vectors).get(object_id)

    def list_objects(
        self,
        collection: str | None,
        limit: int,
        offset: int = 0,
        after: str | None = None,
        where: Filter | None = None,
        order: Sequence[SortKey] = (),
        vectors: bool = True,
    ) -> list[StoredObject]:
        """Objects ordered by ``order``, then id; ``after`` is an exclusive id cursor within one collection."""
        names = [collection] if collection is not None else sorted(self._views()[0])
        found: list[StoredObject] = []
        skip = offset
        for name in names:  # without a collection: collections in name order, each in id order
            table = self._table(name)
            if table is None:
                continue
            clauses: list[str] = []
            params: list[Any] = []
            if after is not None:
                clauses.append(self._sql("id > ?"))
                params.append(after)
            hint = ""
            if where is not None:
                sql, values = self._to_sql(where)
                clauses.append(f"({sql})")
                params.extend(values)
                hint = self._hint(name, where)
            condition = f"WHERE {' AND '.join(clauses)}" if clauses else ""
            with self._read() as db:
                rows = db.execute(
                    f"SELECT doc, id, properties, created_ms, updated_ms FROM {table} AS objects {hint} {condition} "
                    + self._sql(f"ORDER BY {self._order_sql(order)}id LIMIT ? OFFSET ?"),
                    (*params, limit - len(found), skip),
                ).fetchall()
                if collection is None and skip:
                    skip = max(0, skip - int(db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]))
            found += self._objects(name, rows, vectors)
            if len(found) >= limit:
                break
        return found[:limit]

    def docs_matching(self, collection: str, where: Filter) -> list[int]:
        """Docs of a collection's objects that pass a filter (the in-memory columns answer most filters faster)."""
        table = self._table(collection)
        if table is None:
            return []
        sql, params = self._to_sql(where)
        with self._read() as db:
            return [int(r[0]) for r in db.execute(f"SELECT doc FROM {table} AS objects {self._hint(collection, where)} WHERE {sql}", params)]

    def count_matching(self, collection: str, where: Filter | None = None) -> int:
        table = self._table(collection)
        if table is None:
            return 0
        if where is None:  # a bare COUNT(*): SQLite counts the b-tree's pages instead of visiting rows
            with self._read() as db:
                return int(db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])
        sql, params = self._to_sql(where)
        with self._read() as db:
            return int(db.execute(f"SELECT COUNT(*) FROM {table} AS objects {self._hint(collection, where)} WHERE {sql}", params).fetchone()[0])

    def count(self, collection: str) -> int:
        return self.count_matching(collection)

    def _pages(self, table: str | None, columns: str) -> Iterator[list[tuple[Any, ...]]]:
        """A whole table (doc first in ``columns``) in doc order, a page at a time, through a bulk reader."""
        if table is None:
            return
        last = 0
        while True:
            with self._read(bulk=True) as db:
                rows = db.execute(self._sql(f"SELECT {columns} FROM {table} WHERE doc > ? ORDER BY doc LIMIT {PAGE}"), (last,)).fetchall()
            if not rows:
                return
            last = rows[-1][0]
            yield rows

    def iter_properties(self, collection: str, docs: Sequence[int] | None = None) -> Iterator[tuple[int, dict[str, Any]]]:
        """Every object's (doc, properties) (or those of ``docs``): what BM25 and the filter columns are built from."""
        table = self._table(collection)
        if table is None:
            return
        if docs is not None:
            for obj in self.get_docs(collection, docs).values():
                yield obj.doc, obj.properties
            return
        for rows in self._pages(table, "doc, properties"):
            for doc, properties in rows:
                yield int(doc), self._properties(properties)

    def iter_objects(self, collection: str) -> Iterator[StoredObject]:
        """Every object of a collection, without vectors, in doc order: what the doc table is built from."""
        for rows in self._pages(self._table(collection), "doc, id, properties, created_ms, updated_ms"):
            yield from self._objects(collection, rows, False)

    def ids_after(self, collection: str, after: str, limit: int) -> list[tuple[str, int]]:
        """(id, updated_ms) in id order: a cursor that a background job can resume from."""
        table = self._table(collection)
        if table is None:
            return []
        with self._read() as db:
            rows = db.execute(self._sql(f"SELECT id, updated_ms FROM {table} WHERE id > ? ORDER BY id LIMIT ?"), (after, limit)).fetchall()
        return [(object_id, int(updated)) for object_id, updated in rows]
