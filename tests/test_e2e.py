"""End to end on real parts: distribution registry → webhook → service → Trivy → PostgreSQL → gate.

A real image (Debian bookworm minbase from debootstrap, plus a layer of old PyPI and npm packages)
is pushed with skopeo to Debian's distribution registry, which notifies `supplychain serve`
(a subprocess). The Trivy DB is a real bbolt file the test builds, holding a CRITICAL advisory for
the old `requests` in the image.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from sqlalchemy import func, select

from supplychain.evidence.database import Database
from supplychain.evidence.models import (
    Component,
    Finding,
    Job,
    JobFailure,
    Scan,
    Verdict,
    WebhookDelivery,
)
from supplychain.evidence.sbomstore import unpack
from tests.conftest import TOKEN, new_database
from tests.support import images
from tests.support.registry import Endpoint, Registry, free_port
from tests.support.service import Server, run_cli, service_env, wait_for
from tests.support.tokens import issue
from tests.support.trivydb import Advisory, build_trivy_db

HARBOR_KEY = "harbor-webhook-key-0123456789"
"""Harbor's own webhook credential (SUPPLYCHAIN_WEBHOOK_KEYS): sources share no secret."""

pytestmark = pytest.mark.e2e

ADVISORIES = (
    Advisory(
        "CVE-2018-18074",
        "pip::GitHub Security Advisory pip",
        "requests",
        "CRITICAL",
        vulnerable_versions=("<2.20.0",),
        patched_versions=("2.20.0",),
        title="requests sends Authorization headers on redirect",
    ),
    Advisory(
        "CVE-2023-45853",
        "debian 12",
        "zlib",
        "HIGH",
        fixed_version="1:1.2.13.dfsg-2",
        title="zlib overflow",
    ),
    Advisory(
        "CVE-2020-8203",
        "npm::GitHub Security Advisory npm",
        "lodash",
        "MEDIUM",
        vulnerable_versions=("<4.17.19",),
        patched_versions=("4.17.19",),
    ),
)


@dataclass
class Stack:
    registry: Registry
    quiet_registry: Registry
    server: Server
    db: Database
    env: dict[str, str]
    trivy_db: Path
    app: str
    base: str


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("e2e")
    layout = images.app_layout()
    trivy_db = build_trivy_db(root / "trivy", ADVISORIES)
    port = free_port()
    hook = Endpoint(
        f"http://127.0.0.1:{port}/v1/hooks/distribution", {"Authorization": [f"Bearer {TOKEN}"]}
    )
    with (
        new_database() as url,
        Registry(root / "registry", notifications=[hook]) as registry,
        Registry(root / "quiet-registry") as quiet,
    ):
        env = service_env(
            {
                "SUPPLYCHAIN_DATA_DIR": str(root / "data"),
                "SUPPLYCHAIN_DATABASE_URL": url,
                "SUPPLYCHAIN_WEBHOOK_TOKEN": TOKEN,
                "SUPPLYCHAIN_WEBHOOK_KEYS": f"harbor={HARBOR_KEY}",
                "SUPPLYCHAIN_REGISTRIES": f"{registry.host},{quiet.host}",
                "SUPPLYCHAIN_TRIVY_CACHE_DIR": str(root / "trivy"),
                "SUPPLYCHAIN_TRIVY_OFFLINE": "true",
                "SUPPLYCHAIN_WORKERS": "2",
                "SUPPLYCHAIN_JOB_MAX_ATTEMPTS": "2",
            }
        )
        tokens = issue(env)
        server = Server(env, root / "server.log", port, tokens=tokens)
        db = Database(url)
        try:
            server.wait_ready()
            app = images.push(layout, "app", f"{registry.host}/team/app:v1")
            base = images.push(layout, "base", f"{registry.host}/team/base:v1")
            yield Stack(
                registry,
                quiet,
                server,
                db,
                tokens.env({**env, "SUPPLYCHAIN_SERVER": server.url}),
                trivy_db,
                app,
                base,
            )
        finally:
            server.stop()
            db.dispose()


def _jobs_finished(stack: Stack, digests: set[str]) -> bool:
    with stack.db.session() as session:
        states = dict(
            session.execute(select(Job.digest, Job.state).where(Job.digest.in_(digests))).all()
        )
    return len(states) == len(digests) and all(s in ("done", "failed") for s in states.values())


def _wait_scanned(stack: Stack) -> None:
    wait_for(
        lambda: _jobs_finished(stack, {stack.app, stack.base}),
        300,
        lambda: f"jobs did not finish; server log:\n{stack.server.log()[-4000:]}",
    )


def test_push_is_stored_scanned_and_recorded_in_postgresql(stack: Stack) -> None:
    _wait_scanned(stack)
    with stack.db.session() as session:
        deliveries = session.scalars(select(WebhookDelivery)).all()
        assert deliveries and all(d.authenticated for d in deliveries)
        # pushes accepted; the registry's pull notifications (our own pulls) ignored with a reason
        assert {d.outcome for d in deliveries} <= {"accepted", "ignored"}
        assert any(d.outcome == "accepted" for d in deliveries)
        assert all(d.detail for d in deliveries if d.outcome == "ignored")
        jobs = session.scalars(select(Job).where(Job.digest.in_({stack.app, stack.base}))).all()
        assert {(j.repository, j.state) for j in jobs} == {
            ("team/app", "done"),
            ("team/base", "done"),
        }
        scan = session.scalars(
            select(Scan).join(Scan.image).where(Scan.image.has(digest=stack.app))
        ).one()
        assert scan.scanner == "trivy" and scan.scanner_version == "0.76.0"
        assert scan.db_digest == "sha256:" + hashlib.sha256(stack.trivy_db.read_bytes()).hexdigest()
        assert set(scan.stage_seconds) == {"pull", "sbom", "scan", "verify"}
        document = unpack(scan.sbom, scan.sbom_encoding)
        assert scan.sbom_encoding == "zstd" and scan.sbom is not None
        assert document is not None and json.loads(document)["bomFormat"] == "CycloneDX"
        assert scan.sbom_digest == "sha256:" + hashlib.sha256(document).hexdigest()
        findings = {
            (f.vuln_id, f.package, f.installed, f.fixed, f.severity, f.purl)
            for f in session.scalars(select(Finding).where(Finding.scan_id == scan.id))
        }
        assert (
            "CVE-2018-18074",
            "requests",
            "2.19.0",
            "2.20.0",
            "CRITICAL",
            "pkg:pypi/requests@2.19.0",
        ) in findings
        assert (
            "CVE-2020-8203",
            "lodash",
            "4.17.15",
            "4.17.19",
            "MEDIUM",
            "pkg:npm/lodash@4.17.15",
        ) in findings
        assert any(f[0] == "CVE-2023-45853" and f[1] == "zlib1g" for f in findings)
        purls = set(session.scalars(select(Component.purl).where(Component.scan_id == scan.id)))
        assert {"pkg:pypi/requests@2.19.0", "pkg:npm/lodash@4.17.15"} <= purls
        assert any(p and p.startswith("pkg:deb/debian/libc6@") for p in purls)
        base_findings = session.scalars(
            select(Finding.vuln_id)
            .join(Scan, Finding.scan_id == Scan.id)
            .where(Scan.image.has(digest=stack.base))
        ).all()
        assert "CVE-2018-18074" not in base_findings and "CVE-2023-45853" in base_findings
        verdicts = dict(
            session.execute(
                select(Verdict.digest, Verdict.decision).where(Verdict.context == "pipeline")
            ).all()
        )
        assert verdicts == {stack.app: "deny", stack.base: "allow"}


def test_gate_denies_critical_and_allows_clean_with_pinned_digest(stack: Stack) -> None:
    _wait_scanned(stack)
    host = stack.registry.host
    denied = run_cli(["gate", f"{host}/team/app:v1"], stack.env)
    assert denied.returncode == 1, denied.stdout + denied.stderr
    assert f"pinned:   {host}/team/app@{stack.app}" in denied.stdout
    assert "CRITICAL CVE-2018-18074 in requests 2.19.0 (fixed in 2.20.0)" in denied.stdout
    allowed = run_cli(["gate", f"{host}/team/base:v1", "--output", "json"], stack.env)
    assert allowed.returncode == 0, allowed.stdout + allowed.stderr
    answer = json.loads(allowed.stdout)
    assert answer["decision"] == "allow"
    assert answer["digest"] == stack.base
    assert answer["pinned"] == f"{host}/team/base@{stack.base}"
    assert answer["policy"]["digest"].startswith("sha256:")
    with stack.db.session() as session:
        gate_rows = session.execute(
            select(Verdict.requested, Verdict.decision).where(Verdict.context == "gate")
        ).all()
    assert (f"{host}/team/app:v1", "deny") in gate_rows
    assert (f"{host}/team/base:v1", "allow") in gate_rows


def test_gate_fails_closed(stack: Stack) -> None:
    host = stack.registry.host
    missing = run_cli(["gate", f"{host}/team/app:no-such-tag"], stack.env)
    assert missing.returncode == 2
    assert "could not resolve" in missing.stdout
    foreign = run_cli(["gate", "registry.example.com/team/app:v1"], stack.env)
    assert foreign.returncode == 2  # refused, nothing decided: error, not deny
    assert "decision: error" in foreign.stdout
    assert "not in SUPPLYCHAIN_REGISTRIES" in foreign.stdout
    unreachable = run_cli(
        ["gate", f"{host}/team/app:v1", "--server", "http://127.0.0.1:9"], stack.env
    )
    assert unreachable.returncode == 2


def test_unscanned_image_is_pending_then_decided_with_wait(stack: Stack) -> None:
    quiet = (
        stack.quiet_registry.host
    )  # pushes here send no webhook: the gate queues the scan itself
    digest = images.push(images.app_layout(), "app-deleted", f"{quiet}/team/late:v1")
    first = requests.post(
        f"{stack.server.url}/v1/gate",
        json={"image": f"{quiet}/team/late:v1"},
        headers=stack.server.auth("ci"),
        timeout=30,
    )
    assert first.json()["decision"] == "pending"
    assert first.json()["digest"] == digest
    waited = run_cli(["gate", f"{quiet}/team/late:v1", "--wait", "240"], stack.env)
    assert waited.returncode == 1, waited.stdout  # requests 2.19.0 is still in app-deleted


def test_webhook_with_wrong_token_is_refused_and_not_stored(stack: Stack) -> None:
    with stack.db.session() as session:
        before = session.scalar(select(func.count()).select_from(WebhookDelivery))
    body = {"events": []}
    for headers in ({}, {"Authorization": "Bearer not-the-token-at-all"}):
        response = requests.post(
            f"{stack.server.url}/v1/hooks/distribution", json=body, headers=headers, timeout=10
        )
        assert response.status_code == 401
    malformed = requests.post(
        f"{stack.server.url}/v1/hooks/distribution",
        data=b"{oops",
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=10,
    )
    assert malformed.status_code == 400
    with stack.db.session() as session:
        after = session.scalar(select(func.count()).select_from(WebhookDelivery))
    assert after == (before or 0) + 1  # only the authenticated malformed one, kept for audit


def test_registry_serving_wrong_bytes_fails_the_job_and_records_no_scan(stack: Stack) -> None:
    quiet = stack.quiet_registry
    tiny = images.tiny_layout()
    digest = images.push(tiny, "tiny", f"{quiet.host}/team/tampered:v1")
    layer = images.manifest(tiny, "tiny")["layers"][0]["digest"]
    blob = quiet.blob_data(layer)
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0xFF
    blob.write_bytes(bytes(data))
    event = {
        "id": "tamper-1",
        "action": "push",
        "target": {
            "mediaType": images.OCI_MANIFEST,
            "digest": digest,
            "repository": "team/tampered",
            "tag": "v1",
        },
        "request": {"host": quiet.host},
    }
    response = requests.post(
        f"{stack.server.url}/v1/hooks/distribution",
        json={"events": [event]},
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=10,
    )
    assert response.status_code == 202 and response.json()["accepted"] == 1
    wait_for(lambda: _jobs_finished(stack, {digest}), 60, lambda: stack.server.log()[-3000:])
    with stack.db.session() as session:
        job = session.scalars(select(Job).where(Job.digest == digest)).one()
        assert job.state == "failed"
        assert job.last_error is not None and job.last_error.startswith("integrity:")
        assert layer in job.last_error
        reasons = session.scalars(
            select(JobFailure.reason).where(JobFailure.job_id == job.id)
        ).all()
        assert reasons == [job.last_error]  # integrity failures are not retried
        assert (
            session.scalar(
                select(func.count()).select_from(Scan).where(Scan.image.has(digest=digest))
            )
            == 0
        )


def test_scan_cli_prints_verdict_and_findings_as_json(stack: Stack) -> None:
    result = run_cli(["scan", f"{stack.registry.host}/team/app:v1", "--output", "json"], stack.env)
    assert result.returncode == 1, result.stderr[-2000:]
    answer = json.loads(result.stdout)
    assert (answer["decision"], answer["digest"]) == ("deny", stack.app)
    requests_finding = next(f for f in answer["findings"] if f["id"] == "CVE-2018-18074")
    assert requests_finding == {
        "id": "CVE-2018-18074",
        "package": "requests",
        "purl": "pkg:pypi/requests@2.19.0",
        "installed": "2.19.0",
        "fixed": "2.20.0",
        "severity": "CRITICAL",
        "image": stack.app,
    }


def test_index_fans_out_and_gate_decides_per_platform(stack: Stack, tmp_path: Path) -> None:
    layout = images.index_layout(tmp_path / "multi", {"linux/amd64": "app", "linux/arm64": "base"})
    host = stack.registry.host
    index_digest = images.push(layout, "multi", f"{host}/team/multi:v1")
    ref = f"{host}/team/multi:v1"
    both = run_cli(["gate", ref, "--wait", "240", "--output", "json"], stack.env)
    answer = json.loads(both.stdout)
    assert both.returncode == 1, both.stdout
    assert answer["digest"] == index_digest
    assert any(r.startswith("linux/amd64: CRITICAL CVE-2018-18074") for r in answer["reasons"])
    arm = run_cli(["gate", ref, "--platform", "linux/arm64", "--wait", "60"], stack.env)
    assert arm.returncode == 0, arm.stdout
    with stack.db.session() as session:
        kinds = dict(
            session.execute(
                select(Job.digest, Job.kind).where(Job.repository == "team/multi")
            ).all()
        )
    assert kinds == {index_digest: "index", stack.app: "image", stack.base: "image"}


def test_harbor_webhook_without_media_type_is_processed(stack: Stack) -> None:
    quiet = stack.quiet_registry.host
    digest = images.push(images.app_layout(), "base", f"{quiet}/library/harbored:v3")
    resource = {"digest": digest, "tag": "v3", "resource_url": f"{quiet}/library/harbored:v3"}
    body = {
        "type": "PUSH_ARTIFACT",
        "occur_at": 1,
        "event_data": {
            "resources": [resource],
            "repository": {"repo_full_name": "library/harbored"},
        },
    }
    response = requests.post(
        f"{stack.server.url}/v1/hooks/harbor",
        json=body,
        headers={"Authorization": f"Bearer {HARBOR_KEY}"},
        timeout=10,
    )
    assert response.status_code == 202 and response.json()["accepted"] == 1
    wait_for(lambda: _jobs_finished(stack, {digest}), 120, lambda: stack.server.log()[-3000:])
    with stack.db.session() as session:
        query = select(Job).where(Job.digest == digest, Job.repository == "library/harbored")
        job = session.scalars(query).one()
        assert (job.kind, job.state) == ("manifest", "done")
        decision = session.scalar(
            select(Verdict.decision)
            .join(Scan, Verdict.scan_id == Scan.id)
            .where(Scan.job_id == job.id, Verdict.context == "pipeline")
        )
    assert decision == "allow"
