from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, IntegrityError

from supplychain.evidence.database import Database
from supplychain.evidence.dbutil import audit
from supplychain.evidence.driver import driver_rows
from supplychain.evidence.models import Base
from tests.conftest import PG_SERVER, _admin


def _diff(db: Database) -> list[object]:
    with db.engine.connect() as conn:
        return list(
            compare_metadata(
                MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata
            )
        )


def test_migrations_produce_exactly_the_models_schema_on_postgresql(db: Database) -> None:
    assert db.is_postgres
    assert _diff(db) == []


def test_migrations_produce_exactly_the_models_schema_on_sqlite(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'x.db'}")
    db.upgrade()
    assert db.current_revision() is not None
    assert _diff(db) == []


@pytest.mark.parametrize(
    "statement", ["UPDATE audit_log SET actor = 'mallory'", "DELETE FROM audit_log"]
)
def test_audit_log_is_append_only(db: Database, statement: str) -> None:
    with db.session() as session:
        audit(session, "tester", "test.action", "subject", n=1)
    with pytest.raises(DBAPIError, match="append-only"), db.session() as session:
        session.execute(text(statement))
    with db.session() as session:
        assert session.execute(text("SELECT actor FROM audit_log")).scalars().all() == ["tester"]


def test_postgresql_connections_give_up_on_a_silent_server_unless_the_url_says_otherwise() -> None:
    """libpq's own defaults wait two hours before a keepalive and connect until the kernel gives
    up; ours fail a dead connection within about a minute, and a URL's own settings win."""
    from tests.conftest import PG_SERVER

    db = Database(f"{PG_SERVER}/test")
    tuned = Database(f"{PG_SERVER}/test?keepalives_idle=5&connect_timeout=3")
    try:
        with db.engine.connect() as connection:
            params = connection.connection.driver_connection.info.get_parameters()  # type: ignore[union-attr]
        assert params["keepalives_idle"] == "30"
        assert params["tcp_user_timeout"] == "60000"
        assert params["connect_timeout"] == "10"
        with tuned.engine.connect() as connection:
            params = connection.connection.driver_connection.info.get_parameters()  # type: ignore[union-attr]
        assert params["keepalives_idle"] == "5"
        assert params["connect_timeout"] == "3"
    finally:
        db.dispose()
        tuned.dispose()


def _backend_pid(db: Database) -> int:
    with db.reading(single=True) as connection:
        return int(driver_rows(connection, "SELECT pg_backend_pid()")[0][0])


def test_kept_read_connections_after_the_server_drops_them(pg_url: str) -> None:
    """The gate's single-statement reads keep their connections between calls; when the server
    drops them (a restart), one call fails (the gate answers 503) and the next one works."""
    import psycopg

    db = Database(pg_url)
    try:
        with db.reading(single=True) as first, db.reading(single=True) as second:
            pids = set()
            for connection in (first, second):
                cursor = connection.connection.cursor()
                cursor.execute("SELECT pg_backend_pid()")
                pids.add(int(cursor.fetchone()[0]))
        assert len(pids) == 2
        assert _backend_pid(db) in pids  # kept: the same server sessions again
        with psycopg.connect(pg_url.replace("postgresql+psycopg", "postgresql")) as admin:
            for pid in pids:
                admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        with pytest.raises(DBAPIError):
            _backend_pid(db)
        assert _backend_pid(db) not in pids  # the other dropped one was not kept either
    finally:
        db.dispose()


@pytest.fixture(params=["postgresql", "sqlite"])
def unmigrated(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """An empty database, no schema yet."""
    if request.param == "sqlite":
        db = Database(f"sqlite:///{tmp_path / 'old.db'}")
        yield db
        db.dispose()
        return
    name = f"sc_test_{uuid.uuid4().hex[:10]}"
    with _admin() as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    db = Database(f"{PG_SERVER}/{name}")
    try:
        yield db
    finally:
        db.dispose()
        with _admin() as admin:
            admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


def test_the_upgrade_keeps_seen_events_and_defers_their_delivery_check(
    unmigrated: Database,
) -> None:
    """Migration 0013 rebuilds the seen events' foreign key as checked at commit (the intake
    writes a batch's deliveries after their dedupe keys): stored keys survive it, and a key
    naming no delivery is still refused when its transaction commits."""
    db = unmigrated
    db.upgrade("0010_history")
    with db.engine.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO webhook_deliveries (id, source, received_at, authenticated, body, "
            "outcome, events, jobs_created) VALUES (7, 'distribution', '2026-01-01 00:00:00', "
            "true, 'x', 'accepted', 1, 1)"
        )
        conn.exec_driver_sql(
            "INSERT INTO seen_events (key, delivery_id, seen_at) "
            "VALUES ('distribution:e1', 7, '2026-01-01 00:00:00')"
        )
    db.upgrade()
    with db.engine.connect() as conn:
        kept = conn.exec_driver_sql("SELECT key, delivery_id FROM seen_events").all()
    assert [tuple(row) for row in kept] == [("distribution:e1", 7)]
    with db.engine.connect() as conn:
        transaction = conn.begin()
        conn.exec_driver_sql(  # accepted until the commit
            "INSERT INTO seen_events (key, delivery_id, seen_at) "
            "VALUES ('distribution:e2', 8, '2026-01-01 00:00:00')"
        )
        with pytest.raises(IntegrityError):
            transaction.commit()
