"""Models of access and audit: API tokens, waivers, the audit log and the tamper-evident log."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from supplychain.evidence.models.base import Base, Digest, utcnow


class AuditEntry(Base):
    """Append-only log of what happened, for auditors."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(255))
    action: Mapped[str] = mapped_column(String(64))
    subject: Mapped[str | None] = mapped_column(Text)
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)


class ApiToken(Base):
    """An API token: its role and its SHA-256 (the token itself is shown once, never stored)."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    source: Mapped[str | None] = mapped_column(String(32))
    """For a ``webhook`` token: the one webhook source it may deliver to."""
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    """Hex HMAC-SHA-256 of the token (keyed with the server pepper; SHA-256 when none)."""
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_by: Mapped[str] = mapped_column(String(255))
    expires_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]
    last_used_at: Mapped[datetime | None]


class Waiver(Base):
    """An accepted exception to the policy, scoped to a digest or a repository pattern."""

    __tablename__ = "waivers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    digest: Mapped[str | None] = mapped_column(Digest, index=True)
    repository: Mapped[str | None] = mapped_column(String(512))
    cve: Mapped[str | None] = mapped_column(String(128))
    package: Mapped[str | None] = mapped_column(String(512))
    rule: Mapped[str | None] = mapped_column(String(32))
    owner: Mapped[str] = mapped_column(String(255))
    reason: Mapped[str] = mapped_column(Text)
    ticket: Mapped[str] = mapped_column(String(255))
    justification: Mapped[str | None] = mapped_column(String(64))
    expires_at: Mapped[datetime] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_by: Mapped[str] = mapped_column(String(255))
    revoked_at: Mapped[datetime | None] = mapped_column()
    revoked_by: Mapped[str | None] = mapped_column(String(255))


class LogLeaf(Base):
    """One leaf of the tamper-evident log: a fact row's RFC 6962 leaf hash at its index.

    The hashed data is the row's canonical serialisation (:mod:`supplychain.evidence.tlog`),
    recomputed from the row itself by ``supplychain audit verify``. Append-only (triggers).
    """

    __tablename__ = "log_leaves"
    __table_args__ = (Index(None, "table_name", "row_key"),)

    idx: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=False
    )
    """The leaf's index: 0, 1, 2 … with no gap, in commit order."""
    table_name: Mapped[str] = mapped_column(String(64))
    """The fact's table."""
    row_key: Mapped[str] = mapped_column(String(255))
    """The fact row's primary key, as text."""
    leaf_hash: Mapped[str] = mapped_column(String(64))
    """Hex ``SHA-256(0x00 || canonical row)``."""


class LogCheckpoint(Base):
    """A signed checkpoint of the log (a C2SP signed note), as issued."""

    __tablename__ = "log_checkpoints"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)
    root_hash: Mapped[str] = mapped_column(String(64))
    note: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
