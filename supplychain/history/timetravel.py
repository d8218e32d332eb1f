"""Time travel: what was the answer for a digest at a time, under which policy, DB and waivers,
and why.

The answer is computed, not looked up: the facts known at T are loaded
(:func:`supplychain.evidence.load.load_facts` with ``as_of``: scans finished by T, VEX recorded
by T, waivers created and not revoked by T) and the one decision function decides on them at T,
under the policy in force now (the service keeps no history of policy files: the answer names
that policy's digest, and the verdict the service recorded last before T with its own policy
digest, so a reader sees whether the policy changed in between).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from supplychain.decide.decider import Decider
from supplychain.decide.decision import ImageFacts, IndexFacts
from supplychain.decide.waivers import active, describe
from supplychain.evidence import models
from supplychain.evidence.load import latest_scan_id

__all__ = ["Answer", "TimeTravelError", "answer_at"]


class TimeTravelError(LookupError):
    """No image with that digest (in that repository) was known at that time."""


@dataclass(frozen=True)
class Answer:
    """The answer for one digest at one time, with what it was computed from."""

    digest: str
    """The image digest."""
    repository: str
    """``registry/repository`` the image was seen in."""
    at: datetime
    """The time asked about."""
    decision: str
    """allow, deny or pending: the one decision on the facts known at ``at``."""
    reasons: tuple[str, ...]
    """Why (the decision's own reasons)."""
    policy: dict[str, Any]
    """The policy decided under (name, digest)."""
    scan: dict[str, Any] | None
    """The scan read (id, finish time, scanner, advisory DB digest and date), None if none."""
    waivers: tuple[dict[str, Any], ...]
    """Waivers in force for the image at ``at`` (each with ``applied``: it lifted a violation)."""
    vex: tuple[dict[str, Any], ...]
    """VEX statements about the image known at ``at``."""
    recorded: dict[str, Any] | None
    """The verdict the service itself recorded last at or before ``at`` (None: none)."""
    notes: tuple[str, ...]
    """What the reader must know to judge the answer (policy changed, scan rematched later)."""

    def to_json(self) -> dict[str, Any]:
        """The API's JSON form."""
        return {
            "digest": self.digest, "repository": self.repository, "at": self.at.isoformat(),
            "decision": self.decision, "reasons": list(self.reasons), "policy": self.policy,
            "scan": self.scan, "waivers": list(self.waivers), "vex": list(self.vex),
            "recorded": self.recorded, "notes": list(self.notes),
        }  # fmt: skip


def _image(session: Session, digest: str, repository: str | None, at: datetime) -> models.Image:
    query = select(models.Image).where(models.Image.digest == digest, models.Image.first_seen <= at)
    if repository is not None:
        host, _, path = repository.partition("/")
        query = query.where(models.Image.host == host, models.Image.repository == path)
    image = session.scalars(query.order_by(models.Image.id).limit(1)).first()
    if image is None:
        where = f" in {repository}" if repository else ""
        raise TimeTravelError(f"no image {digest}{where} was recorded by {at.isoformat()}")
    return image


def _scan(
    session: Session, image: models.Image, at: datetime
) -> tuple[dict[str, Any] | None, list[str]]:
    scan_id = latest_scan_id(session, image, as_of=at)
    if scan_id is None:
        return None, []
    scan = session.get_one(models.Scan, scan_id)
    notes = []
    if scan.matched_at is not None and scan.matched_at > at:
        notes.append(
            f"scan {scan.id} was rematched at {scan.matched_at.isoformat()} against advisory DB "
            f"{scan.db_digest}, after the time asked about: its findings are the rematch's"
        )
    data = {
        "id": scan.id,
        "finished_at": scan.finished_at.isoformat() if scan.finished_at else None,
        "scanner": scan.scanner, "scanner_version": scan.scanner_version,
        "db_digest": scan.db_digest,
        "db_updated_at": scan.db_updated_at.isoformat() if scan.db_updated_at else None,
        "sbom_digest": scan.sbom_digest,
    }  # fmt: skip
    return data, notes


def _recorded(session: Session, digest: str, at: datetime) -> dict[str, Any] | None:
    v = models.Verdict
    row = session.scalars(
        select(v)
        .where(v.digest == digest, v.evaluated_at <= at)
        .order_by(v.evaluated_at.desc(), v.id.desc())
        .limit(1)
    ).first()
    if row is None:
        return None
    return {
        "id": row.id, "context": row.context, "decision": row.decision,
        "reasons": list(row.reasons), "evaluated_at": row.evaluated_at.isoformat(),
        "policy": {"name": row.policy, "digest": row.policy_digest},
    }  # fmt: skip


def _images(facts: ImageFacts | IndexFacts | None) -> list[ImageFacts]:
    """The image facts under ``facts`` (an index's platform images, nested)."""
    if isinstance(facts, ImageFacts):
        return [facts]
    if isinstance(facts, IndexFacts):
        return [f for child in facts.children for f in _images(child.facts)]
    return []


def answer_at(
    session: Session,
    decider: Decider,
    digest: str,
    at: datetime,
    *,
    repository: str | None = None,
    platform: str | None = None,
) -> Answer:
    """The answer for ``digest`` at ``at`` (:class:`TimeTravelError` if unknown then)."""
    image = _image(session, digest, repository, at)
    facts = decider.load(session, image, as_of=at)
    verdict = decider.decide(facts, platform=platform, now=at)
    scan, notes = _scan(session, image, at)
    waivers: dict[int, dict[str, Any]] = {}
    vex: list[dict[str, Any]] = []
    for image_facts in _images(facts):
        for w in image_facts.evidence.waivers:
            if active(w, image_facts.evidence, at):
                text = describe(w)
                applied = any(text in reason for reason in verdict.reasons)
                waivers[w.id] = {"id": w.id, "description": text, "applied": applied}
        vex += [
            {"vuln_id": s.vuln_id, "product": s.product, "subcomponent": s.subcomponent,
             "status": s.status, "justification": s.justification}
            for s in image_facts.vex
        ]  # fmt: skip
    recorded = _recorded(session, digest, at)
    if recorded is not None and recorded["policy"]["digest"] != verdict.policy_digest:
        notes.append(
            f"the verdict recorded at {recorded['evaluated_at']} was made under policy "
            f"{recorded['policy']['digest']}; this answer uses the policy in force now"
        )
    return Answer(
        digest, f"{image.host}/{image.repository}", at, verdict.decision, verdict.reasons,
        {"name": verdict.policy, "digest": verdict.policy_digest}, scan,
        tuple(waivers[k] for k in sorted(waivers)), tuple(vex), recorded, tuple(notes),
    )  # fmt: skip
