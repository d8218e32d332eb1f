"""Many rows in one statement whose SQL text does not depend on how many rows there are.

SQLAlchemy sends an ``executemany`` INSERT as multi-row ``VALUES`` lists ("insertmanyvalues"):
a new SQL text for every row count, which the driver must parse again (psycopg caches and
prepares only repeated, short texts), and an UPDATE or an INSERT without RETURNING as one
statement per row. On PostgreSQL the rows here go as one array per column instead, expanded by
``unnest(…) WITH ORDINALITY``: one short, constant statement per table, prepared once per
connection, its parameters adapted by the driver's binary dumpers. On SQLite (in process: no
round trip, no statement parsing worth saving) the compiled INSERT is an ``executemany``, or one
statement per row when it returns the rows. Both run on the driver's cursor: SQLAlchemy's
execution of a statement cost several times the insert itself (:class:`_DriverInsert`).

Hand-written because neither SQLAlchemy nor psycopg offers it: psycopg's ``COPY`` cannot say
``ON CONFLICT`` or ``RETURNING``, and SQLAlchemy's own bulk paths are the ones described above.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import cache
from typing import Any

from sqlalchemy import (
    JSON,
    Column,
    Connection,
    Dialect,
    Insert,
    RowMapping,
    Table,
    Text,
    Update,
    bindparam,
    cast,
    func,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError
from sqlalchemy.types import ARRAY, TypeEngine

__all__ = ["driver_cursor", "driver_rows", "insert_rows", "update_rows"]

Rows = Sequence[Mapping[str, Any]]
Stored = Mapping[Any, Any]
"""A row as inserted, by column name: SQLAlchemy's ``RowMapping`` or a dict."""


def insert_rows(
    conn: Connection,
    table: Table,
    rows: Rows,
    *,
    skip_conflicts: bool = False,
    returning: Sequence[Column[Any]] = (),
) -> list[Stored]:
    """INSERT ``rows`` (each naming the same columns) together; the ``returning``
    columns of the rows inserted (a row skipped for a conflict, with ``skip_conflicts``, returns
    nothing), in the order given when the table's key is serial."""
    if not rows:
        return []
    _same_columns(rows)
    rows = _with_defaults(table, rows)
    names = tuple(rows[0])
    wanted = tuple(c.name for c in returning)
    stored: list[Stored]
    key = (table, names, skip_conflicts, wanted, conn.dialect)
    insert = _INSERTS.get(key)
    if insert is None:
        kind = _PgInsert if conn.dialect.name == "postgresql" else _SqliteInsert
        insert = _INSERTS.setdefault(key, kind(*key))
    stored = insert.run(conn, rows)
    if not returning:
        return []
    keys = list(table.primary_key.columns)
    serial = (
        len(keys) == 1 and keys[0].autoincrement is not False and keys[0].type.python_type is int
    )
    if serial and stored and keys[0].name in stored[0]:
        # serial keys are drawn in the order the rows are inserted: key order is input order
        stored.sort(key=lambda row: row[keys[0].name])
    return stored


def update_rows(
    conn: Connection,
    table: Table,
    key: str,
    rows: Rows,
    *,
    returning: bool = False,
) -> list[RowMapping]:
    """UPDATE the rows whose column ``key`` equals each row's ``key`` value, setting that row's
    other columns, in one statement; with ``returning`` (PostgreSQL only: SQLite's executemany
    returns nothing) every column of each updated row, in no particular order."""
    if not rows:
        return []
    _same_columns(rows)
    names = tuple(rows[0])
    if conn.dialect.name != "postgresql":
        plain = _sqlite_update(table, key, names)
        conn.execute(plain, [{f"v_{k}": v for k, v in row.items()} for row in rows])
        return []
    statement = _pg_update(table, key, names, returning)
    result = conn.execute(statement, _arrays(table, names, rows))
    return list(result.mappings()) if returning else []


def _same_columns(rows: Rows) -> None:
    first = rows[0].keys()
    if any(row.keys() != first for row in rows):
        raise ValueError("rows written together must name the same columns")


def _with_defaults(table: Table, rows: Rows) -> Rows:
    """Rows with the columns' Python-side scalar or callable defaults filled in (an INSERT …
    SELECT does not apply them per row)."""
    missing = [
        column
        for column in table.c
        if column.name not in rows[0]
        and column.default is not None
        and (column.default.is_scalar or column.default.is_callable)
    ]
    if not missing:
        return rows
    values: dict[str, Any] = {}
    for column in missing:
        default: Any = column.default
        values[column.name] = default.arg(None) if default.is_callable else default.arg
    return [{**row, **values} for row in rows]


def _is_json(column: Column[Any]) -> bool:
    return isinstance(column.type, JSON)


def _element(column: Column[Any]) -> TypeEngine[Any]:
    """The array element type carrying one column's values (JSON goes as text)."""
    return Text() if _is_json(column) else column.type


def _arrays(table: Table, names: tuple[str, ...], rows: Rows) -> dict[str, list[Any]]:
    arrays: dict[str, list[Any]] = {}
    for name in names:
        values = [row[name] for row in rows]
        if _is_json(table.c[name]):
            values = [None if v is None else json.dumps(v) for v in values]
        arrays[f"a_{name}"] = values
    return arrays


def _unnest(table: Table, names: tuple[str, ...]) -> Any:
    params = [bindparam(f"a_{n}", type_=ARRAY(_element(table.c[n]))) for n in names]
    return func.unnest(*params).table_valued(*names, with_ordinality="ord").render_derived("u")


def _typed(table: Table, source: Any, name: str) -> Any:
    column = table.c[name]
    value = source.c[name]
    return cast(value, column.type) if _is_json(column) else value


# The statements are built once per shape: SQLAlchemy then finds their compiled form by a cache
# key memoised on the statement object, instead of generating the key again for every batch.


@cache
def _sqlite_insert(table: Table, skip_conflicts: bool, returning: tuple[str, ...]) -> Insert:
    statement = sqlite.insert(table)
    if skip_conflicts:
        statement = statement.on_conflict_do_nothing()
    return statement.returning(*(table.c[n] for n in returning)) if returning else statement


class _DriverInsert(ABC):
    """One INSERT compiled once and run on the driver's cursor, each value converted by its
    column type's own bind and result processors (taken from SQLAlchemy once).

    SQLAlchemy's execution of a cached statement (events, parameter and result set-up) cost
    ~0.1 ms per statement, several times an SQLite insert itself, and on PostgreSQL the gate's
    committer thread spent as much of the interpreter lock on it as the event loop on its HTTP
    work; the gate and the intake write a few statements per batch. The SQL, the parameters and
    the type conversions are still SQLAlchemy's.
    """

    def __init__(
        self,
        table: Table,
        names: tuple[str, ...],
        skip_conflicts: bool,
        returning: tuple[str, ...],
        dialect: Dialect,
    ) -> None:
        self.table = table
        self.names = names
        self.returning = returning
        self.dialect = dialect
        statement = self._statement(skip_conflicts)
        self.compiled = statement.compile(dialect=dialect, column_keys=list(names))
        self.sql: str = self.compiled.string
        self.binds = self._binds()
        """(parameter, SQLAlchemy's bind processor or None), in the driver's order."""
        self._results: tuple[tuple[str, Any], ...] | None = None

    @abstractmethod
    def _statement(self, skip_conflicts: bool) -> Any:
        """The INSERT of ``self.names`` into ``self.table``, returning ``self.returning``."""

    @abstractmethod
    def _binds(self) -> tuple[tuple[str, Any], ...]:
        """The compiled statement's parameters with their bind processors (or a ValueError
        when the compiled form is not the one :meth:`run` fills)."""

    @abstractmethod
    def run(self, conn: Connection, rows: Rows) -> list[Stored]:
        """Insert ``rows``; the rows RETURNING gave, in input order."""

    def _processor(self, name: str) -> Any:
        return self.table.c[name].type.dialect_impl(self.dialect).bind_processor(self.dialect)

    def _refused(self) -> ValueError:
        return ValueError(f"cannot run the INSERT into {self.table.name} on the driver")

    def _stored(self, cursor: Any) -> list[Stored]:
        """The rows the cursor's RETURNING gave, by column name, converted as SQLAlchemy would
        (its result processors chosen once, by the types the driver describes)."""
        if self._results is None:
            self._results = tuple(
                (
                    name,
                    self.table.c[name]
                    .type.dialect_impl(self.dialect)
                    .result_processor(self.dialect, described[1]),
                )
                for name, described in zip(self.returning, cursor.description, strict=True)
            )
        return [
            {
                name: value if result is None else result(value)
                for (name, result), value in zip(self._results, row, strict=True)
            }
            for row in cursor.fetchall()
        ]


class _SqliteInsert(_DriverInsert):
    """SQLite: an ``executemany``, or one statement per row when it returns the rows."""

    def _statement(self, skip_conflicts: bool) -> Any:
        return _sqlite_insert(self.table, skip_conflicts, self.returning)

    def _binds(self) -> tuple[tuple[str, Any], ...]:
        order = tuple(self.compiled.positiontup or ())
        if not self.compiled.positional or set(order) - set(self.names):
            raise self._refused()
        return tuple((name, self._processor(name)) for name in order)

    def run(self, conn: Connection, rows: Rows) -> list[Stored]:
        params = [
            [row[name] if bind is None else bind(row[name]) for name, bind in self.binds]
            for row in rows
        ]
        with driver_cursor(conn, self.sql) as cursor:
            if not self.returning:
                cursor.executemany(self.sql, params)
                return []
            stored: list[Stored] = []
            for values in params:  # RETURNING: one statement per row, in input order
                cursor.execute(self.sql, values)
                stored += self._stored(cursor)
            return stored


class _PgInsert(_DriverInsert):
    """PostgreSQL: one statement, the rows as one array per column (:func:`_unnest`)."""

    def _statement(self, skip_conflicts: bool) -> Any:
        return _pg_insert(self.table, self.names, skip_conflicts, self.returning)

    def _binds(self) -> tuple[tuple[str, Any], ...]:
        binds = self.compiled.binds
        if self.compiled.positional or set(binds) != {f"a_{n}" for n in self.names}:
            raise self._refused()
        return tuple(
            (key, bind.type.dialect_impl(self.dialect).bind_processor(self.dialect))
            for key, bind in binds.items()
        )

    def run(self, conn: Connection, rows: Rows) -> list[Stored]:
        arrays = _arrays(self.table, self.names, rows)
        params = {
            key: arrays[key] if bind is None else bind(arrays[key]) for key, bind in self.binds
        }
        with driver_cursor(conn, self.sql) as cursor:
            cursor.execute(self.sql, params)
            return self._stored(cursor) if self.returning else []


def driver_rows(conn: Connection, sql: str, params: Any = None) -> list[Any]:
    """Run ``sql`` on ``conn``'s driver connection (:func:`driver_cursor`): every row it
    returns, read to the end (none for a statement that returns nothing)."""
    with driver_cursor(conn, sql) as cursor:
        cursor.execute(sql, params) if params is not None else cursor.execute(sql)
        return list(cursor.fetchall()) if cursor.description is not None else []


@contextmanager
def driver_cursor(conn: Connection, sql: str) -> Iterator[Any]:
    """A cursor of ``conn``'s driver connection (in its transaction, if any), closed after use;
    the driver's errors raised as SQLAlchemy raises them (the API answers 503 for a database
    that is down)."""
    cursor = conn.connection.cursor()
    dbapi = conn.dialect.loaded_dbapi
    try:
        yield cursor
    except dbapi.Error as exc:
        raise DBAPIError.instance(sql, None, exc, dbapi.Error, dialect=conn.dialect) from exc
    finally:
        cursor.close()


_INSERTS: dict[tuple[Table, tuple[str, ...], bool, tuple[str, ...], Dialect], _DriverInsert] = {}
"""The INSERTs compiled so far, by table, columns, conflict handling, RETURNING and dialect."""


@cache
def _sqlite_update(table: Table, key: str, names: tuple[str, ...]) -> Update:
    setters: dict[str, Any] = {n: bindparam(f"v_{n}") for n in names if n != key}
    return update(table).where(table.c[key] == bindparam(f"v_{key}")).values(**setters)


@cache
def _pg_insert(
    table: Table, names: tuple[str, ...], skip_conflicts: bool, returning: tuple[str, ...]
) -> Any:
    source = _unnest(table, names)
    rows = select(*(_typed(table, source, n) for n in names)).order_by(source.c.ord)
    statement: Any = postgresql.insert(table).from_select(list(names), rows)
    if skip_conflicts:
        statement = statement.on_conflict_do_nothing()
    if returning:
        statement = statement.returning(*(table.c[n] for n in returning))
    return statement


@cache
def _pg_update(table: Table, key: str, names: tuple[str, ...], returning: bool) -> Any:
    source = _unnest(table, names)
    setters = {n: _typed(table, source, n) for n in names if n != key}
    statement: Any = update(table).where(table.c[key] == source.c[key]).values(**setters)
    if returning:
        statement = statement.returning(*table.c)
    return statement
