"""The auditors' history on PostgreSQL and SQLite, with a real image scanned by real Trivy.

One image (``app``: requests 2.19.0, CRITICAL CVE-2018-18074 in the first advisory DB) is
scanned, gated (deny), waived (gate: allow), scanned again against a DB without that advisory,
and the waiver revoked. Time travel must give each earlier answer from the facts known then,
equal to the gate answer the service recorded at the time; the lists, cursors, CSV and the
stored documents are checked on the same records.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, get_args

import pytest
from fastapi.testclient import TestClient

from supplychain.api.app import create_app
from supplychain.api.schemas import Kind
from supplychain.cli.scan import scan_image
from supplychain.decide.waiverstore import WaiverRequest, create, revoke
from supplychain.evidence import models
from supplychain.evidence.database import Database
from supplychain.history.cursor import CursorSigner, Position
from supplychain.history.events import KINDS
from supplychain.history.export import cell, to_csv
from supplychain.interface import ImageTarget
from supplychain.service import Service, build_service
from supplychain.signatures import KeyFileSigner, attest_image, generate_key, public_pem
from supplychain.signatures.statements import OPENVEX, statement
from supplychain.signatures.storage import SignatureStore
from tests.conftest import make_settings, truncate
from tests.support import images
from tests.support.registry import Registry
from tests.support.tokens import bearer
from tests.test_decide_once import openvex
from tests.test_vuln_scan import BASE_ADVISORIES, NEW_ADVISORY, install_db

REPO = "team/app"
CVE = "CVE-2018-18074"


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    with Registry(tmp_path_factory.mktemp("history") / "registry") as registry:
        yield registry


@pytest.fixture(params=["postgresql", "sqlite"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'history.db'}"
        Database(url).upgrade()
        return url
    pg: str = request.getfixturevalue("pg_url")
    database = Database(pg)
    truncate(database)
    database.dispose()
    return pg


def _tick() -> datetime:
    """A time strictly between what was recorded before and what is recorded after."""
    time.sleep(0.01)
    now = models.utcnow()
    time.sleep(0.01)
    return now


@pytest.fixture
def story(
    url: str, registry: Registry, tmp_path: Path
) -> Iterator[tuple[Service, TestClient, dict[str, Any]]]:
    """The image's life; the times between its steps in ``marks``."""
    digest = images.push(images.app_layout(), "app", f"{registry.host}/{REPO}:app")
    install_db(tmp_path / "trivy", (*BASE_ADVISORIES, NEW_ADVISORY), tmp_path)
    settings = make_settings(tmp_path, url, registries=registry.host)
    service = build_service(settings)
    target = ImageTarget(registry.host, REPO, digest, "app")
    marks: dict[str, Any] = {"digest": digest, "before": _tick()}
    with service.db.session() as session:
        service.queue.enqueue(session, "image", target)
    assert service.worker("test").run_once()
    assert service.gate.decide(target.pinned).decision == "deny"
    marks["denied"] = _tick()
    with service.db.session(write=True) as session:
        waiver = create(
            session,
            WaiverRequest(
                owner="alice",
                reason="not reachable",
                ticket="SEC-7",
                expires_at=models.utcnow() + timedelta(days=30),
                digest=digest,
                cve=CVE,
            ),
            "alice",
            models.utcnow(),
        )
    assert service.gate.decide(target.pinned).decision == "allow"
    marks["waived"] = _tick()
    install_db(tmp_path / "trivy", BASE_ADVISORIES, tmp_path)  # a DB without the advisory
    rescanned = scan_image(settings, target.pinned)
    assert rescanned["decision"] == "allow", rescanned
    marks["rescanned"] = _tick()
    with service.db.session(write=True) as session:
        revoke(session, waiver["id"], "bob", models.utcnow())
    marks["waiver"] = waiver["id"]
    db = service.db
    headers = bearer(db, "auditor", "history-auditor")
    with TestClient(create_app(service, workers=0), headers=headers) as client:
        yield service, client, marks
    service.db.dispose()


def at(client: TestClient, digest: str, when: datetime) -> dict[str, Any]:
    answer = client.get("/v1/history/decision", params={"digest": digest, "at": when.isoformat()})
    assert answer.status_code == 200, answer.text
    data: dict[str, Any] = answer.json()
    return data


def test_time_travel_gives_each_old_answer(
    story: tuple[Service, TestClient, dict[str, Any]],
) -> None:
    _service, client, marks = story
    digest = marks["digest"]
    unknown = client.get(
        "/v1/history/decision", params={"digest": digest, "at": marks["before"].isoformat()}
    )
    assert unknown.status_code == 404  # the image was not known yet
    denied = at(client, digest, marks["denied"])
    waived = at(client, digest, marks["waived"])
    rescanned = at(client, digest, marks["rescanned"])
    now = at(client, digest, models.utcnow())
    assert denied["decision"] == "deny" and any(CVE in r for r in denied["reasons"])
    assert denied["waivers"] == []  # the waiver came later
    assert denied["recorded"]["context"] == "gate" and denied["recorded"]["decision"] == "deny"
    assert waived["decision"] == "allow"
    assert waived["waivers"] == [
        {"id": marks["waiver"], "description": waived["waivers"][0]["description"], "applied": True}
    ]
    assert any("waived by waiver" in r for r in waived["reasons"])
    assert waived["recorded"]["decision"] == "allow"  # what the gate answered then
    assert waived["scan"]["id"] == denied["scan"]["id"]  # the later scan is not read
    assert rescanned["scan"]["id"] != denied["scan"]["id"]  # the new scan, a new advisory DB
    assert rescanned["scan"]["db_digest"] != denied["scan"]["db_digest"]
    assert rescanned["decision"] == "allow" and not rescanned["waivers"][0]["applied"]
    assert now["decision"] == "allow" and now["waivers"] == []  # revoked since
    for answer in (denied, waived, rescanned, now):
        assert answer["policy"]["digest"] == denied["recorded"]["policy"]["digest"]
        assert answer["notes"] == []


def test_every_event_of_the_digest_once_over_pages(
    story: tuple[Service, TestClient, dict[str, Any]],
) -> None:
    _service, client, marks = story
    digest = marks["digest"]
    whole = client.get(f"/v1/history/images/{digest}", params={"limit": 1000}).json()
    kinds = [e["kind"] for e in whole["items"]]
    assert whole["next_cursor"] is None
    assert kinds.count("scan") == kinds.count("sbom") == 2
    assert kinds.count("verdict") == 1  # the pipeline's (`supplychain scan` records none)
    assert kinds.count("gate") == 2 and kinds.count("waiver") == 1
    times = [(e["at"], e["kind"], e["id"]) for e in whole["items"]]
    assert times == sorted(times)
    waiver = next(e for e in whole["items"] if e["kind"] == "waiver")
    assert waiver["details"]["revoked_by"] == "bob" and waiver["details"]["ticket"] == "SEC-7"
    paged: list[dict[str, Any]] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        page = client.get(f"/v1/history/images/{digest}", params=params).json()
        paged += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert paged == whole["items"]
    gates = client.get(f"/v1/history/images/{digest}", params={"kind": "gate"}).json()["items"]
    assert [g["details"]["decision"] for g in gates] == ["deny", "allow"]
    denies = client.get("/v1/history/verdicts", params={"decision": "deny"}).json()["items"]
    assert {(v["kind"], v["digest"]) for v in denies} == {("verdict", digest), ("gate", digest)}
    repo = client.get(
        "/v1/history/repositories",
        params={
            "repository": f"{whole['items'][0]['repository']}",
            "since": marks["denied"].isoformat(),
        },
    ).json()["items"]
    assert repo and all(e["at"] >= marks["denied"].isoformat() for e in repo)
    assert {e["kind"] for e in repo} >= {"gate", "scan", "waiver"}


def test_a_cursor_cannot_be_edited_or_moved_to_other_filters(
    story: tuple[Service, TestClient, dict[str, Any]],
) -> None:
    _service, client, marks = story
    path = f"/v1/history/images/{marks['digest']}"
    cursor = client.get(path, params={"limit": 2}).json()["next_cursor"]
    assert cursor
    body, mac = cursor.split(".")
    raw = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    raw["i"] = 0  # rewind: would show rows twice
    forged = base64.urlsafe_b64encode(json.dumps(raw).encode()).rstrip(b"=").decode()
    for bad in (f"{forged}.{mac}", cursor + "x", "not-a-cursor", cursor.replace(".", "..")):
        answer = client.get(path, params={"limit": 2, "cursor": bad})
        assert answer.status_code == 400, bad
        assert "cursor" in answer.json()["error"]
    other = client.get(path, params={"limit": 2, "cursor": cursor, "kind": "gate"})
    assert other.status_code == 400 and "another query" in other.json()["error"]
    another_server = CursorSigner("another pepper").make(
        Position(models.utcnow(), "scan", 1), cursor
    )
    assert client.get(path, params={"cursor": another_server}).status_code == 400


def test_which_images_held_the_package_and_passed_a_gate(
    story: tuple[Service, TestClient, dict[str, Any]],
) -> None:
    _service, client, marks = story
    digest = marks["digest"]

    def ask(when: datetime, **params: str) -> list[dict[str, Any]]:
        answer = client.get("/v1/history/affected", params={"at": when.isoformat(), **params})
        assert answer.status_code == 200, answer.text
        items: list[dict[str, Any]] = answer.json()["items"]
        return items

    held = ask(marks["denied"], purl="pkg:pypi/requests", versions="<2.20")
    assert [i["digest"] for i in held] == [digest]
    assert held[0]["packages"][0]["version"] == "2.19.0" and held[0]["passed_gate"] is False
    assert ask(marks["denied"], purl="pkg:pypi/requests", versions=">=2.20") == []
    assert ask(marks["denied"], purl="pkg:npm/*") != []  # a glob, as policies write them
    assert ask(marks["waived"], purl="pkg:pypi/requests")[0]["passed_gate"] is True
    by_cve = ask(marks["waived"], cve=CVE)
    assert [i["digest"] for i in by_cve] == [digest]
    assert by_cve[0]["findings"][0]["severity"] == "CRITICAL"
    assert by_cve[0]["gate"]["decision"] == "allow"
    assert ask(marks["rescanned"], cve=CVE) == []  # the new scan's DB has no such advisory
    assert ask(marks["before"], purl="pkg:pypi/requests") == []
    as_csv = client.get(
        "/v1/history/affected",
        params={"at": marks["waived"].isoformat(), "cve": CVE, "format": "csv"},
    )
    assert as_csv.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(as_csv.text)))
    assert [r["digest"] for r in rows] == [digest] and rows[0]["passed_gate"] == "true"
    assert (
        client.get("/v1/history/affected", params={"at": marks["waived"].isoformat()}).status_code
        == 400
    )


def test_documents_come_back_as_stored_with_their_digest(
    story: tuple[Service, TestClient, dict[str, Any]],
) -> None:
    service, client, marks = story
    events = client.get(f"/v1/history/images/{marks['digest']}", params={"kind": "sbom"}).json()[
        "items"
    ]
    for event in events:
        answer = client.get(event["details"]["download"])
        assert answer.status_code == 200
        digest = "sha256:" + hashlib.sha256(answer.content).hexdigest()
        assert digest == event["details"]["sbom_digest"]
        assert answer.headers["etag"] == f'"{digest}"'
        raw = bytes.fromhex(digest.removeprefix("sha256:"))
        assert answer.headers["digest"] == "sha-256=" + base64.b64encode(raw).decode()
        assert answer.headers["content-type"] == "application/vnd.cyclonedx+json"
        assert json.loads(answer.content)["bomFormat"] == "CycloneDX"
    scan_id = events[0]["details"]["scan"]
    with service.db.session(write=True) as session:  # the stored SBOM changed behind our back
        row = session.get_one(models.Scan, scan_id)
        row.sbom_digest = "sha256:" + "0" * 64
    tampered = client.get(f"/v1/history/sboms/{scan_id}")
    assert tampered.status_code == 500 and "CycloneDX" not in tampered.text
    assert client.get("/v1/history/sboms/2147483647").status_code == 404


def test_attestations_by_subject_and_type_and_their_envelopes(
    url: str, registry: Registry, tmp_path: Path
) -> None:
    repo = "team/attested-" + url.split(":")[0]  # the registry outlives each run
    digest = images.push(images.app_layout(), "app", f"{registry.host}/{repo}:app")
    install_db(tmp_path / "trivy", (*BASE_ADVISORIES, NEW_ADVISORY), tmp_path)
    key = generate_key()
    (tmp_path / "ci.pub").write_bytes(public_pem(key.public_key()))
    settings = make_settings(
        tmp_path, url, registries=registry.host, verify_keys=str(tmp_path / "ci.pub")
    )
    service = build_service(settings)
    target = ImageTarget(registry.host, repo, digest, "app")
    claim = statement(target, OPENVEX, json.loads(openvex(digest, CVE)))
    attest_image(SignatureStore(service.client), target, KeyFileSigner(key), claim, OPENVEX)
    with service.db.session() as session:
        service.queue.enqueue(session, "image", target)
    assert service.worker("test").run_once()
    headers = bearer(service.db, "auditor", "attestation-auditor")
    try:
        with TestClient(create_app(service, workers=0), headers=headers) as client:
            found = client.get(
                "/v1/history/attestations", params={"subject": digest, "predicate_type": OPENVEX}
            ).json()["items"]
            assert [(a["digest"], a["details"]["verified"]) for a in found] == [(digest, True)]
            other = client.get(
                "/v1/history/attestations",
                params={"subject": digest, "predicate_type": "https://slsa.dev/provenance/v1"},
            )
            assert other.json()["items"] == []
            envelope = client.get(found[0]["details"]["download"])
            assert envelope.status_code == 200
            stored = "sha256:" + hashlib.sha256(envelope.content).hexdigest()
            assert stored == found[0]["details"]["payload_digest"] == envelope.headers["etag"][1:-1]
            assert envelope.headers["content-type"] == "application/vnd.dsse.envelope.v1+json"
            assert json.loads(envelope.content)["payloadType"] == "application/vnd.in-toto+json"
            kinds = {
                e["kind"]: e for e in client.get(f"/v1/history/images/{digest}").json()["items"]
            }
            assert kinds["vex"]["details"]["source"] == "attestation"
            answer = at(client, digest, models.utcnow())
            assert answer["decision"] == "allow"  # the attested VEX: not affected
            assert [v["vuln_id"] for v in answer["vex"]] == [CVE]
    finally:
        service.db.dispose()


def test_csv_cells_never_start_a_formula() -> None:
    rows = [{"a": '=HYPERLINK("x")', "b": "+1", "c": "-2", "d": "@SUM(A1)", "e": "\t=1"}]
    text = to_csv(("a", "b", "c", "d", "e"), rows)
    parsed = list(csv.reader(io.StringIO(text)))[1]
    assert all(value.startswith("'") for value in parsed)
    assert cell({"k": [1]}) == '{"k":[1]}' and cell(None) == "" and cell("plain") == "plain"


def test_the_api_names_every_kind() -> None:
    assert get_args(Kind) == KINDS
