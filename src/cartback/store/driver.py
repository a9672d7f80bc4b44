"""The hottest inserts of ingest (a new checkout's subscriber, events and checkout row) run on SQLite as the
driver's own `executemany`, their SQL written once per engine; so does the dispatcher's read of the
events it has not seen (`Select`).

Through SQLAlchemy each executemany also built and processed a parameter dictionary per row (the
compiled-statement lookup, `construct_params`, the result machinery): a sixth to a fifth of the
statement's CPU (40 events of a checkout batch: 26-36 µs an event through SQLAlchemy, 20-31 µs here).
Here the values are bound by the very processors SQLAlchemy would use (the column types' own: UTC
datetimes, JSON through the engine's serializer), so the stored bytes are the same, and a driver error is
raised as the SQLAlchemy error it would have been, so the writer's savepoint and retry rules see no
difference. On PostgreSQL, and outside a transaction, the rows go through SQLAlchemy as before (there
they are sent in one pipelined round trip: store/db.pipelined).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.exc import DBAPIError

Processor = Callable[[Any], Any]
T = TypeVar("T")


class _Statement:
    """A statement on `table`'s `columns`, its SQL written and its columns' processors found once per
    dialect (the last engine's only: tests make many engines, the server one)."""

    def __init__(self, table: sa.Table, columns: Sequence[str]) -> None:
        self.table = table
        self.columns = tuple(columns)
        self._prepared: tuple[Dialect, str, list[tuple[int, Processor]]] | None = None

    def _sql(self, quote: Callable[[str], str]) -> str:
        raise NotImplementedError

    def _processor(self, column: sa.Column[Any], dialect: Dialect) -> Processor | None:
        raise NotImplementedError

    def _for(self, dialect: Dialect) -> tuple[str, list[tuple[int, Processor]]]:
        """The SQL, and (position, processor) of the columns whose type processes values."""
        prepared = self._prepared
        if prepared is None or prepared[0] is not dialect:
            processors: list[tuple[int, Processor]] = []
            for i, name in enumerate(self.columns):
                process = self._processor(self.table.c[name], dialect)
                if process is not None:
                    processors.append((i, process))
            sql = self._sql(dialect.identifier_preparer.quote)
            self._prepared = prepared = (dialect, sql, processors)
        return prepared[1], prepared[2]

    def _on_cursor(self, tx: Connection, sql: str, use: Callable[[Any], T]) -> T:
        """`use(cursor)` on the driver's own cursor; a driver error raised as SQLAlchemy would raise it."""
        dialect = tx.dialect
        dbapi = dialect.loaded_dbapi
        cursor = tx.connection.driver_connection.cursor()  # type: ignore[union-attr]
        try:
            return use(cursor)
        except dbapi.Error as exc:
            raise DBAPIError.instance(
                sql, None, exc, dbapi.Error, hide_parameters=True, dialect=dialect
            ) from exc
        finally:
            cursor.close()


def _on_sqlite(tx: Connection) -> bool:
    return tx.dialect.name == "sqlite" and tx.dialect.paramstyle == "qmark"


class Insert(_Statement):
    """`INSERT INTO table (columns) VALUES (...)`, for rows given as lists in `columns` order."""

    def __init__(self, table: sa.Table, columns: Sequence[str]) -> None:
        super().__init__(table, columns)
        self.statement = table.insert()

    def _sql(self, quote: Callable[[str], str]) -> str:
        names = ", ".join(quote(name) for name in self.columns)
        marks = ", ".join("?" for _ in self.columns)
        return f"INSERT INTO {quote(self.table.name)} ({names}) VALUES ({marks})"

    def _processor(self, column: sa.Column[Any], dialect: Dialect) -> Processor | None:
        return column.type._cached_bind_processor(dialect)

    def run(self, tx: Connection, rows: list[list[Any]]) -> None:
        """Insert `rows` (each a list in `columns` order; processed in place)."""
        if not rows:
            return
        if not _on_sqlite(tx) or not tx.in_transaction():
            tx.execute(self.statement, [dict(zip(self.columns, row, strict=True)) for row in rows])
            return
        sql, processors = self._for(tx.dialect)
        for row in rows:
            for i, process in processors:
                row[i] = process(row[i])
        self._on_cursor(tx, sql, lambda cursor: cursor.executemany(sql, rows))


class Select(_Statement):
    """`SELECT columns FROM table WHERE <where> ORDER BY <order> LIMIT ?`, rows as lists of the values
    SQLAlchemy would give (the columns' own result processors: aware UTC datetimes, parsed JSON, bools).

    Through SQLAlchemy, each row of the dispatcher's read of new events cost a Row, its processing and an
    attribute lookup per column: about as much as dispatching an event nobody waits for. `where` and
    `order` are SQL text with `?` marks for `run`'s parameters, the limit the last of them."""

    def __init__(self, table: sa.Table, columns: Sequence[str], where: str, order: str) -> None:
        super().__init__(table, columns)
        self.where, self.order = where, order

    def _sql(self, quote: Callable[[str], str]) -> str:
        names = ", ".join(quote(name) for name in self.columns)
        table = quote(self.table.name)
        return f"SELECT {names} FROM {table} WHERE {self.where} ORDER BY {self.order} LIMIT ?"

    def _processor(self, column: sa.Column[Any], dialect: Dialect) -> Processor | None:
        return column.type._cached_result_processor(dialect, None)

    def applies(self, tx: Connection) -> bool:
        """Only on SQLite (qmark parameters); PostgreSQL's callers go through SQLAlchemy."""
        return _on_sqlite(tx)

    def run(self, tx: Connection, parameters: Sequence[Any]) -> list[list[Any]]:
        sql, processors = self._for(tx.dialect)
        found = self._on_cursor(tx, sql, lambda cursor: cursor.execute(sql, parameters).fetchall())
        rows = [list(row) for row in found]
        for row in rows:
            for i, process in processors:
                row[i] = process(row[i])
        return rows
