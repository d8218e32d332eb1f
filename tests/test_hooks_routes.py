"""Every webhook source through the app's real route, on PostgreSQL and SQLite.

A real distribution registry holds the image that tag-only events (Docker Hub, Quay) resolve to.
SNS and Google's OIDC issuer are unreachable from a test: :mod:`tests.support.cloud_fakes` stands
in for them (a fake SNS certificate host with its own self-signed CA key, a fake issuer's JWKS).
Each source: a valid delivery becomes one job; the same delivery again makes none; a forged or
missing signature makes none (401, nothing stored); a host outside the allowlist makes none and
says why; ignored deliveries say why in the answer and the audit log.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from registry_hooks import DockerHubAdapter
from registry_hooks.oidc import static_key_set
from supplychain.api.app import create_app
from supplychain.config import WEBHOOK_KEY_SOURCES, ConfigError
from supplychain.evidence.database import Database
from supplychain.evidence.models import AuditEntry, Job, WebhookDelivery
from supplychain.intake.sources import SIGNED_BY_SENDER, build_sources
from supplychain.service import Service, build_service
from tests.conftest import TOKEN, make_settings
from tests.support.cloud_fakes import TOPIC, FakeOidcIssuer, FakeSnsCertificateServer
from tests.support.cloud_fakes import sns_notification as sns_message
from tests.support.registry import Registry

ECR_HOST = "123456789012.dkr.ecr.us-west-2.amazonaws.com"
GAR_HOST = "us-west1-docker.pkg.dev"
AUDIENCE = "https://scanner.example.com/v1/hooks/gar"
ACCOUNT = "pubsub-push@project.iam.gserviceaccount.com"
OUTSIDE = "evil.example.com"
KEYS = {s: f"{s}-secret-0123456789abcdef" for s in ("github", "harbor", "gitlab", "quay", "acr")}
KEYS["dockerhub"] = "dockerhub-secret-0123456789"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


@dataclass
class World:
    """The running pieces one test talks to."""

    client: TestClient
    service: Service
    registry: str
    digest: str
    """Digest of ``team/app:v1`` in the registry."""
    sns: FakeSnsCertificateServer
    oidc: FakeOidcIssuer
    confirmed: list[str]


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Registry, str]]:
    with Registry(tmp_path_factory.mktemp("registry")) as reg:
        config = reg.push_blob("team/app", b"{}")
        manifest = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **config},
            "layers": [],
        }
        yield reg, reg.put_manifest("team/app", "v1", manifest, OCI_MANIFEST)


@pytest.fixture(params=["postgresql", "sqlite"])
def world(
    request: pytest.FixtureRequest,
    registry: tuple[Registry, str],
    tmp_path: Path,
    pg_url: str,
) -> Iterator[World]:
    reg, digest = registry
    if request.param == "postgresql":
        request.getfixturevalue("db")  # emptied
        url = pg_url
    else:
        url = f"sqlite:///{tmp_path / 'intake.db'}"
        Database(url).upgrade()
    settings = make_settings(
        tmp_path,
        url,
        registries=",".join([reg.host, ECR_HOST, GAR_HOST]),
        webhook_keys=",".join(f"{s}={k}" for s, k in KEYS.items()),
        dockerhub_registry=reg.host,
        sns_topic_arns=TOPIC,
        gar_audience=AUDIENCE,
        gar_service_accounts=ACCOUNT,
    )
    service = build_service(settings)
    sns, oidc = FakeSnsCertificateServer(), FakeOidcIssuer()
    confirmed: list[str] = []
    service.intake.sources = build_sources(
        settings,
        sns_fetcher=sns.fetch,
        sns_confirm=confirmed.append,
        gar_keys=static_key_set(oidc.jwks),
    )
    with TestClient(create_app(service, workers=0)) as client:
        yield World(client, service, reg.host, digest, sns, oidc, confirmed)
    service.db.dispose()


Request = tuple[bytes, dict[str, str], str]
"""Body, headers, query string."""


def _json(value: Any) -> bytes:
    return json.dumps(value).encode()


def distribution(w: World, host: str, secret: str = TOKEN, name: str = "distribution") -> Request:
    event = {
        "id": str(uuid.uuid4()),
        "timestamp": "2026-11-23T10:00:00Z",
        "action": "push",
        "target": {
            "mediaType": OCI_MANIFEST,
            "digest": w.digest,
            "repository": "team/app",
            "url": f"http://{host}/v2/team/app/manifests/{w.digest}",
            "tag": "v1",
        },
        "request": {"host": host},
    }
    headers = {"Authorization": f"Bearer {secret}", "Content-Type": "application/json"}
    return _json({"events": [event]}), headers, ""


def gitlab(w: World, host: str, secret: str = KEYS["gitlab"]) -> Request:
    body, _, _ = distribution(w, host)
    return body, {"X-Gitlab-Token": secret}, ""


def acr(w: World, host: str, secret: str = KEYS["acr"]) -> Request:
    body, _, _ = distribution(w, host)
    return _json(json.loads(body)["events"][0]), {"Authorization": f"Bearer {secret}"}, ""


def harbor(
    w: World, host: str, secret: str = KEYS["harbor"], kind: str = "PUSH_ARTIFACT"
) -> Request:
    payload = {
        "type": kind,
        "occur_at": int(datetime.now(UTC).timestamp()),
        "operator": "admin",
        "event_data": {
            "resources": [{"digest": w.digest, "tag": "v1", "resource_url": f"{host}/team/app:v1"}],
            "repository": {"repo_full_name": "team/app", "name": "app", "namespace": "team"},
        },
    }
    return _json(payload), {"Authorization": f"Bearer {secret}"}, ""


def github(w: World, host: str, secret: str = KEYS["github"]) -> Request:
    payload = {
        "action": "published",
        "package": {
            "package_type": "CONTAINER",
            "updated_at": "2026-11-23T10:00:00Z",
            "package_version": {
                "id": 1,
                "version": w.digest,
                "package_url": f"{host}/team/app:v1",
                "container_metadata": {"tag": {"name": "v1", "digest": w.digest}},
            },
        },
        "sender": {"login": "octocat"},
    }
    body = _json(payload)
    signature = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    headers = {
        "X-GitHub-Event": "package",
        "X-GitHub-Delivery": str(uuid.uuid4()),
        "X-Hub-Signature-256": signature,
    }
    return body, headers, ""


def quay(w: World, host: str, secret: str = KEYS["quay"]) -> Request:
    payload = {
        "name": "app",
        "repository": "team/app",
        "namespace": "team",
        "docker_url": f"{host}/team/app",
        "updated_tags": ["v1"],
    }
    return _json(payload), {}, f"?token={secret}"


def dockerhub(w: World, host: str, secret: str = KEYS["dockerhub"]) -> Request:
    payload = {
        "callback_url": "https://registry.hub.docker.com/u/team/app/hook/x/",
        "push_data": {"pushed_at": 1764400000, "pusher": "me", "tag": "v1"},
        "repository": {"repo_name": "team/app", "namespace": "team", "name": "app"},
    }
    return _json(payload), {}, f"?token={secret}"


def ecr_body(w: World, host: str, *, when: datetime | None = None, digest: str = "") -> bytes:
    account = host.split(".")[0] if host.endswith(".amazonaws.com") else "999999999999"
    event = {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "ECR Image Action",
        "source": "aws.ecr",
        "account": account,
        "time": "2026-11-23T10:00:00Z",
        "region": "us-west-2",
        "resources": [],
        "detail": {
            "result": "SUCCESS",
            "repository-name": "team/app",
            "image-digest": digest or w.digest,
            "action-type": "PUSH",
            "image-tag": "v1",
        },
    }
    return _json(w.sns.sign(sns_message(json.dumps(event), timestamp=when)))


def ecr(w: World, host: str) -> Request:
    return ecr_body(w, host), {"x-amz-sns-message-type": "Notification"}, ""


def gar(w: World, host: str, audience: str = AUDIENCE) -> Request:
    notice = {"action": "INSERT", "digest": f"{host}/team/app@{w.digest}"}
    payload = {
        "message": {
            "data": base64.b64encode(_json(notice)).decode(),
            "messageId": str(uuid.uuid4().int)[:16],
            "publishTime": "2026-11-23T10:00:00.123Z",
        },
        "subscription": "projects/p/subscriptions/scanner",
    }
    return _json(payload), {"Authorization": f"Bearer {w.oidc.token(aud=audience)}"}, ""


SOURCES: dict[str, Callable[[World, str], Request]] = {
    "distribution": distribution,
    "gitlab": gitlab,
    "acr": acr,
    "harbor": harbor,
    "github": github,
    "quay": quay,
    "dockerhub": dockerhub,
    "ecr": ecr,
    "gar": gar,
}
HOSTS = {"ecr": ECR_HOST, "gar": GAR_HOST}


def forged(source: str, w: World, host: str) -> Request:
    """The same delivery with a wrong secret, a tampered signature or no credential."""
    body, headers, query = SOURCES[source](w, host)
    if source in ("quay", "dockerhub"):
        return body, headers, "?token=wrong-secret-0123456789"
    if source == "github":
        return body + b" ", headers, query  # the HMAC covered other bytes
    if source == "ecr":
        message = json.loads(body)
        message["Message"] = message["Message"].replace("team/app", "team/other")
        return _json(message), headers, query
    if source == "gar":
        return gar(w, host, audience="https://someone-else.example.com/")  # another audience
    return (
        body,
        {k: v for k, v in headers.items() if k.lower() not in ("authorization", "x-gitlab-token")},
        query,
    )


def post(w: World, source: str, request: Request) -> Any:
    body, headers, query = request
    return w.client.post(f"/v1/hooks/{source}{query}", content=body, headers=headers)


def count(w: World, model: type) -> int:
    with w.service.db.session() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def actions(w: World) -> list[tuple[str, str | None]]:
    with w.service.db.session() as session:
        return [(a, s) for a, s in session.execute(select(AuditEntry.action, AuditEntry.subject))]


@pytest.mark.parametrize("source", sorted(SOURCES))
def test_a_valid_delivery_becomes_one_job_and_its_replay_none(world: World, source: str) -> None:
    host = HOSTS.get(source, world.registry)
    request = SOURCES[source](world, host)
    answer = post(world, source, request)
    assert answer.status_code == 202, answer.text
    assert answer.json()["accepted"] == 1, answer.text
    with world.service.db.session() as session:
        jobs = session.execute(select(Job.host, Job.repository, Job.digest)).all()
    assert jobs == [(host, "team/app", world.digest)]
    again = post(world, source, request)  # a replay of the very same request
    assert again.status_code == 202 and again.json()["accepted"] == 0, again.text
    assert count(world, Job) == 1


@pytest.mark.parametrize("source", sorted(SOURCES))
def test_forged_or_missing_credentials_store_nothing(world: World, source: str) -> None:
    host = HOSTS.get(source, world.registry)
    answer = post(world, source, forged(source, world, host))
    assert answer.status_code == 401, answer.text
    assert count(world, WebhookDelivery) == 0 and count(world, Job) == 0


@pytest.mark.parametrize("source", sorted(SOURCES))
def test_a_host_outside_the_allowlist_makes_no_job_and_says_why(world: World, source: str) -> None:
    host = {"ecr": "999999999999.dkr.ecr.us-west-2.amazonaws.com"}.get(source, OUTSIDE)
    if source == "dockerhub":  # Docker Hub names no host: its events name the configured one
        world.service.intake.sources.adapters["dockerhub"] = DockerHubAdapter(OUTSIDE)
    answer = post(world, source, SOURCES[source](world, host))
    assert answer.status_code == 202, answer.text
    (reason,) = answer.json()["refused"]
    assert "is not in SUPPLYCHAIN_REGISTRIES" in reason
    assert count(world, Job) == 0
    assert ("webhook.refused", f"{host}/team/app") in actions(world)


def test_a_replayed_sns_message_past_the_window_is_refused(world: World) -> None:
    old = datetime.now(UTC) - timedelta(hours=2)
    body = ecr_body(world, ECR_HOST, when=old)
    answer = world.client.post("/v1/hooks/ecr", content=body)
    assert answer.status_code == 401
    assert count(world, Job) == 0


def test_sns_subscription_is_confirmed_only_when_signed(world: World) -> None:
    url = (
        "https://sns.us-west-2.amazonaws.com/?Action=ConfirmSubscription"
        f"&TopicArn={TOPIC}&Token=2336412f37fb"
    )
    message = {
        "Type": "SubscriptionConfirmation",
        "MessageId": str(uuid.uuid4()),
        "Token": "2336412f37fb",
        "TopicArn": TOPIC,
        "Message": "You have chosen to subscribe to the topic.",
        "SubscribeURL": url,
        "Timestamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z"),
    }
    unsigned = {**message, "SignatureVersion": "2", "Signature": "AAAA"}
    assert world.client.post("/v1/hooks/ecr", content=_json(unsigned)).status_code == 401
    assert world.confirmed == []
    evil = world.sns.sign({**message, "SubscribeURL": "https://evil.example.com/?x=1"})
    assert world.client.post("/v1/hooks/ecr", content=_json(evil)).status_code == 400
    assert world.confirmed == []
    answer = world.client.post("/v1/hooks/ecr", content=_json(world.sns.sign(message)))
    assert answer.status_code == 202, answer.text
    assert world.confirmed == [url]
    assert "SNS subscription confirmed" in answer.json()["ignored"]
    assert count(world, Job) == 0 and ("webhook.ignored", "ecr") in actions(world)
    assert world.sns.requested and set(world.sns.requested) == {
        json.loads(_json(world.sns.sign(message)))["SigningCertURL"]
    }


def test_deletions_are_recorded_never_scanned(world: World) -> None:
    answer = post(world, "harbor", harbor(world, world.registry, kind="DELETE_ARTIFACT"))
    assert answer.status_code == 202 and answer.json()["deleted"] == 1, answer.text
    assert count(world, Job) == 0
    assert ("image.deleted", f"{world.registry}/team/app@{world.digest}") in actions(world)
    with world.service.db.session() as session:
        assert session.scalar(select(WebhookDelivery.outcome)) == "accepted"


@pytest.mark.parametrize(
    ("source", "body", "headers", "why"),
    [
        ("harbor", {"type": "PULL_ARTIFACT"}, {}, "is not an artifact push or delete"),
        ("quay", {"build_id": "x"}, {}, "not a repository push"),
        ("gitlab", {"object_kind": "push"}, {"X-Gitlab-Event": "Push Hook"}, "no container"),
        ("distribution", {"events": []}, {}, "holds no events"),
    ],
)
def test_ignored_deliveries_say_why_in_the_answer_and_the_audit_log(
    world: World, source: str, body: dict[str, Any], headers: dict[str, str], why: str
) -> None:
    secret = TOKEN if source == "distribution" else KEYS[source]
    auth = {"Authorization": f"Bearer {secret}", **headers}
    answer = world.client.post(f"/v1/hooks/{source}", content=_json(body), headers=auth)
    assert answer.status_code == 202, answer.text
    (reason,) = answer.json()["ignored"]
    assert why in reason
    with world.service.db.session() as session:
        entry = session.scalars(select(AuditEntry).where(AuditEntry.action == "webhook.ignored"))
        assert [e.details["reasons"] for e in entry] == [[reason]]
        assert session.scalar(select(WebhookDelivery.outcome)) == "ignored"


def test_an_unresolvable_tag_makes_no_job_and_says_why(world: World) -> None:
    body = _json({"docker_url": f"{world.registry}/team/app", "updated_tags": ["missing"]})
    answer = world.client.post(f"/v1/hooks/quay?token={KEYS['quay']}", content=body)
    assert answer.status_code == 202
    (reason,) = answer.json()["refused"]
    assert "cannot resolve the tag" in reason and count(world, Job) == 0


def test_every_source_takes_a_key_or_a_senders_signature(world: World) -> None:
    adapters = set(world.service.intake.sources.adapters)
    assert adapters - SIGNED_BY_SENDER == WEBHOOK_KEY_SOURCES
    assert adapters == set(SOURCES)
    with pytest.raises(ConfigError, match="'harbour' is not one of"):
        make_settings(Path("/tmp"), "sqlite://", webhook_keys="harbour=0123456789abcdefgh")


def test_a_signature_tag_is_ignored_without_a_fetch(world: World) -> None:
    tag = "sha256-" + "ab" * 32 + ".sig"
    body = _json({"docker_url": f"{world.registry}/team/app", "updated_tags": [tag]})
    answer = world.client.post(f"/v1/hooks/quay?token={KEYS['quay']}", content=body)
    assert answer.status_code == 202, answer.text
    (reason,) = answer.json()["ignored"]
    assert "signature or attestation tag" in reason and count(world, Job) == 0
