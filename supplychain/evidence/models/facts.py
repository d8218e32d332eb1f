"""Models of the evidence: what each scan found, signatures, attestations and the verdicts."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, Float, ForeignKey, Index, Integer, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from supplychain.evidence.models.base import Base, Digest, utcnow
from supplychain.evidence.models.intake import Image


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
