"""Alembic environment: runs migrations on the engine the service hands over."""

from __future__ import annotations

from sqlalchemy import create_engine

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
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=connection.dialect.name == "sqlite",
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()
        connection.commit()


run_migrations_online()
