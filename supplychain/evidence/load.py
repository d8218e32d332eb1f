"""Loads recorded facts back for the one decision (:mod:`supplychain.decide.decision`).

Everything that decides (the worker right after recording, the gate, rematch, the CLI) loads
through here, so they all see the same facts: the image's latest scan, the signatures found with
it, the VEX statements about it (uploaded and verified attested, oldest first), and for an index
its own recorded entries, followed into nested indexes to a depth limit.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from supplychain.decide.decision import ChildFacts, ImageFacts, IndexFacts
from supplychain.decide.vex import VexStatement
from supplychain.evidence import models
from supplychain.evidence.imageconfig import config_from_row
from supplychain.interface import (
    Component,
    Evidence,
    Finding,
    ScanResult,
    SignatureEvidence,
    Waiver,
)
from supplychain.mediatypes import INDEX_MEDIA_TYPES

__all__ = ["latest_scan_id", "load_facts", "load_image_facts", "load_index_facts"]


def latest_scan_id(session: Session, image: models.Image) -> int | None:
    """The id of the image's latest finished scan."""
    return session.scalars(
        select(models.Scan.id)
        .where(models.Scan.image_id == image.id, models.Scan.finished_at.is_not(None))
        .order_by(models.Scan.finished_at.desc(), models.Scan.id.desc())
        .limit(1)
    ).first()


def _vex(session: Session, digest: str) -> tuple[VexStatement, ...]:
    rows = session.scalars(
        select(models.VexStatement)
        .where(models.VexStatement.product == digest)
        .order_by(models.VexStatement.id)
    ).all()
    return tuple(
        VexStatement(r.vuln_id, r.product, r.subcomponent, r.status, r.justification, {})
        for r in rows
    )


def _failure(session: Session, image: models.Image) -> str | None:
    """The last error of the image's job while it has no scan (failed or waiting to retry)."""
    return session.scalars(
        select(models.Job.last_error)
        .where(
            models.Job.host == image.host,
            models.Job.repository == image.repository,
            models.Job.digest == image.digest,
            models.Job.last_error.is_not(None),
        )
        .order_by(models.Job.updated_at.desc())
        .limit(1)
    ).first()


def cvss_score(cvss: object) -> float | None:
    """The highest base score in Trivy's ``CVSS`` entry (per source: V40, V3 or V2 score)."""
    if not isinstance(cvss, dict):
        return None
    scores = [
        float(entry[key])
        for entry in cvss.values()
        if isinstance(entry, dict)
        for key in ("V40Score", "V3Score", "V2Score")
        if isinstance(entry.get(key), int | float)
    ]
    return max(scores) if scores else None


def load_waivers(session: Session, image: models.Image) -> tuple[Waiver, ...]:
    """The waivers that may cover ``image`` (its digest's, and every repository pattern's),
    revoked ones left out; which apply at a given time is the decision's to say."""
    rows = session.scalars(
        select(models.Waiver)
        .where(
            models.Waiver.revoked_at.is_(None),
            (models.Waiver.digest == image.digest) | models.Waiver.repository.is_not(None),
        )
        .order_by(models.Waiver.id)
    ).all()
    return tuple(
        Waiver(
            w.id,
            w.digest,
            w.repository,
            w.cve,
            w.package,
            w.rule,
            w.owner,
            w.reason,
            w.ticket,
            w.expires_at,
            w.justification,
        )
        for w in rows
    )


def load_image_facts(session: Session, image: models.Image) -> ImageFacts:
    """The facts about one image manifest (no scan yet: evidence without a scan)."""
    vex = _vex(session, image.digest)
    scan_id = latest_scan_id(session, image)
    subject = f"{image.host}/{image.repository}"
    waivers = load_waivers(session, image)
    if scan_id is None:
        empty = Evidence(None, None, None, (), subject, image.digest, (), waivers)
        return ImageFacts(image.digest, empty, vex, _failure(session, image))
    scan = session.get_one(models.Scan, scan_id)
    findings = session.scalars(
        select(models.Finding).where(models.Finding.scan_id == scan_id).order_by(models.Finding.id)
    ).all()
    signatures = session.scalars(
        select(models.Signature).where(models.Signature.scan_id == scan_id)
    ).all()
    attestations = session.scalars(
        select(models.Attestation).where(models.Attestation.scan_id == scan_id)
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
                tuple(str(a) for a in f.aliases or ()),
                cvss_score(f.cvss),
                f.kind,
            )
            for f in findings
        ),
        scanned_at=scan.finished_at,
    )
    components = tuple(
        Component(
            c.name,
            c.version,
            c.purl,
            c.type,
            c.layer_digest,
            c.path,
            c.source_name,
            tuple(str(x) for x in c.licenses or ()),
        )
        for c in session.scalars(
            select(models.Component)
            .where(models.Component.scan_id == scan_id)
            .order_by(models.Component.id)
        )
    )
    found = tuple(
        SignatureEvidence(
            s.kind, s.reference, s.digest, s.verified, s.reason, s.signer, signed_at=s.signed_at
        )
        for s in signatures
    ) + tuple(
        SignatureEvidence(
            a.kind,
            a.reference,
            a.digest,
            a.verified,
            a.reason,
            a.signer,
            b"",
            a.predicate_type,
            a.signed_at,
        )
        for a in attestations
    )
    config = config_from_row(scan.image_config)
    evidence = Evidence(
        None, None, result, found, subject, image.digest, components, waivers, config
    )
    return ImageFacts(image.digest, evidence, vex)


def _child(session: Session, index: models.Image, digest: str) -> models.Image | None:
    return session.scalars(
        select(models.Image).where(
            models.Image.host == index.host,
            models.Image.repository == index.repository,
            models.Image.digest == digest,
        )
    ).first()


def load_index_facts(session: Session, index: models.Image, *, max_depth: int) -> IndexFacts:
    """The facts about an image index: its own entries and each child's facts."""
    if index.expanded_at is None:
        return IndexFacts(index.digest, False, None)
    if index.expansion_error:
        return IndexFacts(index.digest, True, index.expansion_error)
    entries = session.scalars(
        select(models.IndexEntry)
        .where(models.IndexEntry.index_id == index.id)
        .order_by(models.IndexEntry.position)
    ).all()
    children: list[ChildFacts] = []
    for entry in entries:
        facts: ImageFacts | IndexFacts | None = None
        row = _child(session, index, entry.digest) if entry.kind in ("image", "index") else None
        if entry.kind == "index":
            if max_depth <= 0:
                return IndexFacts(index.digest, True, "image indexes nested too deep")
            if row is not None:
                facts = load_index_facts(session, row, max_depth=max_depth - 1)
        elif row is not None:
            facts = load_image_facts(session, row)
        children.append(ChildFacts(entry.digest, entry.platform, entry.kind, facts))
    return IndexFacts(index.digest, True, None, tuple(children))


def load_facts(session: Session, image: models.Image, *, max_depth: int) -> ImageFacts | IndexFacts:
    """The facts about ``image``, an image manifest or an image index."""
    if image.media_type in INDEX_MEDIA_TYPES:
        return load_index_facts(session, image, max_depth=max_depth)
    return load_image_facts(session, image)
