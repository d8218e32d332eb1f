"""Everything recorded that touched an image, as one time-ordered list of events.

Scans, SBOMs, signatures, attestations, VEX statements, verdicts, gate answers and waivers live
in their own tables; each is one *source* here, queried with the same keyset condition on
(time, kind, id) and merged, so a page is ``limit`` events in one order whatever their tables,
and the next page starts exactly after the last event returned.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from fnmatch import fnmatchcase
from typing import Any, TypeVarTuple

from sqlalchemy import ColumnElement, Select, and_, false, or_, select, true
from sqlalchemy.orm import InstrumentedAttribute, Session

from supplychain.evidence import models
from supplychain.history.cursor import Position

__all__ = ["KINDS", "Event", "Page", "Scope", "events"]

KINDS = ("attestation", "gate", "sbom", "scan", "signature", "verdict", "vex", "waiver")
"""Event kinds, in their tie-break order (events at the same instant sort by kind, then id)."""


@dataclass(frozen=True)
class Scope:
    """Which events: every filter left None matches everything."""

    digest: str | None = None
    """One image digest (in every repository it was seen in)."""
    host: str | None = None
    """With ``repository``: one repository of one registry."""
    repository: str | None = None
    """The repository path (``team/app``)."""
    since: datetime | None = None
    """Events at or after this time."""
    until: datetime | None = None
    """Events before this time."""
    kinds: frozenset[str] = frozenset(KINDS)
    """Which kinds of event."""
    predicate_type: str | None = None
    """Attestations of this in-toto predicate type only."""
    decision: str | None = None
    """Verdicts and gate answers with this decision only."""


@dataclass(frozen=True)
class Event:
    """One recorded fact or decision about an image."""

    at: datetime
    """When it was recorded (scan finished, signature found, verdict evaluated…)."""
    kind: str
    """One of :data:`KINDS`."""
    id: int
    """Its row id in its own table."""
    digest: str | None
    """The image digest it is about (None: a repository-wide waiver)."""
    repository: str | None
    """``registry/repository`` it was seen in, or a waiver's pattern."""
    summary: str
    """One line for people."""
    details: dict[str, Any] = field(default_factory=dict)
    """The row's fields (JSON values)."""

    @property
    def position(self) -> Position:
        """Its place in the order of a page."""
        return Position(self.at, self.kind, self.id)


@dataclass(frozen=True)
class Page:
    """One page of events."""

    items: tuple[Event, ...]
    """Up to ``limit`` events, oldest first."""
    last: Position | None
    """Where the next page starts (None: this was the last page)."""


Source = Callable[[Session, Scope, Position | None, int], list[Event]]


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _after(
    at: InstrumentedAttribute[Any], row_id: InstrumentedAttribute[int], kind: str, pos: Position
) -> ColumnElement[bool]:
    """Rows of ``kind`` strictly after ``pos`` in (time, kind, id) order."""
    if kind > pos.kind:
        return at >= pos.at
    if kind < pos.kind:
        return at > pos.at
    return or_(at > pos.at, and_(at == pos.at, row_id > pos.id))


Ts = TypeVarTuple("Ts")


def _window(
    query: Select[*Ts],
    scope: Scope,
    pos: Position | None,
    kind: str,
    at: InstrumentedAttribute[Any],
    row_id: InstrumentedAttribute[int],
    limit: int,
) -> Select[*Ts]:
    if scope.since is not None:
        query = query.where(at >= scope.since)
    if scope.until is not None:
        query = query.where(at < scope.until)
    if pos is not None:
        query = query.where(_after(at, row_id, kind, pos))
    return query.order_by(at, row_id).limit(limit)


def _images(scope: Scope) -> ColumnElement[bool]:
    """The scope's condition on :class:`models.Image` rows."""
    where: ColumnElement[bool] = true()
    if scope.digest is not None:
        where = and_(where, models.Image.digest == scope.digest)
    if scope.host is not None and scope.repository is not None:
        where = and_(
            where, models.Image.host == scope.host, models.Image.repository == scope.repository
        )
    return where


def _repo(image: models.Image) -> str:
    return f"{image.host}/{image.repository}"


def _scans(kind: str) -> Source:
    def source(session: Session, scope: Scope, pos: Position | None, limit: int) -> list[Event]:
        query = (
            select(models.Scan, models.Image)
            .join(models.Image)
            .where(_images(scope), models.Scan.finished_at.is_not(None))
        )
        if kind == "sbom":
            query = query.where(models.Scan.sbom_digest.is_not(None))
        rows = session.execute(
            _window(query, scope, pos, kind, models.Scan.finished_at, models.Scan.id, limit)
        ).all()
        out = []
        for scan, image in rows:
            assert scan.finished_at is not None  # noqa: S101 (selected so)
            if kind == "sbom":
                summary = f"SBOM {scan.sbom_format} {scan.sbom_digest}"
                details: dict[str, Any] = {
                    "scan": scan.id, "format": scan.sbom_format, "generator": scan.sbom_generator,
                    "sbom_digest": scan.sbom_digest, "download": f"/v1/history/sboms/{scan.id}",
                }  # fmt: skip
            else:
                summary = f"scanned by {scan.scanner} {scan.scanner_version}, DB {scan.db_digest}"
                details = {
                    "scan": scan.id, "job": scan.job_id, "scanner": scan.scanner,
                    "scanner_version": scan.scanner_version, "db_digest": scan.db_digest,
                    "db_updated_at": _iso(scan.db_updated_at), "started_at": _iso(scan.started_at),
                    "rematched_at": _iso(scan.matched_at), "sbom_digest": scan.sbom_digest,
                }  # fmt: skip
            out.append(
                Event(scan.finished_at, kind, scan.id, image.digest, _repo(image), summary, details)
            )
        return out

    return source


def _signatures(session: Session, scope: Scope, pos: Position | None, limit: int) -> list[Event]:
    sig = models.Signature
    query = select(sig, models.Image).join(models.Image).where(_images(scope))
    rows = session.execute(_window(query, scope, pos, "signature", sig.found_at, sig.id, limit))
    return [
        Event(
            s.found_at,
            "signature",
            s.id,
            image.digest,
            _repo(image),
            f"{s.kind} signature {'verified' if s.verified else 'NOT verified'}: {s.reason}",
            {
                "kind": s.kind,
                "reference": s.reference,
                "digest": s.digest,
                "verified": s.verified,
                "signer": s.signer,
                "reason": s.reason,
                "scan": s.scan_id,
                "payload_digest": s.payload_digest,
            },
        )
        for s, image in rows
    ]


def _attestations(session: Session, scope: Scope, pos: Position | None, limit: int) -> list[Event]:
    att = models.Attestation
    query = select(att, models.Image).join(models.Image).where(_images(scope))
    if scope.predicate_type is not None:
        query = query.where(att.predicate_type == scope.predicate_type)
    rows = session.execute(_window(query, scope, pos, "attestation", att.found_at, att.id, limit))
    return [
        Event(
            a.found_at,
            "attestation",
            a.id,
            image.digest,
            _repo(image),
            f"attestation {a.predicate_type} {'verified' if a.verified else 'NOT verified'}",
            {
                "kind": a.kind,
                "predicate_type": a.predicate_type,
                "reference": a.reference,
                "digest": a.digest,
                "verified": a.verified,
                "signer": a.signer,
                "reason": a.reason,
                "scan": a.scan_id,
                "payload_digest": a.payload_digest,
                "download": f"/v1/history/attestations/{a.id}/envelope",
            },
        )
        for a, image in rows
    ]


def _vex(session: Session, scope: Scope, pos: Position | None, limit: int) -> list[Event]:
    vex = models.VexStatement
    query = select(vex)
    if scope.digest is not None or scope.repository is not None:
        query = query.where(vex.product.in_(select(models.Image.digest).where(_images(scope))))
    rows = session.scalars(_window(query, scope, pos, "vex", vex.created_at, vex.id, limit))
    return [
        Event(
            v.created_at,
            "vex",
            v.id,
            v.product,
            None,
            f"VEX ({v.source}, {v.format}): {v.vuln_id} {v.status}",
            {
                "document_digest": v.document_digest,
                "format": v.format,
                "source": v.source,
                "vuln_id": v.vuln_id,
                "subcomponent": v.subcomponent,
                "status": v.status,
                "justification": v.justification,
            },
        )
        for v in rows
    ]


def _verdicts(kind: str) -> Source:
    def source(session: Session, scope: Scope, pos: Position | None, limit: int) -> list[Event]:
        v = models.Verdict
        gate = v.context == "gate"
        query = select(v, models.Image).outerjoin(models.Image, models.Image.id == v.image_id)
        query = query.where(gate if kind == "gate" else ~gate)
        if scope.digest is not None:
            query = query.where(v.digest == scope.digest)
        if scope.repository is not None:
            query = query.where(_images(scope))
        if scope.decision is not None:
            query = query.where(v.decision == scope.decision)
        rows = session.execute(_window(query, scope, pos, kind, v.evaluated_at, v.id, limit))
        return [
            Event(
                row.evaluated_at,
                kind,
                row.id,
                row.digest,
                _repo(image) if image else None,
                f"{row.context}: {row.decision} under policy {row.policy} ({row.policy_digest})",
                {
                    "context": row.context,
                    "requested": row.requested,
                    "decision": row.decision,
                    "reasons": list(row.reasons),
                    "policy": row.policy,
                    "policy_digest": row.policy_digest,
                    "scan": row.scan_id,
                },
            )
            for row, image in rows
        ]

    return source


def _waivers(session: Session, scope: Scope, pos: Position | None, limit: int) -> list[Event]:
    w = models.Waiver
    subjects: set[str] = set()
    digests: set[str] = set()
    query = select(w)
    scoped = scope.digest is not None or scope.repository is not None
    if scope.digest is not None:
        digests.add(scope.digest)
    if scoped:
        for image in session.scalars(select(models.Image).where(_images(scope))):
            subjects.add(_repo(image))
            digests.add(image.digest)
        query = query.where(
            or_(w.digest.in_(digests) if digests else false(), w.repository.is_not(None))
        )
    found = []
    batch = max(limit, 100)
    while True:  # repository patterns are matched here (globs), so fetch until the page fills
        rows = session.scalars(_window(query, scope, pos, "waiver", w.created_at, w.id, batch))
        got = list(rows)
        for row in got:
            if row.repository is None or not scoped:
                found.append(row)
            elif any(fnmatchcase(s, row.repository) for s in subjects):
                found.append(row)
        if len(found) >= limit or len(got) < batch:
            break
        pos = Position(got[-1].created_at, "waiver", got[-1].id)
    return [_waiver_event(row) for row in found[:limit]]


def _waiver_event(w: models.Waiver) -> Event:
    what = w.cve or w.package or f"rule {w.rule}"
    return Event(
        w.created_at, "waiver", w.id, w.digest, w.repository,
        f"waiver {w.id} for {what} by {w.created_by} (owner {w.owner}, ticket {w.ticket})",
        {"cve": w.cve, "package": w.package, "rule": w.rule, "owner": w.owner, "reason": w.reason,
         "ticket": w.ticket, "justification": w.justification, "expires_at": _iso(w.expires_at),
         "created_by": w.created_by, "revoked_at": _iso(w.revoked_at),
         "revoked_by": w.revoked_by},
    )  # fmt: skip


SOURCES: dict[str, Source] = {
    "attestation": _attestations,
    "gate": _verdicts("gate"),
    "sbom": _scans("sbom"),
    "scan": _scans("scan"),
    "signature": _signatures,
    "verdict": _verdicts("verdict"),
    "vex": _vex,
    "waiver": _waivers,
}


def events(session: Session, scope: Scope, after: Position | None, limit: int) -> Page:
    """The page of ``limit`` events of ``scope`` after ``after``, oldest first."""
    kinds: Iterable[str] = sorted(scope.kinds)
    found: list[Event] = []
    for kind in kinds:
        found += SOURCES[kind](session, scope, after, limit + 1)
    found.sort(key=lambda e: e.position)
    page = tuple(found[:limit])
    more = len(found) > limit
    return Page(page, page[-1].position if more and page else None)
