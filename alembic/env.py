"""Alembic environment: runs migrations on the engine the service hands over."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, create_engine

from alembic import context
from supplychain.evidence.database import normalise_url
from supplychain.evidence.models import Base

config = context.config
target_metadata = Base.metadata


def run_migrations_online() -> None:
    engine = config.attributes.get("engine")
    if engine is None:
        url = config.get_main_option("sqlalchemy.url")
        if not url:
            raise RuntimeError("no database: set sqlalchemy.url or pass an engine")
        engine = create_engine(normalise_url(url))
    with engine.connect() as connection:
        sqlite = connection.dialect.name == "sqlite"
        if sqlite:
            # Batch migrations rebuild a table (copy, drop, rename): with foreign keys enforced,
            # dropping a table other rows refer to fails. SQLite's documented procedure turns
            # them off around the change (outside any transaction) and checks them after.
            _raw(connection).execute("PRAGMA foreign_keys=OFF")
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=connection.dialect.name == "sqlite",
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()
            if sqlite:
                broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                if broken:
                    raise RuntimeError(f"migration left rows whose references broke: {broken[:5]}")
        connection.commit()
        if sqlite:
            _raw(connection).execute("PRAGMA foreign_keys=ON")


def _raw(connection: Connection) -> Any:
    """The DBAPI connection (pysqlite runs PRAGMAs on it outside a transaction)."""
    return connection.connection.driver_connection


run_migrations_online()
