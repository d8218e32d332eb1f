"""Writes what the pipeline and the gate produced, and reads stored evidence back for the gate."""

from __future__ import annotations

import hashlib

from sqlalchemy import select
from sqlalchemy.orm import Session

from supplychain.decide.vex import apply_vex, record_vex
from supplychain.decide.vex_attested import attested_vex
from supplychain.evidence import models
from supplychain.evidence.dbutil import audit, insert_ignore
from supplychain.evidence.models import utcnow
from supplychain.evidence.sbomstore import pack
from supplychain.interface import (
    Evidence,
    Finding,
    ImageTarget,
    ScanResult,
    SignatureEvidence,
    Verdict,
)
from supplychain.stages.pipeline import Outcome
from supplychain.stages.scanner import finding_extras

__all__ = [
    "find_image",
    "latest_evidence",
    "record_outcome",
    "record_tag",
    "record_verdict",
    "upsert_image",
]


def record_tag(session: Session, target: ImageTarget, tag: str, *, source: str) -> None:
    """Point ``tag`` at ``target.digest``, keeping the history of moves."""
    current = session.scalars(
        select(models.TagEvent)
        .where(
            models.TagEvent.host == target.registry,
            models.TagEvent.repository == target.repository,
            models.TagEvent.tag == tag,
            models.TagEvent.superseded_at.is_(None),
        )
        .with_for_update()
    ).all()
    if any(row.digest == target.digest for row in current):
        return
    now = utcnow()
    for row in current:
        row.superseded_at = now
    session.add(
        models.TagEvent(
            host=target.registry,
            repository=target.repository,
            tag=tag,
            digest=target.digest,
            source=source,
        )
    )
    audit(
        session,
        source,
        "tag.moved",
        f"{target.registry}/{target.repository}:{tag}",
        digest=target.digest,
    )


def find_image(session: Session, target: ImageTarget) -> models.Image | None:
    """The image row for ``target``'s repository and digest, if recorded."""
    return session.scalars(
        select(models.Image).where(
            models.Image.host == target.registry,
            models.Image.repository == target.repository,
            models.Image.digest == target.digest,
        )
    ).first()


def upsert_image(
    session: Session,
    target: ImageTarget,
    *,
    media_type: str | None = None,
    platform: str | None = None,
    index_digest: str | None = None,
    index_platform: bool = False,
) -> models.Image:
    """The image row for ``target``, created if new; known fields are filled in.

    ``platform`` fills an unknown platform, unless ``index_platform``: the platform an index
    declares for its child is what a pull selects by, so it wins over the config's.
    """
    image = find_image(session, target)
    if image is None:
        image = models.Image(
            host=target.registry, repository=target.repository, digest=target.digest
        )
        session.add(image)
    image.media_type = media_type or image.media_type
    image.platform = (
        (platform or image.platform) if index_platform else (image.platform or platform)
    )
    image.index_digest = index_digest or image.index_digest
    session.flush()
    return image


def record_outcome(session: Session, outcome: Outcome, *, job_id: int | None, actor: str) -> int:
    """Store a pipeline run whole: scan, SBOM, components, findings, signatures, verdict."""
    image = upsert_image(
        session,
        outcome.target,
        media_type=outcome.image.media_type,
        platform=outcome.image.platform,
    )
    scan = outcome.scan
    stored_sbom, encoding = pack(outcome.sbom.document)
    row = models.Scan(
        image_id=image.id,
        job_id=job_id,
        finished_at=utcnow(),
        stage_seconds=dict(outcome.stage_seconds),
        scanner=scan.scanner,
        scanner_version=scan.scanner_version,
        db_updated_at=scan.db_updated_at,
        db_digest=scan.db_digest,
        sbom_format=outcome.sbom.format,
        sbom_generator=outcome.sbom.generator,
        sbom_digest="sha256:" + hashlib.sha256(outcome.sbom.document).hexdigest(),
        sbom=stored_sbom,
        sbom_encoding=encoding,
        report=scan.report,
    )
    session.add(row)
    session.flush()
    session.add_all(
        models.Component(
            scan_id=row.id,
            image_id=image.id,
            type=c.type,
            name=c.name[:512],
            version=c.version[:255],
            purl=c.purl,
            layer_digest=c.layer_digest,
            path=c.path,
            source_name=c.source_name[:512] if c.source_name else None,
        )
        for c in outcome.sbom.components
    )
    findings = [
        models.Finding(scan_id=row.id, image_id=image.id, **_finding_fields(f))
        for f in scan.findings
    ]
    session.add_all(findings)
    session.flush()
    apply_vex(session, image.digest, findings)
    for document in attested_vex(outcome.signatures):  # verified VEX attestations, kept whole
        record_vex(session, document, source="attestation", image=image.digest)
    _record_signatures(session, image.id, row.id, outcome.signatures)
    record_verdict(session, outcome.verdict, image=image, scan_id=row.id, context="pipeline")
    audit(
        session,
        actor,
        "image.scanned",
        outcome.target.pinned,
        scan=row.id,
        decision=outcome.verdict.decision,
        findings=len(scan.findings),
        db_digest=scan.db_digest,
    )
    return row.id


def _record_signatures(
    session: Session, image_id: int, scan_id: int, found: tuple[SignatureEvidence, ...]
) -> None:
    """Signatures and attestations, each in its own table; their blobs once, in ``payloads``."""
    stored: set[str] = set()
    for item in found:
        common = {
            "image_id": image_id,
            "scan_id": scan_id,
            "kind": item.kind,
            "reference": item.reference,
            "digest": item.digest,
            "verified": item.verified,
            "signer": item.signer,
            "reason": item.reason,
            "payload_digest": _store_payload(session, item.payload, stored),
        }
        if item.is_attestation:
            session.add(models.Attestation(**common, predicate_type=item.predicate_type))
        else:
            session.add(models.Signature(**common))


def _store_payload(session: Session, data: bytes, stored: set[str]) -> str | None:
    """The digest of ``data``, stored in ``payloads`` unless it is there (None when empty)."""
    if not data:
        return None
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    if digest not in stored:
        insert_ignore(session, models.Payload, {"digest": digest, "size": len(data), "data": data})
        stored.add(digest)
    return digest


def _finding_fields(finding: Finding) -> dict[str, object]:
    return {
        "vuln_id": finding.vuln_id[:128],
        "package": finding.package[:512],
        "purl": finding.purl,
        "installed": finding.installed[:255],
        "fixed": (finding.fixed or None) and finding.fixed[:255],
        "severity": finding.severity,
        "status": finding.status,
        "title": finding.title,
        "data_source": finding.data_source,
        "layer_digest": finding.layer_digest,
        **finding_extras(finding),
    }


def record_verdict(
    session: Session,
    verdict: Verdict,
    *,
    image: models.Image | None,
    scan_id: int | None,
    context: str,
    requested: str | None = None,
    digest: str | None = None,
    duration_ms: float | None = None,
) -> models.Verdict:
    """Store one decision."""
    row = models.Verdict(
        image_id=image.id if image else None,
        scan_id=scan_id,
        context=context,
        requested=requested,
        digest=digest or (image.digest if image else None),
        decision=verdict.decision,
        reasons=list(verdict.reasons),
        policy=verdict.policy,
        policy_digest=verdict.policy_digest,
        evaluated_at=verdict.evaluated_at or utcnow(),
        duration_ms=duration_ms,
    )
    session.add(row)
    return row


def latest_evidence(session: Session, image: models.Image) -> tuple[Evidence, int | None]:
    """The evidence of the image's latest scan (no scan: empty evidence) and that scan's id."""
    scan = session.scalars(
        select(models.Scan)
        .where(models.Scan.image_id == image.id, models.Scan.finished_at.is_not(None))
        .order_by(models.Scan.finished_at.desc(), models.Scan.id.desc())
        .limit(1)
    ).first()
    if scan is None:
        return Evidence(None, None, None, ()), None
    findings = session.scalars(
        select(models.Finding).where(models.Finding.scan_id == scan.id)
    ).all()
    signatures = session.scalars(
        select(models.Signature).where(models.Signature.scan_id == scan.id)
    ).all()
    attestations = session.scalars(
        select(models.Attestation).where(models.Attestation.scan_id == scan.id)
    ).all()
    result = ScanResult(
        scan.scanner,
        scan.scanner_version,
        scan.db_updated_at,
        scan.db_digest,
        tuple(
            Finding(
                f.vuln_id,
                f.package,
                f.purl,
                f.installed,
                f.fixed,
                f.severity,
                f.status,
                f.title,
                f.data_source,
                f.layer_digest,
                f.vex_status,
            )
            for f in findings
        ),
    )
    evidence = tuple(
        SignatureEvidence(s.kind, s.reference, s.digest, s.verified, s.reason, s.signer)
        for s in signatures
    ) + tuple(
        SignatureEvidence(
            a.kind, a.reference, a.digest, a.verified, a.reason, a.signer, b"", a.predicate_type
        )
        for a in attestations
    )
    return Evidence(None, None, result, evidence), scan.id
