"""Shared fixtures: every test runs against real PostgreSQL.

A fresh database is created for the session (``SUPPLYCHAIN_TEST_PG`` names the server, default
``postgresql://postgres@127.0.0.1:5432``; the database ``test`` administers them and is created
if missing), migrated once with our Alembic scripts, and emptied
with TRUNCATE between tests.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import text

from supplychain.config import Settings, load_settings
from supplychain.evidence.database import Database

PG_SERVER = os.environ.get("SUPPLYCHAIN_TEST_PG", "postgresql://postgres@127.0.0.1:5432")
TOKEN = "test-webhook-token-0123456789"


def _admin() -> psycopg.Connection[tuple[object, ...]]:
    """A connection to the ``test`` database, created first (from ``postgres``) if missing."""
    try:
        return psycopg.connect(f"{PG_SERVER}/test", autocommit=True)
    except psycopg.OperationalError as exc:
        if "does not exist" not in str(exc):
            raise
    with psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True) as conn:
        try:
            conn.execute('CREATE DATABASE "test"')
        except psycopg.errors.DuplicateDatabase:
            pass  # a parallel session created it first
    return psycopg.connect(f"{PG_SERVER}/test", autocommit=True)


@contextmanager
def new_database() -> Iterator[str]:
    """A new, migrated PostgreSQL database, dropped on exit."""
    name = f"sc_test_{uuid.uuid4().hex[:10]}"
    with _admin() as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = f"{PG_SERVER}/{name}"
    db = Database(url)
    db.upgrade()
    db.dispose()
    try:
        yield url
    finally:
        with _admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """URL of the session's PostgreSQL database."""
    with new_database() as url:
        yield url


def truncate(database: Database) -> None:
    """Empty every table of the test database (the schema stays)."""
    with database.engine.begin() as conn:
        tables = conn.execute(
            text(
                "SELECT tablename FROM pg_tables "
                "WHERE schemaname='public' AND tablename <> 'alembic_version'"
            )
        ).scalars()
        conn.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))


@pytest.fixture
def db(pg_url: str) -> Iterator[Database]:
    """The session database, empty at the start of each test."""
    database = Database(pg_url)
    truncate(database)
    yield database
    database.dispose()


def make_settings(tmp_path: Path, pg_url: str, **overrides: str) -> Settings:
    """Settings for a test: data under ``tmp_path``, the test database, our webhook token."""
    env = {
        "SUPPLYCHAIN_DATA_DIR": str(tmp_path / "data"),
        "SUPPLYCHAIN_DATABASE_URL": pg_url,
        "SUPPLYCHAIN_WEBHOOK_TOKEN": TOKEN,
        "SUPPLYCHAIN_TRIVY_OFFLINE": "true",
        "SUPPLYCHAIN_TRIVY_CACHE_DIR": str(tmp_path / "trivy"),
    }
    env.update({f"SUPPLYCHAIN_{k.upper()}": v for k, v in overrides.items()})
    return load_settings(env)
