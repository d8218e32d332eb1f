"""Queue: one job per digest whatever its kind, a claims log, deferrals for faults not the image's.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24 10:00:00
"""

from __future__ import annotations

import sqlalchemy as sa

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("deferrals", sa.Integer(), nullable=False, server_default="0")
        )
        batch_op.add_column(sa.Column("deferred_since", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.alter_column("deferrals", server_default=None)
    op.create_table(
        "job_claims",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("worker", sa.String(length=255), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], name=op.f("fk_job_claims_job_id_jobs")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_job_claims")),
    )
    with op.batch_alter_table("job_claims", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_job_claims_job_id_attempt"), ["job_id", "attempt"], unique=False
        )
    _rekey_jobs()


def _rekey_jobs() -> None:
    """``kind:registry/repo@digest`` becomes ``registry/repo@digest``; a later duplicate keeps
    a suffixed key so its history stays (it is the same work as the first one)."""
    connection = op.get_bind()
    jobs = sa.table("jobs", sa.column("id", sa.Integer), sa.column("dedupe_key", sa.String))
    rows = connection.execute(sa.select(jobs.c.id, jobs.c.dedupe_key).order_by(jobs.c.id)).all()
    taken: set[str] = set()
    for job_id, key in rows:
        new = (
            key.split(":", 1)[1] if key.split(":", 1)[0] in ("image", "index", "manifest") else key
        )
        if new in taken:
            new = f"{new}#superseded-{job_id}"
        taken.add(new)
        if new != key:
            connection.execute(sa.update(jobs).where(jobs.c.id == job_id).values(dedupe_key=new))


def downgrade() -> None:
    with op.batch_alter_table("job_claims", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_job_claims_job_id_attempt"))
    op.drop_table("job_claims")
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_column("deferred_since")
        batch_op.drop_column("deferrals")
