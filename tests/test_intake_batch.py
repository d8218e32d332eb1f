"""Group commit of webhook deliveries on PostgreSQL and SQLite: shared commits, nothing lost,
a digest named twice in one batch queued once, a failing item failing alone."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from supplychain.access.tokens import TokenStore
from supplychain.evidence.database import Database
from supplychain.evidence.dbutil import audit
from supplychain.evidence.groupcommit import GroupCommit
from supplychain.evidence.models import AuditEntry, Job, SeenEvent, WebhookDelivery
from supplychain.evidence.tlogcheck import verify
from supplychain.intake.record import IntakeResult, Received, record_batch
from supplychain.intake.webhooks import Intake
from supplychain.queue.jobs import JobQueue
from tests.conftest import TOKEN, make_settings

REGISTRY = "registry.example:5000"
HEADERS = {"authorization": f"Bearer {TOKEN}", "content-type": "application/json"}


@pytest.fixture(params=["postgresql", "sqlite"])
def database(request: pytest.FixtureRequest, tmp_path: Path, pg_url: str) -> Iterator[str]:
    if request.param == "postgresql":
        request.getfixturevalue("db")  # emptied
        yield pg_url
    else:
        url = f"sqlite:///{tmp_path / 'batch.db'}"
        Database(url).upgrade()
        yield url


def envelope(number: int, digest_number: int | None = None) -> bytes:
    digest = f"sha256:{(digest_number if digest_number is not None else number):064x}"
    event = {
        "id": f"event-{number}",
        "action": "push",
        "target": {
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": digest,
            "repository": "team/app",
            "tag": f"v{number}",
        },
        "request": {"host": REGISTRY},
    }
    return json.dumps({"events": [event]}).encode()


def count(db: Database, model: type) -> int:
    with db.session() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def make_intake(database: str, tmp_path: Path) -> Intake:
    db = Database(database)
    settings = make_settings(tmp_path, database, registries=REGISTRY)
    return Intake(db, JobQueue(db), settings, TokenStore(db, None))


def reads(intake: Intake, bodies: list[bytes]) -> list[Received]:
    found = [intake.read("distribution", HEADERS, body, "127.0.0.1") for body in bodies]
    return [read for read in found if isinstance(read, Received)]


def test_concurrent_deliveries_share_commits_and_every_one_becomes_a_job(
    database: str, tmp_path: Path
) -> None:
    intake = make_intake(database, tmp_path)
    received = reads(intake, [envelope(n) for n in range(200)])

    async def deliver() -> list[IntakeResult]:
        return await asyncio.gather(*(intake.receive_batched(r) for r in received))

    try:
        results = asyncio.run(deliver())
        batch = intake.batch
        assert [r.accepted for r in results] == [1] * 200
        assert len({r.delivery_id for r in results}) == 200
        assert batch.units == 200 and batch.batches < 200  # commits were shared
    finally:
        intake.close()
    assert count(intake.db, Job) == 200
    assert count(intake.db, WebhookDelivery) == 200
    assert count(intake.db, SeenEvent) == 200
    # the batch's Core INSERTs (deliveries, tags, audit entries) are all in the tamper-evident log
    assert verify(intake.db, None).problems == ()


def test_a_digest_named_twice_in_one_batch_is_queued_once(database: str, tmp_path: Path) -> None:
    intake = make_intake(database, tmp_path)
    received = reads(intake, [envelope(1, 7), envelope(2, 7), envelope(1, 7)])
    with intake.db.session(write=True) as session:
        results = record_batch(session, received, intake.queue)
    assert [(r.accepted, r.duplicates) for r in results] == [(1, 0), (0, 1), (0, 1)]
    assert count(intake.db, Job) == 1
    with intake.db.session() as session:
        tags = session.execute(select(AuditEntry.subject).where(AuditEntry.action == "tag.moved"))
        assert sorted(str(t) for t in tags.scalars()) == [
            f"{REGISTRY}/team/app:v1",
            f"{REGISTRY}/team/app:v2",
        ]


def test_a_failing_item_fails_alone_and_the_others_commit(database: str) -> None:
    db = Database(database)

    def run(session: Session, items: list[str]) -> list[str]:
        for item in items:
            audit(session, "test", "batch.item", item)
            if item == "bad":
                raise ValueError("bad item")
        return items

    group: GroupCommit[Session, str, str] = GroupCommit(
        partial(db.session, write=True), run, window=0.05
    )

    async def submit() -> list[str | BaseException]:
        return await asyncio.gather(
            *(group.submit(item) for item in ("a", "bad", "c")), return_exceptions=True
        )

    try:
        outcome = asyncio.run(submit())
    finally:
        group.close()
    assert outcome[0] == "a" and outcome[2] == "c"
    assert isinstance(outcome[1], ValueError)
    with db.session() as session:
        subjects = session.scalars(
            select(AuditEntry.subject).where(AuditEntry.action == "batch.item")
        )
        assert sorted(str(s) for s in subjects) == ["a", "c"]
