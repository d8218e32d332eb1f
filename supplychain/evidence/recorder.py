"""Writes facts (what the pipeline found, index entries, tags) and the verdicts decided on them.

Facts are loaded back by :mod:`supplychain.evidence.load`; nothing here decides.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from supplychain.decide.vex import VexError, record_vex
from supplychain.decide.vex_attested import attested_vex
from supplychain.evidence import models
from supplychain.evidence.dbutil import audit, insert_ignore
from supplychain.evidence.imageconfig import config_to_row, parse_config
from supplychain.evidence.models import utcnow
from supplychain.evidence.sbomstore import pack
from supplychain.evidence.tags import record_tags
from supplychain.interface import Finding, ImageTarget, SignatureEvidence, Verdict
from supplychain.registry.index import IndexEntry
from supplychain.stages.pipeline import Outcome
from supplychain.stages.scanner import finding_extras

__all__ = [
    "find_image",
    "finding_fields",
    "record_facts",
    "record_index",
    "record_tag",
    "record_verdict",
    "upsert_image",
]

log = logging.getLogger(__name__)


def record_tag(session: Session, target: ImageTarget, tag: str, *, source: str) -> None:
    """Point ``tag`` at ``target.digest``, keeping the history of moves."""
    record_tags(session, [(target, tag, source)])


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
) -> models.Image:
    """The image row for ``target``, created if new; unknown fields are filled in."""
    image = find_image(session, target)
    if image is None:  # concurrent callers (gate calls, workers) may insert the same image
        key = {"host": target.registry, "repository": target.repository, "digest": target.digest}
        insert_ignore(session, models.Image, key)  # a new row is named to the log
        image = find_image(session, target)
        assert image is not None  # noqa: S101 - inserted now or by a committed concurrent caller
    image.media_type = image.media_type or media_type
    image.platform = image.platform or platform
    session.flush()
    return image


def record_index(
    session: Session,
    target: ImageTarget,
    *,
    media_type: str,
    entries: Sequence[IndexEntry],
    error: str | None,
) -> models.Image:
    """Record an index's entries from its verified manifest (once), or why it cannot be used."""
    index = upsert_image(session, target, media_type=media_type)
    if index.expanded_at is not None:
        return index  # an index's content never changes: its digest is its content
    index.expanded_at = utcnow()
    index.expansion_error = error[:4000] if error else None
    session.add_all(
        models.IndexEntry(
            index_id=index.id,
            position=entry.position,
            digest=entry.digest,
            media_type=entry.media_type[:255],
            platform=entry.platform[:64] if entry.platform else None,
            kind=entry.kind,
            refers_to=entry.refers_to,
        )
        for entry in entries
    )
    session.flush()
    return index


def record_facts(
    session: Session, outcome: Outcome, *, job_id: int | None, actor: str
) -> tuple[models.Image, int]:
    """Store what a pipeline run found: scan, SBOM, components, findings, signatures and the
    VEX documents of verified attestations (once each). No verdict: that is the decision's."""
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
        sbom_warnings=list(outcome.sbom.warnings[:1000]),
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
        image_config=config_to_row(parse_config(outcome.image.config)),
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
            licenses=list(c.licenses) or None,
        )
        for c in outcome.sbom.components
    )
    findings = [
        models.Finding(scan_id=row.id, image_id=image.id, **finding_fields(f))
        for f in scan.findings
    ]
    session.add_all(findings)
    for document in attested_vex(outcome.signatures):  # verified VEX attestations, kept whole
        try:
            record_vex(
                session,
                document,
                source="attestation",
                image=image.digest,
                only_product=image.digest,
            )
        except VexError as exc:
            log.warning("attested VEX not usable: %s", exc, extra={"image": image.digest})
    _record_signatures(session, image.id, row.id, outcome.signatures)
    session.flush()
    audit(
        session,
        actor,
        "image.scanned",
        outcome.target.pinned,
        scan=row.id,
        findings=len(scan.findings),
        db_digest=scan.db_digest,
    )
    return image, row.id


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
            "signed_at": item.signed_at,
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


def finding_fields(finding: Finding) -> dict[str, object]:
    """The columns of a ``findings`` row for ``finding`` (truncated to the column sizes)."""
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
        **verdict_values(
            verdict,
            image_id=image.id if image else None,
            scan_id=scan_id,
            context=context,
            requested=requested,
            digest=digest or (image.digest if image else None),
            duration_ms=duration_ms,
        )
    )
    session.add(row)
    return row


def verdict_values(
    verdict: Verdict,
    *,
    image_id: int | None,
    scan_id: int | None,
    context: str,
    requested: str | None,
    digest: str | None,
    duration_ms: float | None,
) -> dict[str, Any]:
    """The columns of one decision's ``verdicts`` row."""
    return {
        "image_id": image_id,
        "scan_id": scan_id,
        "context": context,
        "requested": requested,
        "digest": digest,
        "decision": verdict.decision,
        "reasons": list(verdict.reasons),
        "policy": verdict.policy,
        "policy_digest": verdict.policy_digest,
        "evaluated_at": verdict.evaluated_at or utcnow(),
        "duration_ms": duration_ms,
    }
