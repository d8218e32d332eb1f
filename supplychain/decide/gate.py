"""The deploy gate: resolve a tag at the registry, decide on stored evidence, record the answer.

Fail closed: anything not known to be allowed is denied or pending. Unscanned images are queued
for a scan and answered ``pending``. An image index is allowed only when every platform image is.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from supplychain.evidence import models
from supplychain.evidence.database import Database
from supplychain.evidence.dbutil import audit
from supplychain.evidence.models import utcnow
from supplychain.evidence.recorder import (
    find_image,
    latest_evidence,
    record_tag,
    record_verdict,
    upsert_image,
)
from supplychain.interface import Decision, ImageTarget, Policy, Verdict
from supplychain.mediatypes import INDEX_MEDIA_TYPES
from supplychain.metrics import GATE, GATE_SECONDS
from supplychain.queue.jobs import JobQueue
from supplychain.reference import ImageReference, ReferenceError, parse_reference
from supplychain.registry import RegistryClient, RegistryError

__all__ = ["Gate", "GateAnswer", "GateError"]

POLL_SECONDS = 0.5
MAX_WAIT = 600.0


class GateError(Exception):
    """The gate could not answer (bad reference, registry unreachable); ``status``: HTTP code."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class GateAnswer:
    """The gate's answer for one image."""

    decision: Decision
    """allow, deny or pending."""
    image: str
    """The reference asked about."""
    digest: str | None
    """The digest the tag resolved to."""
    pinned: str | None
    """``registry/repository@digest`` for the deploy to use."""
    reasons: tuple[str, ...]
    """Why."""
    evaluated_at: datetime
    """When decided."""
    policy: str
    """Policy name."""
    policy_digest: str
    """SHA-256 of the policy."""

    def to_json(self) -> dict[str, Any]:
        """The API's JSON form."""
        return {
            "decision": self.decision,
            "image": self.image,
            "digest": self.digest,
            "pinned": self.pinned,
            "reasons": list(self.reasons),
            "evaluated_at": self.evaluated_at.isoformat(),
            "policy": {"name": self.policy, "digest": self.policy_digest},
        }


class Gate:
    """Answers gate requests."""

    def __init__(
        self,
        db: Database,
        client: RegistryClient,
        queue: JobQueue,
        policy: Policy,
        allowed: frozenset[str],
    ) -> None:
        self.db = db
        self.client = client
        self.queue = queue
        self.policy = policy
        self.allowed = allowed

    def decide(self, image: str, *, wait: float = 0.0, platform: str | None = None) -> GateAnswer:
        """Decide on ``image`` (``host/repo:tag`` or ``…@sha256:…``); wait ``wait`` s if pending."""
        started = time.perf_counter()
        try:
            ref = parse_reference(image)
        except ReferenceError as exc:
            raise GateError(str(exc), 400) from None
        if ref.registry not in self.allowed:  # nothing was decided: an error, not a deny
            reason = f"registry {ref.registry} is not in SUPPLYCHAIN_REGISTRIES"
            with self.db.session() as session:
                audit(session, "gate", "gate.error", image, reason=reason)
            raise GateError(reason, 403)
        try:
            descriptor = self.client.resolve(ref)
        except RegistryError as exc:
            with self.db.session() as session:
                audit(session, "gate", "gate.error", image, reason=str(exc))
            raise GateError(f"could not resolve {image} at the registry: {exc}", 502) from None
        target = ImageTarget(ref.registry, ref.repository, descriptor.digest, ref.tag)
        deadline = time.monotonic() + min(max(wait, 0.0), MAX_WAIT)
        while True:
            verdict = self._evaluate(target, descriptor.media_type, platform)
            if verdict.decision != "pending" or time.monotonic() >= deadline:
                return self._record(image, ref, target, verdict, started)
            time.sleep(POLL_SECONDS)

    def _evaluate(self, target: ImageTarget, media_type: str, platform: str | None) -> Verdict:
        with self.db.session() as session:
            if target.tag:
                record_tag(session, target, target.tag, source="gate")
            if media_type in INDEX_MEDIA_TYPES:
                return self._index(session, target, platform)
            image = upsert_image(session, target, media_type=media_type)
            return self._single(session, image, target)

    def _single(self, session: Session, image: models.Image, target: ImageTarget) -> Verdict:
        evidence, _scan_id = latest_evidence(session, image)
        if evidence.scan is None:
            self.queue.enqueue(session, "image", target)
        return self.policy.evaluate(evidence)

    def _index(self, session: Session, target: ImageTarget, platform: str | None) -> Verdict:
        upsert_image(session, target, media_type=INDEX_MEDIA_TYPES[0])
        query = select(models.Image).where(
            models.Image.host == target.registry,
            models.Image.repository == target.repository,
            models.Image.index_digest == target.digest,
        )
        if platform:
            query = query.where(models.Image.platform == platform)
        children = session.scalars(query).all()
        if not children:
            self.queue.enqueue(session, "index", target)
            return self._verdict(
                "pending", ["image index not expanded yet: platform images are queued"]
            )
        decisions: list[Decision] = []
        reasons: list[str] = []
        for child in children:
            child_target = ImageTarget(target.registry, target.repository, child.digest, None)
            verdict = self._single(session, child, child_target)
            decisions.append(verdict.decision)
            reasons += [f"{child.platform or child.digest}: {reason}" for reason in verdict.reasons]
        decision: Decision = (
            "deny" if "deny" in decisions else "pending" if "pending" in decisions else "allow"
        )
        return self._verdict(decision, reasons)

    def _verdict(self, decision: Decision, reasons: list[str]) -> Verdict:
        return Verdict(decision, tuple(reasons), self.policy.name, self.policy.digest, utcnow())

    def _record(
        self,
        image: str,
        ref: ImageReference,
        target: ImageTarget | None,
        verdict: Verdict,
        started: float,
    ) -> GateAnswer:
        elapsed = (time.perf_counter() - started) * 1000
        with self.db.session() as session:
            row = find_image(session, target) if target is not None else None
            record_verdict(
                session,
                verdict,
                image=row,
                scan_id=None,
                context="gate",
                requested=image,
                digest=target.digest if target else None,
                duration_ms=elapsed,
            )
            audit(
                session,
                "gate",
                "gate.answered",
                image,
                decision=verdict.decision,
                digest=target and target.digest,
            )
        GATE.labels(decision=verdict.decision).inc()
        GATE_SECONDS.observe(elapsed / 1000)
        digest = target.digest if target else None
        return GateAnswer(
            verdict.decision,
            image,
            digest,
            ref.pinned(digest) if digest else None,
            verdict.reasons,
            verdict.evaluated_at or utcnow(),
            verdict.policy,
            verdict.policy_digest,
        )
