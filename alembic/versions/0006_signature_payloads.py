"""Signature and attestation blobs stored once by digest in ``payloads``; rows refer to them.

Existing rows move their inline ``payload``/``envelope`` into ``payloads`` (one row per distinct
blob) and keep a ``payload_digest``; the inline columns become nullable and stay empty.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import hashlib

import sqlalchemy as sa

import supplychain.evidence.models
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_INLINE = {"signatures": "payload", "attestations": "envelope"}


def upgrade() -> None:
    op.create_table(
        "payloads",
        sa.Column("digest", sa.String(length=71), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.Column(
            "first_seen", supplychain.evidence.models.UTCDateTime(timezone=True), nullable=False
        ),
        sa.PrimaryKeyConstraint("digest", name=op.f("pk_payloads")),
    )
    for table, column in _INLINE.items():
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column("payload_digest", sa.String(length=71), nullable=True))
            batch_op.alter_column(column, existing_type=sa.LargeBinary(), nullable=True)
            batch_op.create_index(batch_op.f(f"ix_{table}_payload_digest"), ["payload_digest"])
            batch_op.create_foreign_key(
                batch_op.f(f"fk_{table}_payload_digest_payloads"),
                "payloads",
                ["payload_digest"],
                ["digest"],
            )
        _move_inline(table, column)


def _move_inline(table: str, column: str) -> None:
    """Each distinct inline blob into ``payloads``; rows point at it and drop their copy."""
    bind = op.get_bind()
    rows = sa.table(table, sa.column("id"), sa.column(column), sa.column("payload_digest"))
    payloads = sa.table(
        "payloads",
        sa.column("digest"),
        sa.column("size"),
        sa.column("data"),
        sa.column("first_seen"),
    )
    known = set(bind.execute(sa.select(payloads.c.digest)).scalars())
    now = supplychain.evidence.models.utcnow()
    ids = list(bind.execute(sa.select(rows.c.id).where(rows.c[column].is_not(None))).scalars())
    for row_id in ids:
        data = bind.execute(sa.select(rows.c[column]).where(rows.c.id == row_id)).scalar_one()
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        if digest not in known:
            bind.execute(
                payloads.insert().values(digest=digest, size=len(data), data=data, first_seen=now)
            )
            known.add(digest)
        bind.execute(
            rows.update()
            .where(rows.c.id == row_id)
            .values({column: None, "payload_digest": digest})
        )


def downgrade() -> None:
    payloads = sa.table("payloads", sa.column("digest"), sa.column("data"))
    for table, column in _INLINE.items():
        rows = sa.table(table, sa.column(column), sa.column("payload_digest"))
        stored = (
            sa.select(payloads.c.data)
            .where(payloads.c.digest == rows.c.payload_digest)
            .scalar_subquery()
        )
        op.execute(rows.update().where(rows.c[column].is_(None)).values({column: stored}))
        op.execute(rows.update().where(rows.c[column].is_(None)).values({column: b""}))
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_constraint(
                batch_op.f(f"fk_{table}_payload_digest_payloads"), type_="foreignkey"
            )
            batch_op.drop_index(batch_op.f(f"ix_{table}_payload_digest"))
            batch_op.alter_column(column, existing_type=sa.LargeBinary(), nullable=False)
            batch_op.drop_column("payload_digest")
    op.drop_table("payloads")
