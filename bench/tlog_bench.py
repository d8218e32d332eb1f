"""What the tamper-evident log costs the gate, and how long verify and checkpoint take.

Measures, on SQLite and on PostgreSQL, the transaction the gate records each answer in (a
verdict row and its audit row, ``Gate._record``'s writes) with the log's append and, as the
baseline, on a twin database whose ``Database`` has the log's session hook removed (this
benchmark only), calls interleaved: single-threaded latency (median, p90), and the throughput of
8 threads writing one answer, or a batch of 20 answers, a transaction (as batched gate writes
do). Then ``audit checkpoint`` and ``audit verify`` over the log that made.

Usage: python bench/tlog_bench.py [--runs N]   (prints a Markdown table)
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import event

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from supplychain.evidence import tlog
from supplychain.evidence.database import Database
from supplychain.evidence.dbutil import audit
from supplychain.evidence.models import utcnow
from supplychain.evidence.recorder import record_verdict
from supplychain.evidence.tlogcheck import make_checkpoint, verify
from supplychain.interface import Verdict
from supplychain.signatures.signer import KeyFileSigner
from tests.conftest import new_database

THREADS = 8
BATCH = 20


def unlogged(url: str) -> Database:
    """A Database without the log's hook: the baseline (a twin database, same schema)."""
    db = Database(url)
    for factory in (db._sessions, db._write_sessions):
        event.remove(factory, "after_flush", tlog._after_flush)
        event.remove(factory, "before_commit", tlog._before_commit)
        event.remove(factory, "after_rollback", tlog._after_rollback)
    return db


def answer(db: Database, batch: int = 1) -> None:
    """The gate's recording transaction: a verdict and an audit row per answer."""
    verdict = Verdict("deny", ("bench",), "default", "sha256:" + "b" * 64, utcnow())
    with db.session(write=True) as session:
        for _ in range(batch):
            record_verdict(session, verdict, image=None, scan_id=None, context="gate")
            audit(session, "gate", "gate.answered", "x", decision="deny")


def latency(call: Callable[[], None], runs: int) -> list[float]:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        call()
        samples.append((time.perf_counter() - start) * 1000)
    return samples


def throughput(db: Database, per_thread: int, batch: int = 1) -> float:
    """Answers recorded per second by THREADS threads, ``batch`` answers per transaction."""
    start = time.perf_counter()
    with ThreadPoolExecutor(THREADS) as pool:
        list(pool.map(lambda _: [answer(db, batch) for _ in range(per_thread)], range(THREADS)))
    return THREADS * per_thread * batch / (time.perf_counter() - start)


def p90(samples: list[float]) -> float:
    return statistics.quantiles(samples, n=10)[-1]


def measure(name: str, url: str, twin: str, runs: int, rows: list[str]) -> None:
    logged, plain = Database(url), unlogged(twin)
    with_log: list[float] = []
    without: list[float] = []
    for _ in range(runs):  # interleaved so that machine load hits both alike
        with_log += latency(lambda: answer(logged), 1)
        without += latency(lambda: answer(plain), 1)
    for label, samples in (("with the log", with_log), ("without (baseline)", without)):
        rows.append(
            f"| {name} | gate answer transaction, {label} | {runs} | "
            f"{statistics.median(samples):.2f} | {p90(samples):.2f} |"
        )
    per_thread = max(runs // 2, 10)
    rows.append(
        f"| {name} | {THREADS} threads, with the log | {THREADS * per_thread} | "
        f"{throughput(logged, per_thread):.0f}/s | |"
    )
    rows.append(
        f"| {name} | {THREADS} threads, without (baseline) | {THREADS * per_thread} | "
        f"{throughput(plain, per_thread):.0f}/s | |"
    )
    for batch in (BATCH,):
        for label, db in (("with the log", logged), ("without (baseline)", plain)):
            rate = throughput(db, per_thread // 2, batch)
            rows.append(
                f"| {name} | {THREADS} threads, {batch} answers a transaction, {label} | "
                f"{THREADS * (per_thread // 2) * batch} | {rate:.0f}/s | |"
            )
    signer = KeyFileSigner(ec.generate_private_key(ec.SECP256R1()))
    start = time.perf_counter()
    make_checkpoint(logged, signer, "bench.example/supplychain")
    signed = (time.perf_counter() - start) * 1000
    start = time.perf_counter()
    report = verify(logged, signer.public_key)
    checked = (time.perf_counter() - start) * 1000
    assert report.problems == (), report.problems[:3]
    rows.append(f"| {name} | `audit checkpoint` over {report.leaves} leaves | 1 | {signed:.0f} | |")
    rows.append(
        f"| {name} | `audit verify`, {report.leaves} leaves, {report.rows} rows | 1 | "
        f"{checked:.0f} | |"
    )
    logged.dispose()
    plain.dispose()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=200)
    args = parser.parse_args()
    rows = [
        "| database | measurement | n | median (ms) or rate | p90 (ms) |",
        "|---|---|---|---|---|",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        url, twin = f"sqlite:///{tmp}/bench.db", f"sqlite:///{tmp}/twin.db"
        Database(url).upgrade()
        Database(twin).upgrade()
        measure("SQLite", url, twin, args.runs, rows)
    with new_database() as url, new_database() as twin:
        measure("PostgreSQL", url, twin, args.runs, rows)
    print("\n".join(rows))


if __name__ == "__main__":
    main()
