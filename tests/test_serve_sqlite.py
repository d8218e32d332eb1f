"""`supplychain serve` on the embedded default (SQLite in the data dir), with a real registry."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import requests
from sqlalchemy import func, select

from supplychain.evidence.database import Database
from supplychain.evidence.models import AuditEntry, Finding, Job, WebhookDelivery
from tests.conftest import TOKEN
from tests.support import images
from tests.support.advisories import URLLIB3_HIGH
from tests.support.registry import Endpoint, Registry, free_port
from tests.support.service import Server, run_cli, service_env, wait_for
from tests.support.tokens import issue
from tests.support.trivydb import build_trivy_db

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("recommended", [False, True], ids=["every-event", "as-recommended"])
def test_serve_migrates_sqlite_and_runs_the_pipeline(tmp_path: Path, recommended: bool) -> None:
    build_trivy_db(
        tmp_path / "data" / "trivy",
        [URLLIB3_HIGH],
    )
    port = free_port()
    # docs/webhooks.md: distribution told to send manifest pushes and deletes only
    hook = Endpoint(
        f"http://127.0.0.1:{port}/v1/hooks/distribution",
        {"Authorization": [f"Bearer {TOKEN}"]},
        ignore_actions=("pull",) if recommended else (),
        ignore_media_types=("application/octet-stream",) if recommended else (),
    )
    with Registry(tmp_path / "registry", notifications=[hook]) as registry:
        env = service_env(
            {
                "SUPPLYCHAIN_DATA_DIR": str(tmp_path / "data"),
                "SUPPLYCHAIN_WEBHOOK_TOKEN": TOKEN,
                "SUPPLYCHAIN_REGISTRIES": registry.host,
                "SUPPLYCHAIN_TRIVY_OFFLINE": "true",
            }
        )
        tokens = issue(env)  # before serve first starts: the CLI's way of bootstrapping
        server = Server(env, tmp_path / "server.log", port, tokens=tokens)
        try:
            server.wait_ready()
            assert (tmp_path / "data" / "supplychain.db").is_file()
            assert requests.get(f"{server.url}/readyz", timeout=5).json()["status"] == "ready"
            digest = images.push(images.tiny_layout(), "tiny", f"{registry.host}/team/tiny:v1")
            db = Database(f"sqlite:///{tmp_path / 'data' / 'supplychain.db'}")

            def done() -> bool:
                with db.session() as session:
                    return session.scalar(select(Job.state).where(Job.digest == digest)) == "done"

            wait_for(done, 120, lambda: server.log()[-3000:])
            with db.session() as session:
                found = session.execute(select(Finding.vuln_id, Finding.severity)).all()
            assert found == [("CVE-2019-11324", "HIGH")]
            # the worker's own pull was notified, and ignored with its reason, unless the
            # registry was told not to send pulls and blob events: then only the push arrives
            wait_for(lambda: recommended or _deliveries(db)[0] > 0, 30, server.log)
            time.sleep(1.5 if recommended else 0)  # a pull notice would come within this
            ignored, deliveries = _deliveries(db)
            assert deliveries == 1 if recommended else deliveries > 1 and ignored > 0
            gate = run_cli(
                ["gate", f"{registry.host}/team/tiny:v1", "--server", server.url], tokens.env(env)
            )
            assert gate.returncode == 0, gate.stdout
            assert f"{registry.host}/team/tiny@{digest}" in gate.stdout
            metrics = requests.get(f"{server.url}/metrics", timeout=5).text
            assert 'supplychain_gate_decisions_total{decision="allow"} 1.0' in metrics
            assert 'supplychain_jobs_total{outcome="done"}' in metrics
            db.dispose()
        finally:
            server.stop()
    lines = [json.loads(line) for line in server.log().splitlines() if line.startswith("{")]
    messages = [line["message"] for line in lines]
    assert messages.count("worker started") == 2  # SUPPLYCHAIN_WORKERS' default
    assert "workers stopping" in messages and messages.count("worker stopped") == 2
    requests_seen = {
        (r["method"], r["path"], r["status"]) for r in lines if r["message"] == "request"
    }
    assert ("POST", "/v1/hooks/{source}", 202) in requests_seen  # the route, not the raw path
    assert ("GET", "/readyz", 200) in requests_seen
    assert all(r["duration_ms"] >= 0 for r in lines if r["message"] == "request")
    assert TOKEN not in server.log()  # the registry's Authorization header is never logged
    assert "\x1b" not in server.log() and "\\u001b" not in server.log()  # no terminal colours


def test_first_run_without_a_vulnerability_db_says_what_to_run(tmp_path: Path) -> None:
    env = service_env(
        {"SUPPLYCHAIN_DATA_DIR": str(tmp_path / "data"), "SUPPLYCHAIN_WORKERS": "0"}
    )  # online (the default): the advice is `vulndb update`
    server = Server(env, tmp_path / "server.log")
    try:
        server.wait_ready()
        ready = requests.get(f"{server.url}/readyz", timeout=5)
        assert ready.status_code == 503 and ready.json()["status"] == "not ready"
        (problem,) = ready.json()["problems"]
        assert problem.startswith("no Trivy vulnerability DB: run `supplychain vulndb update`")
    finally:
        server.stop()
    (warning,) = [
        json.loads(line)
        for line in server.log().splitlines()
        if line.startswith("{") and "no Trivy vulnerability DB" in line
    ]
    assert warning["level"] == "warning" and str(tmp_path / "data" / "trivy") in warning["message"]
    assert "supplychain vulndb import db.tar.gz" in warning["message"]  # the air-gapped way


def _deliveries(db: Database) -> tuple[int, int]:
    """(deliveries ignored for a pull, all deliveries) recorded so far."""
    with db.session() as session:
        details = session.scalars(
            select(AuditEntry.details).where(AuditEntry.action == "webhook.ignored")
        ).all()
        total = session.scalar(select(func.count()).select_from(WebhookDelivery)) or 0
    pulls = sum("action 'pull'" in json.dumps(d) for d in details)
    return pulls, total
