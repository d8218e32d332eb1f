"""Small portable SQL helpers shared by the intake, the queue and the recorder."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Table, select
from sqlalchemy.orm import QueryableAttribute, Session

from supplychain.evidence.bulk import insert_rows
from supplychain.evidence.models import AuditEntry, Base
from supplychain.evidence.tlog import LOGGED, touch


def insert_ignore(session: Session, model: type[Base], values: dict[str, Any]) -> bool:
    """INSERT a row unless it conflicts with a unique key; True when a row was inserted (a new
    row of a logged table is named to the tamper-evident log)."""
    return bool(insert_ignore_many(session, model, [values]))


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
    table = table_of(model)
    logged = table.name in LOGGED
    key = next(iter(table.primary_key.columns))
    column = key if returning is None else table.c[returning.key]
    # every column of a logged table's new rows: the log need not read them again
    wanted = list(table.c) if logged else [column]
    found = insert_rows(session.connection(), table, rows, skip_conflicts=True, returning=wanted)
    if logged:  # Core INSERTs: name the new rows to the tamper-evident log
        for row in found:
            touch(session, table.name, row[key.name], row)
    return {row[column.key] for row in found}


def audit_many(
    session: Session, entries: Sequence[tuple[str, str, str | None, dict[str, Any]]]
) -> None:
    """Append entries ``(actor, action, subject, details)`` to the audit log in one INSERT."""
    if entries:
        insert_logged(session, AuditEntry, audit_rows(entries))


def audit_rows(
    entries: Sequence[tuple[str, str, str | None, dict[str, Any]]],
) -> list[dict[str, Any]]:
    """The audit log rows of entries ``(actor, action, subject, details)``."""
    return [
        {"actor": actor, "action": action, "subject": subject, "details": details}
        for actor, action, subject, details in entries
    ]


def insert_logged(session: Session, model: type[Base], rows: Sequence[dict[str, Any]]) -> None:
    """INSERT many rows in one statement (executemany) and name each new row to the
    tamper-evident log (:func:`~supplychain.evidence.tlog.touch`), which sees no Core INSERT."""
    if not rows:
        return
    table = table_of(model)
    (key,) = table.primary_key.columns
    for row in insert_rows(session.connection(), table, rows, returning=list(table.c)):
        touch(session, table.name, row[key.name], row)


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
