"""The gate's hot path (a pinned digest already scanned) on SQLite and PostgreSQL.

A real image pushed to the real registry and scanned by the real Trivy; then: every one of many
concurrent answers is recorded, a waiver (created, revoked, expired), a VEX statement and a policy
change apply to the very next answer although the facts are cached, and the gate fails closed
when the database is gone or an answer cannot be recorded, or the registry is needed and down.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest
import requests
from fastapi.testclient import TestClient
from sqlalchemy import func, select, text

from supplychain.api.app import create_app
from supplychain.decide.gate import GateError
from supplychain.decide.policy import RulesPolicy
from supplychain.evidence import models
from supplychain.evidence.database import Database
from supplychain.evidence.tlogcheck import verify
from supplychain.interface import ImageTarget
from supplychain.service import Service, build_service
from tests.conftest import PG_SERVER, make_settings, new_database
from tests.support import images
from tests.support.hostile import serve
from tests.support.registry import Registry
from tests.support.tokens import bearer
from tests.test_vuln_scan import BASE_ADVISORIES, NEW_ADVISORY, install_db

pytestmark = pytest.mark.e2e

REPO = "team/hot"
CONCURRENT = 48
DOWN = "127.0.0.1:9"
"""An allowed registry where nothing listens."""


@dataclasses.dataclass
class Scanned:
    """A service whose database holds the scanned, denied app image."""

    service: Service
    pinned: str
    digest: str
    admin: dict[str, str]
    ci: dict[str, str]


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    with Registry(tmp_path_factory.mktemp("gate-hot") / "registry") as registry:
        yield registry


@pytest.fixture(params=["sqlite", "postgresql"])
def scanned(
    request: pytest.FixtureRequest, registry: Registry, tmp_path: Path
) -> Iterator[Scanned]:
    with _url(request.param, tmp_path) as url:
        db = Database(url)
        db.upgrade()
        admin = bearer(db, "admin", "hot-admin")
        ci = bearer(db, "ci", "hot-ci")
        db.dispose()
        install_db(tmp_path / "trivy", (*BASE_ADVISORIES, NEW_ADVISORY), tmp_path)
        service = build_service(make_settings(tmp_path, url, registries=f"{registry.host},{DOWN}"))
        digest = images.push(images.app_layout(), "app", f"{registry.host}/{REPO}:app")
        with service.db.session() as session:
            service.queue.enqueue(session, "image", ImageTarget(registry.host, REPO, digest))
        assert service.worker("test").run_once()
        try:
            yield Scanned(service, f"{registry.host}/{REPO}@{digest}", digest, admin, ci)
        finally:
            service.gate.recorder.close()
            service.db.dispose()


@pytest.fixture
def client(scanned: Scanned) -> Iterator[TestClient]:
    with TestClient(
        create_app(scanned.service, workers=0), headers=scanned.ci, raise_server_exceptions=False
    ) as test_client:
        yield test_client


@contextlib.contextmanager
def _url(backend: str, tmp_path: Path) -> Iterator[str]:
    if backend == "postgresql":
        with new_database() as url:
            yield url
    else:
        yield f"sqlite:///{tmp_path / 'hot.db'}"


def gate_rows(service: Service) -> int:
    with service.db.session() as session:
        query = select(func.count()).select_from(models.Verdict)
        return int(session.scalar(query.where(models.Verdict.context == "gate")) or 0)


def answered_entries(service: Service) -> int:
    with service.db.session() as session:
        query = select(func.count()).select_from(models.AuditEntry)
        return int(session.scalar(query.where(models.AuditEntry.action == "gate.answered")) or 0)


def test_concurrent_answers_are_each_recorded(scanned: Scanned) -> None:
    service = scanned.service
    first = service.gate.decide(scanned.pinned)
    assert first.decision == "deny", first
    before, entries = gate_rows(service), answered_entries(service)
    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda _: service.gate.decide(scanned.pinned), range(CONCURRENT)))
    assert [a.decision for a in answers] == ["deny"] * CONCURRENT
    assert gate_rows(service) - before == CONCURRENT
    assert answered_entries(service) - entries == CONCURRENT
    with service.db.session() as session:
        rows = session.scalars(
            select(models.Verdict)
            .where(models.Verdict.context == "gate")
            .order_by(models.Verdict.id.desc())
            .limit(CONCURRENT)
        ).all()
    assert {(r.digest, r.decision, r.requested) for r in rows} == {
        (scanned.digest, "deny", scanned.pinned)
    }
    assert all(r.image_id is not None for r in rows)
    # the batched inserts are leaves of the tamper-evident log like every other fact
    assert verify(service.db, None).problems == ()


@pytest.mark.parametrize("scanned", ["postgresql"], indirect=True)
def test_answers_after_the_server_drops_the_writers_connection_are_recorded(
    scanned: Scanned, caplog: pytest.LogCaptureFixture
) -> None:
    """The answers' writer keeps its PostgreSQL connection between batches (no checkout, no
    pre-ping); when the server drops it, the batch is retried alone on a new connection."""
    service = scanned.service
    assert service.gate.decide(scanned.pinned).decision == "deny"
    with service.db.writing() as connection:  # the connection the answers' batches keep
        kept = int(connection.exec_driver_sql("SELECT pg_backend_pid()").scalar_one())
    with psycopg.connect(service.db.url.replace("postgresql+psycopg", "postgresql")) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (kept,))
    before, entries = gate_rows(service), answered_entries(service)
    answers = [service.gate.decide(scanned.pinned) for _ in range(3)]
    assert [a.decision for a in answers] == ["deny"] * 3
    assert "failed; retrying each alone" in caplog.text  # the dropped connection was used
    assert gate_rows(service) - before == 3 and answered_entries(service) - entries == 3
    assert verify(service.db, None).problems == ()


def test_waivers_apply_to_the_next_answer_and_stop_at_their_expiry(
    scanned: Scanned, client: TestClient
) -> None:
    def ask() -> dict[str, object]:
        answer = client.post("/v1/gate", json={"image": scanned.pinned})
        assert answer.status_code == 200, answer.text
        result: dict[str, object] = answer.json()
        return result

    first = ask()
    assert first["decision"] == "deny"
    assert ask()["decision"] == "deny"  # served from cached facts now
    expires = models.utcnow() + timedelta(seconds=4)
    made = client.post(
        "/v1/waivers",
        headers=scanned.admin,
        json={
            "owner": "alice",
            "reason": "accepted for the test",
            "ticket": "SEC-1",
            "expires_at": expires.isoformat(),
            "digest": scanned.digest,
            "rule": "severity",
        },
    )
    assert made.status_code == 201, made.text
    waived = ask()
    assert waived["decision"] == "allow", waived
    assert any("waiver" in str(reason).lower() for reason in waived["reasons"])  # type: ignore[attr-defined]
    revoked = client.delete(f"/v1/waivers/{made.json()['id']}", headers=scanned.admin)
    assert revoked.status_code == 200, revoked.text
    assert ask()["decision"] == "deny"
    expires = models.utcnow() + timedelta(seconds=3)
    again = client.post(
        "/v1/waivers",
        headers=scanned.admin,
        json={
            "owner": "alice",
            "reason": "accepted for the test",
            "ticket": "SEC-2",
            "expires_at": expires.isoformat(),
            "digest": scanned.digest,
            "rule": "severity",
        },
    )
    assert again.status_code == 201, again.text
    assert ask()["decision"] == "allow"
    time.sleep(max(0.0, (expires - models.utcnow()).total_seconds()) + 0.2)
    assert ask()["decision"] == "deny"  # nothing changed in the database: the clock did


def test_a_vex_statement_and_a_policy_change_apply_to_the_next_answer(scanned: Scanned) -> None:
    service = scanned.service
    gate = service.gate
    denied = gate.decide(scanned.pinned)
    assert denied.decision == "deny"
    loads = gate.facts.loads
    assert gate.decide(scanned.pinned).decision == "deny"
    assert gate.facts.loads == loads  # the second answer reused the loaded facts
    old = service.decider.policy
    assert isinstance(old, RulesPolicy)
    permissive = RulesPolicy(dataclasses.replace(old.rules, deny_severities=()))
    service.decider.policy = permissive
    try:
        allowed = gate.decide(scanned.pinned)
        assert allowed.decision == "allow", allowed.reasons
        assert allowed.policy_digest == permissive.digest != denied.policy_digest
    finally:
        service.decider.policy = old
    assert gate.decide(scanned.pinned).decision == "deny"
    with service.db.session(write=True) as session:
        session.add(
            models.VexStatement(
                document_digest="sha256:" + "0" * 64,
                format="openvex",
                source="upload",
                vuln_id="CVE-2018-18074",
                product=scanned.digest,
                status="not_affected",
                justification="vulnerable_code_not_in_execute_path",
            )
        )
    after = gate.decide(scanned.pinned)
    assert gate.facts.loads == loads + 1  # the new statement changed the fingerprint
    assert "CVE-2018-18074" not in " ".join(after.reasons)
    assert "CVE-2018-18074" in " ".join(denied.reasons)


def test_no_answer_when_the_database_is_gone_or_the_answer_cannot_be_recorded(
    scanned: Scanned, client: TestClient
) -> None:
    service = scanned.service
    old = service.decider.policy
    assert isinstance(old, RulesPolicy)
    service.decider.policy = RulesPolicy(dataclasses.replace(old.rules, deny_severities=()))
    allowed = client.post("/v1/gate", json={"image": scanned.pinned})
    assert allowed.status_code == 200 and allowed.json()["decision"] == "allow"
    rows = gate_rows(service)
    # The answer's audit row cannot be written: the gate answers an error, not the allow.
    with service.db.session(write=True) as session:
        session.execute(text("ALTER TABLE audit_log RENAME TO audit_log_away"))
    refused = client.post("/v1/gate", json={"image": scanned.pinned})
    assert refused.status_code >= 500 and "allow" not in refused.text, refused.text
    with service.db.session(write=True) as session:
        session.execute(text("ALTER TABLE audit_log_away RENAME TO audit_log"))
    assert gate_rows(service) == rows  # the failed batch left nothing half-written
    assert client.post("/v1/gate", json={"image": scanned.pinned}).json()["decision"] == "allow"
    # The database is gone: the cached facts are not used, no allow.
    url = service.db.url
    if url.startswith("postgresql"):
        name = url.rsplit("/", 1)[1]
        with psycopg.connect(f"{PG_SERVER}/test", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
    else:
        Path(url.split(":///", 1)[1]).unlink()
        Path(url.split(":///", 1)[1] + "-wal").unlink(missing_ok=True)
        service.db.dispose()  # every connection closed: new ones find no file (and no tables)
    gone = client.post("/v1/gate", json={"image": scanned.pinned})
    assert gone.status_code == 503 and "allow" not in gone.text, gone.text


def test_a_pinned_digest_not_recorded_needs_the_registry_and_fails_closed(
    scanned: Scanned,
) -> None:
    gate = scanned.service.gate
    with pytest.raises(GateError) as raised:  # the same digest, but not recorded from this host
        gate.decide(f"{DOWN}/{REPO}@{scanned.digest}")
    assert raised.value.status == 502 and "could not resolve" in str(raised.value)
    assert gate.decide(scanned.pinned).decision == "deny"


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_serve_with_two_processes_records_every_concurrent_answer(
    backend: str, registry: Registry, tmp_path: Path
) -> None:
    digest = images.push(images.app_layout(), "base", f"{registry.host}/{REPO}:base")
    pinned = f"{registry.host}/{REPO}@{digest}"
    extra = {"SUPPLYCHAIN_REGISTRIES": registry.host, "SUPPLYCHAIN_API_PROCESSES": "2"}
    with _url(backend, tmp_path) as url, serve(tmp_path, url, extra) as server:

        def ask(_: int) -> tuple[int, str]:
            answer = requests.post(
                f"{server.url}/v1/gate",
                json={"image": pinned},
                headers=server.auth("ci"),
                timeout=60,
            )
            return answer.status_code, answer.json()["decision"]

        with ThreadPoolExecutor(16) as pool:
            answers = list(pool.map(ask, range(CONCURRENT)))
        assert answers == [(200, "pending")] * CONCURRENT  # no worker: queued, not scanned
        db = Database(url)
        try:
            with db.session() as session:
                rows = session.scalar(
                    select(func.count())
                    .select_from(models.Verdict)
                    .where(models.Verdict.context == "gate", models.Verdict.digest == digest)
                )
                jobs = session.scalar(select(func.count()).select_from(models.Job))
        finally:
            db.dispose()
        assert (rows, jobs) == (CONCURRENT, 1)


def test_the_event_loops_answer_is_the_full_paths_and_only_for_cached_pinned_digests(
    scanned: Scanned,
) -> None:
    """What ``serve`` decides on its event loop (SQLite) is what the deciding threads answer,
    with the next policy; anything else (a tag, another registry, an unknown digest) goes on to
    the full path, which calls the registry or refuses."""
    service = scanned.service
    gate = service.gate
    registry_host = scanned.pinned.split("/", 1)[0]
    full = gate.evaluate(scanned.pinned)  # loads and caches the facts
    fast = gate.answer_cached(scanned.pinned)
    assert fast is not None
    assert (fast.answer.decision, fast.answer.pinned, fast.answer.reasons) == (
        full.answer.decision,
        full.answer.pinned,
        full.answer.reasons,
    )
    assert fast.answer.decision == "deny"
    assert [model for model, _ in fast.rows] == [model for model, _ in full.rows]
    unknown = "sha256:" + "e" * 64
    for other in (
        f"{registry_host}/{REPO}:app",  # a tag: resolved at the registry
        f"{DOWN}/{REPO}@{scanned.digest}",  # not recorded from this host
        f"registry.invalid/{REPO}@{scanned.digest}",  # not an allowed registry
        f"{registry_host}/{REPO}@{unknown}",  # never recorded
        "not a reference",
    ):
        assert gate.answer_cached(other) is None, other
    old = service.decider.policy
    assert isinstance(old, RulesPolicy)
    service.decider.policy = RulesPolicy(dataclasses.replace(old.rules, deny_severities=()))
    try:
        changed = gate.answer_cached(scanned.pinned)
        assert changed is not None and changed.answer.decision == "allow"
    finally:
        service.decider.policy = old


@pytest.mark.parametrize("on_loop", ["yes", "no", "auto"])
def test_cached_answers_are_decided_on_the_loop_or_a_thread_as_set(
    scanned: Scanned, on_loop: str
) -> None:
    """SUPPLYCHAIN_GATE_DECIDE_ON_LOOP: the same answers, every one recorded, whichever runs
    the cached answer's read (``auto``: the loop on SQLite, a thread on PostgreSQL)."""
    service = scanned.service
    settings = dataclasses.replace(service.settings, gate_decide_on_loop=on_loop)
    full_paths: list[str] = []
    evaluate = service.gate.evaluate

    def counting(image: str, **options: object) -> object:
        full_paths.append(image)
        return evaluate(image, **options)  # type: ignore[arg-type]

    service.gate.evaluate(scanned.pinned)  # the facts are cached now
    before = gate_rows(service)
    app = create_app(dataclasses.replace(service, settings=settings), workers=0)
    with (
        mock_attribute(service.gate, "evaluate", counting),
        TestClient(app, headers=scanned.ci, raise_server_exceptions=False) as client,
    ):
        answers = [client.post("/v1/gate", json={"image": scanned.pinned}) for _ in range(5)]
    assert [a.json()["decision"] for a in answers] == ["deny"] * 5
    assert gate_rows(service) - before == 5
    on_the_loop = on_loop == "yes" or (on_loop == "auto" and not service.db.is_postgres)
    assert len(full_paths) == (0 if on_the_loop else 5)


@contextlib.contextmanager
def mock_attribute(target: object, name: str, value: object) -> Iterator[None]:
    """``target.name`` replaced by ``value`` meanwhile (a spy wrapping the real method)."""
    saved = getattr(target, name)
    setattr(target, name, value)
    try:
        yield
    finally:
        setattr(target, name, saved)
