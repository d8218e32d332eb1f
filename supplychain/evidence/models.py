"""SQLAlchemy 2 models: the durable record of everything the service saw, did and decided.

The same models run on SQLite (embedded default) and PostgreSQL. Times are stored in UTC and
read back timezone-aware. The audit log is append-only: the migration installs triggers that
refuse UPDATE and DELETE on it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored as UTC and always read back timezone-aware."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are not stored; use timezone-aware UTC")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    """Declarative base with a naming convention so migrations name constraints stably."""

    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UTCDateTime(),
        dict[str, Any]: JSON,
        list[Any]: JSON,
    }


Digest = String(71)  # "sha256:" + 64 hex


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
    delivery_id: Mapped[int] = mapped_column(ForeignKey("webhook_deliveries.id"))
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


class Scan(Base):
    """One run of the pipeline over one image, with its evidence."""

    __tablename__ = "scans"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id"), index=True)
    job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id"))
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]
    stage_seconds: Mapped[dict[str, Any]] = mapped_column(default=dict)
    sbom_warnings: Mapped[list[Any]] = mapped_column(default=list)
    """Files the SBOM could not read (``path: problem``): stored with the scan, shown to people."""
    scanner: Mapped[str] = mapped_column(String(64))
    scanner_version: Mapped[str] = mapped_column(String(64))
    db_updated_at: Mapped[datetime | None]
    db_digest: Mapped[str | None] = mapped_column(Digest)
    sbom_format: Mapped[str | None] = mapped_column(String(32))
    sbom_generator: Mapped[str | None] = mapped_column(String(128))
    sbom_digest: Mapped[str | None] = mapped_column(Digest)
    sbom: Mapped[bytes | None] = mapped_column(LargeBinary)
    sbom_encoding: Mapped[str | None] = mapped_column(String(16))
    report: Mapped[bytes | None] = mapped_column(LargeBinary)
    matched_at: Mapped[datetime | None]
    """When the stored SBOM was last rematched against a new advisory DB (null: never)."""
    image_config: Mapped[dict[str, Any] | None]
    """The image config's run settings (:mod:`supplychain.evidence.imageconfig`); null: not
    recorded (scans made before it was)."""

    image: Mapped[Image] = relationship()


class Component(Base):
    """A package found in an image by one scan."""

    __tablename__ = "components"
    __table_args__ = (Index(None, "name", "version"), Index(None, "type", "source_name"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    scan_id: Mapped[int] = mapped_column(ForeignKey("scans.id"), index=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id"), index=True)
    type: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(512))
    version: Mapped[str] = mapped_column(String(255))
    purl: Mapped[str | None] = mapped_column(Text, index=True)
    layer_digest: Mapped[str | None] = mapped_column(Digest)
    path: Mapped[str | None] = mapped_column(Text)
    source_name: Mapped[str | None] = mapped_column(String(512))
    """OS packages: the source package (Debian advisories are keyed by it); None if unknown."""
    licenses: Mapped[list[Any] | None]
    """Licences the package states (SPDX where it can be said), all of which apply; null: not
    recorded (scans made before they were)."""


class Finding(Base):
    """A vulnerability of a package of an image, as one scan found it."""

    __tablename__ = "findings"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    scan_id: Mapped[int] = mapped_column(ForeignKey("scans.id"), index=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id"), index=True)
    vuln_id: Mapped[str] = mapped_column(String(128), index=True)
    package: Mapped[str] = mapped_column(String(512))
    purl: Mapped[str | None] = mapped_column(Text)
    installed: Mapped[str] = mapped_column(String(255))
    fixed: Mapped[str | None] = mapped_column(String(255))
    severity: Mapped[str] = mapped_column(String(16))
    status: Mapped[str | None] = mapped_column(String(32))
    title: Mapped[str | None] = mapped_column(Text)
    data_source: Mapped[str | None] = mapped_column(String(128))
    layer_digest: Mapped[str | None] = mapped_column(Digest)
    kind: Mapped[str] = mapped_column(
        String(16), default="vulnerability", server_default="vulnerability"
    )
    """``vulnerability`` or ``secret`` (a secret Trivy found in a layer)."""
    aliases: Mapped[list[Any] | None]
    """Other ids of the same advisory (CVE ↔ GHSA …)."""
    vendor_severity: Mapped[dict[str, Any] | None]
    """Severity per advisory source, as Trivy reports it (``{"debian": "HIGH"}``)."""
    cvss: Mapped[dict[str, Any] | None]
    """CVSS vectors and scores per source."""


class VexStatement(Base):
    """One statement of an OpenVEX or CycloneDX VEX document about a vulnerability of a product."""

    __tablename__ = "vex_statements"
    __table_args__ = (
        Index(None, "vuln_id", "product"),
        Index(None, "product", "created_at"),  # the statements about an image, known by a time
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    document_digest: Mapped[str] = mapped_column(Digest, index=True)
    format: Mapped[str] = mapped_column(String(16))
    source: Mapped[str] = mapped_column(String(64))
    vuln_id: Mapped[str] = mapped_column(String(128))
    product: Mapped[str] = mapped_column(Text)
    subcomponent: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(32))
    justification: Mapped[str | None] = mapped_column(Text)
    statement: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class VulnDatabase(Base):
    """A Trivy advisory DB version installed into the shared DB store."""

    __tablename__ = "vuln_databases"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    digest: Mapped[str] = mapped_column(Digest, unique=True)
    updated_at: Mapped[datetime | None]
    schema_version: Mapped[int | None] = mapped_column(Integer)
    source: Mapped[str] = mapped_column(String(32))
    origin: Mapped[str | None] = mapped_column(Text)
    installed_at: Mapped[datetime] = mapped_column(default=utcnow)


class VerdictChange(Base):
    """A verdict that changed when an image's stored SBOM was rematched; allow → deny revokes."""

    __tablename__ = "verdict_changes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id"), index=True)
    scan_id: Mapped[int] = mapped_column(ForeignKey("scans.id"))
    previous_verdict_id: Mapped[int | None] = mapped_column(ForeignKey("verdicts.id"))
    verdict_id: Mapped[int] = mapped_column(ForeignKey("verdicts.id"))
    previous_decision: Mapped[str | None] = mapped_column(String(16))
    decision: Mapped[str] = mapped_column(String(16))
    revocation: Mapped[bool] = mapped_column(Boolean, index=True)
    db_digest_before: Mapped[str | None] = mapped_column(Digest)
    db_digest_after: Mapped[str | None] = mapped_column(Digest)
    added: Mapped[list[Any]] = mapped_column(default=list)
    removed: Mapped[list[Any]] = mapped_column(default=list)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    announced_at: Mapped[datetime | None]
    announce_error: Mapped[str | None] = mapped_column(Text)


class Payload(Base):
    """A signature, attestation or bundle blob, stored once by its digest (rows refer to it)."""

    __tablename__ = "payloads"

    digest: Mapped[str] = mapped_column(Digest, primary_key=True)
    size: Mapped[int] = mapped_column(Integer)
    data: Mapped[bytes] = mapped_column(LargeBinary)
    first_seen: Mapped[datetime] = mapped_column(default=utcnow)


class Signature(Base):
    """A signature found for an image with what checking it showed; its blob is a
    :class:`Payload` (``payload`` holds it inline only in rows written before payloads)."""

    __tablename__ = "signatures"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id"), index=True)
    scan_id: Mapped[int | None] = mapped_column(ForeignKey("scans.id"))
    kind: Mapped[str] = mapped_column(String(32))
    reference: Mapped[str] = mapped_column(Text)
    digest: Mapped[str] = mapped_column(Digest)
    verified: Mapped[bool] = mapped_column(Boolean)
    signer: Mapped[str | None] = mapped_column(Text)
    reason: Mapped[str] = mapped_column(Text)
    payload: Mapped[bytes | None] = mapped_column(LargeBinary)
    payload_digest: Mapped[str | None] = mapped_column(ForeignKey("payloads.digest"), index=True)
    found_at: Mapped[datetime] = mapped_column(default=utcnow)
    signed_at: Mapped[datetime | None]
    """When it was signed, from a verified transparency-log entry or timestamp (null: unknown)."""


class Attestation(Base):
    """An attestation found for an image with what checking it showed; its envelope is a
    :class:`Payload` (``envelope`` holds it inline only in rows written before payloads)."""

    __tablename__ = "attestations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id"), index=True)
    scan_id: Mapped[int | None] = mapped_column(ForeignKey("scans.id"))
    kind: Mapped[str] = mapped_column(String(32))
    predicate_type: Mapped[str | None] = mapped_column(Text)
    reference: Mapped[str] = mapped_column(Text)
    digest: Mapped[str] = mapped_column(Digest)
    verified: Mapped[bool] = mapped_column(Boolean)
    signer: Mapped[str | None] = mapped_column(Text)
    reason: Mapped[str] = mapped_column(Text)
    envelope: Mapped[bytes | None] = mapped_column(LargeBinary)
    payload_digest: Mapped[str | None] = mapped_column(ForeignKey("payloads.digest"), index=True)
    found_at: Mapped[datetime] = mapped_column(default=utcnow)
    signed_at: Mapped[datetime | None]
    """When it was signed, from a verified transparency-log entry or timestamp (null: unknown)."""


class Verdict(Base):
    """A policy decision: made by the pipeline, or answered to a gate request."""

    __tablename__ = "verdicts"
    __table_args__ = (
        Index(None, "image_id", "evaluated_at"),
        Index(None, "digest", "evaluated_at"),  # an image's history, gate answers by a time
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    image_id: Mapped[int | None] = mapped_column(ForeignKey("images.id"))
    scan_id: Mapped[int | None] = mapped_column(ForeignKey("scans.id"))
    context: Mapped[str] = mapped_column(String(16))
    requested: Mapped[str | None] = mapped_column(Text)
    digest: Mapped[str | None] = mapped_column(Digest)
    decision: Mapped[str] = mapped_column(String(16))
    reasons: Mapped[list[Any]] = mapped_column(default=list)
    policy: Mapped[str] = mapped_column(String(128))
    policy_digest: Mapped[str] = mapped_column(Digest)
    evaluated_at: Mapped[datetime] = mapped_column(default=utcnow)
    duration_ms: Mapped[float | None] = mapped_column(Float)


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
