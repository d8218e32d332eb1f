"""`POST /v1/hooks/{source}` answered by the lean handler is the FastAPI route's answer.

The lean handler (:mod:`supplychain.api.leanhooks`) answers every call of the route; with it
switched off, the FastAPI route answers the same calls. Both must give the same status, JSON and
headers for each outcome a registry can meet: a valid delivery (stored, then a duplicate), one
authenticated by a ``webhook`` token or by the ``?token=`` of a source that cannot set headers,
a malformed body, a missing or wrong secret (401, audited), a body over the limit (413) and a
source that does not exist (404). The lean answers are counted per source and status, logged
and counted under the route's template, as any other call.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import prometheus_client
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from supplychain.api.app import create_app
from supplychain.evidence.database import Database
from supplychain.evidence.models import AuditEntry, Job
from supplychain.intake.webhooks import MAX_BODY
from supplychain.service import Service, build_service
from tests.conftest import TOKEN, make_settings
from tests.support.tokens import bearer

REGISTRY = "registry.lean.example:5000"
"""Allowed, never contacted: the events name their digests."""
DOWN = "127.0.0.1:9"
"""An allowed registry where nothing listens (tag-only pushes cannot be resolved)."""
QUAY_KEY = "quay-secret-0123456789abcdef"
Answer = tuple[int, dict[str, object], dict[str, str]]


@pytest.fixture
def service(db: Database, tmp_path: Path, pg_url: str) -> Service:
    settings = make_settings(
        tmp_path, pg_url, registries=f"{REGISTRY},{DOWN}", webhook_keys=f"quay={QUAY_KEY}"
    )
    return build_service(settings)


@pytest.fixture
def client(service: Service) -> Iterator[TestClient]:
    with TestClient(create_app(service, workers=0)) as client:
        yield client


@pytest.fixture
def routed(service: Service) -> TestClient:
    """The same service with the lean handlers off: FastAPI's routes answer every call."""
    return TestClient(create_app(service, workers=0, lean=False))


@pytest.fixture
def lean_answers() -> Callable[[], float]:
    """How many calls the lean handler has answered since the test began (its metric)."""
    start = _lean_count()
    return lambda: _lean_count() - start


def _lean_count() -> float:
    value = prometheus_client.REGISTRY.get_sample_value(
        "supplychain_http_lean_answers_total", {"route": "/v1/hooks/{source}"}
    )
    return value or 0.0


def _distribution(secret: str = TOKEN) -> tuple[bytes, dict[str, str]]:
    """A push of a new digest, as a distribution registry sends it."""
    event = {
        "id": str(uuid.uuid4()),
        "timestamp": "2026-11-23T10:00:00Z",
        "action": "push",
        "target": {
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": "sha256:" + uuid.uuid4().hex * 2,
            "repository": "team/app",
            "tag": "v1",
        },
        "request": {"host": REGISTRY},
    }
    headers = {"Authorization": f"Bearer {secret}", "Content-Type": "application/json"}
    return json.dumps({"events": [event]}).encode(), headers


def _post(client: TestClient, url: str, body: bytes, headers: dict[str, str]) -> Answer:
    answer = client.post(url, content=body, headers=headers)
    kept = {k: v for k, v in answer.headers.items() if k in ("content-type", "www-authenticate")}
    content = answer.json()
    if isinstance(content.get("delivery"), int):  # the stored delivery's row id
        content["delivery"] = "stored"
    return answer.status_code, content, kept


def _both(
    client: TestClient, routed: TestClient, url: str, body: bytes, h: dict[str, str]
) -> tuple[Answer, Answer]:
    """The lean answer to a call, then FastAPI's route's answer to the same call."""
    return _post(client, url, body, h), _post(routed, url, body, h)


def test_a_valid_delivery_gets_the_routes_answer(
    client: TestClient,
    routed: TestClient,
    db: Database,
    lean_answers: Callable[[], float],
) -> None:
    first, second = _distribution(), _distribution()
    lean = _post(client, "/v1/hooks/distribution", *first)
    by_route = _post(routed, "/v1/hooks/distribution", *second)
    by_route_again = _post(routed, "/v1/hooks/distribution", *first)
    lean_again = _post(client, "/v1/hooks/distribution", *second)
    assert lean == by_route, (lean, by_route)
    assert lean[0] == 202 and lean[1]["accepted"] == 1, lean
    assert lean_again == by_route_again, (lean_again, by_route_again)
    assert lean_again[1]["duplicates"] == 1 and lean_again[1]["accepted"] == 0, lean_again
    assert lean_answers() == 2
    with db.session() as session:
        assert len(session.scalars(select(Job)).all()) == 2


@pytest.mark.parametrize(
    ("case", "status"),
    [
        ("webhook-token", 202),
        ("query-token", 202),
        ("malformed", 400),
        ("wrong-content-type", 400),
        ("no-secret", 401),
        ("wrong-secret", 401),
        ("query-token-not-allowed", 401),
        ("over-limit", 413),
        ("over-limit-unknown-source", 413),
        ("unknown-source", 404),
    ],
)
def test_the_lean_answer_is_the_routes_answer(
    client: TestClient,
    routed: TestClient,
    db: Database,
    lean_answers: Callable[[], float],
    case: str,
    status: int,
) -> None:
    url = "/v1/hooks/distribution"
    body, headers = _distribution()
    if case == "webhook-token":
        url = "/v1/hooks/harbor"
        body = json.dumps({"type": "PUSH_ARTIFACT", "event_data": {"resources": []}}).encode()
        headers = bearer(db, "webhook", "harbor-hook", source="harbor")
    elif case == "query-token":  # a tag-only push: resolving it at DOWN fails, said why
        url = f"/v1/hooks/quay?token={QUAY_KEY}"
        push = {"repository": "a/b", "docker_url": f"{DOWN}/a/b", "updated_tags": ["v1"]}
        body, headers = json.dumps(push).encode(), {}
    elif case == "malformed":
        body = b'{"events": [{"action": "push"'
    elif case == "wrong-content-type":
        headers["Content-Type"] = "text/plain"
    elif case == "no-secret":
        del headers["Authorization"]
    elif case == "wrong-secret":
        headers["Authorization"] = "Bearer not-the-token"
    elif case == "query-token-not-allowed":  # distribution can set a header: no ?token=
        del headers["Authorization"]
        url += f"?token={TOKEN}"
    elif case.startswith("over-limit"):
        body = b"x" * (MAX_BODY + 1)
        url = "/v1/hooks/made-up" if case.endswith("unknown-source") else url
    elif case == "unknown-source":
        url = "/v1/hooks/made-up"
    lean, routed_answer = _both(client, routed, url, body, headers)
    assert lean[0] == status, lean
    assert lean == routed_answer, (lean, routed_answer)
    assert lean[1]["error" if status >= 400 else "message"], lean
    assert lean_answers() == 1


def test_refusals_are_audited_counted_and_logged(
    client: TestClient,
    db: Database,
    lean_answers: Callable[[], float],
    caplog: pytest.LogCaptureFixture,
) -> None:
    route = "/v1/hooks/{source}"
    counts = [("distribution", 401), ("unknown", 413), ("distribution", 202)]
    before = {c: _counts(route, *c) for c in counts}
    body, headers = _distribution("not-the-token")
    with caplog.at_level(logging.INFO, logger="supplychain.access"):
        assert _post(client, "/v1/hooks/distribution", body, headers)[0] == 401
        assert _post(client, "/v1/hooks/made-up", b"x" * (MAX_BODY + 1), {})[0] == 413
        assert _post(client, "/v1/hooks/distribution", *_distribution())[0] == 202
    assert lean_answers() == 3
    with db.session() as session:
        refused = session.execute(
            select(AuditEntry.actor, AuditEntry.subject).where(AuditEntry.action == "token.refused")
        ).all()
    assert refused == [("remote:testclient", "POST /v1/hooks/{source}")], refused
    lines = [
        (r.__dict__["method"], r.__dict__["path"], r.__dict__["status"])
        for r in caplog.records
        if r.name == "supplychain.access"
    ]
    assert lines == [("POST", route, 401), ("POST", route, 413), ("POST", route, 202)], lines
    for c in counts:
        hooks, requests = before[c]
        assert _counts(route, *c) == (hooks + 1, requests + 1), c


def _counts(route: str, source: str, status: int) -> tuple[float, float]:
    """The webhook requests of a source and status, the HTTP requests of the route and status."""
    hooks = prometheus_client.REGISTRY.get_sample_value(
        "supplychain_webhook_requests_total", {"source": source, "status": str(status)}
    )
    requests = prometheus_client.REGISTRY.get_sample_value(
        "supplychain_http_requests_total",
        {"route": route, "method": "POST", "status": str(status)},
    )
    return hooks or 0.0, requests or 0.0


@pytest.mark.parametrize("path", ["/v1/hooks/", "/v1/hooks/distribution/", "/v1/hooks/a/b"])
def test_paths_the_route_does_not_match_are_left_to_fastapi(
    client: TestClient, lean_answers: Callable[[], float], path: str
) -> None:
    body, headers = _distribution()
    answer = client.post(path, content=body, headers=headers, follow_redirects=False)
    assert answer.status_code in (307, 404), answer.text
    assert lean_answers() == 0
