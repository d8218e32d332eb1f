"""Statements run on the database driver's own connection, inside SQLAlchemy's transaction.

SQLAlchemy's execution of a statement costs more than a small statement itself on a hot path
(the gate's answers, the webhook intake's batches), so those paths run compiled SQL on the
driver's cursor. On PostgreSQL, :func:`pipeline` also lets a batch send statements that do not
depend on each other's results together (psycopg's pipeline mode): :func:`send` returns a
:class:`Later` whose rows are read when needed, and every statement sent before that read
travels in the same round trip. On SQLite (in process, nothing to save) a statement runs when
it is sent.

Only this module's statements may run inside :func:`pipeline`: SQLAlchemy's own execution
reads a result's description before the result has arrived.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Generic, TypeVar

from sqlalchemy import Connection, Table
from sqlalchemy.exc import DBAPIError

__all__ = ["Later", "driver_cursor", "driver_rows", "fetch_all", "pipeline", "reserve_ids", "send"]

Stored = Mapping[Any, Any]
"""A row as the database returned it, by column name."""
RowT = TypeVar("RowT")


class Later(Generic[RowT]):
    """The rows a statement sent with :func:`send` returns, read on first use (in a pipeline
    that waits for every statement sent before it)."""

    def __init__(
        self,
        conn: Connection | None,
        sql: str,
        cursor: Any,
        read: Callable[[Any], list[RowT]],
    ) -> None:
        self._conn = conn
        self._sql = sql
        self._cursor = cursor
        self._read = read
        self._rows: list[RowT] | None = None

    @classmethod
    def done(cls, rows: list[RowT]) -> Later[RowT]:
        """Rows already read."""
        later = cls(None, "", None, lambda _cursor: rows)
        later._rows = rows
        return later

    def rows(self) -> list[RowT]:
        """The rows (waiting for them if they have not arrived)."""
        if self._rows is None:
            assert self._conn is not None  # noqa: S101 - only done() leaves it None
            try:
                with _translated(self._conn, self._sql):
                    self._rows = self._read(self._cursor)
            finally:
                self._cursor.close()
        return self._rows


def send(
    conn: Connection,
    sql: str,
    params: Any,
    read: Callable[[Any], list[RowT]] | None = None,
    *,
    planned: bool = False,
) -> Later[RowT]:
    """Run ``sql`` on ``conn``'s driver connection; its rows (``read`` from the cursor; none
    without it) when :meth:`Later.rows` asks. In a :func:`pipeline` the statement is only sent.

    ``planned``: PostgreSQL plans the statement for these very parameters and the table as it
    is now, every time (psycopg does not prepare it). A prepared statement's generic plan is
    kept from when it was made: one made while a table was small scanned it ever after."""
    cursor: Any = conn.connection.cursor()  # psycopg's takes options the DB-API's does not
    options = {"prepare": False} if planned and conn.dialect.name == "postgresql" else {}
    try:
        with _translated(conn, sql):
            if params is None:
                cursor.execute(sql, **options)
            else:
                cursor.execute(sql, params, **options)
    except BaseException:
        cursor.close()
        raise
    if read is None:
        cursor.close()
        return Later.done([])
    return Later(conn, sql, cursor, read)


@contextmanager
def pipeline(conn: Connection) -> Iterator[None]:
    """On PostgreSQL, psycopg's pipeline mode for the statements :func:`send` runs in the block
    (each :meth:`Later.rows` and the block's end wait for what was sent); elsewhere nothing."""
    if conn.dialect.name != "postgresql":
        yield
        return
    driver: Any = conn.connection.driver_connection
    with _translated(conn, "pipeline"), driver.pipeline():
        yield


def reserve_ids(conn: Connection, table: Table, count: int) -> list[int]:
    """``count`` new values of ``table``'s serial primary key, in increasing order, for rows
    this transaction will insert with them (PostgreSQL: drawn from the key's sequence; SQLite:
    after the largest key, under the write lock the transaction holds). May run in a
    :func:`pipeline`."""
    if count <= 0:
        return []
    (key,) = table.primary_key.columns
    if conn.dialect.name == "postgresql":  # sent: in a pipeline, with the transaction's BEGIN
        sql = "SELECT nextval(pg_get_serial_sequence(%s, %s)) FROM generate_series(1, %s)"
        drawn = send(conn, sql, (table.name, key.name, count), fetch_all).rows()
        return sorted(int(row[0]) for row in drawn)
    quoted = conn.dialect.identifier_preparer
    sql = f"SELECT max({quoted.quote(key.name)}) FROM {quoted.format_table(table)}"  # noqa: S608
    last = driver_rows(conn, sql)[0][0] or 0
    return list(range(int(last) + 1, int(last) + 1 + count))


def fetch_all(cursor: Any) -> list[Any]:
    """Every row of a cursor's result (a ``read`` for :func:`send`)."""
    return list(cursor.fetchall())


def driver_rows(conn: Connection, sql: str, params: Any = None) -> list[Any]:
    """Run ``sql`` on ``conn``'s driver connection (:func:`driver_cursor`): every row it
    returns, read to the end (none for a statement that returns nothing)."""
    with driver_cursor(conn, sql) as cursor:
        cursor.execute(sql, params) if params is not None else cursor.execute(sql)
        return fetch_all(cursor) if cursor.description is not None else []


@contextmanager
def driver_cursor(conn: Connection, sql: str) -> Iterator[Any]:
    """A cursor of ``conn``'s driver connection (in its transaction, if any), closed after use;
    the driver's errors raised as SQLAlchemy raises them (the API answers 503 for a database
    that is down)."""
    cursor = conn.connection.cursor()
    try:
        with _translated(conn, sql):
            yield cursor
    finally:
        cursor.close()


@contextmanager
def _translated(conn: Connection, sql: str) -> Iterator[None]:
    """The driver's errors raised as SQLAlchemy's."""
    dbapi = conn.dialect.loaded_dbapi
    try:
        yield
    except dbapi.Error as exc:
        raise DBAPIError.instance(sql, None, exc, dbapi.Error, dialect=conn.dialect) from exc
