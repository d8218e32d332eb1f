"""Several worker PROCESSES on one database: no (job, attempt) is claimed twice, on SQLite too.

Also the queue's retry rules: faults that are not the image's defer without spending attempts,
a job failed for good is queued again when asked for after its retry time, release gives a job
back at once.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from sqlalchemy import select

from supplychain.evidence.database import Database
from supplychain.evidence.models import Job, JobClaim, JobFailure
from supplychain.interface import ImageTarget
from supplychain.queue.jobs import Backoff, JobQueue
from tests.support.claimers import done_jobs, double_claims, fill, run_claimers

TARGET = ImageTarget("127.0.0.1:5000", "team/app", "sha256:" + "ab" * 32, "v1")


@pytest.fixture(params=["postgresql", "sqlite"])
def any_db(request: pytest.FixtureRequest, tmp_path: Path) -> Database:
    if request.param == "postgresql":
        database: Database = request.getfixturevalue("db")
        return database
    database = Database(f"sqlite:///{tmp_path / 'queue.db'}")
    database.upgrade()
    return database


def test_worker_processes_never_claim_the_same_attempt(any_db: Database) -> None:
    fill(any_db, 150)
    _seconds, results = run_claimers(any_db.url, 3)
    assert sum(r["claimed"] for r in results) == 150
    assert sum(r["lost"] for r in results) == 0
    assert double_claims(any_db) == 0
    assert done_jobs(any_db) == 150
    with any_db.session() as session:
        assert len(session.scalars(select(JobClaim)).all()) == 150


def test_one_job_per_digest_whatever_the_kind(any_db: Database) -> None:
    queue = JobQueue(any_db)
    with any_db.session() as session:
        assert queue.enqueue(session, "manifest", TARGET)
        assert not queue.enqueue(session, "image", TARGET)
        assert not queue.enqueue(session, "index", TARGET)
    with any_db.session() as session:
        assert len(session.scalars(select(Job)).all()) == 1


def test_faults_not_the_images_do_not_spend_attempts(any_db: Database) -> None:
    queue = JobQueue(any_db, max_attempts=2, backoff=Backoff(base=0.01, cap=0.02, window=60))
    with any_db.session() as session:
        queue.enqueue(session, "image", TARGET)
    for n in range(1, 6):
        claim = queue.claim("w")
        assert claim is not None and claim.attempt == n
        assert queue.defer(claim, "registry unavailable: HTTP 503") == "queued"
        time.sleep(0.03)
    claim = queue.claim("w")
    assert claim is not None
    with any_db.session() as session:
        queue.complete(session, claim)
    with any_db.session() as session:
        job = session.scalars(select(Job)).one()
        assert (job.state, job.deferrals, job.deferred_since) == ("done", 0, None)
        reasons = session.scalars(select(JobFailure.reason)).all()
        assert reasons == ["deferred: registry unavailable: HTTP 503"] * 5


def test_faults_past_the_window_spend_attempts(any_db: Database) -> None:
    queue = JobQueue(any_db, max_attempts=1, backoff=Backoff(base=0.01, cap=0.01, window=0.05))
    with any_db.session() as session:
        queue.enqueue(session, "image", TARGET)
    claim = queue.claim("w")
    assert claim is not None and queue.defer(claim, "disk full") == "queued"
    time.sleep(0.1)
    claim = queue.claim("w")
    assert claim is not None and queue.defer(claim, "disk full") == "failed"
    with any_db.session() as session:
        job = session.scalars(select(Job)).one()
        assert job.state == "failed" and "after the 0.05s window" in (job.last_error or "")


def test_failed_job_is_queued_again_when_asked_after_its_retry_time(any_db: Database) -> None:
    queue = JobQueue(any_db, max_attempts=1, backoff=Backoff(failed_retry=0.5))
    with any_db.session() as session:
        queue.enqueue(session, "image", TARGET)
    claim = queue.claim("w")
    assert claim is not None
    assert queue.fail(claim, "ScanError: trivy exited with 1") == "failed"
    with any_db.session() as session:
        assert not queue.enqueue(session, "image", TARGET)  # too soon
        note = queue.last_error(session, TARGET)
    assert note is not None and "scan failed: ScanError: trivy exited with 1" in note
    assert queue.claim("w") is None
    time.sleep(0.6)
    with any_db.session() as session:
        assert queue.enqueue(session, "image", TARGET)
    again = queue.claim("w")
    assert again is not None and again.attempt == 2
    with any_db.session() as session:
        queue.complete(session, again)
        assert queue.last_error(session, TARGET) is None


def test_release_gives_the_job_back_at_once_without_spending_an_attempt(any_db: Database) -> None:
    queue = JobQueue(any_db, max_attempts=1, lease_seconds=600)
    with any_db.session() as session:
        queue.enqueue(session, "image", TARGET)
    first = queue.claim("a")
    assert first is not None and queue.release(first, "worker shut down") == "queued"
    second = queue.claim("b")
    assert second is not None and second.attempt == 2
    with any_db.session() as session:
        queue.complete(session, second)  # attempt 2 of max 1 plus the released one
        assert session.scalars(select(Job.state)).one() == "done"
    assert queue.release(first, "late") == "lost"
