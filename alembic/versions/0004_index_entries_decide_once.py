"""Index entries per index; findings no longer carry VEX marks (the decision matches VEX).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30 00:10:00
"""

from __future__ import annotations

import sqlalchemy as sa

import supplychain.evidence.models
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "index_entries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("index_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("digest", sa.String(length=71), nullable=False),
        sa.Column("media_type", sa.String(length=255), nullable=False),
        sa.Column("platform", sa.String(length=64), nullable=True),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("refers_to", sa.String(length=71), nullable=True),
        sa.ForeignKeyConstraint(
            ["index_id"], ["images.id"], name=op.f("fk_index_entries_index_id_images")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_index_entries")),
        sa.UniqueConstraint(
            "index_id", "position", name=op.f("uq_index_entries_index_id_position")
        ),
    )
    with op.batch_alter_table("index_entries", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_index_entries_digest"), ["digest"], unique=False)
        batch_op.create_index(batch_op.f("ix_index_entries_index_id"), ["index_id"], unique=False)
    with op.batch_alter_table("images", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "expanded_at",
                supplychain.evidence.models.UTCDateTime(timezone=True),
                nullable=True,
            )
        )
        batch_op.add_column(sa.Column("expansion_error", sa.Text(), nullable=True))
        batch_op.drop_column("index_digest")
    with op.batch_alter_table("findings", schema=None) as batch_op:
        batch_op.drop_constraint(
            batch_op.f("fk_findings_vex_statement_id_vex_statements"), type_="foreignkey"
        )
        batch_op.drop_column("vex_statement_id")
        batch_op.drop_column("vex_justification")
        batch_op.drop_column("vex_status")


def downgrade() -> None:
    with op.batch_alter_table("findings", schema=None) as batch_op:
        batch_op.add_column(sa.Column("vex_status", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("vex_justification", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("vex_statement_id", sa.Integer(), nullable=True))
        batch_op.create_foreign_key(
            batch_op.f("fk_findings_vex_statement_id_vex_statements"),
            "vex_statements",
            ["vex_statement_id"],
            ["id"],
        )
    with op.batch_alter_table("images", schema=None) as batch_op:
        batch_op.add_column(sa.Column("index_digest", sa.String(length=71), nullable=True))
        batch_op.drop_column("expansion_error")
        batch_op.drop_column("expanded_at")
    with op.batch_alter_table("index_entries", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_index_entries_index_id"))
        batch_op.drop_index(batch_op.f("ix_index_entries_digest"))
    op.drop_table("index_entries")
