"""A durable job queue in the database.

Workers claim with ``SELECT … FOR UPDATE SKIP LOCKED`` on PostgreSQL (SQLite serialises writers, so
there one process claims at a time), hold a lease they renew with a heartbeat, and retry with
exponential backoff up to a limit. A job whose worker died is claimed again once its lease has run
out. Completion is fenced: only the worker holding the current lease (same worker id and attempt)
can complete or fail a job, so a job finishes once even when a slow worker wakes up late.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import Update, or_, select, update
from sqlalchemy.orm import Session

from supplychain.evidence.database import Database
from supplychain.evidence.dbutil import insert_ignore
from supplychain.evidence.models import Job, JobFailure, utcnow
from supplychain.interface import ImageTarget

__all__ = ["ClaimedJob", "JobQueue", "LeaseLostError"]


class LeaseLostError(Exception):
    """The worker no longer holds the job's lease; its results must not be recorded."""


@dataclass(frozen=True)
class ClaimedJob:
    """A job leased to one worker for one attempt."""

    id: int
    """Job id."""
    kind: str
    """``image`` or ``index``."""
    target: ImageTarget
    """What to process."""
    attempt: int
    """Attempt number, from 1; with ``worker`` it fences completion."""
    worker: str
    """The worker holding the lease."""


def job_key(kind: str, target: ImageTarget) -> str:
    """Dedupe key: one job per kind and digest in a repository."""
    return f"{kind}:{target.pinned}"


class JobQueue:
    """Enqueue, claim, heartbeat, complete and fail jobs."""

    def __init__(
        self,
        db: Database,
        *,
        lease_seconds: float = 120.0,
        max_attempts: int = 5,
        backoff_base: float = 2.0,
        backoff_max: float = 600.0,
    ) -> None:
        self.db = db
        self.lease = timedelta(seconds=lease_seconds)
        self.max_attempts = max_attempts
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max

    def enqueue(
        self, session: Session, kind: str, target: ImageTarget, key: str | None = None
    ) -> bool:
        """Add a job unless one with the same key exists; True when a job was added."""
        now = utcnow()
        return insert_ignore(
            session,
            Job,
            {
                "kind": kind,
                "dedupe_key": key or job_key(kind, target),
                "host": target.registry,
                "repository": target.repository,
                "digest": target.digest,
                "tag": target.tag,
                "state": "queued",
                "attempts": 0,
                "max_attempts": self.max_attempts,
                "run_after": now,
                "created_at": now,
                "updated_at": now,
            },
        )

    def claim(self, worker: str) -> ClaimedJob | None:
        """Lease the next runnable job to ``worker``, or None when there is none."""
        with self.db.session() as session:
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
                    return None
            job.state = "running"
            job.attempts += 1
            job.worker = worker
            job.lease_until = now + self.lease
            job.updated_at = now
            target = ImageTarget(job.host, job.repository, job.digest, job.tag)
            return ClaimedJob(job.id, job.kind, target, job.attempts, worker)

    def heartbeat(self, claim: ClaimedJob) -> bool:
        """Extend the lease; False when the lease was lost."""
        with self.db.session() as session:
            now = utcnow()
            statement = self._fenced(claim).values(lease_until=now + self.lease, updated_at=now)
            return session.execute(statement).first() is not None

    def complete(self, session: Session, claim: ClaimedJob) -> None:
        """Mark the job done in ``session``'s transaction; raise :class:`LeaseLostError` if lost."""
        now = utcnow()
        statement = self._fenced(claim).values(
            state="done", lease_until=None, finished_at=now, updated_at=now, last_error=None
        )
        if session.execute(statement).first() is None:
            raise LeaseLostError(f"job {claim.id}: lease lost before completion")

    def fail(self, claim: ClaimedJob, reason: str, *, retry: bool = True) -> str:
        """Record a failed attempt; requeue with backoff or fail for good. Returns the new state."""
        with self.db.session() as session:
            now = utcnow()
            session.add(
                JobFailure(
                    job_id=claim.id, attempt=claim.attempt, worker=claim.worker, reason=reason
                )
            )
            final = not retry or claim.attempt >= self.max_attempts
            values: dict[str, object] = {
                "state": "failed" if final else "queued",
                "lease_until": None,
                "last_error": reason,
                "updated_at": now,
                "run_after": now + self._backoff(claim.attempt),
            }
            if final:
                values["finished_at"] = now
            if session.execute(self._fenced(claim).values(**values)).first() is None:
                return "lost"
            return str(values["state"])

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

    def _backoff(self, attempt: int) -> timedelta:
        delay = min(self.backoff_max, self.backoff_base * 2 ** (attempt - 1))
        return timedelta(seconds=delay * (0.5 + random.random() / 2))  # noqa: S311 - jitter only
