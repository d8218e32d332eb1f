"""Models of what arrives: images, index entries, tags, webhook deliveries and durable jobs."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    Boolean,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from supplychain.evidence.models.base import Base, Digest, utcnow


class Image(Base):
    """One single-platform image manifest in one repository."""

    __tablename__ = "images"
    __table_args__ = (UniqueConstraint("host", "repository", "digest"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    host: Mapped[str] = mapped_column(String(255))
    repository: Mapped[str] = mapped_column(String(255))
    digest: Mapped[str] = mapped_column(Digest, index=True)
    media_type: Mapped[str | None] = mapped_column(String(255))
    platform: Mapped[str | None] = mapped_column(String(64))
    """The platform its config states (an index states its own per entry: :class:`IndexEntry`)."""
    first_seen: Mapped[datetime] = mapped_column(default=utcnow)
    expanded_at: Mapped[datetime | None]
    """For an image index: when its entries were recorded from the verified index manifest."""
    expansion_error: Mapped[str | None] = mapped_column(Text)
    """For an image index: why it could not be expanded (limits, missing child): a deny."""


class IndexEntry(Base):
    """One entry of an image index: an edge from the index to a child manifest.

    Recorded per index from its own verified manifest, so an index is decided from its own
    entries, whatever other indexes list the same child.
    """

    __tablename__ = "index_entries"
    __table_args__ = (UniqueConstraint("index_id", "position"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    index_id: Mapped[int] = mapped_column(ForeignKey("images.id"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    digest: Mapped[str] = mapped_column(Digest, index=True)
    media_type: Mapped[str] = mapped_column(String(255))
    platform: Mapped[str | None] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))
    """``image``, ``index``, ``attestation`` (content verified as one) or ``artifact``."""
    refers_to: Mapped[str | None] = mapped_column(Digest)
    """For an attestation: the sibling image it annotates."""


class TagEvent(Base):
    """A tag pointing at a digest from ``seen_at`` until ``superseded_at`` (null: current)."""

    __tablename__ = "tags"
    __table_args__ = (Index(None, "host", "repository", "tag"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    host: Mapped[str] = mapped_column(String(255))
    repository: Mapped[str] = mapped_column(String(255))
    tag: Mapped[str] = mapped_column(String(128))
    digest: Mapped[str] = mapped_column(Digest)
    seen_at: Mapped[datetime] = mapped_column(default=utcnow)
    superseded_at: Mapped[datetime | None]
    source: Mapped[str] = mapped_column(String(32))


class WebhookDelivery(Base):
    """A webhook request as received, stored before it is answered."""

    __tablename__ = "webhook_deliveries"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    source: Mapped[str] = mapped_column(String(64))
    received_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    authenticated: Mapped[bool] = mapped_column(Boolean)
    content_type: Mapped[str | None] = mapped_column(String(255))
    remote_addr: Mapped[str | None] = mapped_column(String(64))
    body: Mapped[bytes] = mapped_column(LargeBinary)
    outcome: Mapped[str] = mapped_column(String(32))
    detail: Mapped[str | None] = mapped_column(Text)
    events: Mapped[int] = mapped_column(Integer, default=0)
    jobs_created: Mapped[int] = mapped_column(Integer, default=0)


class SeenEvent(Base):
    """Dedupe keys of webhook events already turned into work (event ids)."""

    __tablename__ = "seen_events"

    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    delivery_id: Mapped[int] = mapped_column(
        ForeignKey("webhook_deliveries.id", deferrable=True, initially="DEFERRED"), index=True
    )
    """The delivery that first carried the event (checked at commit: the intake writes its
    deliveries after it has learnt which of their events are new). Indexed: SQLite looks up a
    new delivery's seen events while a deferred check is pending (a scan of the table each)."""
    seen_at: Mapped[datetime] = mapped_column(default=utcnow)


class Job(Base):
    """A durable unit of work: process one image (or an index, which fans out)."""

    __tablename__ = "jobs"
    __table_args__ = (Index(None, "state", "run_after"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    dedupe_key: Mapped[str] = mapped_column(String(512), unique=True)
    """``registry/repository@digest``: one job per digest in a repository, whatever its kind."""
    host: Mapped[str] = mapped_column(String(255))
    repository: Mapped[str] = mapped_column(String(255))
    digest: Mapped[str] = mapped_column(Digest)
    tag: Mapped[str | None] = mapped_column(String(128))
    state: Mapped[str] = mapped_column(String(16), default="queued")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=5)
    run_after: Mapped[datetime] = mapped_column(default=utcnow)
    lease_until: Mapped[datetime | None]
    worker: Mapped[str | None] = mapped_column(String(255))
    last_error: Mapped[str | None] = mapped_column(Text)
    deferrals: Mapped[int] = mapped_column(Integer, default=0)
    """Attempts ended by a fault that was not the image's (registry, disk, database) in a row."""
    deferred_since: Mapped[datetime | None]
    """When that run of faults began; past the retry window they count as attempts."""
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    finished_at: Mapped[datetime | None]

    failures: Mapped[list[JobFailure]] = relationship(
        back_populates="job", order_by="JobFailure.id"
    )


class JobFailure(Base):
    """Why one attempt of a job failed."""

    __tablename__ = "job_failures"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id"), index=True)
    attempt: Mapped[int] = mapped_column(Integer)
    worker: Mapped[str | None] = mapped_column(String(255))
    reason: Mapped[str] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(default=utcnow)

    job: Mapped[Job] = relationship(back_populates="failures")


class JobClaim(Base):
    """One claim of one job: (job, attempt) appears once unless two workers claimed it."""

    __tablename__ = "job_claims"
    __table_args__ = (Index(None, "job_id", "attempt"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id"))
    attempt: Mapped[int] = mapped_column(Integer)
    worker: Mapped[str] = mapped_column(String(255))
    at: Mapped[datetime] = mapped_column(default=utcnow)
