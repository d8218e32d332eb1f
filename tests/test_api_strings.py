"""API strings are checked before use: control and bidi characters, digest and platform forms."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from supplychain.api.app import create_app
from supplychain.evidence.database import Database
from supplychain.service import build_service
from tests.conftest import make_settings
from tests.support.tokens import bearer


@pytest.fixture
def client(db: Database, tmp_path: Path, pg_url: str) -> TestClient:
    service = build_service(make_settings(tmp_path, pg_url, registries="127.0.0.1:5000"))
    return TestClient(create_app(service, workers=0), headers=bearer(db, "ci", "ci"))


@pytest.mark.parametrize(
    "body",
    [
        {"image": "127.0.0.1:5000/team/app:v1\n"},
        {"image": "127.0.0.1:5000/team/app\u202e:v1"},
        {"image": "127.0.0.1:5000/team/app:v1\x00"},
        {"image": "127.0.0.1:5000/team/app:v1", "platform": "linux/amd64\n"},
        {"image": "127.0.0.1:5000/team/app:v1", "platform": "linux"},
        {"image": "127.0.0.1:5000/team/app:v1", "platform": "linux/../../etc"},
    ],
)
def test_gate_requests_with_unsafe_strings_are_422(
    client: TestClient, body: dict[str, str]
) -> None:
    answer = client.post("/v1/gate", json=body)
    assert answer.status_code == 422
    assert answer.json()["decision"] == "error"  # never an allow, and the reason is named
    assert answer.json()["error"].startswith("invalid request:")


def test_gate_reference_outside_the_grammar_is_an_error_not_an_allow(client: TestClient) -> None:
    answer = client.post("/v1/gate", json={"image": "127.0.0.1:5000/Team/App:v1"})
    assert answer.status_code == 400
    assert answer.json()["decision"] == "error" and "lowercase" in answer.json()["error"]


@pytest.mark.parametrize(
    "query",
    ["digest=sha256:abc", "digest=sha256:" + "A" * 64, "digest=md5:" + "a" * 32, "context=a%0Ab"],
)
def test_verdict_queries_with_malformed_strings_are_400(
    client: TestClient, db: Database, query: str
) -> None:
    auditor = bearer(db, "auditor", "auditor")
    assert client.get(f"/v1/verdicts?{query}", headers=auditor).status_code == 400
    assert client.get("/v1/verdicts?digest=sha256:" + "a" * 64, headers=auditor).json() == []
