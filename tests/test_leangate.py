"""`POST /v1/gate` answered by the lean handler is the FastAPI route's answer, byte for byte.

The lean handler (:mod:`supplychain.api.leangate`) takes well-formed JSON calls (``Content-Type:
application/json``); FastAPI still answers the same call sent as ``application/merge+json`` (a
JSON type FastAPI reads and the lean handler leaves to it). Both must give the same status, JSON
and headers for every outcome the gate has without a scanned image (refused token or role, a
registry not allowed, a registry down, a bad reference), and the lean one must be logged and
counted under the route's template like any other call.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import prometheus_client
import pytest
from fastapi.testclient import TestClient

from supplychain.api.app import create_app
from supplychain.evidence.database import Database
from supplychain.service import build_service
from tests.conftest import make_settings
from tests.support.tokens import bearer

DOWN = "127.0.0.1:9"
"""An allowed registry where nothing listens."""
LEAN = "application/json"
FASTAPI = "application/merge+json"


@pytest.fixture
def client(db: Database, tmp_path: Path, pg_url: str) -> TestClient:
    service = build_service(make_settings(tmp_path, pg_url, registries=DOWN))
    return TestClient(create_app(service, workers=0))


def _post(
    client: TestClient, body: dict[str, object], kind: str, auth: dict[str, str]
) -> tuple[int, dict[str, object], dict[str, str]]:
    answer = client.post(
        "/v1/gate", content=json.dumps(body), headers={"Content-Type": kind, **auth}
    )
    headers = {k: v for k, v in answer.headers.items() if k in ("content-type", "www-authenticate")}
    return answer.status_code, answer.json(), headers


@pytest.mark.parametrize(
    ("body", "role", "status"),
    [
        ({"image": f"{DOWN}/team/app:v1"}, "ci", 502),
        ({"image": f"{DOWN}/team/app@sha256:" + "a" * 64, "wait": 0}, "ci", 502),
        ({"image": "elsewhere.example/team/app:v1"}, "ci", 403),
        ({"image": f"{DOWN}/Team/App:v1"}, "ci", 400),
        ({"image": f"{DOWN}/team/app:v1", "platform": "linux/arm64/v8"}, "ci", 502),
        ({"image": f"{DOWN}/team/app:v1"}, "auditor", 403),
        ({"image": f"{DOWN}/team/app:v1"}, None, 401),
        ({"image": f"{DOWN}/team/app:v1"}, "made-up-token", 401),
        ({"image": "x" * 70_000}, "ci", 413),
        ({"image": "x" * 70_000}, None, 413),
    ],
    ids=[
        "tag",
        "digest",
        "registry",
        "reference",
        "platform",
        "role",
        "no-token",
        "bad-token",
        "over-limit",
        "over-limit-no-token",
    ],
)
def test_the_lean_answer_is_the_routes_answer(
    client: TestClient,
    db: Database,
    body: dict[str, object],
    role: str | None,
    status: int,
) -> None:
    start = _lean_count()
    if role is None:
        auth: dict[str, str] = {}
    elif role == "made-up-token":
        auth = {"Authorization": "Bearer sc_not-a-token"}
    else:
        auth = bearer(db, role, role)
    lean = _post(client, body, LEAN, auth)
    assert lean[0] == status, lean
    assert lean[1]["decision"] == "error" and lean[1]["error"], lean
    assert _lean_count() - start == 1  # the lean handler answered it
    assert lean == _post(client, body, FASTAPI, auth)
    if status != 413:  # a body over the limit is refused while read, before the content type
        assert _lean_count() - start == 1  # the rest: FastAPI's own answer


def _lean_count() -> float:
    """Calls the lean handler answered itself (its metric)."""
    value = prometheus_client.REGISTRY.get_sample_value(
        "supplychain_http_lean_answers_total", {"route": "/v1/gate"}
    )
    return value or 0.0


def test_lean_answers_are_logged_and_counted_under_the_route(
    client: TestClient, db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    auth = bearer(db, "ci", "ci")
    with caplog.at_level(logging.INFO, logger="supplychain.access"):
        assert _post(client, {"image": "elsewhere.example/a:b"}, LEAN, auth)[0] == 403
        assert _post(client, {"image": "x" * 70_000}, LEAN, auth)[0] == 413
    lines = [(r.__dict__["path"], r.__dict__["status"]) for r in caplog.records]
    assert lines == [("/v1/gate", 403), ("/v1/gate", 413)], lines
    metrics = client.get("/metrics").text
    for status in (403, 413):
        labels = f'method="POST",route="/v1/gate",status="{status}"'
        assert f"supplychain_http_requests_total{{{labels}}}" in metrics
