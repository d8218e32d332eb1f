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

from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, func, select
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

__all__ = [
    "latest_scan_id",
    "load_facts",
    "load_facts_many",
    "load_image_facts",
    "load_image_facts_many",
    "load_index_facts",
]


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
    return _waivers(session, [image.digest], as_of)[image.digest]


def _waivers(
    session: Session, digests: Sequence[str], as_of: datetime | None = None
) -> dict[str, tuple[Waiver, ...]]:
    """:func:`load_waivers` for several image digests, in one query."""
    scope = models.Waiver.digest.in_(sorted(set(digests))) | models.Waiver.repository.is_not(None)
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
    waivers = [
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
    ]
    return {
        d: tuple(w for w in waivers if w.repository is not None or w.digest == d) for d in digests
    }


def _in_chunks(ids: Sequence[Any], size: int = 500) -> Iterator[list[Any]]:
    for start in range(0, len(ids), size):
        yield list(ids[start : start + size])


def _latest_scans(
    session: Session, image_ids: Sequence[int], as_of: datetime | None = None
) -> dict[int, int]:
    """:func:`latest_scan_id` for several images, in one query per 500."""
    found: dict[int, int] = {}
    finished: ColumnElement[bool] = models.Scan.finished_at.is_not(None)
    if as_of is not None:
        finished = finished & (models.Scan.finished_at <= as_of)
    for ids in _in_chunks(sorted(set(image_ids))):
        ranked = (
            select(
                models.Scan.image_id,
                models.Scan.id,
                func.row_number()
                .over(
                    partition_by=models.Scan.image_id,
                    order_by=(models.Scan.finished_at.desc(), models.Scan.id.desc()),
                )
                .label("rank"),
            )
            .where(models.Scan.image_id.in_(ids), finished)
            .subquery()
        )
        found.update(
            (int(i), int(s))
            for i, s in session.execute(
                select(ranked.c.image_id, ranked.c.id).where(ranked.c.rank == 1)
            )
        )
    return found


def _scan_rows(
    session: Session, model: Any, columns: Sequence[str], scan_ids: Sequence[int]
) -> dict[int, list[Any]]:
    """The ``columns`` of ``model``'s rows for ``scan_ids`` by scan id, in id order (rows, not
    ORM objects: tens of thousands of components load without building an object each)."""
    out: dict[int, list[Any]] = {}
    selected = [getattr(model, name) for name in ("scan_id", *columns)]
    for ids in _in_chunks(sorted(set(scan_ids))):
        for row in session.execute(
            select(*selected).where(model.scan_id.in_(ids)).order_by(model.id)
        ):
            out.setdefault(row.scan_id, []).append(row)
    return out


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
    waivers = _waivers(session, digests, as_of)
    vex: dict[str, list[VexStatement]] = {}
    for chunk in _in_chunks(sorted(set(digests))):
        known: ColumnElement[bool] = models.VexStatement.product.in_(chunk)
        if as_of is not None:
            known = known & (models.VexStatement.created_at <= as_of)
        for r in session.scalars(
            select(models.VexStatement).where(known).order_by(models.VexStatement.id)
        ):
            vex.setdefault(r.product, []).append(
                VexStatement(r.vuln_id, r.product, r.subcomponent, r.status, r.justification, {})
            )
    latest = _latest_scans(session, [image.id for image in images], as_of)
    scan_ids = sorted(set(latest.values()))
    scans: dict[int, tuple[Any, ...]] = {}
    for ids in _in_chunks(scan_ids):
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
    findings = _scan_rows(session, models.Finding, _FINDING, scan_ids)
    components = _scan_rows(session, models.Component, _COMPONENT, scan_ids)
    signatures = _scan_rows(session, models.Signature, _SIGNATURE, scan_ids)
    attestations = _scan_rows(
        session, models.Attestation, (*_SIGNATURE, "predicate_type"), scan_ids
    )
    out: dict[int, ImageFacts] = {}
    for image in images:
        subject = f"{image.host}/{image.repository}"
        statements = tuple(vex.get(image.digest, ()))
        scan_id = latest.get(image.id)
        if scan_id is None:
            empty = Evidence(None, None, None, (), subject, image.digest, (), waivers[image.digest])
            out[image.id] = ImageFacts(
                image.digest, empty, statements, _failure(session, image, as_of)
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
