"""A worker killed mid-job: the job is claimed again when its lease runs out and finishes once."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select

from supplychain.evidence.database import Database
from supplychain.evidence.models import Job, JobFailure, Scan, Verdict
from supplychain.interface import ImageTarget
from supplychain.queue.jobs import JobQueue
from tests.conftest import new_database
from tests.support import images
from tests.support.advisories import URLLIB3_HIGH
from tests.support.registry import Registry
from tests.support.service import Process, service_env, wait_for
from tests.support.tools import trivy
from tests.support.trivydb import build_trivy_db

pytestmark = pytest.mark.e2e


def test_killed_worker_job_finishes_on_next_claim_once(tmp_path: Path) -> None:
    real_trivy = trivy()
    marker = tmp_path / "trivy-started"
    slow = tmp_path / "slow-trivy"
    slow.write_text(f'#!/bin/sh\ntouch "{marker}"\nsleep 60\nexec "{real_trivy}" "$@"\n')
    slow.chmod(0o755)
    build_trivy_db(
        tmp_path / "trivy",
        [URLLIB3_HIGH],
    )
    layout = images.tiny_layout()
    with new_database() as url, Registry(tmp_path / "registry") as registry:
        digest = images.push(layout, "tiny", f"{registry.host}/team/tiny:v1")
        db = Database(url)
        with db.session() as session:
            JobQueue(db).enqueue(
                session, "image", ImageTarget(registry.host, "team/tiny", digest, "v1")
            )
        env = service_env(
            {
                "SUPPLYCHAIN_DATA_DIR": str(tmp_path / "data"),
                "SUPPLYCHAIN_DATABASE_URL": url,
                "SUPPLYCHAIN_REGISTRIES": registry.host,
                "SUPPLYCHAIN_TRIVY_CACHE_DIR": str(tmp_path / "trivy"),
                "SUPPLYCHAIN_TRIVY_OFFLINE": "true",
                "SUPPLYCHAIN_JOB_LEASE_SECONDS": "2",
            }
        )
        doomed = Process(
            ["worker"], {**env, "SUPPLYCHAIN_TRIVY_PATH": str(slow)}, tmp_path / "a.log"
        )
        wait_for(
            marker.exists, 60, lambda: f"worker A never reached trivy:\n{doomed.log()[-3000:]}"
        )
        doomed.kill()
        survivor = Process(["worker"], env, tmp_path / "b.log")
        try:

            def done() -> bool:
                with db.session() as session:
                    return session.scalar(select(Job.state)) in ("done", "failed")

            wait_for(done, 120, lambda: f"job not finished:\n{survivor.log()[-3000:]}")
        finally:
            survivor.stop()
        with db.session() as session:
            job = session.scalars(select(Job)).one()
            assert (job.state, job.attempts) == ("done", 2)
            failures = session.scalars(select(JobFailure)).all()
            assert len(failures) == 1 and "lease" in failures[0].reason and failures[0].attempt == 1
            assert session.scalar(select(func.count()).select_from(Scan)) == 1
            assert session.scalar(select(func.count()).select_from(Verdict)) == 1
            assert session.scalar(select(Scan.job_id)) == job.id
        db.dispose()
