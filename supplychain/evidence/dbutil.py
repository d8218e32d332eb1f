"""Small portable SQL helpers shared by the intake, the queue and the recorder."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Table, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

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


def audit(session: Session, actor: str, action: str, subject: str | None, **details: Any) -> None:
    """Append one entry to the audit log (in the caller's transaction)."""
    session.add(AuditEntry(**audit_values(actor, action, subject, **details)))


def audit_values(actor: str, action: str, subject: str | None, **details: Any) -> dict[str, Any]:
    """The columns of one audit log entry (``at`` is filled in by the column's default)."""
    return {"actor": actor, "action": action, "subject": subject, "details": details}


def record_policy(session: Session, actor: str, name: str, digest: str) -> bool:
    """Audit the policy in force (``policy.loaded``) when it differs from the last one recorded.

    The audit row is a fact of the tamper-evident log, so policy changes are in it too.
    """
    last = session.scalars(
        select(AuditEntry)
        .where(AuditEntry.action == "policy.loaded")
        .order_by(AuditEntry.id.desc())
        .limit(1)
    ).first()
    previous = last.details.get("digest") if last is not None else None
    if previous == digest:
        return False
    audit(session, actor, "policy.loaded", name, digest=digest, previous=previous)
    return True
