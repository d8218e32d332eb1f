"""Rematching stored SBOMs when the DB changes: revocations, announcements, VEX, failed jobs.

Real parts: distribution registry, PostgreSQL, the Trivy binary and DBs built by the test. The
revocation webhook's receiver is a small HTTP server on loopback standing in for the
organisation's endpoint (unreachable here).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from sqlalchemy import select, update

from supplychain.decide.policy import RulesPolicy, load_policy
from supplychain.decide.vex import match_vex, parse_vex, record_vex
from supplychain.evidence import models
from supplychain.evidence.database import Database
from supplychain.evidence.load import load_image_facts
from supplychain.evidence.tlogcheck import verify
from supplychain.interface import Evidence, Finding, ImageTarget, ScanResult
from supplychain.rematch.batch import rematch_packages
from supplychain.rematch.dbdiff import changed_packages
from supplychain.rematch.revocations import AnnounceError, WebhookAnnouncer
from supplychain.rematch.run import (
    Rematcher,
    RematchPlan,
    TrivySbomMatcher,
    plan_rematch,
    select_scans,
)
from supplychain.service import Service, build_service
from tests.conftest import make_settings
from tests.support import images
from tests.support.registry import Registry
from tests.support.trivydb import Advisory, build_trivy_db
from tests.test_vuln_scan import BASE_ADVISORIES, NEW_ADVISORY, install_db

REPO = "team/app"
SECRET = "revocation-hmac-secret-0123456789"


@dataclass
class Pushed:
    registry: Registry
    app: str
    tiny: str


@pytest.fixture(scope="module")
def pushed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pushed]:
    root = tmp_path_factory.mktemp("vuln-rematch")
    with Registry(root / "registry") as registry:
        app = images.push(images.app_layout(), "app", f"{registry.host}/{REPO}:app")
        tiny = images.push(images.tiny_layout(), "tiny", f"{registry.host}/{REPO}:tiny")
        yield Pushed(registry, app, tiny)


class Receiver:
    """Records POSTs; answers the queued status codes, then 204."""

    def __init__(self, statuses: tuple[int, ...] = ()) -> None:
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.statuses = list(statuses)
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests.append((dict(self.headers), body))
                self.send_response(receiver.statuses.pop(0) if receiver.statuses else 204)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/revoked"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def make_service(tmp_path: Path, pg_url: str, pushed: Pushed, **overrides: str) -> Service:
    values = {"registries": pushed.registry.host, "trivy_timeout": "300", **overrides}
    settings = make_settings(tmp_path, pg_url, **values)
    return build_service(settings)


def process(service: Service, digest: str, tag: str) -> None:
    """Enqueue and run one image job with a real worker."""
    with service.db.session() as session:
        service.queue.enqueue(
            session, "image", ImageTarget(service_host(service), REPO, digest, tag)
        )
    assert service.worker("test").run_once()


def service_host(service: Service) -> str:
    (host,) = service.settings.registries
    return host


def rematcher(service: Service, url: str | None = None) -> Rematcher:
    announcer = WebhookAnnouncer(url, secret=SECRET, backoff=0.01) if url else None
    return Rematcher(service.db, TrivySbomMatcher(service.trivy), service.decider, announcer)


def test_new_advisory_rematch_revokes_the_allow_and_announces_it(
    db: Database, pg_url: str, pushed: Pushed, tmp_path: Path, receiver: Receiver
) -> None:
    store = install_db(tmp_path / "trivy", BASE_ADVISORIES, tmp_path / "a")
    service = make_service(tmp_path, pg_url, pushed)
    process(service, pushed.app, "app")
    pinned = f"{pushed.registry.host}/{REPO}@{pushed.app}"
    assert service.gate.decide(pinned).decision == "allow"

    (tmp_path / "b").mkdir()
    second = install_db(tmp_path / "trivy", (*BASE_ADVISORIES, NEW_ADVISORY), tmp_path / "b")
    new_db = second.current()
    assert new_db is not None and store.current() == new_db
    with db.session() as session:
        scan_ids = select_scans(session)
    # the same scan twice in one run (one chunk): recorded in order, as one by one, so the second
    # sees the first's deny as the image's previous verdict and changes nothing
    report = rematcher(service, receiver.url).run(scan_ids + scan_ids)
    assert (report.selected, report.rematched, report.changed, report.revocations) == (2, 2, 1, 1)
    assert report.failed == ()

    with db.session() as session:
        (change,) = session.scalars(select(models.VerdictChange)).all()
        assert change.revocation and (change.previous_decision, change.decision) == (
            "allow",
            "deny",
        )
        assert change.db_digest_after == new_db.digest != change.db_digest_before
        assert [a.split("|")[1] for a in change.added] == ["CVE-2018-18074"] and not change.removed
        assert change.announced_at is not None and change.announce_error is None
        scan = session.get(models.Scan, scan_ids[0])
        assert scan is not None and scan.db_digest == new_db.digest and scan.matched_at
        assert scan.scanner_version and scan.db_updated_at == new_db.updated_at
        finding = session.scalars(
            select(models.Finding).where(models.Finding.vuln_id == "CVE-2018-18074")
        ).one()
        assert (finding.package, finding.installed, finding.severity) == (
            "requests",
            "2.19.0",
            "CRITICAL",
        )
        assert finding.vendor_severity == {"ghsa": "CRITICAL"}
        actions = session.scalars(select(models.AuditEntry.action)).all()
        assert "verdict.revoked" in actions

    ((headers, body),) = receiver.requests
    mac = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(headers["X-Supplychain-Signature"], f"sha256={mac}")
    event = json.loads(body)
    assert (event["event"], event["image"], event["previous"], event["decision"]) == (
        "verdict.revoked",
        pinned,
        "allow",
        "deny",
    )
    assert any("CVE-2018-18074" in r for r in event["reasons"])

    answer = service.gate.decide(pinned)
    assert answer.decision == "deny"
    assert any("CRITICAL CVE-2018-18074 in requests 2.19.0" in r for r in answer.reasons)

    again = rematcher(service, receiver.url).run(scan_ids)  # same DB: nothing changes
    assert (again.rematched, again.changed, again.revocations) == (1, 0, 0)
    assert len(receiver.requests) == 1
    # every row the rematch wrote (findings, scans, verdicts, changes) is in the tamper-evident log
    report_log = verify(db, None)
    assert report_log.problems == (), report_log.problems


def test_rematch_narrows_to_sboms_naming_the_changed_packages(
    db: Database, pg_url: str, pushed: Pushed, tmp_path: Path
) -> None:
    install_db(tmp_path / "trivy", BASE_ADVISORIES, tmp_path)
    service = make_service(tmp_path, pg_url, pushed)
    process(service, pushed.app, "app")
    process(service, pushed.tiny, "tiny")
    with db.session() as session:
        everything = select_scans(session)
        requests_only = select_scans(session, packages=[("pypi", "Requests")])
        urllib3 = select_scans(session, packages=[("pypi", "urllib3")])
        nobody = select_scans(session, packages=[("npm", "requests")])
        app_scan = session.scalars(
            select(models.Scan.id).join(models.Image).where(models.Image.digest == pushed.app)
        ).one()
        later = select_scans(session, since=datetime(2999, 1, 1, tzinfo=UTC))
    assert len(everything) == 2
    assert requests_only == [app_scan]
    assert sorted(urllib3) == sorted(everything)
    assert nobody == [] and later == []


def test_db_diff_plans_the_rematch_of_only_the_affected_sboms(
    db: Database, pg_url: str, pushed: Pushed, tmp_path: Path
) -> None:
    store = install_db(tmp_path / "trivy", BASE_ADVISORIES, tmp_path / "a")
    old = store.current()
    service = make_service(tmp_path, pg_url, pushed)
    process(service, pushed.app, "app")
    process(service, pushed.tiny, "tiny")
    install_db(tmp_path / "trivy", (*BASE_ADVISORIES, NEW_ADVISORY), tmp_path / "b")
    new = store.current()
    assert old is not None and new is not None
    diff = changed_packages(old.path / "db" / "trivy.db", new.path / "db" / "trivy.db")
    assert ("pypi", "requests") in diff.packages and diff.narrowable
    assert {kind for kind, _ in diff.packages} == {"pypi"}
    with db.session() as session:
        app_scan, tiny_scan = (
            session.scalars(
                select(models.Scan.id).join(models.Image).where(models.Image.digest == digest)
            ).one()
            for digest in (pushed.app, pushed.tiny)
        )
        plan = plan_rematch(session, new.path.parent, new.digest, new.path / "db" / "trivy.db")
    assert (plan.match, plan.advance) == ((app_scan,), (tiny_scan,))
    matcher = rematcher(service)
    assert matcher.run(list(plan.match)).revocations == 1
    matcher.advance(list(plan.advance), new.digest, new.updated_at)
    with db.session() as session:
        assert plan_rematch(session, new.path.parent, new.digest, new.path / "db" / "trivy.db") == (
            RematchPlan((), ())
        )
        tiny = session.get(models.Scan, tiny_scan)
        assert tiny is not None and tiny.db_digest == new.digest and tiny.matched_at

    # A severity change of a known advisory, and a Debian advisory (keyed by source package).
    raised = replace(BASE_ADVISORIES[2], severity="CRITICAL")  # the same advisory, details only
    debian = Advisory("CVE-2099-9999", "debian 12", "bash", "LOW", fixed_version="9.9")
    third = build_trivy_db(tmp_path / "c", (*BASE_ADVISORIES[:2], raised, debian))
    diff = changed_packages(new.path / "db" / "trivy.db", third)
    assert {("pypi", "urllib3"), ("deb", "src:bash"), ("pypi", "requests")} <= diff.packages
    assert ("npm", "lodash") not in diff.packages
    # The Debian change selects the SBOMs holding a package built from source "bash" only.
    with db.session() as session:
        assert select_scans(session, packages={("deb", "src:bash")}) == [app_scan]
        assert select_scans(session, packages={("deb", "src:no-such-source")}) == []
        session.execute(
            update(models.Component)
            .where(models.Component.scan_id == app_scan, models.Component.name == "bash")
            .values(source_name=None)
        )
        # a row recorded before source names were kept is selected by any Debian change
        assert select_scans(session, packages={("deb", "src:no-such-source")}) == [app_scan]


def test_one_trivy_run_for_the_changed_packages_equals_whole_sbom_rematches(
    db: Database, pg_url: str, pushed: Pushed, tmp_path: Path
) -> None:
    store = install_db(tmp_path / "trivy", BASE_ADVISORIES, tmp_path / "a")
    old = store.current()
    service = make_service(tmp_path, pg_url, pushed)
    process(service, pushed.app, "app")
    process(service, pushed.tiny, "tiny")
    newer = (*BASE_ADVISORIES, NEW_ADVISORY, replace(BASE_ADVISORIES[2], severity="CRITICAL"))
    install_db(tmp_path / "trivy", newer, tmp_path / "b")
    new = store.current()
    assert old is not None and new is not None
    diff = changed_packages(old.path / "db" / "trivy.db", new.path / "db" / "trivy.db")
    with db.session() as session:
        plan = plan_rematch(session, new.path.parent, new.digest, new.path / "db" / "trivy.db")
    assert len(plan.match) == 2  # both images hold urllib3
    report = rematch_packages(
        rematcher(service), service.trivy, list(plan.match), set(diff.packages)
    )
    assert (report.rematched, report.changed, report.revocations, report.failed) == (2, 2, 2, ())

    def stored() -> set[tuple[object, ...]]:
        with db.session() as session:
            return {
                (f.scan_id, f.vuln_id, f.package, f.installed, f.severity, f.layer_digest, f.fixed)
                for f in session.scalars(select(models.Finding))
            }

    partial = stored()
    assert ("CVE-2018-18074", "requests", "2.19.0", "CRITICAL") in {r[1:5] for r in partial}
    whole = rematcher(service).run(list(plan.match))  # whole SBOMs, one Trivy run each
    assert (whole.rematched, whole.changed) == (2, 0)
    assert stored() == partial


def test_a_failing_scan_fails_the_job_for_retry_and_the_gate_stays_pending(
    db: Database, pg_url: str, pushed: Pushed, tmp_path: Path
) -> None:
    install_db(tmp_path / "trivy", BASE_ADVISORIES, tmp_path)
    service = make_service(tmp_path, pg_url, pushed, trivy_timeout="0.001")
    process(service, pushed.app, "app")
    with db.session() as session:
        job = session.scalars(select(models.Job)).one()
        assert job.state == "queued" and job.attempts == 1  # retried later
        assert job.last_error and "trivy timed out" in job.last_error
        assert session.scalars(select(models.Verdict.decision)).all() == []
    answer = service.gate.decide(f"{pushed.registry.host}/{REPO}@{pushed.app}")
    assert answer.decision == "pending"


def test_a_failing_rematch_changes_nothing(
    db: Database, pg_url: str, pushed: Pushed, tmp_path: Path
) -> None:
    install_db(tmp_path / "trivy", BASE_ADVISORIES, tmp_path)
    service = make_service(tmp_path, pg_url, pushed)
    process(service, pushed.app, "app")
    with db.session() as session:
        scan_ids = select_scans(session)
        findings_before = len(session.scalars(select(models.Finding)).all())
    service.trivy.timeout = 0.001  # no Trivy run ends within 1 ms of its start; 50 ms one did
    report = rematcher(service).run(scan_ids)
    assert report.rematched == 0 and len(report.failed) == 1 and "timed out" in report.failed[0]
    with db.session() as session:
        assert len(session.scalars(select(models.Finding)).all()) == findings_before
        assert session.scalars(select(models.VerdictChange)).all() == []
        assert "rematch.failed" in session.scalars(select(models.AuditEntry.action)).all()


def test_vex_marks_findings_not_affected_and_keeps_them(
    db: Database, pg_url: str, pushed: Pushed, tmp_path: Path
) -> None:
    install_db(tmp_path / "trivy", (*BASE_ADVISORIES, NEW_ADVISORY), tmp_path)
    service = make_service(tmp_path, pg_url, pushed)
    process(service, pushed.app, "app")
    digest = pushed.app
    openvex = {
        "@context": "https://openvex.dev/ns/v0.2.0",
        "@id": "https://example.test/vex/1",
        "author": "security@example.test",
        "timestamp": "2026-11-20T00:00:00Z",
        "version": 1,
        "statements": [
            {
                "vulnerability": {"name": "CVE-2018-18074"},
                "products": [
                    {
                        "@id": f"pkg:oci/app@{digest.replace(':', '%3A')}",
                        "subcomponents": [{"@id": "pkg:pypi/requests@2.19.0"}],
                    }
                ],
                "status": "not_affected",
                "justification": "vulnerable_code_not_in_execute_path",
                "impact_statement": "we never follow redirects",
            }
        ],
    }
    with db.session() as session:
        assert record_vex(session, json.dumps(openvex).encode(), source="upload") == 1
        # the same document again adds nothing: the newest-wins order never changes
        assert record_vex(session, json.dumps(openvex).encode(), source="upload") == 0
    answer = service.gate.decide(f"{pushed.registry.host}/{REPO}@{digest}")
    assert answer.decision == "allow"
    with db.session() as session:
        (image,) = session.scalars(select(models.Image).where(models.Image.digest == digest))
        facts = load_image_facts(session, image)
        assert facts.evidence.scan is not None
        marked = match_vex(facts.evidence.scan.findings, facts.vex, digest)
        (finding,) = [f for f in marked if f.vuln_id == "CVE-2018-18074"]
        assert finding.vex_status == "not_affected"
        assert finding.vex_justification == (
            "vulnerable_code_not_in_execute_path — we never follow redirects"
        )
        others = [f for f in marked if f.vuln_id != "CVE-2018-18074"]
        assert others and all(f.vex_status is None for f in others)
        scan_ids = select_scans(session)
    rematcher(service).run(scan_ids)  # the rematch decides with the same VEX
    with db.session() as session:
        latest = session.scalars(
            select(models.Verdict)
            .where(models.Verdict.context == "rematch")
            .order_by(models.Verdict.id.desc())
        ).first()
        assert latest is not None and latest.decision == "allow"


def test_cyclonedx_vex_maps_states_and_needs_an_image() -> None:
    doc = {
        "bomFormat": "CycloneDX",
        "specVersion": "1.5",
        "vulnerabilities": [
            {
                "id": "CVE-2020-8203",
                "analysis": {"state": "false_positive", "detail": "lodash is unused"},
                "affects": [{"ref": "urn:cdx:1/1#pkg:npm/lodash@4.17.15"}],
            }
        ],
    }
    fmt, (statement,) = parse_vex(json.dumps(doc).encode(), image="sha256:" + "a" * 64)
    assert fmt == "cyclonedx" and statement.status == "not_affected"
    assert statement.subcomponent == "pkg:npm/lodash@4.17.15"
    assert statement.justification == "lodash is unused"
    with pytest.raises(Exception, match="names no image"):
        parse_vex(json.dumps(doc).encode())


def test_policy_keeps_not_affected_findings_out_of_the_decision() -> None:
    policy = load_policy(None)
    critical = Finding("CVE-1", "requests", None, "2.19.0", "2.20.0", "CRITICAL", "fixed")
    vexed = replace(critical, vex_status="not_affected")
    scan = ScanResult("trivy", "0.76.0", datetime.now(UTC), None, (critical,))
    now = datetime.now(UTC)
    assert policy.evaluate(Evidence(None, None, scan), now).decision == "deny"
    vexed_scan = ScanResult("trivy", "0.76.0", now, None, (vexed,))
    verdict = policy.evaluate(Evidence(None, None, vexed_scan), now)
    assert verdict.decision == "allow" and verdict.details["not_affected"] == 1
    assert isinstance(policy, RulesPolicy)


def test_revocation_webhook_retries_and_refuses_unsafe_urls() -> None:
    from supplychain.rematch.revocations import Revocation

    revocation = Revocation(1, "r/x@sha256:00", "allow", "deny", ("CRITICAL",), None, "now")
    flaky = Receiver((503, 500))
    try:
        WebhookAnnouncer(flaky.url, backoff=0.01).announce(revocation)
        assert len(flaky.requests) == 3
    finally:
        flaky.close()
    refusing = Receiver((400,))
    try:
        with pytest.raises(AnnounceError, match="HTTP 400"):
            WebhookAnnouncer(refusing.url, backoff=0.01).announce(revocation)
        assert len(refusing.requests) == 1  # a 4xx is not retried
    finally:
        refusing.close()
    for url in ("http://169.254.169.254/latest", "http://example.test/hook", "file:///etc/passwd"):
        with pytest.raises(AnnounceError):
            WebhookAnnouncer(url).announce(revocation)
    assert "token" not in repr(WebhookAnnouncer("https://hooks.example.test/x?token=s3cret"))
