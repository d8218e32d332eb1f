"""A durable job queue in the database.

Workers claim in a write transaction: ``SELECT … FOR UPDATE SKIP LOCKED`` on PostgreSQL,
``BEGIN IMMEDIATE`` on SQLite (the write lock taken before the read), so a job's attempt is
claimed by one worker only; every claim is logged in ``job_claims``. Workers hold a lease they
renew with a heartbeat. A job whose worker died is claimed again once its lease has run out.
Completion is fenced: only the worker holding the current lease (same worker id and attempt) can
complete, fail, defer or release a job, so a job finishes once even when a slow worker wakes late.

There is one job per image digest in a repository, whatever asked for it (webhook, gate, index
fan-out). Failures the image is not to blame for (registry unreachable, disk full, database down)
*defer* the job with exponential backoff and jitter instead of spending an attempt, for up to the
retry window. A job failed for good is queued again when asked for after ``failed_retry``.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection, Update, or_, select, update
from sqlalchemy.orm import Session

from supplychain.evidence.bulk import send_insert
from supplychain.evidence.database import Database
from supplychain.evidence.dbutil import table_of
from supplychain.evidence.driver import Later, Stored
from supplychain.evidence.models import Job, JobClaim, JobFailure, utcnow
from supplychain.interface import ImageTarget
from supplychain.queue.wakeup import Wakeup

__all__ = ["Backoff", "ClaimedJob", "JobQueue", "LeaseLostError", "job_key"]


class LeaseLostError(Exception):
    """The worker no longer holds the job's lease; its results must not be recorded."""


@dataclass(frozen=True)
class ClaimedJob:
    """A job leased to one worker for one attempt."""

    id: int
    """Job id."""
    kind: str
    """``image``, ``index`` or ``manifest`` (either; the worker looks)."""
    target: ImageTarget
    """What to process."""
    attempt: int
    """Attempt number, from 1; with ``worker`` it fences completion."""
    worker: str
    """The worker holding the lease."""


@dataclass(frozen=True)
class Backoff:
    """When to try again: exponential with jitter, capped, and for how long faults are forgiven."""

    base: float = 2.0
    """Seconds before the first retry (before jitter)."""
    cap: float = 300.0
    """Longest wait between two tries."""
    window: float = 1800.0
    """Seconds faults that are not the image's may go on before they count as attempts."""
    failed_retry: float = 3600.0
    """Seconds after failing for good before a new request queues the job again."""

    def delay(self, retry: int) -> timedelta:
        """The wait before retry number ``retry`` (from 1): half to all of base·2^(retry-1)."""
        ceiling = min(self.cap, self.base * 2 ** min(max(retry, 1) - 1, 30))
        return timedelta(seconds=ceiling * (0.5 + random.random() / 2))  # noqa: S311 - jitter only


def job_key(target: ImageTarget) -> str:
    """Dedupe key: one job per digest in a repository (an index job and an image job alike)."""
    return target.pinned


class JobQueue:
    """Enqueue, claim, heartbeat, complete, fail, defer and release jobs."""

    def __init__(
        self,
        db: Database,
        *,
        lease_seconds: float = 120.0,
        max_attempts: int = 5,
        backoff: Backoff | None = None,
    ) -> None:
        self.db = db
        self.lease = timedelta(seconds=lease_seconds)
        self.max_attempts = max_attempts
        self.backoff = backoff or Backoff()
        self.wakeup = Wakeup()
        """Idle workers of this process wait on it; :meth:`enqueue` wakes them at commit."""

    def enqueue(self, session: Session, kind: str, target: ImageTarget) -> bool:
        """Add a job unless the digest has one; requeue a failed one whose retry time has come.

        True when a job was added or requeued.
        """
        return self.enqueue_many(session, [(kind, target)])[0]

    def enqueue_many(self, session: Session, jobs: Sequence[tuple[str, ImageTarget]]) -> list[bool]:
        """:meth:`enqueue` for many (kind, target) pairs in one INSERT; per pair, True when a
        job was added or requeued (a digest named twice is added once)."""
        return self.finish_many(session, jobs, self.send_many(session.connection(), jobs))

    def send_many(self, conn: Connection, jobs: Sequence[tuple[str, ImageTarget]]) -> Later[Stored]:
        """The first half of :meth:`enqueue_many`, for a batch that sends it with other
        statements (:func:`~supplychain.evidence.driver.pipeline`): the INSERT of the new jobs,
        returning the keys of those added. The first pair naming a digest gives its kind and
        tag."""
        now = utcnow()
        rows: dict[str, dict[str, object]] = {}
        for kind, target in jobs:
            key = job_key(target)
            if key in rows:
                continue
            rows[key] = {
                "kind": kind,
                "dedupe_key": key,
                "host": target.registry,
                "repository": target.repository,
                "digest": target.digest,
                "tag": target.tag,
                "state": "queued",
                "attempts": 0,
                "max_attempts": self.max_attempts,
                "deferrals": 0,
                "run_after": now,
                "created_at": now,
                "updated_at": now,
            }
        table = table_of(Job)
        wanted = [table.c.dedupe_key]
        return send_insert(conn, table, list(rows.values()), skip_conflicts=True, returning=wanted)

    def all_added(self, jobs: Sequence[tuple[str, ImageTarget]], sent: Later[Stored]) -> bool:
        """True when ``sent`` added a job for every pair: :meth:`finish_many` then has nothing
        to requeue and runs no statement (it may run inside a pipeline)."""
        added = {row["dedupe_key"] for row in sent.rows()}
        return all(job_key(target) in added for _, target in jobs)

    def finish_many(
        self, session: Session, jobs: Sequence[tuple[str, ImageTarget]], sent: Later[Stored]
    ) -> list[bool]:
        """The second half of :meth:`enqueue_many`: per pair, True when its job was added by
        ``sent`` or is requeued now (by SQLAlchemy: outside any pipeline, unless
        :meth:`all_added`)."""
        added = {row["dedupe_key"] for row in sent.rows()}
        now = utcnow()
        results: list[bool] = []
        asked: set[str] = set()
        for _, target in jobs:
            key = job_key(target)
            if key in asked:  # later pairs with the same digest are not new
                results.append(False)
                continue
            asked.add(key)
            results.append(key in added or self._requeue(session, key, now))
        if any(results):
            self.wakeup.notify_after_commit(session)
        return results

    def _requeue(self, session: Session, key: str, now: datetime) -> bool:
        """Queue a failed job again once its retry time has come."""
        requeue = (
            update(Job)
            .where(Job.dedupe_key == key, Job.state == "failed", Job.run_after <= now)
            .values(
                state="queued",
                max_attempts=Job.attempts + self.max_attempts,
                deferrals=0,
                deferred_since=None,
                run_after=now,
                finished_at=None,
                updated_at=now,
            )
            .returning(Job.id)
        )
        return session.execute(requeue).first() is not None

    def claim(self, worker: str) -> ClaimedJob | None:
        """Lease the next runnable job to ``worker``, or None when there is none."""
        with self.db.session(write=True) as session:
            now = utcnow()
            query = (
                select(Job)
                .where(
                    or_(
                        (Job.state == "queued") & (Job.run_after <= now),
                        (Job.state == "running") & (Job.lease_until < now),
                    )
                )
                .order_by(Job.run_after, Job.id)
                .limit(1)
                .with_for_update(skip_locked=True)
            )
            job = session.scalars(query).first()
            if job is None:
                return None
            if job.state == "running":
                reason = f"lease of worker {job.worker} expired (worker died or stalled)"
                session.add(
                    JobFailure(
                        job_id=job.id, attempt=job.attempts, worker=job.worker, reason=reason
                    )
                )
                job.last_error = reason
                if job.attempts >= job.max_attempts:
                    job.state, job.finished_at, job.worker = "failed", now, None
                    job.run_after = now + timedelta(seconds=self.backoff.failed_retry)
                    return None
            job.state = "running"
            job.attempts += 1
            job.worker = worker
            job.lease_until = now + self.lease
            job.updated_at = now
            session.add(JobClaim(job_id=job.id, attempt=job.attempts, worker=worker, at=now))
            target = ImageTarget(job.host, job.repository, job.digest, job.tag)
            return ClaimedJob(job.id, job.kind, target, job.attempts, worker)

    def heartbeat(self, claim: ClaimedJob) -> bool:
        """Extend the lease; False when the lease was lost. Database errors propagate."""
        with self.db.session(write=True) as session:
            now = utcnow()
            statement = self._fenced(claim).values(lease_until=now + self.lease, updated_at=now)
            return session.execute(statement).first() is not None

    def complete(self, session: Session, claim: ClaimedJob) -> None:
        """Mark the job done in ``session``'s transaction; raise :class:`LeaseLostError` if lost."""
        now = utcnow()
        statement = self._fenced(claim).values(
            state="done",
            lease_until=None,
            finished_at=now,
            updated_at=now,
            last_error=None,
            deferrals=0,
            deferred_since=None,
        )
        if session.execute(statement).first() is None:
            raise LeaseLostError(f"job {claim.id}: lease lost before completion")

    def fail(self, claim: ClaimedJob, reason: str, *, retry: bool = True) -> str:
        """Record a failed attempt; requeue with backoff or fail for good. Returns the new state
        (``queued``, ``failed``, or ``lost`` when the lease was no longer ours)."""
        with self.db.session(write=True) as session:
            now = utcnow()
            final = not retry or claim.attempt >= self._max_attempts(session, claim)
            values: dict[str, object] = {
                "state": "failed" if final else "queued",
                "lease_until": None,
                "last_error": reason,
                "updated_at": now,
                "run_after": now
                + (
                    timedelta(seconds=self.backoff.failed_retry)
                    if final
                    else self.backoff.delay(claim.attempt)
                ),
            }
            if final:
                values["finished_at"] = now
            return self._end_attempt(session, claim, reason, values)

    def defer(self, claim: ClaimedJob, reason: str) -> str:
        """End the attempt for a fault that is not the image's: retry later without spending an
        attempt, unless such faults have lasted longer than the retry window (then: :meth:`fail`).
        """
        with self.db.session(write=True) as session:
            now = utcnow()
            row = session.execute(
                select(Job.deferrals, Job.deferred_since).where(Job.id == claim.id)
            ).first()
            deferrals, since = (row[0], row[1]) if row is not None else (0, None)
            window = timedelta(seconds=self.backoff.window)
            if since is not None and now - since > window:
                expired = True
            else:
                expired = False
                values: dict[str, object] = {
                    "state": "queued",
                    "lease_until": None,
                    "last_error": reason,
                    "updated_at": now,
                    "max_attempts": Job.max_attempts + 1,
                    "deferrals": deferrals + 1,
                    "deferred_since": since or now,
                    "run_after": now + self.backoff.delay(deferrals + 1),
                }
                state = self._end_attempt(session, claim, f"deferred: {reason}", values)
        if expired:
            window_note = f"{reason} (still failing after the {self.backoff.window:g}s window)"
            return self.fail(claim, window_note)
        return state

    def release(self, claim: ClaimedJob, reason: str) -> str:
        """Give the job back for another worker to claim at once, without spending an attempt."""
        with self.db.session(write=True) as session:
            now = utcnow()
            values: dict[str, object] = {
                "state": "queued",
                "lease_until": None,
                "updated_at": now,
                "max_attempts": Job.max_attempts + 1,
                "run_after": now,
            }
            return self._end_attempt(session, claim, f"released: {reason}", values)

    def known(self, session: Session, targets: Iterable[ImageTarget]) -> set[str]:
        """The :func:`job_key` of each target that has a job, in any state."""
        keys = sorted({job_key(target) for target in targets})
        found: set[str] = set()
        for start in range(0, len(keys), 500):  # bounded IN lists
            chunk = keys[start : start + 500]
            found.update(session.scalars(select(Job.dedupe_key).where(Job.dedupe_key.in_(chunk))))
        return found

    def last_error(self, session: Session, target: ImageTarget) -> str | None:
        """Why the digest's job has not finished yet: its last error and state, or None."""
        row = session.execute(
            select(Job.state, Job.last_error, Job.run_after).where(
                Job.dedupe_key == job_key(target)
            )
        ).first()
        if row is None or not row.last_error or row.state == "done":
            return None
        when = row.run_after.strftime("%Y-%m-%dT%H:%M:%SZ")
        if row.state == "failed":
            return f"scan failed: {row.last_error} (retried when asked again after {when})"
        return f"scan not finished: last attempt: {row.last_error} (next try after {when})"

    def _end_attempt(
        self, session: Session, claim: ClaimedJob, reason: str, values: dict[str, object]
    ) -> str:
        if session.execute(self._fenced(claim).values(**values)).first() is None:
            return "lost"
        session.add(
            JobFailure(job_id=claim.id, attempt=claim.attempt, worker=claim.worker, reason=reason)
        )
        return str(values["state"])

    def _max_attempts(self, session: Session, claim: ClaimedJob) -> int:
        value = session.scalar(select(Job.max_attempts).where(Job.id == claim.id))
        return self.max_attempts if value is None else value

    def _fenced(self, claim: ClaimedJob) -> Update:
        """UPDATE of this job only while ``claim`` still holds its lease; returns the id if so."""
        return (
            update(Job)
            .where(
                Job.id == claim.id,
                Job.state == "running",
                Job.worker == claim.worker,
                Job.attempts == claim.attempt,
            )
            .returning(Job.id)
        )
