"""Engine, sessions and migrations: one code path for SQLite and PostgreSQL."""

from __future__ import annotations

import fcntl
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from functools import partial
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, make_url
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from supplychain.evidence.driver import driver_rows

__all__ = ["Database", "WriterBusy", "migrations_dir", "normalise_url"]


def normalise_url(url: str) -> str:
    """Use psycopg 3 for plain ``postgresql://`` URLs."""
    if url.startswith("postgresql://"):
        return "postgresql+psycopg://" + url[len("postgresql://") :]
    return url


def migrations_dir() -> Path:
    """Where the Alembic scripts are: packaged with us, or ``alembic/`` in a source checkout."""
    package = Path(__file__).resolve().parents[1]
    packaged = package / "_migrations"
    if (packaged / "env.py").is_file():
        return packaged
    checkout = package.parent / "alembic"
    if (checkout / "env.py").is_file():
        return checkout
    raise FileNotFoundError("the database migrations are not installed with supplychain")


_IMMEDIATE = "supplychain_sqlite_immediate"
_PG_CONNECTION = {
    "connect_timeout": 10,
    "keepalives": 1,
    "keepalives_idle": 30,
    "keepalives_interval": 10,
    "keepalives_count": 3,
    "tcp_user_timeout": 60_000,
}
"""libpq settings, unless the URL sets them: a server that stops answering (its host gone, a
network cut) fails a call within about a minute, where the system's defaults (keepalive after
two hours, connects until the kernel gives up) left a worker waiting on a dead connection."""


def _pg_connect_args(url: str, flush: bool) -> dict[str, Any]:
    given = make_url(url).query
    args: dict[str, Any] = {k: v for k, v in _PG_CONNECTION.items() if k not in given}
    if not flush:
        args["options"] = "-c synchronous_commit=off"
    return args


def _sqlite_no_sync(dbapi_connection: Any, _record: Any) -> None:
    # WAL with synchronous=NORMAL: a commit is in the WAL file (the OS has it, so it survives
    # the process) but not yet flushed to disk; the next checkpoint or FULL commit flushes it.
    dbapi_connection.execute("PRAGMA synchronous=NORMAL")


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # pysqlite issues BEGIN only before DML, so a SELECT … then UPDATE runs partly outside any
    # transaction and two processes can claim the same row. SQLAlchemy's documented fix: turn
    # off pysqlite's own transaction handling and emit BEGIN ourselves (see _sqlite_begin).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(_WAIT)
    cursor.close()


_WAIT = "PRAGMA busy_timeout=30000"
_NO_WAIT = "PRAGMA busy_timeout=0"


def _sqlite_begin(connection: Connection) -> None:
    """``BEGIN IMMEDIATE`` (the write lock up front) for ``Database.session(write=True)``;
    nothing for an autocommit connection (each statement its own transaction)."""
    options = connection.get_execution_options()
    if options.get("isolation_level") == "AUTOCOMMIT":
        return
    sql = "BEGIN IMMEDIATE" if options.get(_IMMEDIATE, False) else "BEGIN"
    driver_rows(connection, sql)  # a tenth of exec_driver_sql's cost


_turns = threading.local()


class WriterBusy(RuntimeError):
    """A write that must not wait (:meth:`Database.writing_now`) found another writer."""


class _WriteTurn:
    """One SQLite writer at a time across threads and processes, handed over without delay.

    SQLite's own wait for its write lock sleeps in growing steps (1, 2, 5 … 100 ms) and tries
    again, so under steady writes from two processes a waiter keeps missing the moment the lock
    is free and waits for seconds. Writers here first take an advisory lock (``flock``) on a file
    beside the database, which the kernel hands to a waiter as soon as it is released, so a
    write waits about as long as the writes before it take. The lock goes with its holder: a
    process that dies releases it. A thread already holding the turn (a nested write session)
    does not wait for itself; SQLite's own busy timeout still applies then, as before. There is
    no timeout on the turn itself: a write transaction that never ends stops the other writers
    (as SQLite's lock would, for 30 s at a time).
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    @contextmanager
    def __call__(self, *, wait: bool = True) -> Iterator[None]:
        """The turn; ``wait=False``: :class:`WriterBusy` at once when another writer has it."""
        held: set[Path] = getattr(_turns, "held", set())
        _turns.held = held
        if self.path in held:
            yield
            return
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            # blocking: the kernel hands the lock over as soon as it is released (a waiter
            # polling for it kept losing the race to the writer that had just released it)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise WriterBusy("another writer has the database") from None
            held.add(self.path)
            try:
                yield
            finally:
                held.discard(self.path)
        finally:
            os.close(fd)  # closing releases the lock


class _Kept:
    """A few pooled connections kept checked out between uses, for a hot path that would
    otherwise check one out and in for every statement (on the gate's: ~8 % of an answer's CPU,
    with PostgreSQL's pre-ping round trip on every checkout). Whoever takes one has it alone;
    after an error it goes back to the pool (which resets or discards it), never to the kept,
    and after a database error so do the others (a restarted server fails one call, not one per
    kept connection)."""

    def __init__(
        self,
        engine: Engine,
        keep: int,
        prepare: Callable[[Connection], object] | None = None,
        release: Callable[[Connection], object] | None = None,
    ) -> None:
        self.engine = engine
        self.keep = keep
        self.prepare = prepare
        self.release = release
        self._free: list[Connection] = []

    @contextmanager
    def __call__(self) -> Iterator[Connection]:
        try:
            connection = self._free.pop()  # atomic: two threads never take the same one
        except IndexError:
            connection = self.engine.connect()
            if self.prepare is not None:
                self.prepare(connection)
        try:
            yield connection
        except BaseException as exc:
            self._close(connection)
            dbapi = self.engine.dialect.loaded_dbapi
            if isinstance(exc, DBAPIError | dbapi.Error):  # a restart? the others are stale too
                self.close()
            raise
        if connection.in_transaction() or len(self._free) >= self.keep:
            self._close(connection)
        else:
            self._free.append(connection)

    def _close(self, connection: Connection) -> None:
        try:
            if self.release is not None and not connection.invalidated:
                self.release(connection)
        finally:
            connection.close()

    def close(self) -> None:
        """Return every kept connection to the pool."""
        while self._free:
            self._close(self._free.pop())


class Database:
    """An engine plus a session factory for one database URL."""

    def __init__(self, url: str, *, flush: bool = True) -> None:
        """``flush=False``: commits return before the database flushes them to disk (SQLite
        ``synchronous=NORMAL``, PostgreSQL ``synchronous_commit=off``) - for a second engine
        whose writes may trade that for latency, never for the main one."""
        self.url = normalise_url(url)
        self._write_turn: _WriteTurn | None = None
        if self.url.startswith("sqlite"):
            path = self.url.split(":///", 1)[-1]
            if path and path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
                self._write_turn = _WriteTurn(Path(f"{path}-writer.lock"))
            # a pool as large as PostgreSQL's: connections are reused, not opened per request
            self.engine: Engine = create_engine(
                self.url, connect_args={"timeout": 30}, pool_size=10, max_overflow=20
            )
            event.listen(self.engine, "connect", _sqlite_pragmas)
            if not flush:
                event.listen(self.engine, "connect", _sqlite_no_sync)
            event.listen(self.engine, "begin", _sqlite_begin)
        else:
            self.engine = create_engine(
                self.url,
                pool_pre_ping=True,
                pool_size=10,
                connect_args=_pg_connect_args(self.url, flush),
            )
        self._autocommit = self.engine.execution_options(isolation_level="AUTOCOMMIT")
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._writer = self.engine.execution_options(**{_IMMEDIATE: True})
        self._write_sessions = sessionmaker(self._writer, expire_on_commit=False)
        # single statements of the gate's hot path (the deciding threads, or the event loop)
        self._kept_reads = _Kept(self._autocommit if self.is_postgres else self.engine, 4)
        # the event loop's writes that never wait (SQLite): busy timeout 0 while kept
        self._kept_writer = _Kept(
            self._writer, 1, partial(driver_rows, sql=_NO_WAIT), partial(driver_rows, sql=_WAIT)
        )
        # the writer threads' batches (PostgreSQL: the intake's and the gate's answers): no
        # checkout, no pre-ping per batch
        self._kept_batch = _Kept(self._writer, 2)
        from supplychain.evidence import tlog  # the models import the rest of the schema

        tlog.install(self._sessions)
        tlog.install(self._write_sessions)

    @property
    def is_postgres(self) -> bool:
        """True on PostgreSQL (row locks with SKIP LOCKED are available)."""
        return self.engine.dialect.name == "postgresql"

    @contextmanager
    def session(self, *, write: bool = False) -> Iterator[Session]:
        """A session in a transaction: committed on success, rolled back on error.

        ``write=True`` takes SQLite's write lock when the transaction begins, so a read followed
        by a write (a claim) is atomic across processes; PostgreSQL uses row locks instead.
        """
        factory = self._write_sessions if write else self._sessions
        with self._turn() if write else nullcontext(), factory() as session, session.begin():
            yield session

    @contextmanager
    def batch_session(self) -> Iterator[Session]:
        """``session(write=True)`` for a writer thread's batches (the webhook intake's group
        commit): on PostgreSQL on one of a few connections kept checked out between batches, so
        a batch pays no pool checkout and no pre-ping round trip (after a database error the
        kept connections go back to the pool, as the gate's do)."""
        if not self.is_postgres:
            with self.session(write=True) as session:
                yield session
            return
        with (
            self._kept_batch() as connection,
            self._write_sessions(bind=connection) as session,
            session.begin(),
        ):
            yield session

    @contextmanager
    def writing(self) -> Iterator[Connection]:
        """A Core connection in a write transaction (as ``session(write=True)``: SQLite's write
        lock taken when it begins, in turn with the other writers), committed on success and
        rolled back on error: no ORM session, for statements built once (the gate's answers).
        No session hook sees these writes, so the caller appends the rows of logged tables to
        the tamper-evident log itself (:func:`supplychain.evidence.tlog.append_sent`, as
        :func:`~supplychain.evidence.groupcommit.insert_facts` does). On PostgreSQL
        on a connection kept between transactions, as :meth:`batch_session`'s."""
        if self.is_postgres:
            with self._kept_batch() as connection, connection.begin():
                yield connection
            return
        with self._turn(), self._writer.begin() as connection:
            yield connection

    @property
    def writes_now(self) -> bool:
        """True when :meth:`writing_now` can be used: an SQLite file."""
        return self._write_turn is not None

    @contextmanager
    def writing_now(self) -> Iterator[Connection]:
        """:meth:`writing` that never waits (for an event loop, SQLite only): raises
        :class:`WriterBusy` when another writer, in this process or another, has the database
        (the turn, or SQLite's own write lock, for a writer outside the turns)."""
        if self._write_turn is None:
            raise WriterBusy("writes that never wait are for an SQLite file")
        with self._write_turn(wait=False), self._kept_writer() as connection:
            try:
                transaction = connection.begin()
            except OperationalError as exc:  # SQLITE_BUSY: "database is locked"
                raise WriterBusy(str(exc.orig)) from None
            with transaction:
                yield connection

    def _turn(self) -> AbstractContextManager[object]:
        """A writer's turn: SQLite's flock beside the file (none for PostgreSQL or memory)."""
        return self._write_turn() if self._write_turn is not None else nullcontext()

    @contextmanager
    def reading(self, *, single: bool = False) -> Iterator[Connection]:
        """A Core connection in a read transaction (rolled back at the end): the cheapest way to
        run a few prepared statements, e.g. on the gate's hot path. ``single=True``: for one
        statement (consistent by itself) with no transaction around it: PostgreSQL's connection
        is in autocommit (no BEGIN and ROLLBACK: two round trips fewer); on SQLite a statement
        run on the driver's cursor (``connection.connection.cursor()``) starts none by itself
        (SQLite's autocommit setting made that statement ten times slower)."""
        if single:
            with self._kept_reads() as connection:
                yield connection
            return
        with self.engine.connect() as connection:
            connection.begin()  # now, so a statement run on the driver's cursor is inside it too
            yield connection

    def upgrade(self, revision: str = "head") -> None:
        """Migrate the schema to ``revision``."""
        from alembic import command

        command.upgrade(self._alembic_config(), revision)

    def current_revision(self) -> str | None:
        """The schema's Alembic revision, or None when not migrated."""
        from alembic.runtime.migration import MigrationContext

        with self.engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()

    def _alembic_config(self) -> Any:
        from alembic.config import Config

        config = Config()
        config.set_main_option("script_location", str(migrations_dir()))
        config.attributes["engine"] = self.engine
        return config

    def dispose(self) -> None:
        """Close every pooled connection."""
        self._kept_reads.close()
        self._kept_writer.close()
        self._kept_batch.close()
        self.engine.dispose()
