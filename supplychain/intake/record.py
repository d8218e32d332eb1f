"""The database half of the intake: store one read delivery and turn its pushes into jobs.

:func:`record` runs inside a write transaction it does not own (one request's, or a group commit
shared by many): the delivery row, its dedupe keys, jobs, tag moves and audit entries are written
together and become durable together. Deletions are recorded (delivery and audit), never scanned;
everything ignored or refused is named in the answer and in the audit log.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.orm import Session

from registry_hooks import Delivery, HookEvent
from supplychain.evidence.bulk import send_insert
from supplychain.evidence.dbutil import audit_rows, table_of
from supplychain.evidence.driver import Later, Stored, pipeline, reserve_ids
from supplychain.evidence.models import AuditEntry, SeenEvent, WebhookDelivery, utcnow
from supplychain.evidence.tags import Move, TagMoves
from supplychain.evidence.tlog import append_sent
from supplychain.interface import ImageTarget
from supplychain.queue.jobs import JobQueue

__all__ = ["IntakeResult", "Received", "record", "record_batch"]

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


_Entry = tuple[str, str, str | None, dict[str, Any]]


@dataclass
class _Tally:
    """What became of one delivery's events, filled in while the batch is written."""

    received: Received
    delivery_id: int = 0
    accepted: int = 0
    duplicates: int = 0
    deleted: int = 0
    refused: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)

    def result(self) -> IntakeResult:
        if self.received.delivery is None:
            error = self.received.error or "unreadable"
            return IntakeResult(400, f"malformed webhook: {error}", self.delivery_id)
        message = (
            f"{self.accepted} queued, {self.duplicates} duplicate, {self.deleted} deleted, "
            f"{len(self.refused)} refused, {len(self.ignored)} ignored"
        )
        return IntakeResult(
            202,
            message,
            self.delivery_id,
            self.accepted,
            self.duplicates,
            tuple(self.refused),
            tuple(self.ignored),
            self.deleted,
        )

    @property
    def outcome(self) -> str:
        if self.received.delivery is None:
            return "malformed"
        if self.accepted or self.duplicates or self.deleted:
            return "accepted"
        return "refused" if self.refused else "ignored"


def record(session: Session, received: Received, queue: JobQueue) -> IntakeResult:
    """Store ``received`` and queue its pushes, in ``session``'s transaction."""
    return record_batch(session, [received], queue)[0]


def record_batch(
    session: Session, batch: Sequence[Received], queue: JobQueue
) -> list[IntakeResult]:
    """Store many requests and queue their pushes, in ``session``'s transaction, with a fixed
    number of statements per batch (multi-row INSERTs), not per request.

    On PostgreSQL the statements that do not need each other's results travel together
    (:func:`~supplychain.evidence.driver.pipeline`), six round trips a batch: the deliveries'
    keys with the transaction's BEGIN; the events' dedupe keys with the tags' current rows; the
    tag moves with the new jobs; the deliveries (written once, with their outcome) and audit
    entries with the log's lock and end; the log's leaves; the commit. A failed job queued again
    (by SQLAlchemy) ends the pipeline before the deliveries: one round trip more."""
    conn = session.connection()
    tallies = [
        _Tally(r, ignored=[*(r.delivery.ignored if r.delivery else ()), *r.notes]) for r in batch
    ]
    entries: list[_Entry] = []
    moves: list[Move] = []
    jobs: list[tuple[_Tally, str, ImageTarget]] = []
    with pipeline(conn):  # one pipeline, unless a failed job is requeued (SQLAlchemy: outside)
        candidates = _candidates(conn, tallies, entries)
        keyed = [
            (id(c), f"{c[0].received.source}:{c[1].event_id}", c[0].delivery_id)
            for c in candidates
            if c[1].event_id
        ]
        seen = _first_seen(conn, keyed)
        named = {(e.registry or "", e.repository, e.tag) for _, e, _, _ in candidates if e.tag}
        tags = TagMoves(conn, named)
        new = seen.result()
        for candidate in candidates:
            tally, event, digest, media_type = candidate
            if event.event_id and id(candidate) not in new:
                tally.duplicates += 1
                continue
            _use(tally, event, digest, media_type, entries, moves, jobs)
        tags.write(moves, entries)  # its audit entries are written with the others
        pairs = [(kind, target) for _, kind, target in jobs]
        sent = queue.send_many(conn, pairs)
        written = [("tags", str(key), row) for key, row in tags.rows()]
        if quick := queue.all_added(pairs, sent):
            queued = queue.finish_many(session, pairs, sent)  # no statement: nothing to requeue
            _conclude(conn, tallies, jobs, queued, entries, written)
    if not quick:
        queued = queue.finish_many(session, pairs, sent)
        with pipeline(conn):
            _conclude(conn, tallies, jobs, queued, entries, written)
    return [tally.result() for tally in tallies]


def _candidates(
    conn: Connection, tallies: list[_Tally], entries: list[_Entry]
) -> list[tuple[_Tally, HookEvent, str | None, str | None]]:
    """Give each delivery its row's key; the events of the deliveries that are not replays,
    with their resolved digest and media type (the refused ones recorded in ``entries``)."""
    deliveries = table_of(WebhookDelivery)
    for tally, key in zip(tallies, reserve_ids(conn, deliveries, len(tallies)), strict=True):
        tally.delivery_id = key
    fresh = _first_seen(
        conn,
        [
            (
                id(t),
                f"{t.received.source}:delivery:{t.received.delivery.delivery_id}",
                t.delivery_id,
            )
            for t in tallies
            if t.received.delivery is not None and t.received.delivery.delivery_id
        ],
    ).result()
    candidates: list[tuple[_Tally, HookEvent, str | None, str | None]] = []
    for tally in tallies:
        delivery = tally.received.delivery
        if delivery is None:
            continue
        if delivery.delivery_id and id(tally) not in fresh:
            tally.ignored.append(
                f"delivery {delivery.delivery_id!r} was already received: a replay"
            )
            continue
        for index, event in enumerate(delivery.events):
            found = _screen(tally, index, event, entries)
            if found is not None:
                candidates.append((tally, event, *found))
    return candidates


def _conclude(
    conn: Connection,
    tallies: list[_Tally],
    jobs: list[tuple[_Tally, str, ImageTarget]],
    queued: list[bool],
    entries: list[_Entry],
    written: list[tuple[str, str, Any]],
) -> None:
    """Write the deliveries with their outcome and the audit entries, and append them and the
    tags ``written`` to the log (sent in the caller's pipeline)."""
    for (tally, kind, target), added in zip(jobs, queued, strict=True):
        if added:
            tally.accepted += 1
            details = {"kind": kind, "delivery": tally.delivery_id}
            entries.append((tally.received.source, "job.queued", target.pinned, details))
        else:
            tally.duplicates += 1
    for tally in tallies:
        if tally.ignored:
            details = {"delivery": tally.delivery_id, "reasons": tally.ignored}
            entries.append(
                (tally.received.sender, "webhook.ignored", tally.received.source, details)
            )
    deliveries, audit = table_of(WebhookDelivery), table_of(AuditEntry)
    stored = send_insert(conn, deliveries, _rows(tallies), returning=list(deliveries.c))
    audited = send_insert(conn, audit, audit_rows(entries), returning=list(audit.c))
    append_sent(conn, [("webhook_deliveries", stored), ("audit_log", audited)], written)


def _rows(tallies: list[_Tally]) -> list[dict[str, Any]]:
    """Every delivery row, with its key, outcome, detail and job count; the request's content
    type and address cut to their columns (a sender's header is no reason to lose its push)."""
    rows = []
    for tally in tallies:
        received = tally.received
        reasons = [received.error or ""] if received.delivery is None else []
        reasons += tally.refused + tally.ignored
        rows.append(
            {
                "id": tally.delivery_id,
                "source": received.source,
                "authenticated": True,
                "content_type": _clip(received.content_type, "content_type"),
                "remote_addr": _clip(received.remote, "remote_addr"),
                "body": received.body,
                "outcome": tally.outcome,
                "detail": "; ".join(reasons)[:4000] or None,
                "events": len(received.delivery.events) if received.delivery else 0,
                "jobs_created": tally.accepted,
                "received_at": utcnow(),
            }
        )
    return rows


def _clip(value: str | None, column: str) -> str | None:
    length = table_of(WebhookDelivery).c[column].type.length  # type: ignore[attr-defined]
    return value if value is None else value[:length]


class _Seen:
    """Which dedupe keys were new, once the INSERT that stored them has answered."""

    def __init__(self, first: dict[str, tuple[int, int]], stored: Later[Stored]) -> None:
        self._first = first
        self._stored = stored

    def result(self) -> set[int]:
        return {self._first[row["key"]][0] for row in self._stored.rows()}


def _first_seen(conn: Connection, keyed: list[tuple[int, str, int]]) -> _Seen:
    """Of (ident, dedupe key, delivery id) triples, the idents whose key is new: stored now by
    the first triple in the batch naming it (one INSERT)."""
    first: dict[str, tuple[int, int]] = {}
    for ident, key, delivery_id in keyed:
        first.setdefault(key[:255], (ident, delivery_id))
    rows = [{"key": key, "delivery_id": delivery_id} for key, (_, delivery_id) in first.items()]
    table = table_of(SeenEvent)
    return _Seen(
        first, send_insert(conn, table, rows, skip_conflicts=True, returning=[table.c.key])
    )


def _screen(
    tally: _Tally, index: int, event: HookEvent, entries: list[_Entry]
) -> tuple[str | None, str | None] | None:
    """The resolved (digest, media type) of an event worth deduping, or None when it is
    refused before that (and why is recorded)."""
    received = tally.received
    where = f"{event.registry}/{event.repository}"
    refusal = received.refusals[index] if index < len(received.refusals) else None
    if refusal is not None:
        tally.refused.append(refusal)
        details = {"reason": refusal, "delivery": tally.delivery_id}
        entries.append((received.source, "webhook.refused", where, details))
        return None
    return received.digests[index] if index < len(received.digests) else (None, None)


def _use(
    tally: _Tally,
    event: HookEvent,
    resolved: str | None,
    media_type: str | None,
    entries: list[_Entry],
    moves: list[Move],
    jobs: list[tuple[_Tally, str, ImageTarget]],
) -> None:
    """A new event: a deletion recorded, a signature tag ignored, or a push to queue."""
    source = tally.received.source
    where = f"{event.registry}/{event.repository}"
    if event.tag and COSIGN_TAG.match(event.tag):
        tally.ignored.append(f"{where}:{event.tag} is a signature or attestation tag")
        return
    digest = event.digest or resolved
    if event.action == "delete":
        tally.deleted += 1
        subject = f"{where}@{digest}" if digest else f"{where}:{event.tag}"
        details = {"delivery": tally.delivery_id, "tag": event.tag}
        entries.append((source, "image.deleted", subject, details))
        return
    if digest is None:
        reason = f"{where}: the event carries no digest"
        tally.refused.append(reason)
        entries.append(
            (source, "webhook.refused", where, {"reason": reason, "delivery": tally.delivery_id})
        )
        return
    target = ImageTarget(event.registry or "", event.repository, digest, event.tag)
    if event.tag:
        moves.append((target, event.tag, f"webhook:{source}"))
    typed = event if media_type is None else replace(event, media_type=media_type)
    jobs.append((tally, typed.job_kind, target))
