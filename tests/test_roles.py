"""Who may ask what: every route of the app refuses every role its rule does not allow.

The matrix enumerates ``app.routes``: a new route without an access rule fails here. It runs in
process on PostgreSQL and SQLite, and against a real ``supplychain serve`` process.
"""

from __future__ import annotations

import re
import sqlite3
import subprocess
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import requests
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from sqlalchemy import select
from starlette.routing import BaseRoute

from supplychain.access.rules import BY_SOURCE, OPEN, rule_of
from supplychain.access.tokens import ROLES, TokenStore
from supplychain.api.app import create_app
from supplychain.evidence.database import Database
from supplychain.evidence.models import ApiToken, AuditEntry, utcnow
from supplychain.service import build_service
from tests.conftest import PG_SERVER, TOKEN, make_settings
from tests.support.registry import free_port
from tests.support.service import Server, run_cli, service_env
from tests.support.tokens import cli_token

CALLERS = ("none", "bogus", *ROLES)
"""No token, a well-formed unknown token, and one token per role."""
PARAMS = {
    "source": "distribution", "job_id": "1", "name": "nobody", "waiver_id": "1",
    "digest": "sha256:" + "ab" * 32, "scan_id": "1", "attestation_id": "1",
}  # fmt: skip
BOGUS = "sc_admin_" + "a" * 52


def endpoints(routes: list[BaseRoute], prefix: str = "") -> list[tuple[str, str]]:
    """(method, path template) of every route, in included routers too; any other kind of
    route (static files, a mounted app) fails: it would be outside the access rules."""
    found = []
    for route in routes:
        included = getattr(route, "original_router", None)
        if included is not None:
            found += endpoints(included.routes, prefix + route.include_context.prefix)  # type: ignore[attr-defined]
            continue
        assert isinstance(route, APIRoute), f"{route} is outside the access rules"
        found += [(method, prefix + route.path) for method in sorted(route.methods)]
    return found


def url_of(template: str) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: PARAMS[m.group(1)], template)


def headers_for(caller: str, tokens: dict[str, str]) -> dict[str, str]:
    if caller == "none":
        return {}
    return {"Authorization": f"Bearer {BOGUS if caller == 'bogus' else tokens[caller]}"}


def allowed(method: str, path: str, caller: str, metrics_role: str | None = None) -> bool:
    roles = rule_of(method, path, metrics_role)
    assert roles is not None, f"{method} {path} has no access rule"
    if roles is OPEN:
        return True
    if roles is BY_SOURCE:  # our webhook token is made for PARAMS["source"]
        return caller == "webhook"
    return caller in roles


def make_tokens(store: TokenStore) -> dict[str, str]:
    return {
        role: store.create(
            f"t-{role}", role, actor="test", source="distribution" if role == "webhook" else None
        )
        for role in ROLES
    }


def check_matrix(send: object, routes: list[tuple[str, str]], tokens: dict[str, str]) -> int:
    """Every caller on every route; the number of (route, caller) pairs checked."""
    checked = 0
    for method, path in routes:
        for caller in CALLERS:
            answer = send(method, url_of(path), headers_for(caller, tokens))  # type: ignore[operator]
            refused = answer.status_code in (401, 403)
            assert refused != allowed(method, path, caller), (
                f"{caller} on {method} {path}: {answer.status_code} {answer.text[:200]}"
            )
            checked += 1
    return checked


@pytest.fixture(params=["postgresql", "sqlite"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'roles.db'}"
        Database(url).upgrade()
        yield url
    else:
        request.getfixturevalue("db")  # emptied first
        yield request.getfixturevalue("pg_url")


def test_every_route_refuses_every_role_it_does_not_allow(
    tmp_path: Path, database_url: str
) -> None:
    settings = make_settings(tmp_path, database_url, registries="127.0.0.1:9")
    service = build_service(settings)
    app = create_app(service, workers=0)
    routes = endpoints(app.routes)
    assert ("POST", "/v1/gate") in routes and ("GET", "/v1/audit") in routes
    tokens = make_tokens(service.tokens)
    with TestClient(app) as client:

        def send(method: str, url: str, headers: dict[str, str]) -> requests.Response:
            body = b"{}" if method in ("POST", "PUT", "PATCH") else None
            headers = {**headers, "Content-Type": "application/json"}
            return client.request(method, url, content=body, headers=headers)  # type: ignore[return-value]

        assert check_matrix(send, routes, tokens) == len(routes) * len(CALLERS)
    with service.db.session() as session:
        actions = set(session.scalars(select(AuditEntry.action)))
    assert {"token.created", "token.used", "token.refused"} <= actions


def test_metrics_can_ask_for_a_role(tmp_path: Path, pg_url: str, db: Database) -> None:
    service = build_service(make_settings(tmp_path, pg_url, metrics_role="auditor"))
    tokens = make_tokens(service.tokens)
    with TestClient(create_app(service, workers=0)) as client:
        for caller in CALLERS:
            status = client.get("/metrics", headers=headers_for(caller, tokens)).status_code
            assert (status == 200) == (caller == "auditor"), caller


def test_expired_and_revoked_tokens_are_refused_at_once(
    tmp_path: Path, pg_url: str, db: Database
) -> None:
    service = build_service(make_settings(tmp_path, pg_url))
    store = service.tokens
    soon = store.create(
        "short", "auditor", actor="test", expires_at=utcnow() + timedelta(seconds=1)
    )
    kept = store.create("kept", "auditor", actor="test")
    with TestClient(create_app(service, workers=0)) as client:
        assert client.get("/v1/audit", headers={"Authorization": f"Bearer {soon}"}).is_success
        with db.session(write=True) as session:  # expiry passes (without sleeping)
            row = session.scalars(select(ApiToken).where(ApiToken.name == "short")).one()
            row.expires_at = utcnow() - timedelta(seconds=1)
        store._cache.clear()
        assert (
            client.get("/v1/audit", headers={"Authorization": f"Bearer {soon}"}).status_code == 401
        )
        assert client.get("/v1/audit", headers={"Authorization": f"Bearer {kept}"}).is_success
        store.revoke("kept", actor="test")
        answer = client.get("/v1/audit", headers={"Authorization": f"Bearer {kept}"})
        assert answer.status_code == 401
        assert kept not in answer.text
    with db.session() as session:
        entries = session.execute(select(AuditEntry.action, AuditEntry.subject)).all()
    assert ("token.revoked", "kept") in entries


def test_each_webhook_source_has_its_own_credential(
    tmp_path: Path, pg_url: str, db: Database
) -> None:
    github_key = "github-hmac-key-0123456789"
    settings = make_settings(tmp_path, pg_url, webhook_keys=f"github={github_key}")
    service = build_service(settings)
    harbor = service.tokens.create("harbor-hook", "webhook", actor="test", source="harbor")
    with TestClient(create_app(service, workers=0)) as client:

        def post(source: str, secret: str) -> int:
            headers = {"Authorization": f"Bearer {secret}", "Content-Type": "application/json"}
            return client.post(f"/v1/hooks/{source}", content=b"{}", headers=headers).status_code

        assert post("distribution", TOKEN) == 400  # the former shared token: distribution's
        # (400: authenticated, then {} is not a distribution envelope)
        assert post("harbor", TOKEN) == 401
        assert post("quay", TOKEN) == 401
        assert post("harbor", harbor) == 202  # authenticated: {} holds no event
        assert post("distribution", harbor) == 401  # made for harbor only
        assert post("github", github_key) == 401  # github signs with HMAC, no bearer
        import hashlib
        import hmac as _hmac

        signature = "sha256=" + _hmac.new(github_key.encode(), b"{}", hashlib.sha256).hexdigest()
        answer = client.post(
            "/v1/hooks/github", content=b"{}", headers={"X-Hub-Signature-256": signature}
        )
        assert answer.status_code not in (401, 403)


def _dump_pg(url: str) -> str:
    name = url.rsplit("/", 1)[1]
    return subprocess.run(
        ["pg_dump", "--data-only", f"{PG_SERVER}/{name}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def test_tokens_never_reach_the_log_or_the_database(
    tmp_path: Path, pg_url: str, db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG")
    service = build_service(make_settings(tmp_path, pg_url))
    tokens = make_tokens(service.tokens)
    with TestClient(create_app(service, workers=0)) as client:
        check_matrix(
            lambda m, u, h: client.request(m, u, json={}, headers=h),
            [("GET", "/v1/audit"), ("POST", "/v1/gate"), ("POST", "/v1/hooks/{source}")],
            tokens,
        )
    dump = _dump_pg(pg_url)
    assert "token.used" in dump and service.tokens.digest(tokens["ci"]) in dump
    for token in tokens.values():
        assert token not in dump
        assert token not in caplog.text
        assert token.split("_")[-1] not in dump


pytestmark_e2e = pytest.mark.e2e


@pytest.mark.e2e
def test_matrix_against_a_real_serve_process(tmp_path: Path) -> None:
    data = tmp_path / "data"
    env = service_env(
        {
            "SUPPLYCHAIN_DATA_DIR": str(data),
            "SUPPLYCHAIN_REGISTRIES": "127.0.0.1:9",
            "SUPPLYCHAIN_TRIVY_OFFLINE": "true",
            "SUPPLYCHAIN_WORKERS": "0",
        }
    )
    # A new install: the first tokens are made before serve ever started (the CLI migrates).
    tokens = {
        role: cli_token(
            env, role, f"first-{role}", *(("--source", "distribution") if role == "webhook" else ())
        )
        for role in ROLES
    }
    assert all(tokens[role].startswith(f"sc_{role}_") for role in ROLES)
    listed = run_cli(["tokens", "list"], env)
    assert "first-admin" in listed.stdout and "active" in listed.stdout
    assert not any(token in listed.stdout for token in tokens.values())
    routes = endpoints(
        create_app(
            build_service(make_settings(tmp_path, f"sqlite:///{data / 'supplychain.db'}")),
            workers=0,
        ).routes
    )
    server = Server(env, tmp_path / "server.log", free_port())
    try:
        server.wait_ready()

        def send(method: str, url: str, headers: dict[str, str]) -> requests.Response:
            return requests.request(method, server.url + url, json={}, headers=headers, timeout=30)

        assert check_matrix(send, routes, tokens) == len(routes) * len(CALLERS)
        image = "127.0.0.1:9/team/app:v1"
        refused = run_cli(["gate", image, "--server", server.url], env)
        assert refused.returncode == 2 and "HTTP 401" in refused.stdout
        token_file = tmp_path / "ci.token"
        token_file.write_text(tokens["ci"] + "\n")
        asked = run_cli(
            ["gate", image, "--server", server.url, "--token-file", str(token_file)], env
        )
        assert asked.returncode == 2 and "HTTP 401" not in asked.stdout, asked.stdout
        by_env = run_cli(
            ["gate", image, "--server", server.url], {**env, "SUPPLYCHAIN_TOKEN": tokens["ci"]}
        )
        assert by_env.returncode == 2 and "HTTP 401" not in by_env.stdout, by_env.stdout
        revoked = run_cli(["tokens", "revoke", "first-auditor"], env)
        assert revoked.returncode == 0, revoked.stderr
    finally:
        server.stop()
    log = server.log()
    dump = "\n".join(sqlite3.connect(data / "supplychain.db").iterdump())
    assert "token.used" in dump and "first-ci" in dump
    for token in tokens.values():
        assert token not in log and token not in dump
        assert token not in refused.stdout + refused.stderr + asked.stdout + asked.stderr
