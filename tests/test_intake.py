"""Webhook intake against real PostgreSQL: auth, durability, dedupe, allowlist."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from supplychain.access.tokens import TokenStore
from supplychain.evidence.database import Database
from supplychain.evidence.models import AuditEntry, Job, TagEvent, WebhookDelivery
from supplychain.intake.webhooks import Intake
from supplychain.queue.jobs import JobQueue
from tests.conftest import TOKEN, make_settings

REGISTRY = "127.0.0.1:5000"
DIGEST = "sha256:" + "ab" * 32
V1 = "application/vnd.docker.distribution.events.v1+json"


def event(**target: Any) -> dict[str, Any]:
    base = {
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": DIGEST,
        "size": 1234,
        "repository": "team/app",
        "url": f"http://{REGISTRY}/v2/team/app/manifests/{DIGEST}",
        "tag": "v1",
    }
    base.update(target)
    return {
        "id": "evt-1",
        "timestamp": "2026-11-23T10:00:00Z",
        "action": "push",
        "target": base,
        "request": {
            "id": "r1",
            "addr": "127.0.0.1:4444",
            "host": REGISTRY,
            "method": "PUT",
            "useragent": "skopeo",
        },
        "actor": {},
        "source": {"addr": "host:5000", "instanceID": "x"},
    }


def envelope(*events: dict[str, Any]) -> bytes:
    return json.dumps({"events": list(events)}).encode()


@pytest.fixture
def intake(db: Database, tmp_path: Path, pg_url: str) -> Intake:
    settings = make_settings(tmp_path, pg_url, registries=REGISTRY)
    return Intake(db, JobQueue(db), settings, TokenStore(db, None))


def headers(token: str | None = TOKEN) -> dict[str, str]:
    result = {"content-type": V1}
    if token is not None:
        result["authorization"] = f"Bearer {token}"
    return result


def count(db: Database, model: type) -> int:
    with db.session() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


@pytest.mark.parametrize("token", [None, "wrong-token-0123456789", TOKEN[:-1]])
def test_missing_or_wrong_token_is_401_and_nothing_is_stored(
    intake: Intake, db: Database, token: str | None
) -> None:
    result = intake.receive("distribution", headers(token), envelope(event()))
    assert result.status == 401
    assert count(db, WebhookDelivery) == 0
    assert count(db, Job) == 0


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (b"{not json", "not JSON"),
        (b'{"events": 3}', "envelope"),
        (envelope(event(digest="sha256:short")), "digest must be sha256"),
        (envelope(event(repository="../../etc")), "repository"),
        (envelope(event(repository="team/app\n")), "control character U+000A"),
        (envelope(event(tag="v1\u202e")), "bidirectional control U+202E"),
        (envelope(event(repository="team/app\u0000")), "control character U+0000"),
    ],
)
def test_malformed_body_is_400_and_kept_for_audit(
    intake: Intake, db: Database, body: bytes, why: str
) -> None:
    result = intake.receive("distribution", headers(), body)
    assert result.status == 400
    assert why in result.message
    assert count(db, Job) == 0
    with db.session() as session:
        delivery = session.scalars(select(WebhookDelivery)).one()
        assert delivery.outcome == "malformed"
        assert delivery.body == body


def test_push_is_stored_queued_and_its_tag_recorded(intake: Intake, db: Database) -> None:
    result = intake.receive("distribution", headers(), envelope(event()), "10.0.0.1")
    assert (result.status, result.accepted) == (202, 1)
    with db.session() as session:
        job = session.scalars(select(Job)).one()
        assert (job.kind, job.host, job.repository, job.digest, job.state) == (
            "image",
            REGISTRY,
            "team/app",
            DIGEST,
            "queued",
        )
        tag = session.scalars(select(TagEvent)).one()
        assert (tag.tag, tag.digest, tag.superseded_at) == ("v1", DIGEST, None)
        delivery = session.scalars(select(WebhookDelivery)).one()
        assert (
            delivery.authenticated and delivery.outcome == "accepted" and delivery.jobs_created == 1
        )


def test_blob_and_pull_events_are_dropped(intake: Intake, db: Database) -> None:
    blob = {**event(mediaType="application/vnd.oci.image.layer.v1.tar+gzip"), "id": "b1"}
    pull = {**event(), "id": "p1", "action": "pull"}
    result = intake.receive("distribution", headers(), envelope(blob, pull))
    assert (result.status, result.accepted) == (202, 0)
    assert count(db, Job) == 0


def test_repeated_delivery_makes_no_second_job(intake: Intake, db: Database) -> None:
    body = envelope(event())
    assert intake.receive("distribution", headers(), body).accepted == 1
    again = intake.receive("distribution", headers(), body)
    assert (again.accepted, again.duplicates) == (0, 1)
    other_id_same_digest = intake.receive(
        "distribution", headers(), envelope({**event(), "id": "evt-2"})
    )
    assert (other_id_same_digest.accepted, other_id_same_digest.duplicates) == (0, 1)
    assert count(db, Job) == 1
    assert count(db, WebhookDelivery) == 3


def test_many_events_in_one_envelope(intake: Intake, db: Database) -> None:
    events = [{**event(digest="sha256:" + f"{i:02x}" * 32), "id": f"e{i}"} for i in range(5)]
    result = intake.receive("distribution", headers(), envelope(*events))
    assert result.accepted == 5
    assert count(db, Job) == 5


def test_index_push_becomes_an_index_job(intake: Intake, db: Database) -> None:
    index = event(mediaType="application/vnd.oci.image.index.v1+json")
    assert intake.receive("distribution", headers(), envelope(index)).accepted == 1
    with db.session() as session:
        assert session.scalars(select(Job.kind)).one() == "index"


def test_host_outside_the_allowlist_is_refused_and_nothing_queued(
    intake: Intake, db: Database
) -> None:
    evil = event(url=f"http://169.254.169.254/v2/team/app/manifests/{DIGEST}")
    evil["request"]["host"] = "169.254.169.254"
    result = intake.receive("distribution", headers(), envelope(evil))
    assert result.status == 202
    assert result.accepted == 0
    assert "not in SUPPLYCHAIN_REGISTRIES" in result.refused[0]
    assert count(db, Job) == 0
    with db.session() as session:
        assert session.scalars(select(WebhookDelivery.outcome)).one() == "refused"
        assert session.scalars(select(AuditEntry.action)).all() == ["webhook.refused"]


def test_webhooks_are_refused_when_no_credential_is_configured(
    db: Database, tmp_path: Path, pg_url: str
) -> None:
    settings = make_settings(tmp_path, pg_url, registries=REGISTRY, webhook_token="")
    result = Intake(db, JobQueue(db), settings, TokenStore(db, None)).receive(
        "distribution", headers(), envelope(event())
    )
    assert result.status == 401
    assert "tokens create --role webhook --source distribution" in result.message
    assert count(db, WebhookDelivery) == 0
