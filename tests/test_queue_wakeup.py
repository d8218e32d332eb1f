"""An idle worker claims a job enqueued in its process at once, not after its idle sleep.

Real parts: the worker loop, the queue on PostgreSQL and SQLite. The job's registry is a closed
loopback port: the attempt is deferred, which does not matter here, only when it was claimed.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

from sqlalchemy import select

from supplychain.evidence.database import Database
from supplychain.evidence.models import JobClaim
from supplychain.interface import ImageTarget
from supplychain.service import build_service
from tests.conftest import make_settings
from tests.support.registry import free_port
from tests.test_queue_claims import any_db

__all__ = ["any_db"]  # the PostgreSQL / SQLite fixture

IDLE = 30.0


def claimed(db: Database) -> bool:
    with db.session() as session:
        return session.scalars(select(JobClaim)).first() is not None


def test_an_idle_worker_wakes_when_a_job_is_enqueued(any_db: Database, tmp_path: Path) -> None:
    host = f"127.0.0.1:{free_port()}"  # nothing listens: the pull fails fast, deferred
    service = build_service(make_settings(tmp_path, any_db.url, registries=host))
    worker = service.worker("idle")
    stop = threading.Event()
    thread = threading.Thread(target=worker.run, args=(stop, IDLE), daemon=True)
    thread.start()
    try:
        time.sleep(1.0)  # the worker found nothing and sleeps for IDLE seconds
        with service.db.session() as session:  # rolled back: nothing is queued
            service.queue.enqueue(
                session, "image", ImageTarget(host, "team/app", "sha256:" + "1" * 64)
            )
            session.rollback()
        target = ImageTarget(host, "team/app", "sha256:" + "ab" * 32, "v1")
        start = time.monotonic()
        with service.db.session() as session:
            assert service.queue.enqueue(session, "image", target)
        while not claimed(any_db) and time.monotonic() - start < IDLE:
            time.sleep(0.02)
        waited = time.monotonic() - start
        assert claimed(any_db)
        assert waited < 5.0, f"claimed after {waited:.1f}s: the worker slept its idle time"
    finally:
        stop.set()
        service.queue.wakeup.notify()
        thread.join(30)
        service.db.dispose()
    assert not thread.is_alive()
