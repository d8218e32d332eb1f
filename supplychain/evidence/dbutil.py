"""Small portable SQL helpers shared by the intake, the queue and the recorder."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Table, insert
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import QueryableAttribute, Session

from supplychain.evidence.models import AuditEntry, Base


def insert_ignore(session: Session, model: type[Base], values: dict[str, Any]) -> bool:
    """INSERT a row unless it conflicts with a unique key; True when a row was inserted."""
    table = model.__table__
    assert isinstance(table, Table)  # noqa: S101 - declarative models always have a Table
    dialect = session.get_bind().dialect.name
    module = postgresql if dialect == "postgresql" else sqlite
    key = next(iter(table.primary_key.columns))
    statement = module.insert(table).values(**values).on_conflict_do_nothing().returning(key)
    # rowcount is not reliable for INSERT … ON CONFLICT across drivers; a returned row is.
    return session.execute(statement).first() is not None


def table_of(model: type[Base]) -> Table:
    table = model.__table__
    assert isinstance(table, Table)  # noqa: S101 - declarative models always have a Table
    return table


def insert_ignore_many(
    session: Session,
    model: type[Base],
    rows: Sequence[dict[str, Any]],
    returning: QueryableAttribute[Any] | None = None,
) -> set[Any]:
    """INSERT many rows in one statement, skipping those that conflict with a unique key; the
    ``returning`` column's values (default the primary key) of the rows inserted."""
    if not rows:
        return set()
    table = model.__table__
    assert isinstance(table, Table)  # noqa: S101 - declarative models always have a Table
    dialect = session.get_bind().dialect.name
    module = postgresql if dialect == "postgresql" else sqlite
    column: Any = returning if returning is not None else next(iter(table.primary_key.columns))
    statement = module.insert(table).on_conflict_do_nothing().returning(column)
    # executemany: one compiled (and cached) statement; SQLAlchemy sends the rows as
    # multi-row INSERTs ("insertmanyvalues") and gathers what each returned.
    return set(session.connection().execute(statement, list(rows)).scalars())


def audit_many(
    session: Session, entries: Sequence[tuple[str, str, str | None, dict[str, Any]]]
) -> None:
    """Append entries ``(actor, action, subject, details)`` to the audit log in one INSERT."""
    if entries:
        rows = [
            {"actor": actor, "action": action, "subject": subject, "details": details}
            for actor, action, subject, details in entries
        ]
        session.connection().execute(insert(table_of(AuditEntry)), rows)


def audit(session: Session, actor: str, action: str, subject: str | None, **details: Any) -> None:
    """Append one entry to the audit log (in the caller's transaction)."""
    session.add(AuditEntry(actor=actor, action=action, subject=subject, details=details))
