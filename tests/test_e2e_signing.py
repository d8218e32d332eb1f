"""Signatures in the running service: verified in the pipeline, issued after a verdict.

Real registry, real PostgreSQL, real Trivy, real keys (made with `supplychain keys generate`).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import select

from supplychain.evidence.database import Database
from supplychain.evidence.models import (
    Attestation,
    AuditEntry,
    Job,
    Signature,
    Verdict,
    WebhookDelivery,
)
from tests.conftest import TOKEN, new_database
from tests.support import images
from tests.support.advisories import URLLIB3_HIGH
from tests.support.registry import Endpoint, Registry, free_port
from tests.support.service import Server, run_cli, service_env, wait_for
from tests.support.tokens import issue
from tests.support.trivydb import build_trivy_db

pytestmark = pytest.mark.e2e
PASSWORD = "correct horse battery staple"


def test_pipeline_verifies_signatures_and_signs_after_allow(tmp_path: Path) -> None:
    keys_env = service_env({"SUPPLYCHAIN_KEY_PASSWORD": PASSWORD})
    made = run_cli(["keys", "generate", "--output-prefix", str(tmp_path / "ours")], keys_env)
    assert made.returncode == 0, made.stderr
    made = run_cli(["keys", "generate", "--output-prefix", str(tmp_path / "ci")], keys_env)
    assert made.returncode == 0, made.stderr
    build_trivy_db(tmp_path / "trivy", [URLLIB3_HIGH])
    port = free_port()
    hook = Endpoint(
        f"http://127.0.0.1:{port}/v1/hooks/distribution", {"Authorization": [f"Bearer {TOKEN}"]}
    )
    with (
        new_database() as url,
        Registry(tmp_path / "registry", notifications=[hook]) as registry,
        Registry(tmp_path / "quiet") as quiet,
    ):
        env = {
            **keys_env,
            "SUPPLYCHAIN_DATA_DIR": str(tmp_path / "data"),
            "SUPPLYCHAIN_DATABASE_URL": url,
            "SUPPLYCHAIN_WEBHOOK_TOKEN": TOKEN,
            "SUPPLYCHAIN_REGISTRIES": f"{registry.host},{quiet.host}",
            "SUPPLYCHAIN_TRIVY_CACHE_DIR": str(tmp_path / "trivy"),
            "SUPPLYCHAIN_TRIVY_OFFLINE": "true",
            "SUPPLYCHAIN_VERIFY_KEYS": str(tmp_path / "ci.pub"),
            "SUPPLYCHAIN_SIGN_KEY": str(tmp_path / "ours.key"),
            "SUPPLYCHAIN_SIGN_AFTER_ALLOW": "true",
            "SUPPLYCHAIN_SIGN_MODE": "both",
        }
        env = issue(env).env(env)  # SUPPLYCHAIN_TOKEN: a ci token for `gate`
        server = Server(env, tmp_path / "server.log", port)
        db = Database(url)
        try:
            server.wait_ready()
            # 1. A push the service scans, allows, then signs and attests.
            digest = images.push(images.tiny_layout(), "tiny", f"{registry.host}/team/tiny:v1")

            def signed() -> bool:
                with db.session() as session:
                    query = select(AuditEntry.action).where(AuditEntry.action.like("image.sign%"))
                    return session.scalar(query) is not None

            wait_for(signed, 120, lambda: server.log()[-3000:])
            with db.session() as session:
                entry = session.scalars(
                    select(AuditEntry).where(AuditEntry.action.like("image.sign%"))
                ).one()
            assert entry.action == "image.signed", entry.details
            checked = run_cli(
                ["verify", f"{registry.host}/team/tiny:v1", "--key", str(tmp_path / "ours.pub"),
                 "--output", "json"],
                env,
            )  # fmt: skip
            assert checked.returncode == 0, checked.stdout + checked.stderr
            report = json.loads(checked.stdout)
            assert report["image"].endswith(f"@{digest}") and report["verified"] is True
            # Our pushes of .sig/.att manifests are notified too: none became a job.
            sig_tag = f"sha256-{digest.removeprefix('sha256:')}.sig"

            def sig_notified() -> bool:
                with db.session() as session:
                    bodies = session.scalars(select(WebhookDelivery.body)).all()
                return any(sig_tag.encode() in body for body in bodies)

            wait_for(sig_notified, 60, lambda: "the .sig push was never notified")

            # Referrer bundles pushed by digest (no tag) become jobs that are skipped, not scanned.
            def settled() -> bool:
                with db.session() as session:
                    return all(s == "done" for s in session.scalars(select(Job.state)))

            wait_for(settled, 60, lambda: server.log()[-3000:])
            with db.session() as session:
                jobs = dict(session.execute(select(Job.digest, Job.state)).all())
                skipped = session.scalars(
                    select(AuditEntry.subject).where(AuditEntry.action == "job.skipped")
                ).all()
                scanned = session.scalars(
                    select(Verdict.digest).where(Verdict.context == "pipeline")
                )
                assert set(scanned) == {digest}
            assert skipped, "no referrer artifact was notified and skipped"
            assert set(jobs) - {digest} == {s.rsplit("@", 1)[1] for s in skipped}

            # 2. An image signed by CI before the gate asks: the pipeline verifies and stores it.
            other = images.push(images.tiny_layout(), "tiny", f"{quiet.host}/team/signed:v1")
            sign = run_cli(
                ["sign", f"{quiet.host}/team/signed:v1", "--key", str(tmp_path / "ci.key")], env
            )
            assert sign.returncode == 0, sign.stdout + sign.stderr
            attest_file = tmp_path / "vex.json"
            attest_file.write_text(json.dumps({"@context": "https://openvex.dev/ns/v0.2.0"}))
            attest = run_cli(
                ["attest", f"{quiet.host}/team/signed:v1", "--key", str(tmp_path / "ci.key"),
                 "--predicate", str(attest_file), "--type", "https://openvex.dev/ns"],
                env,
            )  # fmt: skip
            assert attest.returncode == 0, attest.stdout + attest.stderr
            gate = run_cli(
                ["gate", f"{quiet.host}/team/signed:v1", "--wait", "120", "--server", server.url],
                env,
            )
            assert gate.returncode == 0, gate.stdout
            with db.session() as session:
                signatures = session.execute(
                    select(Signature.kind, Signature.verified, Signature.reason)
                    .join(Verdict, Verdict.scan_id == Signature.scan_id)
                    .where(Verdict.digest == other, Verdict.context == "pipeline")
                ).all()
                attestations = session.execute(
                    select(Attestation.predicate_type, Attestation.verified).where(
                        Attestation.digest.is_not(None)
                    )
                ).all()
            assert [(k, v) for k, v, _ in signatures] == [("cosign-tag", True)], signatures
            assert ("https://openvex.dev/ns", True) in attestations
        finally:
            server.stop()
            db.dispose()
