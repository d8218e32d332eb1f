"""Which images contained a package, or were affected by an advisory, at a time; and which of
them passed a gate.

"At time T" reads each image's scan the decision would have read then: its latest scan finished
by T (:func:`supplychain.evidence.load.latest_scan_id`'s rule, in one correlated subquery). A
package is named as a policy names one (:class:`~supplychain.decide.rules.PackageRule`: a glob
over the purl without version, and PEP 440 specifiers; a version that cannot be compared is
listed, as the policy would forbid it). An advisory matches by id or alias.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, String, and_, cast, or_, select
from sqlalchemy.orm import Session

from supplychain.decide.rules import PackageRule, package_matches
from supplychain.evidence import models
from supplychain.history.cursor import Position

__all__ = ["AffectedImage", "AffectedPage", "Question", "affected"]

KIND = "image"
MAX_BATCHES = 20
"""Batches of images one page examines at most: a rare package in a large history answers a
short (even empty) page with a cursor rather than one unbounded request."""


@dataclass(frozen=True)
class Question:
    """What to look for (``purl`` or ``cve``, or both: an image must match both)."""

    at: datetime
    """The time the question is about."""
    purl: str | None = None
    """A glob over ``pkg:type/namespace/name`` (no version)."""
    versions: str | None = None
    """PEP 440 specifiers (``<2.20``); None: every version."""
    cve: str | None = None
    """An advisory id or one of its aliases."""


@dataclass(frozen=True)
class AffectedImage:
    """One image that matched, with what matched and its gate answers up to the time."""

    digest: str
    """The image digest."""
    repository: str
    """``registry/repository``."""
    scan: int
    """The scan read (the latest finished by the time)."""
    scanned_at: datetime
    """When that scan finished."""
    packages: tuple[dict[str, Any], ...] = field(default=())
    """Matching components (name, version, purl, path)."""
    findings: tuple[dict[str, Any], ...] = field(default=())
    """Matching findings (id, package, installed, fixed, severity)."""
    gate: dict[str, Any] | None = None
    """The last gate answer for the digest at or before the time (None: never asked)."""
    passed_gate: bool = False
    """True when any gate answer for the digest by then was ``allow``."""
    first_seen: datetime | None = None
    """When the image was first recorded (the page order)."""


@dataclass(frozen=True)
class AffectedPage:
    """One page of matching images, oldest first."""

    items: tuple[AffectedImage, ...]
    """Up to ``limit`` images."""
    last: Position | None
    """Where the next page starts (None: last page)."""


def _like_prefix(glob: str) -> str:
    """A LIKE pattern that every purl the glob matches also matches (a prefilter)."""
    out = []
    for char in glob:
        if char in "%_\\":
            out.append("\\" + char)
        elif char == "*":
            out.append("%")
        elif char == "?":
            out.append("_")
        elif char == "[":
            out.append("%")  # a character class: let the exact match decide
            break
        else:
            out.append(char)
    return "".join(out) + "%"


def _latest_scan(at: datetime) -> Any:
    scan = models.Scan
    return (
        select(scan.id)
        .where(scan.image_id == models.Image.id, scan.finished_at.is_not(None))
        .where(scan.finished_at <= at)
        .order_by(scan.finished_at.desc(), scan.id.desc())
        .limit(1)
        .correlate(models.Image)
        .scalar_subquery()
    )


def _cve_match(cve: str) -> ColumnElement[bool]:
    escaped = cve.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return or_(
        models.Finding.vuln_id == cve,
        cast(models.Finding.aliases, String).like(f'%"{escaped}"%', escape="\\"),
    )


def _candidates(q: Question, after: Position | None, batch: int) -> Select[Any]:
    """The next ``batch`` images known at ``q.at`` with their scan then (matched in bulk after:
    one query per batch, not a correlated search per image)."""
    latest = _latest_scan(q.at)
    image = models.Image
    query = select(image, latest.label("scan_id")).where(image.first_seen <= q.at)
    if after is not None:
        query = query.where(
            or_(
                image.first_seen > after.at,
                and_(image.first_seen == after.at, image.id > after.id),
            )
        )
    return query.order_by(image.first_seen, image.id).limit(batch)


Matches = dict[int, list[dict[str, Any]]]
"""Scan id → the matching rows of that scan."""


def _packages(session: Session, q: Question, scan_ids: list[int]) -> Matches:
    """The components matching ``q`` of each scan (one query for the batch)."""
    out: Matches = {}
    if q.purl is None:
        return out
    rule = PackageRule(q.purl, q.versions)
    comp = models.Component
    rows = session.scalars(
        select(comp)
        .where(comp.scan_id.in_(scan_ids), comp.purl.like(_like_prefix(q.purl), escape="\\"))
        .order_by(comp.id)
    )
    for c in rows:
        if c.purl and package_matches(rule, c.purl, c.version):
            out.setdefault(c.scan_id, []).append(
                {"name": c.name, "version": c.version, "purl": c.purl, "type": c.type,
                 "path": c.path}
            )  # fmt: skip
    return out


def _findings(session: Session, q: Question, scan_ids: list[int]) -> Matches:
    """The findings of advisory ``q.cve`` (by id or alias) of each scan."""
    out: Matches = {}
    if q.cve is None:
        return out
    f = models.Finding
    rows = session.scalars(
        select(f).where(f.scan_id.in_(scan_ids), _cve_match(q.cve)).order_by(f.id)
    )
    for r in rows:
        if r.vuln_id == q.cve or q.cve in (r.aliases or ()):
            out.setdefault(r.scan_id, []).append(
                {"vuln_id": r.vuln_id, "aliases": list(r.aliases or ()), "package": r.package,
                 "installed": r.installed, "fixed": r.fixed, "severity": r.severity}
            )  # fmt: skip
    return out


def _gate(session: Session, digest: str, at: datetime) -> tuple[dict[str, Any] | None, bool]:
    v = models.Verdict
    asked = (v.digest == digest, v.context == "gate", v.evaluated_at <= at)
    last = session.scalars(
        select(v).where(*asked).order_by(v.evaluated_at.desc(), v.id.desc()).limit(1)
    ).first()
    if last is None:
        return None, False
    passed = session.scalar(select(v.id).where(*asked, v.decision == "allow").limit(1))
    answer = {
        "id": last.id, "decision": last.decision, "requested": last.requested,
        "evaluated_at": last.evaluated_at.isoformat(), "policy_digest": last.policy_digest,
    }  # fmt: skip
    return answer, passed is not None


def affected(session: Session, q: Question, after: Position | None, limit: int) -> AffectedPage:
    """The page of ``limit`` images matching ``q`` after ``after``, oldest first."""
    found: list[AffectedImage] = []
    batch = max(limit + 1, 500)
    more = False
    end: Position | None = None
    for _ in range(MAX_BATCHES):
        rows = session.execute(_candidates(q, after, batch)).all()
        scan_ids = [scan_id for _image, scan_id in rows if scan_id is not None]
        all_packages = _packages(session, q, scan_ids)
        all_findings = _findings(session, q, scan_ids)
        for image, scan_id in rows:
            here = Position(image.first_seen, KIND, image.id)
            after = here
            if scan_id is None:
                continue  # not scanned by then
            packages = tuple(all_packages.get(scan_id, ()))
            findings = tuple(all_findings.get(scan_id, ()))
            if (q.purl is not None and not packages) or (q.cve is not None and not findings):
                continue  # nothing of the question in this image
            if len(found) == limit:
                more = True
                break
            scan = session.get_one(models.Scan, scan_id)
            gate, passed = _gate(session, image.digest, q.at)
            found.append(
                AffectedImage(
                    image.digest,
                    f"{image.host}/{image.repository}",
                    scan_id,
                    scan.finished_at or q.at,
                    packages,
                    findings,
                    gate,
                    passed,
                    image.first_seen,
                )
            )
            end = here
        if more or len(rows) < batch:
            return AffectedPage(tuple(found), end if more else None)
    # Examined MAX_BATCHES batches: answer what was found, and go on from the last image read.
    return AffectedPage(tuple(found), after)
