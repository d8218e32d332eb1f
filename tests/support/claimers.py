"""Worker processes that claim and complete no-op jobs: the queue alone, under contention.

``python -m tests.support.claimers URL NAME`` claims until the queue stays empty, completing each
job at once, and prints ``{"claimed": n, "lost": m}``. The test and the queue benchmark start
several on one database and count double claims from ``job_claims``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from sqlalchemy import func, select

from supplychain.evidence.database import Database
from supplychain.evidence.models import Job, JobClaim
from supplychain.interface import ImageTarget
from supplychain.queue.jobs import JobQueue, LeaseLostError

__all__ = ["double_claims", "fill", "run_claimers"]


def fill(db: Database, count: int, repository: str = "bench/noop") -> None:
    """Queue ``count`` jobs with distinct digests."""
    queue = JobQueue(db)
    with db.session() as session:
        for n in range(count):
            digest = "sha256:" + f"{n:064x}"
            queue.enqueue(session, "image", ImageTarget("127.0.0.1:5000", repository, digest, None))


def double_claims(db: Database) -> int:
    """How many (job, attempt) pairs were claimed more than once."""
    pairs = (
        select(JobClaim.job_id, JobClaim.attempt)
        .group_by(JobClaim.job_id, JobClaim.attempt)
        .having(func.count() > 1)
        .subquery()
    )
    with db.session() as session:
        return session.scalar(select(func.count()).select_from(pairs)) or 0


def done_jobs(db: Database) -> int:
    """Jobs in state done."""
    with db.session() as session:
        return session.scalar(select(func.count()).where(Job.state == "done")) or 0


def run_claimers(
    url: str, processes: int, timeout: float = 600
) -> tuple[float, list[dict[str, int]]]:
    """Start ``processes`` claimers on ``url`` at once; (wall seconds, their counts)."""
    root = Path(__file__).resolve().parents[2]
    started = time.perf_counter()
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.support.claimers", url, f"claimer-{i}"],
            cwd=root,
            stdout=subprocess.PIPE,
            text=True,
        )
        for i in range(processes)
    ]
    results = []
    for proc in procs:
        out, _ = proc.communicate(timeout=timeout)
        if proc.returncode != 0:
            raise RuntimeError(f"claimer exited with {proc.returncode}")
        results.append(json.loads(out.strip().splitlines()[-1]))
    return time.perf_counter() - started, results


def main(url: str, name: str) -> None:
    db = Database(url)
    queue = JobQueue(db, lease_seconds=600)
    claimed = lost = empty = 0
    while empty < 3:
        claim = queue.claim(name)
        if claim is None:
            empty += 1
            time.sleep(0.05)
            continue
        empty = 0
        claimed += 1
        try:
            with db.session() as session:
                queue.complete(session, claim)
        except LeaseLostError:
            lost += 1
    db.dispose()
    print(json.dumps({"claimed": claimed, "lost": lost}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
