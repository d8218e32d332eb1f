"""Loads recorded facts back for the one decision (:mod:`supplychain.decide.decision`).

Everything that decides (the worker right after recording, the gate, rematch, the CLI) loads
through here, so they all see the same facts: the image's latest scan, the signatures found with
it, the VEX statements about it (uploaded and verified attested, oldest first), and for an index
its own recorded entries, followed into nested indexes to a depth limit.

``as_of`` (default None: everything recorded now) loads the facts as they were known at a past
time, for the auditors' time travel (:mod:`supplychain.history.timetravel`): scans finished by
then, VEX statements recorded by then, waivers created by then and not revoked by then, index
entries expanded by then. A rematch rewrites a scan's findings in place, so a scan rematched after
``as_of`` shows its later findings (the time travel answer says so).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ColumnElement, select
from sqlalchemy.orm import Session

from supplychain.decide.decision import ChildFacts, ImageFacts, IndexFacts
from supplychain.decide.vex import VexStatement
from supplychain.evidence import models
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


def latest_scan_id(
    session: Session, image: models.Image, *, as_of: datetime | None = None
) -> int | None:
    """The id of the image's latest finished scan (finished by ``as_of`` when given)."""
    query = select(models.Scan.id).where(
        models.Scan.image_id == image.id, models.Scan.finished_at.is_not(None)
    )
    if as_of is not None:
        query = query.where(models.Scan.finished_at <= as_of)
    return session.scalars(
        query.order_by(models.Scan.finished_at.desc(), models.Scan.id.desc()).limit(1)
    ).first()


def _vex(session: Session, digest: str, as_of: datetime | None) -> tuple[VexStatement, ...]:
    query = select(models.VexStatement).where(models.VexStatement.product == digest)
    if as_of is not None:
        query = query.where(models.VexStatement.created_at <= as_of)
    rows = session.scalars(query.order_by(models.VexStatement.id)).all()
    return tuple(
        VexStatement(r.vuln_id, r.product, r.subcomponent, r.status, r.justification, {})
        for r in rows
    )


def _failure(session: Session, image: models.Image, as_of: datetime | None) -> str | None:
    """The last error of the image's job while it has no scan (failed or waiting to retry);
    with ``as_of``, the last attempt's failure recorded by then."""
    job = (
        models.Job.host == image.host,
        models.Job.repository == image.repository,
        models.Job.digest == image.digest,
    )
    if as_of is not None:
        return session.scalars(
            select(models.JobFailure.reason)
            .join(models.Job, models.Job.id == models.JobFailure.job_id)
            .where(*job, models.JobFailure.at <= as_of)
            .order_by(models.JobFailure.at.desc(), models.JobFailure.id.desc())
            .limit(1)
        ).first()
    return session.scalars(
        select(models.Job.last_error)
        .where(*job, models.Job.last_error.is_not(None))
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


def load_waivers(
    session: Session, image: models.Image, *, as_of: datetime | None = None
) -> tuple[Waiver, ...]:
    """The waivers that may cover ``image`` (its digest's, and every repository pattern's),
    revoked ones left out (with ``as_of``: created by then and not revoked by then); which apply
    at a given time is the decision's to say."""
    scope = (models.Waiver.digest == image.digest) | models.Waiver.repository.is_not(None)
    live: ColumnElement[bool]
    if as_of is None:
        live = models.Waiver.revoked_at.is_(None)
    else:
        live = (models.Waiver.created_at <= as_of) & (
            models.Waiver.revoked_at.is_(None) | (models.Waiver.revoked_at > as_of)
        )
    rows = session.scalars(
        select(models.Waiver).where(live, scope).order_by(models.Waiver.id)
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


def load_image_facts(
    session: Session, image: models.Image, *, as_of: datetime | None = None
) -> ImageFacts:
    """The facts about one image manifest (no scan yet: evidence without a scan)."""
    vex = _vex(session, image.digest, as_of)
    scan_id = latest_scan_id(session, image, as_of=as_of)
    subject = f"{image.host}/{image.repository}"
    waivers = load_waivers(session, image, as_of=as_of)
    if scan_id is None:
        empty = Evidence(None, None, None, (), subject, image.digest, (), waivers)
        return ImageFacts(image.digest, empty, vex, _failure(session, image, as_of))
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
        Component(c.name, c.version, c.purl, c.type, c.layer_digest, c.path, c.source_name)
        for c in session.scalars(
            select(models.Component)
            .where(models.Component.scan_id == scan_id)
            .order_by(models.Component.id)
        )
    )
    found = tuple(
        SignatureEvidence(s.kind, s.reference, s.digest, s.verified, s.reason, s.signer)
        for s in signatures
    ) + tuple(
        SignatureEvidence(
            a.kind, a.reference, a.digest, a.verified, a.reason, a.signer, b"", a.predicate_type
        )
        for a in attestations
    )
    evidence = Evidence(None, None, result, found, subject, image.digest, components, waivers)
    return ImageFacts(image.digest, evidence, vex)


def _child(
    session: Session, index: models.Image, digest: str, as_of: datetime | None
) -> models.Image | None:
    query = select(models.Image).where(
        models.Image.host == index.host,
        models.Image.repository == index.repository,
        models.Image.digest == digest,
    )
    if as_of is not None:
        query = query.where(models.Image.first_seen <= as_of)
    return session.scalars(query).first()


def load_index_facts(
    session: Session, index: models.Image, *, max_depth: int, as_of: datetime | None = None
) -> IndexFacts:
    """The facts about an image index: its own entries and each child's facts."""
    if index.expanded_at is None or (as_of is not None and index.expanded_at > as_of):
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
        row = (
            _child(session, index, entry.digest, as_of)
            if entry.kind in ("image", "index")
            else None
        )
        if entry.kind == "index":
            if max_depth <= 0:
                return IndexFacts(index.digest, True, "image indexes nested too deep")
            if row is not None:
                facts = load_index_facts(session, row, max_depth=max_depth - 1, as_of=as_of)
        elif row is not None:
            facts = load_image_facts(session, row, as_of=as_of)
        children.append(ChildFacts(entry.digest, entry.platform, entry.kind, facts))
    return IndexFacts(index.digest, True, None, tuple(children))


def load_facts(
    session: Session, image: models.Image, *, max_depth: int, as_of: datetime | None = None
) -> ImageFacts | IndexFacts:
    """The facts about ``image``, an image manifest or an image index (as known at ``as_of``)."""
    if image.media_type in INDEX_MEDIA_TYPES:
        return load_index_facts(session, image, max_depth=max_depth, as_of=as_of)
    return load_image_facts(session, image, as_of=as_of)
