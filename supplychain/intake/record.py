"""The database half of the intake: store one read delivery and turn its pushes into jobs.

:func:`record` runs inside a write transaction it does not own (one request's, or a group commit
shared by many): the delivery row, its dedupe keys, jobs, tag moves and audit entries are written
together and become durable together. Deletions are recorded (delivery and audit), never scanned;
everything ignored or refused is named in the answer and in the audit log.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

from sqlalchemy import insert, update
from sqlalchemy.orm import Session

from registry_hooks import Delivery, HookEvent
from supplychain.evidence.dbutil import audit, insert_ignore
from supplychain.evidence.models import SeenEvent, WebhookDelivery
from supplychain.evidence.recorder import record_tag
from supplychain.interface import ImageTarget
from supplychain.queue.jobs import JobQueue

__all__ = ["IntakeResult", "Received", "record"]

COSIGN_TAG = re.compile(r"^sha256-[a-f0-9]{64}(\.(sig|att|sbom))?$")
"""Tags of cosign's storage scheme and of the OCI referrers tag-schema fallback."""


@dataclass(frozen=True)
class IntakeResult:
    """What became of one webhook request."""

    status: int
    """HTTP status to answer."""
    message: str
    """Short human-readable outcome."""
    delivery_id: int | None = None
    """Stored delivery, when stored."""
    accepted: int = 0
    """Events that became new jobs."""
    duplicates: int = 0
    """Events already seen or already queued."""
    refused: tuple[str, ...] = field(default=())
    """Why events were refused (host not allowed…)."""
    ignored: tuple[str, ...] = field(default=())
    """Why parts of the delivery (or all of it) were ignored."""
    deleted: int = 0
    """Deletion events recorded (never scanned)."""


@dataclass(frozen=True)
class Received:
    """An authenticated request, read by its adapter, ready to be recorded."""

    source: str
    """Adapter name."""
    sender: str
    """Who proved the request: the source itself (its key) or a ``webhook`` token's name."""
    body: bytes
    """The body as received (stored for audit)."""
    content_type: str | None
    """Its ``Content-Type``."""
    remote: str | None
    """Client address."""
    delivery: Delivery | None
    """What the adapter read; None when the body was malformed."""
    error: str | None = None
    """Why the body could not be read (stored as a ``malformed`` delivery, answered 400)."""
    digests: tuple[tuple[str | None, str | None], ...] = ()
    """Per event of :attr:`delivery`: the (digest, media type) resolved at the registry for a
    tag-only push, or (None, None)."""
    refusals: tuple[str | None, ...] = ()
    """Per event: why it is refused before the database (not allowlisted, unresolvable)."""
    notes: tuple[str, ...] = ()
    """Reasons found while reading (replayed signed time, subscription confirmed…)."""


def _store(session: Session, received: Received, outcome: str, detail: str | None) -> int:
    values = {
        "source": received.source,
        "authenticated": True,
        "content_type": received.content_type,
        "remote_addr": received.remote,
        "body": received.body,
        "outcome": outcome,
        "detail": detail,
        "events": 0,
        "jobs_created": 0,
    }
    statement = insert(WebhookDelivery).values(values).returning(WebhookDelivery.id)
    return int(session.execute(statement).scalar_one())


@dataclass
class _Tally:
    accepted: int = 0
    duplicates: int = 0
    deleted: int = 0
    refused: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)


def record(session: Session, received: Received, queue: JobQueue) -> IntakeResult:
    """Store ``received`` and queue its pushes, in ``session``'s transaction."""
    if received.delivery is None:
        error = received.error or "unreadable"
        delivery_id = _store(session, received, "malformed", error)
        return IntakeResult(400, f"malformed webhook: {error}", delivery_id)
    delivery = received.delivery
    delivery_id = _store(session, received, "pending", None)
    tally = _Tally(ignored=[*delivery.ignored, *received.notes])
    if delivery.delivery_id and not insert_ignore(
        session,
        SeenEvent,
        {
            "key": f"{received.source}:delivery:{delivery.delivery_id}"[:255],
            "delivery_id": delivery_id,
        },
    ):
        tally.ignored.append(f"delivery {delivery.delivery_id!r} was already received: a replay")
    else:
        for index, event in enumerate(delivery.events):
            _event(session, received, index, event, delivery_id, queue, tally)
    events = len(delivery.events)
    if tally.accepted or tally.duplicates or tally.deleted:
        outcome = "accepted"
    else:
        outcome = "refused" if tally.refused else "ignored"
    reasons = tally.refused + tally.ignored
    session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.id == delivery_id)
        .values(
            outcome=outcome,
            detail="; ".join(reasons)[:4000] or None,
            events=events,
            jobs_created=tally.accepted,
        )
    )
    if tally.ignored:
        audit(
            session,
            received.sender,
            "webhook.ignored",
            received.source,
            delivery=delivery_id,
            reasons=tally.ignored,
        )
    message = (
        f"{tally.accepted} queued, {tally.duplicates} duplicate, {tally.deleted} deleted, "
        f"{len(tally.refused)} refused, {len(tally.ignored)} ignored"
    )
    return IntakeResult(
        202,
        message,
        delivery_id,
        tally.accepted,
        tally.duplicates,
        tuple(tally.refused),
        tuple(tally.ignored),
        tally.deleted,
    )


def _event(
    session: Session,
    received: Received,
    index: int,
    event: HookEvent,
    delivery_id: int,
    queue: JobQueue,
    tally: _Tally,
) -> None:
    source = received.source
    where = f"{event.registry}/{event.repository}"
    refusal = received.refusals[index] if index < len(received.refusals) else None
    if refusal is not None:
        tally.refused.append(refusal)
        audit(session, source, "webhook.refused", where, reason=refusal, delivery=delivery_id)
        return
    if event.event_id and not insert_ignore(
        session,
        SeenEvent,
        {"key": f"{source}:{event.event_id}"[:255], "delivery_id": delivery_id},
    ):
        tally.duplicates += 1
        return
    if event.tag and COSIGN_TAG.match(event.tag):
        tally.ignored.append(f"{where}:{event.tag} is a signature or attestation tag")
        return
    resolved, media_type = (
        received.digests[index] if index < len(received.digests) else (None, None)
    )
    digest = event.digest or resolved
    host = event.registry or ""
    if event.action == "delete":
        tally.deleted += 1
        subject = f"{where}@{digest}" if digest else f"{where}:{event.tag}"
        audit(session, source, "image.deleted", subject, delivery=delivery_id, tag=event.tag)
        return
    if digest is None:
        reason = f"{where}: the event carries no digest"
        tally.refused.append(reason)
        audit(session, source, "webhook.refused", where, reason=reason, delivery=delivery_id)
        return
    target = ImageTarget(host, event.repository, digest, event.tag)
    if event.tag:
        record_tag(session, target, event.tag, source=f"webhook:{source}")
    kind = (event if media_type is None else _typed(event, media_type)).job_kind
    if queue.enqueue(session, kind, target):
        tally.accepted += 1
        audit(session, source, "job.queued", target.pinned, kind=kind, delivery=delivery_id)
    else:
        tally.duplicates += 1


def _typed(event: HookEvent, media_type: str) -> HookEvent:
    return replace(event, media_type=media_type)
