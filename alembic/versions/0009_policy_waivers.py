"""Waivers: accepted exceptions to the policy, until they expire.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-30 01:00:00
"""

from __future__ import annotations

import sqlalchemy as sa

import supplychain.evidence.models
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    when = supplychain.evidence.models.UTCDateTime(timezone=True)
    op.create_table(
        "waivers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("digest", sa.String(length=71), nullable=True),
        sa.Column("repository", sa.String(length=512), nullable=True),
        sa.Column("cve", sa.String(length=128), nullable=True),
        sa.Column("package", sa.String(length=512), nullable=True),
        sa.Column("rule", sa.String(length=32), nullable=True),
        sa.Column("owner", sa.String(length=255), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("ticket", sa.String(length=255), nullable=False),
        sa.Column("justification", sa.String(length=64), nullable=True),
        sa.Column("expires_at", when, nullable=False),
        sa.Column("created_at", when, nullable=False),
        sa.Column("created_by", sa.String(length=255), nullable=False),
        sa.Column("revoked_at", when, nullable=True),
        sa.Column("revoked_by", sa.String(length=255), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_waivers")),
    )
    with op.batch_alter_table("waivers", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_waivers_digest"), ["digest"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("waivers", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_waivers_digest"))
    op.drop_table("waivers")
