"""History: indexes for an image's verdicts and VEX statements by time.

The auditors' history reads an image's verdicts and gate answers by digest in time order, and
the VEX statements about a digest known by a time (time travel); without these, each is a scan
of the whole table (measured in bench/history_bench.py).

Revision ID: 0010_history
Revises: 7e3c9a41d2b8
Create Date: 2026-11-30 03:10:00
"""

from __future__ import annotations

from alembic import op

revision = "0010_history"
down_revision = "7e3c9a41d2b8"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("verdicts", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_verdicts_digest_evaluated_at"), ["digest", "evaluated_at"], unique=False
        )
    with op.batch_alter_table("vex_statements", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_vex_statements_product_created_at"),
            ["product", "created_at"],
            unique=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("vex_statements", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_vex_statements_product_created_at"))
    with op.batch_alter_table("verdicts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_verdicts_digest_evaluated_at"))
