"""Tamper-evident log: Merkle-tree leaves of every fact row, and signed checkpoints.

Leaves are append-only (triggers refuse UPDATE and DELETE, as on ``audit_log``). Fact rows
already stored get their leaves here (the log's genesis), so ``supplychain audit verify`` finds
every row of a fact table covered by a leaf.

Revision ID: 7e3c9a41d2b8
Revises: 0010rego
Create Date: 2026-11-30 03:00:00
"""

from __future__ import annotations

import sqlalchemy as sa

import supplychain.evidence.models
from alembic import op

revision = "7e3c9a41d2b8"
down_revision = "0010rego"
branch_labels = None
depends_on = None

_PG_APPEND_ONLY = """
CREATE FUNCTION log_leaves_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'log_leaves is append-only';
END;
$$ LANGUAGE plpgsql
"""


def upgrade() -> None:
    when = supplychain.evidence.models.UTCDateTime(timezone=True)
    big = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
    op.create_table(
        "log_leaves",
        sa.Column("idx", big, autoincrement=False, nullable=False),
        sa.Column("table_name", sa.String(length=64), nullable=False),
        sa.Column("row_key", sa.String(length=255), nullable=False),
        sa.Column("leaf_hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("idx", name=op.f("pk_log_leaves")),
    )
    with op.batch_alter_table("log_leaves", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_log_leaves_table_name_row_key"), ["table_name", "row_key"], unique=False
        )
    op.create_table(
        "log_checkpoints",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("root_hash", sa.String(length=64), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("created_at", when, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_log_checkpoints")),
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_PG_APPEND_ONLY)
        op.execute(
            "CREATE TRIGGER log_leaves_append_only BEFORE UPDATE OR DELETE ON log_leaves "
            "FOR EACH ROW EXECUTE FUNCTION log_leaves_append_only()"
        )
    else:
        for verb in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER log_leaves_no_{verb.lower()} BEFORE {verb} ON log_leaves "
                "BEGIN SELECT RAISE(ABORT, 'log_leaves is append-only'); END"
            )
    from supplychain.evidence.tlog import backfill

    backfill(op.get_bind())


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS log_leaves_append_only ON log_leaves")
        op.execute("DROP FUNCTION IF EXISTS log_leaves_append_only()")
    else:
        op.execute("DROP TRIGGER IF EXISTS log_leaves_no_update")
        op.execute("DROP TRIGGER IF EXISTS log_leaves_no_delete")
    op.drop_table("log_checkpoints")
    with op.batch_alter_table("log_leaves", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_log_leaves_table_name_row_key"))
    op.drop_table("log_leaves")
