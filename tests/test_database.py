from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from supplychain.evidence.database import Database
from supplychain.evidence.dbutil import audit
from supplychain.evidence.models import Base


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
