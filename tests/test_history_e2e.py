"""The auditors' history end to end: a real ``supplychain serve`` on PostgreSQL, a real registry
whose push webhook gets the image scanned by real Trivy, the ``supplychain history`` commands an
auditor runs, and schemathesis against the served OpenAPI description (no 5xx, no answer
outside the description), with an auditor's and an admin's token.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from supplychain.evidence.models import utcnow
from tests.conftest import TOKEN, new_database
from tests.support import images
from tests.support.registry import Endpoint, Registry, free_port
from tests.support.service import Server, run_cli, service_env, wait_for
from tests.support.tokens import Tokens, issue
from tests.support.trivydb import build_trivy_db
from tests.test_vuln_scan import BASE_ADVISORIES, NEW_ADVISORY

pytestmark = pytest.mark.e2e

CVE = "CVE-2018-18074"
ST = Path(sys.executable).parent / "st"
CHECKS = (
    "not_a_server_error,status_code_conformance,content_type_conformance,"
    "response_schema_conformance,response_headers_conformance"
)


@dataclass(frozen=True)
class Stack:
    server: Server
    tokens: Tokens
    env: dict[str, str]
    digest: str
    trivy_db: Path
    root: Path


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("history-e2e")
    trivy_db = build_trivy_db(root / "trivy", (*BASE_ADVISORIES, NEW_ADVISORY))
    port = free_port()
    hook = Endpoint(
        f"http://127.0.0.1:{port}/v1/hooks/distribution", {"Authorization": [f"Bearer {TOKEN}"]}
    )
    with new_database() as url, Registry(root / "registry", notifications=[hook]) as registry:
        env = service_env(
            {
                "SUPPLYCHAIN_DATA_DIR": str(root / "data"),
                "SUPPLYCHAIN_DATABASE_URL": url,
                "SUPPLYCHAIN_WEBHOOK_TOKEN": TOKEN,
                "SUPPLYCHAIN_REGISTRIES": registry.host,
                "SUPPLYCHAIN_TRIVY_CACHE_DIR": str(root / "trivy"),
                "SUPPLYCHAIN_TRIVY_OFFLINE": "true",
                "SUPPLYCHAIN_WORKERS": "1",
            }
        )
        tokens = issue(env)
        server = Server(env, root / "server.log", port, tokens=tokens)
        try:
            server.wait_ready()
            digest = images.push(images.app_layout(), "app", f"{registry.host}/team/app:v1")
            env = {**env, "SUPPLYCHAIN_SERVER": server.url}
            yield Stack(server, tokens, env, digest, trivy_db, root)
        finally:
            server.stop()


def _events(stack: Stack, **params: str) -> list[dict[str, Any]]:
    answer = requests.get(
        f"{stack.server.url}/v1/history/images/{stack.digest}",
        params=params,
        headers=stack.server.auth("auditor"),
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    items: list[dict[str, Any]] = answer.json()["items"]
    return items


@pytest.fixture(scope="module")
def gated(stack: Stack) -> Stack:
    """The pushed image scanned by the pipeline, then gated (deny) by CI."""
    wait_for(
        lambda: bool(_events(stack, kind="verdict")),
        300,
        lambda: f"no verdict recorded; server log:\n{stack.server.log()[-4000:]}",
    )
    image = stack.env["SUPPLYCHAIN_REGISTRIES"] + f"/team/app@{stack.digest}"
    gate = run_cli(["gate", image, "--output", "json"], stack.tokens.env(stack.env))
    assert gate.returncode == 1, gate.stdout + gate.stderr
    return stack


def auditor(stack: Stack) -> dict[str, str]:
    return {**stack.env, "SUPPLYCHAIN_TOKEN": stack.tokens.by_role["auditor"]}


def test_an_auditor_reads_the_history_with_the_cli(gated: Stack) -> None:
    stack = gated
    env = auditor(stack)
    listed = run_cli(
        ["history", "image", stack.digest, "--format", "csv", "--all", "--limit", "2"], env
    )
    assert listed.returncode == 0, listed.stderr
    rows = list(csv.DictReader(io.StringIO(listed.stdout)))
    kinds = [r["kind"] for r in rows]
    assert {"scan", "sbom", "verdict", "gate"} <= set(kinds)  # pages joined, one header
    assert "kind" not in kinds
    scan = next(r for r in rows if r["kind"] == "scan")
    details = json.loads(scan["details"])
    assert (
        details["db_digest"] == "sha256:" + hashlib.sha256(stack.trivy_db.read_bytes()).hexdigest()
    )

    decided = run_cli(["history", "decision", stack.digest, "--at", utcnow().isoformat()], env)
    assert decided.returncode == 1, decided.stderr  # deny, as the gate answered
    answer = json.loads(decided.stdout)
    assert answer["decision"] == "deny" and any(CVE in r for r in answer["reasons"])
    assert answer["scan"]["db_digest"] == details["db_digest"]
    assert answer["recorded"]["context"] == "gate"

    out = stack.root / "sbom.json"
    fetched = run_cli(["history", "sbom", str(details["scan"]), "--out", str(out)], env)
    assert fetched.returncode == 0, fetched.stderr
    assert "sha256:" + hashlib.sha256(out.read_bytes()).hexdigest() == details["sbom_digest"]

    found = run_cli(["history", "affected", "--at", utcnow().isoformat(), "--cve", CVE], env)
    assert found.returncode == 0, found.stderr
    items = json.loads(found.stdout)["items"]
    assert [(i["digest"], i["passed_gate"]) for i in items] == [(stack.digest, False)]

    refused = run_cli(["history", "image", stack.digest], stack.tokens.env(stack.env))
    assert refused.returncode == 2 and "HTTP 403" in refused.stderr  # a ci token reads nothing
    for result in (listed, decided, fetched, found, refused):
        assert stack.tokens.by_role["auditor"] not in result.stdout + result.stderr


@pytest.mark.parametrize("role", ["auditor", "admin"])
def test_schemathesis_finds_no_server_error_and_no_undescribed_answer(
    gated: Stack, role: str, tmp_path: Path
) -> None:
    stack = gated
    token = stack.tokens.by_role[role]
    config = tmp_path / "schemathesis.toml"  # the token from the environment, not argv
    config.write_text('headers = { Authorization = "Bearer ${HISTORY_TEST_TOKEN}" }\n')
    command = [
        str(ST), "--config-file", str(config), "run", f"{stack.server.url}/v1/openapi.json",
        "--checks", CHECKS, "--max-examples", "8", "--workers", "1", "--seed", "7",
        "--generation-database", "none", "--no-color", "--request-timeout", "30",
        # it could revoke the very token it runs with:
        "--exclude-path-regex", "^/v1/tokens/",
    ]  # fmt: skip
    run = subprocess.run(
        command,
        cwd=tmp_path,
        env={**stack.env, "HISTORY_TEST_TOKEN": token},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    output = run.stdout + run.stderr
    assert run.returncode == 0, output[output.find("FAILURES") :][:6000]
    assert "passed" in output and "failure" not in output.split("SUMMARY")[-1].lower()
