"""Queue throughput and exclusivity: worker processes claiming and completing no-op jobs.

Run: ``python3 bench/queue_bench.py --jobs 2000``. 8 claimer processes on PostgreSQL and 2 on
one SQLite file (the embedded default), each claiming and completing jobs until the queue is
empty (``tests/support/claimers.py``: the real :class:`~supplychain.queue.jobs.JobQueue`, with
its claims log). Reports jobs per second and double claims counted from ``job_claims`` (must be
0). There is no Trivy equivalent of a job queue, so no ratio: the figure to compare is the
pipeline's own time per image (seconds), which this overhead must stay far below.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from supplychain.evidence.database import Database
from tests.conftest import new_database
from tests.support.claimers import done_jobs, double_claims, fill, run_claimers


def measure(url: str, processes: int, jobs: int) -> dict[str, float]:
    db = Database(url)
    fill(db, jobs)
    seconds, results = run_claimers(url, processes)
    row = {
        "processes": processes,
        "jobs": jobs,
        "seconds": round(seconds, 2),
        "jobs_per_second": round(jobs / seconds, 1),
        "claims": sum(r["claimed"] for r in results),
        "double_claims": double_claims(db),
        "done": done_jobs(db),
    }
    db.dispose()
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=2000)
    args = parser.parse_args()
    rows = []
    with new_database() as url:
        rows.append(("PostgreSQL", measure(url, 8, args.jobs)))
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'queue.db'}"
        Database(url).upgrade()
        rows.append(("SQLite", measure(url, 2, args.jobs)))
    print("| database | processes | jobs | seconds | jobs/s | claims | double claims |")
    print("|---|---|---|---|---|---|---|")
    for name, r in rows:
        print(
            f"| {name} | {r['processes']} | {r['jobs']} | {r['seconds']} | "
            f"{r['jobs_per_second']} | {r['claims']} | {r['double_claims']} |"
        )
        if r["double_claims"] or r["done"] != r["jobs"]:
            raise SystemExit(f"{name}: double claims or unfinished jobs: {r}")


if __name__ == "__main__":
    main()
