"""Intake: a seen event's delivery is checked at commit (a deferred foreign key).

The webhook intake writes a batch's deliveries once, with their final outcome, after it has
learnt which events are new; the events' dedupe keys name their delivery before that row is
written. The foreign key still holds at every commit. The key is indexed: while a deferred check
is pending, SQLite looks up each new delivery's seen events (without the index, a scan of the
table per delivery).

Revision ID: 0013_seen_deferred
Revises: 0010_history
Create Date: 2026-11-30 20:00:00
"""

from __future__ import annotations

from alembic import op

revision = "0013_seen_deferred"
down_revision = "0010_history"
branch_labels = None
depends_on = None

NAME = "fk_seen_events_delivery_id_webhook_deliveries"


def _foreign_key(deferred: bool) -> None:
    with op.batch_alter_table("seen_events", schema=None) as batch_op:
        batch_op.drop_constraint(NAME, type_="foreignkey")
        batch_op.create_foreign_key(
            NAME,
            "webhook_deliveries",
            ["delivery_id"],
            ["id"],
            deferrable=True if deferred else None,
            initially="DEFERRED" if deferred else None,
        )


def upgrade() -> None:
    _foreign_key(deferred=True)
    with op.batch_alter_table("seen_events", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_seen_events_delivery_id"), ["delivery_id"])


def downgrade() -> None:
    with op.batch_alter_table("seen_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_seen_events_delivery_id"))
    _foreign_key(deferred=False)
