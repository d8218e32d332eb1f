"""Facts the policy reads: component licences, the image config's run settings, signing times.

Revision ID: 0010rego
Revises: 0009
Create Date: 2026-11-30 03:00:00
"""

from __future__ import annotations

import sqlalchemy as sa

import supplychain.evidence.models
from alembic import op

revision = "0010rego"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    when = supplychain.evidence.models.UTCDateTime(timezone=True)
    with op.batch_alter_table("components", schema=None) as batch_op:
        batch_op.add_column(sa.Column("licenses", sa.JSON(), nullable=True))
    with op.batch_alter_table("scans", schema=None) as batch_op:
        batch_op.add_column(sa.Column("image_config", sa.JSON(), nullable=True))
    for table in ("signatures", "attestations"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column("signed_at", when, nullable=True))


def downgrade() -> None:
    for table in ("attestations", "signatures"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column("signed_at")
    with op.batch_alter_table("scans", schema=None) as batch_op:
        batch_op.drop_column("image_config")
    with op.batch_alter_table("components", schema=None) as batch_op:
        batch_op.drop_column("licenses")
