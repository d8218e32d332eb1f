"""The durable job queue on real PostgreSQL: SKIP LOCKED claims, leases, fencing, retries."""

from __future__ import annotations

import threading
import time

from sqlalchemy import select, update

from supplychain.evidence.database import Database
from supplychain.evidence.models import Job, JobFailure, utcnow
from supplychain.interface import ImageTarget
from supplychain.queue.jobs import Backoff, JobQueue, LeaseLostError


def target(n: int) -> ImageTarget:
    return ImageTarget("127.0.0.1:5000", "team/app", "sha256:" + f"{n:02x}" * 32, "v1")


def fill(db: Database, queue: JobQueue, n: int) -> None:
    with db.session() as session:
        for i in range(n):
            assert queue.enqueue(session, "image", target(i))


def test_enqueue_is_unique_per_digest(db: Database) -> None:
    queue = JobQueue(db)
    with db.session() as session:
        assert queue.enqueue(session, "image", target(1))
        assert not queue.enqueue(session, "image", target(1))


def test_concurrent_workers_never_claim_the_same_job(db: Database) -> None:
    queue = JobQueue(db)
    fill(db, queue, 20)
    claimed: list[int] = []
    lock = threading.Lock()

    def work(name: str) -> None:
        while (claim := queue.claim(name)) is not None:
            with lock:
                claimed.append(claim.id)

    threads = [threading.Thread(target=work, args=(f"w{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(claimed) == list(range(1, 21))


def test_complete_is_fenced_by_the_lease(db: Database) -> None:
    queue = JobQueue(db, lease_seconds=0.2)
    fill(db, queue, 1)
    first = queue.claim("slow")
    assert first is not None
    time.sleep(0.3)
    second = queue.claim("fast")
    assert second is not None and second.id == first.id and second.attempt == 2
    with db.session() as session:
        queue.complete(session, second)
    try:
        with db.session() as session:
            queue.complete(session, first)
        raise AssertionError("a worker that lost its lease completed the job")
    except LeaseLostError:
        pass
    assert not queue.heartbeat(first)
    with db.session() as session:
        job = session.get(Job, first.id)
        assert job is not None and job.state == "done"
        reasons = session.scalars(select(JobFailure.reason)).all()
        assert reasons == ["lease of worker slow expired (worker died or stalled)"]


def test_heartbeat_keeps_the_lease(db: Database) -> None:
    queue = JobQueue(db, lease_seconds=0.5)
    fill(db, queue, 1)
    claim = queue.claim("w")
    assert claim is not None
    for _ in range(4):
        time.sleep(0.2)
        assert queue.heartbeat(claim)
    assert queue.claim("other") is None


def test_failures_retry_with_backoff_then_fail_for_good(db: Database) -> None:
    queue = JobQueue(db, max_attempts=2, backoff=Backoff(base=0.01))
    fill(db, queue, 1)
    claim = queue.claim("w")
    assert claim is not None
    assert queue.fail(claim, "trivy exited with 1") == "queued"
    with db.session() as session:
        job = session.get(Job, claim.id)
        assert job is not None and job.run_after > job.updated_at  # retried later, not at once
    time.sleep(0.05)
    again = queue.claim("w")
    assert again is not None and again.attempt == 2
    assert queue.fail(again, "trivy exited with 1 again") == "failed"
    assert queue.claim("w") is None
    with db.session() as session:
        job = session.get(Job, claim.id)
        assert job is not None
        assert (job.state, job.last_error) == ("failed", "trivy exited with 1 again")
        assert [f.reason for f in job.failures] == [
            "trivy exited with 1",
            "trivy exited with 1 again",
        ]


def test_a_job_whose_lease_expired_too_often_fails(db: Database) -> None:
    queue = JobQueue(db, max_attempts=1, lease_seconds=60)
    fill(db, queue, 1)
    claim = queue.claim("dead")
    assert claim is not None
    with db.session() as session:
        session.execute(update(Job).values(lease_until=utcnow()))
    assert queue.claim("w") is None
    with db.session() as session:
        assert session.scalars(select(Job.state)).one() == "failed"


def test_non_retryable_failure_is_final(db: Database) -> None:
    queue = JobQueue(db, max_attempts=5)
    fill(db, queue, 1)
    claim = queue.claim("w")
    assert claim is not None
    assert queue.fail(claim, "integrity: digest mismatch", retry=False) == "failed"
