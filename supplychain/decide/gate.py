"""The deploy gate: resolve a tag at the registry, decide on stored evidence, record the answer.

Fail closed: anything not known to be allowed is denied or pending. Unscanned images are queued
for a scan and answered ``pending``. The answer is the one decision
(:class:`~supplychain.decide.decider.Decider`) on the recorded facts: an image index is decided
from its own recorded entries, allowed only when every platform image is.

The hot path: a reference pinned by digest (no tag) whose image is recorded and scanned (or, for
an index, expanded) needs no registry call (the digest names the content; the facts were
recorded from bytes verified against it) and no write before deciding. Its facts come from a
:class:`~supplychain.evidence.factcache.FactCache` checked by one query per call, the decision
runs on every call, and the answer is recorded through a
:class:`~supplychain.evidence.groupcommit.GroupCommit` before it is returned. Everything else
(tags, images not recorded or not scanned yet) takes the full path: resolve at the registry,
record the tag, queue what is missing.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.orm import Session

from supplychain.decide.decider import Decider
from supplychain.decide.decision import ImageFacts, IndexFacts
from supplychain.decide.findings import GateFinding, findings_of
from supplychain.evidence import models
from supplychain.evidence.database import Database
from supplychain.evidence.dbutil import audit, audit_values
from supplychain.evidence.factcache import FactCache
from supplychain.evidence.groupcommit import GroupCommit, Row, insert_facts
from supplychain.evidence.load import latest_scan_id
from supplychain.evidence.models import utcnow
from supplychain.evidence.recorder import find_image, record_tag, upsert_image, verdict_values
from supplychain.interface import Decision, ImageTarget, Verdict
from supplychain.mediatypes import INDEX_MEDIA_TYPES
from supplychain.metrics import GATE, GATE_SECONDS
from supplychain.queue.jobs import JobQueue
from supplychain.reference import ImageReference, ReferenceError, parse_reference
from supplychain.registry import RegistryClient, RegistryError

__all__ = ["Answered", "Gate", "GateAnswer", "GateError"]

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
    findings: tuple[GateFinding, ...] = field(default=())
    """The vulnerabilities of the image(s) decided on, most severe first (from the same facts)."""

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
            "findings": [finding.to_json() for finding in self.findings],
        }


@dataclass(frozen=True)
class Answered:
    """A gate answer and the rows that record it (written before the answer is sent)."""

    answer: GateAnswer
    """What the caller is told."""
    rows: tuple[Row, ...]
    """The verdict row and the audit entry to insert."""
    seconds: float
    """How long deciding took."""

    def recorded(self) -> GateAnswer:
        """The answer, counted in the metrics once its rows are committed."""
        GATE.labels(decision=self.answer.decision).inc()
        GATE_SECONDS.observe(self.seconds)
        return self.answer


Run = Callable[[Callable[[], Answered]], Awaitable[Answered]]
"""Runs a blocking call off the event loop (in a thread) and awaits its result."""


class Gate:
    """Answers gate requests."""

    def __init__(
        self,
        db: Database,
        client: RegistryClient,
        queue: JobQueue,
        decider: Decider,
        allowed: frozenset[str],
        *,
        recorder: GroupCommit[Connection, Sequence[Row], None] | None = None,
    ) -> None:
        self.db = db
        self.client = client
        self.queue = queue
        self.decider = decider
        self.allowed = allowed
        self.facts = FactCache()
        """Facts of scanned images, checked against the database on every call."""
        self.recorder = recorder or GroupCommit(db.writing, insert_facts, name="gate")
        """Records the answers, many per transaction."""

    def decide(self, image: str, *, wait: float = 0.0, platform: str | None = None) -> GateAnswer:
        """Decide on ``image`` (``host/repo:tag`` or ``…@sha256:…``), waiting ``wait`` s while
        it is pending, and record the answer (committed, with others', before this returns)."""
        answer = self.evaluate(image, wait=wait, platform=platform)
        self.recorder.call(answer.rows)
        return answer.recorded()

    async def decide_async(
        self, image: str, run: Run, *, platform: str | None = None, inline: bool = False
    ) -> GateAnswer:
        """:meth:`decide` without waiting (``wait=0``) for an event loop: the decision runs
        through ``run`` (a thread), the recording in the group commit while the loop goes on.
        ``inline=True``: a pinned digest whose facts are cached is decided on the loop itself
        (one read, no registry call; for a database whose reads cost microseconds: SQLite)."""
        answer = self.answer_cached(image, platform) if inline else None
        if answer is None:
            answer = await run(functools.partial(self.evaluate, image, wait=0, platform=platform))
        await self.recorder.submit(answer.rows)
        return answer.recorded()

    def answer_cached(self, image: str, platform: str | None = None) -> Answered | None:
        """The answer for a pinned digest of an allowed registry whose recorded facts are
        cached (one statement, no registry call), not written yet; None for anything else
        (:meth:`evaluate` answers it, errors included)."""
        started = time.perf_counter()
        try:
            ref = parse_reference(image)
        except ReferenceError:
            return None
        if ref.digest is None or ref.tag is not None or ref.registry not in self.allowed:
            return None
        cached = self._cached(ref, ref.digest, platform)
        if cached is None:
            return None
        image_id, decided = cached
        target = ImageTarget(ref.registry, ref.repository, ref.digest, None)
        return self._record(image, ref, target, decided, started, image_id=image_id)

    def evaluate(self, image: str, *, wait: float = 0.0, platform: str | None = None) -> Answered:
        """The answer for ``image`` and the rows that record it, not written yet."""
        started = time.perf_counter()
        try:
            ref = parse_reference(image)
        except ReferenceError as exc:
            raise GateError(str(exc), 400) from None
        if ref.registry not in self.allowed:  # nothing was decided: an error, not a deny
            reason = f"registry {ref.registry} is not in SUPPLYCHAIN_REGISTRIES"
            with self.db.session(write=True) as session:
                audit(session, "gate", "gate.error", image, reason=reason)
            raise GateError(reason, 403)
        if ref.digest is not None and ref.tag is None:
            recorded = self._recorded(ref, ref.digest, platform)
            if recorded is not None:
                image_id, decided = recorded
                target = ImageTarget(ref.registry, ref.repository, ref.digest, None)
                return self._record(image, ref, target, decided, started, image_id=image_id)
        try:
            descriptor = self.client.resolve(ref)
        except RegistryError as exc:
            with self.db.session(write=True) as session:
                audit(session, "gate", "gate.error", image, reason=str(exc))
            raise GateError(f"could not resolve {image} at the registry: {exc}", 502) from None
        target = ImageTarget(ref.registry, ref.repository, descriptor.digest, ref.tag)
        deadline = time.monotonic() + min(max(wait, 0.0), MAX_WAIT)
        while True:
            image_id, decided = self._evaluate(target, descriptor.media_type, platform)
            if decided[0].decision != "pending" or time.monotonic() >= deadline:
                return self._record(image, ref, target, decided, started, image_id=image_id)
            time.sleep(POLL_SECONDS)

    def _cached(
        self, ref: ImageReference, digest: str, platform: str | None
    ) -> tuple[int, tuple[Verdict, tuple[GateFinding, ...]]] | None:
        """The image's id and the one decision on its recorded facts, when they are complete
        and cached (checked by one statement); else None."""
        with self.db.reading(single=True) as connection:  # one statement: no transaction
            scanned = self.facts.find(connection, ref.registry, ref.repository, digest)
            cached = self.facts.cached(scanned) if scanned is not None else None
        if scanned is None or cached is None:
            return None
        verdict = self.decider.decide(cached, platform=platform)
        return scanned.id, (verdict, findings_of(cached, platform=platform))

    def _recorded(
        self, ref: ImageReference, digest: str, platform: str | None
    ) -> tuple[int, tuple[Verdict, tuple[GateFinding, ...]]] | None:
        """The image's id and the one decision on its recorded facts, when they are complete
        (a scanned manifest, an expanded index); None sends the call down the full path."""
        cached = self._cached(ref, digest, platform)
        if cached is not None:
            return cached
        with self.db.reading() as connection:  # the facts loaded in one transaction
            scanned = self.facts.find(connection, ref.registry, ref.repository, digest)
            facts: ImageFacts | IndexFacts
            if scanned is not None:
                image_id = scanned.id
                facts = self.facts.facts(connection, scanned)
            else:
                with Session(bind=connection) as session:
                    target = ImageTarget(ref.registry, ref.repository, digest, None)
                    row = find_image(session, target)
                    if row is None or row.media_type not in INDEX_MEDIA_TYPES:
                        return None
                    if row.expanded_at is None:
                        return None
                    image_id = row.id
                    facts = self.decider.load(session, row)
        verdict = self.decider.decide(facts, platform=platform)
        return image_id, (verdict, findings_of(facts, platform=platform))

    def _evaluate(
        self, target: ImageTarget, media_type: str, platform: str | None
    ) -> tuple[int, tuple[Verdict, tuple[GateFinding, ...]]]:
        """The one decision on the recorded facts, and their findings; the rest is queued."""
        with self.db.session(write=True) as session:
            if target.tag:
                record_tag(session, target, target.tag, source="gate")
            image = upsert_image(session, target, media_type=media_type)
            if media_type in INDEX_MEDIA_TYPES:
                if image.expanded_at is None:
                    self.queue.enqueue(session, "index", target)
            elif latest_scan_id(session, image) is None:
                self.queue.enqueue(session, "image", target)
            facts = self.decider.load(session, image)
            verdict = self.decider.decide(facts, platform=platform)
            return image.id, (verdict, findings_of(facts, platform=platform))

    def _verdict(self, decision: Decision, reasons: list[str]) -> Verdict:
        policy = self.decider.policy
        return Verdict(decision, tuple(reasons), policy.name, policy.digest, utcnow())

    def _record(
        self,
        image: str,
        ref: ImageReference,
        target: ImageTarget | None,
        decided: tuple[Verdict, tuple[GateFinding, ...]],
        started: float,
        *,
        image_id: int | None,
    ) -> Answered:
        """The answer and the rows recording it (a verdict and an audit entry)."""
        verdict, findings = decided
        elapsed = (time.perf_counter() - started) * 1000

        digest = target.digest if target else None
        verdict_row = verdict_values(
            verdict,
            image_id=image_id,
            scan_id=None,
            context="gate",
            requested=image,
            digest=digest,
            duration_ms=elapsed,
        )
        entry = audit_values(
            "gate", "gate.answered", image, decision=verdict.decision, digest=digest
        )
        answer = GateAnswer(
            verdict.decision,
            image,
            digest,
            ref.pinned(digest) if digest else None,
            verdict.reasons,
            verdict.evaluated_at or utcnow(),
            verdict.policy,
            verdict.policy_digest,
            findings,
        )
        rows = ((models.Verdict, verdict_row), (models.AuditEntry, entry))
        return Answered(answer, rows, elapsed / 1000)
