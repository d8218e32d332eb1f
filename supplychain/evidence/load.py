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

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, select
from sqlalchemy.orm import Session

from supplychain.decide.decision import ChildFacts, ImageFacts, IndexFacts
from supplychain.decide.vex import VexStatement
from supplychain.evidence import models
from supplychain.evidence.imageconfig import config_from_row
from supplychain.evidence.loadrows import (
    in_chunks,
    job_failure,
    latest_scan_id,
    latest_scans,
    load_waivers,
    scan_rows,
    waivers_many,
)
from supplychain.interface import (
    Component,
    Evidence,
    Finding,
    ScanResult,
    SignatureEvidence,
)
from supplychain.mediatypes import INDEX_MEDIA_TYPES

__all__ = [
    "latest_scan_id",
    "load_facts",
    "load_facts_many",
    "load_image_facts",
    "load_image_facts_many",
    "load_index_facts",
    "load_waivers",
]


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


def load_image_facts(
    session: Session, image: models.Image, *, as_of: datetime | None = None
) -> ImageFacts:
    """The facts about one image manifest (no scan yet: evidence without a scan)."""
    return load_image_facts_many(session, [image], as_of=as_of)[image.id]


def load_image_facts_many(
    session: Session, images: Sequence[models.Image], *, as_of: datetime | None = None
) -> dict[int, ImageFacts]:
    """:func:`load_image_facts` for several image manifests, by image id: a few queries for all
    of them (rematching thousands of images), never one set per image."""
    digests = [image.digest for image in images]
    waivers = waivers_many(session, digests, as_of)
    vex: dict[str, list[VexStatement]] = {}
    for chunk in in_chunks(sorted(set(digests))):
        known: ColumnElement[bool] = models.VexStatement.product.in_(chunk)
        if as_of is not None:
            known = known & (models.VexStatement.created_at <= as_of)
        for r in session.scalars(
            select(models.VexStatement).where(known).order_by(models.VexStatement.id)
        ):
            vex.setdefault(r.product, []).append(
                VexStatement(r.vuln_id, r.product, r.subcomponent, r.status, r.justification, {})
            )
    latest = latest_scans(session, [image.id for image in images], as_of)
    scan_ids = sorted(set(latest.values()))
    scans: dict[int, tuple[Any, ...]] = {}
    for ids in in_chunks(scan_ids):
        for row in session.execute(
            select(
                models.Scan.id,
                models.Scan.scanner,
                models.Scan.scanner_version,
                models.Scan.db_updated_at,
                models.Scan.db_digest,
                models.Scan.finished_at,
                models.Scan.image_config,
            ).where(models.Scan.id.in_(ids))
        ):
            scans[int(row[0])] = tuple(row)
    findings = scan_rows(session, models.Finding, _FINDING, scan_ids)
    components = scan_rows(session, models.Component, _COMPONENT, scan_ids)
    signatures = scan_rows(session, models.Signature, _SIGNATURE, scan_ids)
    attestations = scan_rows(session, models.Attestation, (*_SIGNATURE, "predicate_type"), scan_ids)
    out: dict[int, ImageFacts] = {}
    for image in images:
        subject = f"{image.host}/{image.repository}"
        statements = tuple(vex.get(image.digest, ()))
        scan_id = latest.get(image.id)
        if scan_id is None:
            empty = Evidence(None, None, None, (), subject, image.digest, (), waivers[image.digest])
            out[image.id] = ImageFacts(
                image.digest, empty, statements, job_failure(session, image, as_of)
            )
            continue
        _, scanner, version, db_updated_at, db_digest, finished_at, config = scans[scan_id]
        result = ScanResult(
            scanner,
            version,
            db_updated_at,
            db_digest,
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
                for f in findings.get(scan_id, ())
            ),
            scanned_at=finished_at,
        )
        found = tuple(
            SignatureEvidence(
                s.kind, s.reference, s.digest, s.verified, s.reason, s.signer, signed_at=s.signed_at
            )
            for s in signatures.get(scan_id, ())
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
            for a in attestations.get(scan_id, ())
        )
        evidence = Evidence(
            None,
            None,
            result,
            found,
            subject,
            image.digest,
            tuple(
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
                for c in components.get(scan_id, ())
            ),
            waivers[image.digest],
            config_from_row(config),
        )
        out[image.id] = ImageFacts(image.digest, evidence, statements)
    return out


_FINDING = (
    "vuln_id",
    "package",
    "purl",
    "installed",
    "fixed",
    "severity",
    "status",
    "title",
    "data_source",
    "layer_digest",
    "aliases",
    "cvss",
    "kind",
)
"""Columns of a finding, in the order of :class:`~supplychain.interface.Finding`'s fields."""
_COMPONENT = (
    "name",
    "version",
    "purl",
    "type",
    "layer_digest",
    "path",
    "source_name",
    "licenses",
)
"""Columns of a component, in the order of :class:`~supplychain.interface.Component`'s fields."""
_SIGNATURE = ("kind", "reference", "digest", "verified", "reason", "signer", "signed_at")
"""Columns of a signature, in the order of :class:`~supplychain.interface.SignatureEvidence`."""


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


def load_facts_many(
    session: Session, images: Sequence[models.Image], *, max_depth: int
) -> dict[int, ImageFacts | IndexFacts]:
    """:func:`load_facts` for several images, by image id (manifests batched)."""
    manifests = [i for i in images if i.media_type not in INDEX_MEDIA_TYPES]
    out: dict[int, ImageFacts | IndexFacts] = dict(load_image_facts_many(session, manifests))
    for image in images:
        if image.media_type in INDEX_MEDIA_TYPES:
            out[image.id] = load_index_facts(session, image, max_depth=max_depth)
    return out
