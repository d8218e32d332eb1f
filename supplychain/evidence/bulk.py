"""Many rows in one statement whose SQL text does not depend on how many rows there are.

SQLAlchemy sends an ``executemany`` INSERT as multi-row ``VALUES`` lists ("insertmanyvalues"):
a new SQL text for every row count, which the driver must parse again (psycopg caches and
prepares only repeated, short texts), and an UPDATE or an INSERT without RETURNING as one
statement per row. On PostgreSQL the rows here go as one JSON parameter instead (one array per
row, written by the C JSON encoder), expanded by ``jsonb_array_elements(…) WITH ORDINALITY`` and
each value cast to its column's type: one short, constant statement per table, prepared once per
connection. On SQLite (in process: no round trip, no statement parsing worth saving) the
compiled INSERT is an ``executemany``, or one statement per row when it returns the rows. Both
run on the driver's cursor (:mod:`supplychain.evidence.driver`): SQLAlchemy's execution of a
statement cost several times the insert itself (:class:`_DriverStatement`), and
:func:`send_insert` and :func:`send_update` can be sent in a pipeline with other statements.

Hand-written because neither SQLAlchemy nor psycopg offers it: psycopg's ``COPY`` cannot say
``ON CONFLICT`` or ``RETURNING``, and SQLAlchemy's own bulk paths are the ones described above.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import (
    ARRAY,
    JSON,
    Column,
    Connection,
    Dialect,
    Insert,
    LargeBinary,
    String,
    Table,
    Text,
    Update,
    and_,
    any_,
    bindparam,
    cast,
    func,
    literal_column,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite

from supplychain.evidence.driver import Later, driver_cursor, send

__all__ = ["insert_rows", "send_insert", "send_update"]

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
    return send_insert(conn, table, rows, skip_conflicts=skip_conflicts, returning=returning).rows()


def send_insert(
    conn: Connection,
    table: Table,
    rows: Rows,
    *,
    skip_conflicts: bool = False,
    returning: Sequence[Column[Any]] = (),
) -> Later[Stored]:
    """:func:`insert_rows`, its rows read later (:func:`~supplychain.evidence.driver.pipeline`)."""
    if not rows:
        return Later.done([])
    _same_columns(rows)
    rows = _with_defaults(table, rows)
    names = tuple(rows[0])
    wanted = tuple(c.name for c in returning)
    key = (table, names, skip_conflicts, wanted, conn.dialect)
    insert = _INSERTS.get(key)
    if insert is None:
        if conn.dialect.name == "postgresql":
            statement = _pg_insert(table, names, skip_conflicts, wanted)
            insert = _PgStatement(table, names, wanted, conn.dialect, statement)
        else:
            statement = _sqlite_insert(table, skip_conflicts, wanted)
            insert = _SqliteInsert(table, names, wanted, conn.dialect, statement)
        insert = _INSERTS.setdefault(key, insert)
    return insert.send(conn, rows)


def send_update(
    conn: Connection, table: Table, key: str, rows: Rows, *, returning: bool = False
) -> Later[Stored]:
    """UPDATE the rows whose column ``key`` equals each row's ``key`` value, setting that row's
    other columns, in one statement; with ``returning`` (PostgreSQL only: SQLite's executemany
    returns nothing) every column of each updated row, in no particular order, read later
    (:func:`~supplychain.evidence.driver.pipeline`)."""
    if not rows:
        return Later.done([])
    _same_columns(rows)
    names = tuple(rows[0])
    if conn.dialect.name != "postgresql":
        plain = _sqlite_update(table, key, names)
        conn.execute(plain, [{f"v_{k}": v for k, v in row.items()} for row in rows])
        return Later.done([])
    return _pg_update(table, key, names, returning, conn.dialect).send(conn, rows)


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


def _json_text(value: Any) -> str | None:
    """A JSON column's value as JSON text (None stays SQL NULL, not JSON ``null``)."""
    return None if value is None else json.dumps(value)


def _plain(value: Any) -> str:
    """A bound value JSON cannot carry, as the text PostgreSQL reads for its column type."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bytes | bytearray | memoryview):
        return "\\x" + bytes(value).hex()  # bytea's hex input format
    raise TypeError(f"cannot send a {type(value).__name__} in a batch of rows")


def _pg_value(table: Table, names: tuple[str, ...], source: Any, name: str) -> Any:
    """Column ``name`` of a row of the batch: its text (``->>``), cast to the column's type.
    Strings are not cast (a cast to ``VARCHAR(n)`` would cut a long value; the column refuses
    it), JSON goes as its text."""
    column = table.c[name]
    text = source.c.v.op("->>")(literal_column(str(names.index(name))))
    if isinstance(column.type, String):
        return text
    return cast(text, column.type)


def _pg_rows() -> Any:
    """The batch's rows, one JSON array per row, numbered in order: ``u(v, ord)``. Read as
    ``jsonb``: parsed once, where each ``->>`` of a ``json`` value parsed its row's text again up
    to that element (a delivery's INSERT, its body in the middle: 0.56 → 0.28 ms for 16 rows)."""
    rows = cast(bindparam("rows", type_=Text()), postgresql.JSONB)
    return (
        func.jsonb_array_elements(rows).table_valued("v", with_ordinality="ord").render_derived("u")
    )


# The statements are built once per shape: SQLAlchemy then finds their compiled form by a cache
# key memoised on the statement object, instead of generating the key again for every batch.


@cache
def _sqlite_insert(table: Table, skip_conflicts: bool, returning: tuple[str, ...]) -> Insert:
    statement = sqlite.insert(table)
    if skip_conflicts:
        statement = statement.on_conflict_do_nothing()
    return statement.returning(*(table.c[n] for n in returning)) if returning else statement


class _DriverStatement(ABC):
    """One statement compiled once and run on the driver's cursor, each value converted by its
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
        returning: tuple[str, ...],
        dialect: Dialect,
        statement: Any,
        column_keys: tuple[str, ...] | None = None,
    ) -> None:
        self.table = table
        self.names = names
        self.returning = returning
        self.dialect = dialect
        keys = list(names if column_keys is None else column_keys)
        self.compiled = statement.compile(dialect=dialect, column_keys=keys)
        self.sql: str = self.compiled.string
        self.binds = self._binds()
        """(name, SQLAlchemy's bind processor or None), in the order :meth:`run` sends them."""
        self._results: tuple[tuple[str, Any], ...] | None = None

    @abstractmethod
    def _binds(self) -> tuple[tuple[str, Any], ...]:
        """The values :meth:`run` sends with their bind processors (or a ValueError when the
        compiled form is not the one :meth:`run` fills)."""

    @abstractmethod
    def send(self, conn: Connection, rows: Rows) -> Later[Stored]:
        """Write ``rows``; the rows RETURNING gives (an INSERT's in input order)."""

    def _processor(self, name: str) -> Any:
        return self.table.c[name].type.dialect_impl(self.dialect).bind_processor(self.dialect)

    def _refused(self) -> ValueError:
        return ValueError(f"cannot run this statement on {self.table.name} on the driver")

    def _in_order(self, cursor: Any) -> list[Stored]:
        """:meth:`_stored`, by the table's serial key when it has one and the rows name it:
        serial keys are drawn in the order rows are inserted, so key order is input order."""
        stored = self._stored(cursor)
        keys = list(self.table.primary_key.columns)
        serial = (
            len(keys) == 1
            and keys[0].autoincrement is not False
            and keys[0].type.python_type is int
        )
        if serial and stored and keys[0].name in stored[0]:
            stored.sort(key=lambda row: row[keys[0].name])
        return stored

    def _stored(self, cursor: Any) -> list[Stored]:
        """The rows the cursor's RETURNING gave, by column name, converted as SQLAlchemy would
        (its result processors chosen once, by the types the driver describes: read after the
        rows, which a pipeline describes only once they have arrived)."""
        fetched = cursor.fetchall()
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
            for row in fetched
        ]


class _SqliteInsert(_DriverStatement):
    """SQLite: an ``executemany``, or one statement per row when it returns the rows."""

    def _binds(self) -> tuple[tuple[str, Any], ...]:
        order = tuple(self.compiled.positiontup or ())
        if not self.compiled.positional or set(order) - set(self.names):
            raise self._refused()
        return tuple((name, self._processor(name)) for name in order)

    def send(self, conn: Connection, rows: Rows) -> Later[Stored]:
        params = [
            [row[name] if bind is None else bind(row[name]) for name, bind in self.binds]
            for row in rows
        ]
        with driver_cursor(conn, self.sql) as cursor:
            if not self.returning:
                cursor.executemany(self.sql, params)
                return Later.done([])
            stored: list[Stored] = []
            for values in params:  # RETURNING: one statement per row, in input order
                cursor.execute(self.sql, values)
                stored += self._stored(cursor)
            return Later.done(stored)


class _PgStatement(_DriverStatement):
    """PostgreSQL: one statement, every row in one JSON parameter (:func:`_pg_rows`): the
    driver sends one string that the C JSON encoder wrote, where one array per column cost a
    Python call per value in the driver's array dumper (a sixth of a batch's time)."""

    params = frozenset({"rows"})
    """The statement's parameters: the rows' JSON document."""

    def _binds(self) -> tuple[tuple[str, Any], ...]:
        if self.compiled.positional or set(self.compiled.binds) != self.params:
            raise self._refused()
        return tuple((name, self._converter(name)) for name in self.names)

    def _converter(self, name: str) -> Any:
        """What makes a value of column ``name`` ready for :func:`json.dumps` (with
        :func:`_plain`): JSON as its text, bytes as they are (the driver's wrapper for binary
        parameters is no use here), the rest by the column type's bind processor."""
        column = self.table.c[name]
        if _is_json(column):
            return _json_text
        return None if isinstance(column.type, LargeBinary) else self._processor(name)

    def send(self, conn: Connection, rows: Rows) -> Later[Stored]:
        values = [
            [row[name] if bind is None else bind(row[name]) for name, bind in self.binds]
            for row in rows
        ]
        document = json.dumps(values, default=_plain, allow_nan=False, separators=(",", ":"))
        read = self._in_order if self.returning else None
        params = self._parameters(rows, document)
        return send(conn, self.sql, params, read, planned=self.planned)

    planned = False
    """Planned for each call's parameters, never prepared (:func:`~.driver.send`)."""

    def _parameters(self, rows: Rows, document: str) -> dict[str, Any]:
        return {"rows": document}


class _PgUpdate(_PgStatement):
    """An UPDATE of the rows whose key each row names, with those keys also sent as one array
    (``key = ANY(…)``), planned for each call: joined with the JSON rows alone, the planner
    chose a scan of the whole table (2 ms for 16 tag rows among 20,000, growing with the
    table), and so did a prepared statement's generic plan made while the table was small
    (5.7 ms a call after 20 s of webhooks), where the key's index finds them in 0.2 ms."""

    params = frozenset({"rows", "keys"})
    planned = True

    def __init__(self, key: str, *args: Any) -> None:
        self.key = key
        super().__init__(*args)

    def _parameters(self, rows: Rows, document: str) -> dict[str, Any]:
        return {"rows": document, "keys": [row[self.key] for row in rows]}


_INSERTS: dict[tuple[Table, tuple[str, ...], bool, tuple[str, ...], Dialect], _DriverStatement] = {}
"""The INSERTs compiled so far, by table, columns, conflict handling, RETURNING and dialect."""


@cache
def _sqlite_update(table: Table, key: str, names: tuple[str, ...]) -> Update:
    setters: dict[str, Any] = {n: bindparam(f"v_{n}") for n in names if n != key}
    return update(table).where(table.c[key] == bindparam(f"v_{key}")).values(**setters)


@cache
def _pg_insert(
    table: Table, names: tuple[str, ...], skip_conflicts: bool, returning: tuple[str, ...]
) -> Any:
    source = _pg_rows()
    rows = select(*(_pg_value(table, names, source, n) for n in names)).order_by(source.c.ord)
    statement: Any = postgresql.insert(table).from_select(list(names), rows)
    if skip_conflicts:
        statement = statement.on_conflict_do_nothing()
    if returning:
        statement = statement.returning(*(table.c[n] for n in returning))
    return statement


@cache
def _pg_update(
    table: Table, key: str, names: tuple[str, ...], returning: bool, dialect: Dialect
) -> _PgUpdate:
    source = _pg_rows()
    setters = {n: _pg_value(table, names, source, n) for n in names if n != key}
    column = table.c[key]
    keys = bindparam("keys", type_=ARRAY(column.type))
    where = and_(column == _pg_value(table, names, source, key), column == any_(keys))
    statement: Any = update(table).where(where).values(**setters)
    wanted = tuple(c.name for c in table.c) if returning else ()
    if returning:
        statement = statement.returning(*table.c)
    return _PgUpdate(key, table, names, wanted, dialect, statement, tuple(setters))
