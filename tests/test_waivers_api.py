"""``/v1/waivers`` on PostgreSQL and SQLite: required fields, audit, revoke once, and the API's
waivers read back as the facts the one decision compares with its time."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from supplychain.api.app import create_app
from supplychain.evidence import models
from supplychain.evidence.database import Database
from supplychain.evidence.load import load_waivers
from supplychain.service import build_service
from tests.conftest import make_settings, truncate
from tests.support.tokens import bearer

DIGEST = "sha256:" + "ab" * 32


@pytest.fixture(params=["postgresql", "sqlite"])
def url(request: pytest.FixtureRequest, tmp_path: Path, pg_url: str) -> str:
    """The database the API writes to."""
    return pg_url if request.param == "postgresql" else f"sqlite:///{tmp_path / 'w.db'}"


@pytest.fixture
def client(url: str, tmp_path: Path) -> Iterator[TestClient]:
    if url.startswith("postgresql"):
        database = Database(url)
        truncate(database)
    else:
        database = Database(url)
        database.upgrade()
    admin = bearer(database, "admin", "waiver-admin")
    auditor = bearer(database, "auditor", "waiver-auditor")
    database.dispose()
    service = build_service(make_settings(tmp_path, url))
    with TestClient(create_app(service, workers=0), headers=admin) as test_client:
        test_client.auditor = auditor  # type: ignore[attr-defined]
        yield test_client
    service.db.dispose()


def body(**changes: object) -> dict[str, object]:
    expires = (models.utcnow() + timedelta(days=30)).isoformat()
    base: dict[str, object] = {
        "owner": "alice", "reason": "not reachable", "ticket": "SEC-7", "expires_at": expires,
        "digest": DIGEST, "cve": "CVE-2018-18074",
        "justification": "vulnerable_code_not_in_execute_path",
    }  # fmt: skip
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"owner": None}, "owner"),
        ({"ticket": " "}, "ticket is required"),
        ({"expires_at": "2020-01-01T00:00:00+00:00"}, "expires_at must be in the future"),
        ({"expires_at": "2099-01-01T00:00:00"}, "needs a timezone"),
        ({"repository": "r.example/team/*"}, "exactly one scope"),
        ({"package": "requests"}, "exactly one of cve, package or rule"),
        ({"cve": None, "rule": "nope"}, "rule must be one of"),
        ({"digest": "sha256:AB"}, "digest must be"),
        ({"justification": "because"}, "justification must be one of"),
    ],
)
def test_a_bad_waiver_is_refused_and_nothing_is_recorded(
    client: TestClient, changes: dict[str, object], message: str
) -> None:
    answer = client.post("/v1/waivers", json=body(**changes))
    assert answer.status_code in (400, 422)
    assert message in answer.text
    assert client.get("/v1/waivers").json() == []
    assert [
        e
        for e in client.get("/v1/audit", headers=auditor_of(client)).json()
        if e["action"].startswith("waiver")
    ] == []


def test_writes_need_an_admin_token(client: TestClient) -> None:
    auditor = auditor_of(client)
    client.headers.pop("Authorization")
    for headers, status in (({}, 401), (auditor, 403)):
        assert client.post("/v1/waivers", json=body(), headers=headers).status_code == status
        assert client.delete("/v1/waivers/1", headers=headers).status_code == status
    assert client.get("/v1/waivers", headers=auditor).json() == []  # auditors read


def test_create_list_revoke_are_audited(client: TestClient) -> None:
    made = client.post("/v1/waivers", json=body(), headers={"Actor": "alice"})
    assert made.status_code == 201, made.text
    waiver = made.json()
    assert waiver["created_by"] == "alice" and waiver["revoked_at"] is None
    assert client.get("/v1/waivers").json() == [waiver]
    with ThreadPoolExecutor(2) as pool:  # two revokers race: one wins, one is told no
        codes = sorted(
            pool.map(
                lambda who: (
                    client.delete(f"/v1/waivers/{waiver['id']}", headers={"Actor": who}).status_code
                ),
                ["bob", "carol"],
            )
        )
    assert codes == [200, 404]
    assert client.get("/v1/waivers").json() == []
    listed = client.get("/v1/waivers", params={"revoked": "true"}).json()
    assert [w["id"] for w in listed] == [waiver["id"]] and listed[0]["revoked_by"] in (
        "bob",
        "carol",
    )
    audit = [
        e
        for e in client.get("/v1/audit", headers=auditor_of(client)).json()
        if e["action"].startswith("waiver")
    ]
    assert [(e["action"], e["actor"]) for e in audit] == [
        ("waiver.create", "alice"),
        ("waiver.revoke", listed[0]["revoked_by"]),
    ]
    assert audit[0]["subject"] == DIGEST and audit[0]["details"]["waiver"]["ticket"] == "SEC-7"
    assert client.delete("/v1/waivers/2147483648").status_code == 422


def test_waivers_load_as_facts_revoked_left_out(client: TestClient, url: str) -> None:
    kept = client.post("/v1/waivers", json=body(digest=None, repository="r.example/team/*"))
    gone = client.post("/v1/waivers", json=body())
    other = client.post("/v1/waivers", json=body(digest="sha256:" + "cd" * 32))
    assert kept.status_code == gone.status_code == other.status_code == 201
    assert client.delete(f"/v1/waivers/{gone.json()['id']}").status_code == 200
    database = Database(url)
    try:
        with database.session() as session:
            image = models.Image(host="r.example", repository="team/app", digest=DIGEST)
            facts = load_waivers(session, image)
            assert [w.id for w in facts] == [kept.json()["id"]]  # revoked and other digest out
            assert facts[0].justification == "vulnerable_code_not_in_execute_path"
            assert (
                session.scalar(
                    select(models.Waiver.revoked_by).where(models.Waiver.id == gone.json()["id"])
                )
                == "api"
            )
    finally:
        database.dispose()


def auditor_of(client: TestClient) -> dict[str, str]:
    """The auditor's header the fixture made (the client itself sends the admin's)."""
    headers: dict[str, str] = client.auditor  # type: ignore[attr-defined]
    return headers
